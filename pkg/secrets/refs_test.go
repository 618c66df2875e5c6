package secrets

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestParseRef(t *testing.T) {
	tests := []struct {
		in   string
		want Ref
		err  error
	}{
		{"ref+vault://secret/data/app#/db/password", Ref{Raw: "ref+vault://secret/data/app#/db/password", Backend: "vault", Path: "secret/data/app", Keys: []string{"db", "password"}}, nil},
		{"ref+vault://secret/app#/key+", Ref{Raw: "ref+vault://secret/app#/key", Backend: "vault", Path: "secret/app", Keys: []string{"key"}}, nil},
		{"ref+vault://secret/app", Ref{Raw: "ref+vault://secret/app", Backend: "vault", Path: "secret/app"}, nil},
		{"ref+vault://secret/app#key", Ref{Raw: "ref+vault://secret/app#key", Backend: "vault", Path: "secret/app", Keys: []string{"key"}}, nil},
		{"ref+sops://path/file.enc.yaml#/a/b", Ref{Raw: "ref+sops://path/file.enc.yaml#/a/b", Backend: "sops", Path: "path/file.enc.yaml", Keys: []string{"a", "b"}}, nil},
		{"ref+vault://secret/app#/a~1b", Ref{Raw: "ref+vault://secret/app#/a~1b", Backend: "vault", Path: "secret/app", Keys: []string{"a/b"}}, nil},
		{"ref+awssecrets://x#/y", Ref{}, ErrBadRef},
		{"ref+vault://#/y", Ref{}, ErrBadRef},
		{"ref+vault://secret/app?version=2#/y", Ref{}, ErrBadRef},
		{"prefix ref+vault://secret/app#/y", Ref{}, ErrBadRef},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRef(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	refs, err := FindRefs("postgres://ref+vault://secret/app#/user+:ref+vault://secret/app#/pass+@db:5432 ref+sops://x.yaml#/k")
	if err != nil {
		t.Fatal(err)
	}
	var raws []string
	for _, r := range refs {
		raws = append(raws, r.Raw)
	}
	if diff := cmp.Diff([]string{"ref+vault://secret/app#/user", "ref+vault://secret/app#/pass", "ref+sops://x.yaml#/k"}, raws); diff != "" {
		t.Errorf("FindRefs (-want +got):\n%s", diff)
	}
}

// sopsRoot writes SOPS files into a folder and returns a Resolver over it.
func sopsRoot(t *testing.T, id *age.X25519Identity, red *Redactor, files map[string][]byte) *Resolver {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewSOPS(SOPSOptions{AgeKeys: []string{id.String()}, Redactor: red})
	if err != nil {
		t.Fatal(err)
	}
	return NewResolver(ResolverOptions{SOPS: s, Root: dir, Redactor: red})
}

func TestResolveSOPSRefs(t *testing.T) {
	id := ageKey(t)
	red := NewRedactor(RedactorOptions{})
	r := sopsRoot(t, id, red, map[string][]byte{
		"secrets/app.enc.yaml": encrypt(t, FormatYAML, "db:\n  user: app\n  password: hunter2-ref\n  port: 5432\nlist: [a1-x, b2-y]\n", encOpts{age: []*age.X25519Identity{id}}),
		"secrets/app.env":      encrypt(t, FormatDotenv, "TOKEN=hunter2-env\n", encOpts{age: []*age.X25519Identity{id}}),
	})
	ctx := context.Background()
	values := map[string]any{
		"password": "ref+sops://secrets/app.enc.yaml#/db/password",
		"dsn":      "postgres://ref+sops://secrets/app.enc.yaml#/db/user+:ref+sops://secrets/app.enc.yaml#/db/password+@db:ref+sops://secrets/app.enc.yaml#/db/port+/x",
		"db":       "ref+sops://secrets/app.enc.yaml#/db",
		"port":     "ref+sops://secrets/app.enc.yaml#/db/port",
		"second":   "ref+sops://secrets/app.enc.yaml#/list/1",
		"nested":   []any{map[string]any{"token": "ref+sops://secrets/app.env#/TOKEN"}, 3},
		"plain":    "no ref here",
	}
	got, err := r.ResolveValues(ctx, "values.yaml", values)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"password": "hunter2-ref",
		"dsn":      "postgres://app:hunter2-ref@db:5432/x",
		"db":       map[string]any{"user": "app", "password": "hunter2-ref", "port": int64(5432)},
		"port":     int64(5432),
		"second":   "b2-y",
		"nested":   []any{map[string]any{"token": "hunter2-env"}, 3},
		"plain":    "no ref here",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ResolveValues (-want +got):\n%s", diff)
	}
	if values["password"] != "ref+sops://secrets/app.enc.yaml#/db/password" {
		t.Error("ResolveValues changed its input")
	}

	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "db", "namespace": "app"},
		"stringData": map[string]any{"password": "ref+sops://secrets/app.enc.yaml#/db/password", "port": "ref+sops://secrets/app.enc.yaml#/db/port"},
	}}
	if err := r.ResolveObject(ctx, u); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"password": "hunter2-ref", "port": int64(5432)}, u.Object["stringData"]); diff != "" {
		t.Errorf("ResolveObject (-want +got):\n%s", diff)
	}
	_ = u.DeepCopy() // panics on types unstructured does not allow

	errTests := []struct {
		name string
		in   string
		is   error
		msg  string
	}{
		{"missing key", "ref+sops://secrets/app.enc.yaml#/db/nope", ErrNotFound, "values.yaml: x: ref+sops://secrets/app.enc.yaml#/db/nope: key db/nope: not found"},
		{"key under a scalar", "ref+sops://secrets/app.enc.yaml#/db/password/x", ErrNotFound, "db/password is a string"},
		{"missing file", "ref+sops://secrets/none.yaml#/a", ErrNotFound, "ref+sops://secrets/none.yaml#/a: file secrets/none.yaml: not found"},
		{"escape the root", "ref+sops://../../etc/passwd#/a", nil, "ref+sops://../../etc/passwd#/a: file ../../etc/passwd:"},
		{"map embedded", "x ref+sops://secrets/app.enc.yaml#/db+ y", nil, "value is a map, cannot be embedded"},
		{"no vault", "ref+vault://secret/app#/a", nil, "ref+vault://secret/app#/a: no vault configured"},
		{"bad backend", "ref+gcpsecrets://x#/a", ErrBadRef, "unknown backend"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.ResolveValues(ctx, "values.yaml", map[string]any{"x": tt.in})
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("%q is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks: %q", err)
			}
		})
	}
	if red.Redact("hunter2-env hunter2-ref") != "*** ***" {
		t.Errorf("values not registered: %q", red.Redact("hunter2-env hunter2-ref"))
	}
}
