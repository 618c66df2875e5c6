package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func yamlToJSON(t *testing.T, doc string) []byte {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestDecryptFormats(t *testing.T) {
	id := ageKey(t)
	ent, ring := pgpKey(t)
	red := NewRedactor(RedactorOptions{})
	s, err := NewSOPS(SOPSOptions{AgeKeys: []string{id.String()}, PGPKeys: [][]byte{ring}, Redactor: red})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		file   string
		format Format
		plain  string
		want   map[string]any
	}{
		{"yaml by extension", "values.enc.yaml", FormatAuto, "db:\n  password: hunter2-yaml\nport: 5432\n",
			map[string]any{"db": map[string]any{"password": "hunter2-yaml"}, "port": 5432}},
		{"yml", "values.enc.yml", FormatAuto, "list:\n- hunter2-1\n- b: hunter2-2\n",
			map[string]any{"list": []any{"hunter2-1", map[string]any{"b": "hunter2-2"}}}},
		{"json", "app.enc.json", FormatAuto, `{"token":"hunter2-json","n":1.5}`,
			map[string]any{"token": "hunter2-json", "n": 1.5}},
		{"dotenv", "app.env", FormatAuto, "TOKEN=hunter2-dotenv\nUSER=app\n",
			map[string]any{"TOKEN": "hunter2-dotenv", "USER": "app"}},
		{"ini", "app.ini", FormatAuto, "[db]\npassword = hunter2-ini\n",
			map[string]any{"DEFAULT": map[string]any{}, "db": map[string]any{"password": "hunter2-ini"}}},
		{"binary", "cert.pem", FormatAuto, "-----BEGIN hunter2-binary-----\n",
			map[string]any{"data": "-----BEGIN hunter2-binary-----\n"}},
		{"explicit format wins over extension", "secret.txt", FormatYAML, "k: hunter2-explicit\n",
			map[string]any{"k": "hunter2-explicit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.format
			if f == FormatAuto {
				f = FormatForPath(tt.file)
			}
			for _, keys := range []struct {
				name string
				o    encOpts
			}{{"age", encOpts{age: []*age.X25519Identity{id}}}, {"pgp", encOpts{pgp: []*openpgp.Entity{ent}}}} {
				t.Run(keys.name, func(t *testing.T) {
					enc := encrypt(t, f, tt.plain, keys.o)
					if !IsEncrypted(tt.file, enc, tt.format) {
						t.Errorf("IsEncrypted = false for an encrypted file")
					}
					got, err := s.DecryptData(context.Background(), tt.file, enc, tt.format)
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(tt.want, got); diff != "" {
						t.Errorf("DecryptData (-want +got):\n%s", diff)
					}
					plain, err := s.Decrypt(context.Background(), tt.file, enc, tt.format)
					if err != nil {
						t.Fatal(err)
					}
					if bytes.Contains(plain, []byte("ENC[")) || !bytes.Contains(plain, []byte("hunter2")) {
						t.Errorf("Decrypt: not decrypted:\n%s", plain)
					}
					if r := red.Redact(string(plain)); strings.Contains(r, "hunter2") {
						t.Errorf("decrypted values not registered, redacted output:\n%s", r)
					}
				})
			}
		})
	}
}

func TestDecryptErrors(t *testing.T) {
	id, other := ageKey(t), ageKey(t)
	ent, _ := pgpKey(t)
	ctx := context.Background()
	enc := encrypt(t, FormatYAML, "password: hunter2-err\nname_unencrypted: app\n", encOpts{age: []*age.X25519Identity{id}, pgp: []*openpgp.Entity{ent}})

	wrong, err := NewSOPS(SOPSOptions{AgeKeys: []string{other.String()}})
	if err != nil {
		t.Fatal(err)
	}
	none, _ := NewSOPS(SOPSOptions{})
	right, _ := NewSOPS(SOPSOptions{AgeKeys: []string{id.String()}})

	tamperedValue := bytes.Replace(enc, []byte("name_unencrypted: app"), []byte("name_unencrypted: evil"), 1)
	// Flip one character inside the ciphertext of the encrypted value.
	i := bytes.Index(enc, []byte("ENC[AES256_GCM,data:")) + len("ENC[AES256_GCM,data:")
	tamperedCipher := append([]byte(nil), enc...)
	if tamperedCipher[i] == 'A' {
		tamperedCipher[i] = 'B'
	} else {
		tamperedCipher[i] = 'A'
	}

	tests := []struct {
		name   string
		s      *SOPS
		file   string
		data   []byte
		format Format
		is     error
		msg    []string
	}{
		{"wrong age key", wrong, "secrets/db.enc.yaml", enc, FormatAuto, ErrNoKey,
			[]string{"secrets/db.enc.yaml: decrypt: ", "age " + id.Recipient().String(), "none of the 1 age identities matches", "no pgp key configured"}},
		{"no key at all", none, "secrets/db.enc.yaml", enc, FormatAuto, ErrNoKey,
			[]string{"no age identity configured"}},
		{"tampered plain value", right, "secrets/db.enc.yaml", tamperedValue, FormatAuto, ErrMACMismatch,
			[]string{"secrets/db.enc.yaml: decrypt: file was modified after encryption (MAC mismatch)"}},
		{"tampered ciphertext", right, "secrets/db.enc.yaml", tamperedCipher, FormatAuto, ErrMACMismatch,
			[]string{"MAC mismatch"}},
		{"not encrypted", right, "plain.yaml", []byte("a: b\n"), FormatAuto, ErrNotEncrypted,
			[]string{"plain.yaml: decrypt: not a SOPS file"}},
		{"unknown format", right, "x.yaml", enc, Format("toml"), ErrUnknownFormat,
			[]string{`x.yaml: sops format "toml": unknown format`}},
		{"yaml read as json", right, "x.json", enc, FormatAuto, nil,
			[]string{"x.json: decrypt: parse json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.s.Decrypt(ctx, tt.file, tt.data, tt.format)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the value: %q", err)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": FormatAuto, "YAML": FormatYAML, "json": FormatJSON, "dotenv": FormatDotenv, "ini": FormatINI, "binary": FormatBinary} {
		got, err := ParseFormat(in)
		if err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseFormat("toml"); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("ParseFormat(toml) = %v, want ErrUnknownFormat", err)
	}
}

func TestKeyParsingErrorsHideKeys(t *testing.T) {
	bad := "AGE-SECRET-KEY-1NOTAVALIDKEYhunter2"
	_, err := NewSOPS(SOPSOptions{AgeKeys: []string{"# comment\n" + bad}})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "age key 1, line 2") {
		t.Errorf("NewSOPS(bad age key) = %v", err)
	}
	_, err = NewSOPS(SOPSOptions{PGPKeys: [][]byte{[]byte("-----BEGIN PGP PRIVATE KEY BLOCK-----\nhunter2\n")}})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("NewSOPS(bad pgp key) = %v", err)
	}
}

func TestAgeKeysFromEnvAndFiles(t *testing.T) {
	a, b, c := ageKey(t), ageKey(t), ageKey(t)
	dir := t.TempDir()
	fileB := filepath.Join(dir, "b.txt")
	fileC := filepath.Join(dir, "keys.txt")
	os.WriteFile(fileB, []byte("# created: now\n"+b.String()+"\n"), 0o600)
	os.WriteFile(fileC, []byte(c.String()+"\n"), 0o600)
	envm := map[string]string{EnvAgeKey: a.String(), EnvAgeKeyFile: fileB}
	s, err := NewSOPS(SOPSOptions{Env: func(k string) string { return envm[k] }, AgeKeyFiles: []string{fileC}})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []*age.X25519Identity{a, b, c} {
		enc := encrypt(t, FormatYAML, "k: v-secret\n", encOpts{age: []*age.X25519Identity{id}})
		if _, err := s.Decrypt(context.Background(), "f.yaml", enc, FormatAuto); err != nil {
			t.Errorf("key %d: %v", i, err)
		}
	}
	// Without Env the process environment is not read.
	t.Setenv(EnvAgeKey, a.String())
	s2, _ := NewSOPS(SOPSOptions{})
	enc := encrypt(t, FormatYAML, "k: v-secret\n", encOpts{age: []*age.X25519Identity{a}})
	if _, err := s2.Decrypt(context.Background(), "f.yaml", enc, FormatAuto); !errors.Is(err, ErrNoKey) {
		t.Errorf("Decrypt with no Env = %v, want ErrNoKey", err)
	}
	if _, err := NewSOPS(SOPSOptions{Env: func(k string) string { return map[string]string{EnvAgeKeyFile: "/nonexistent/keys.txt"}[k] }}); err == nil ||
		!strings.Contains(err.Error(), "SOPS_AGE_KEY_FILE") {
		t.Errorf("missing key file: %v", err)
	}
}

func TestAgeKeysFromSecret(t *testing.T) {
	ns := env.Namespace(t)
	id := ageKey(t)
	ctx := context.Background()
	_, err := env.Client().CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sops-age"},
		Data:       map[string][]byte{"identity.agekey": []byte(id.String() + "\n"), "other": []byte("x")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := AgeKeysFromSecret(ctx, env.Client(), ns, "sops-age")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSOPS(SOPSOptions{AgeKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	enc := encrypt(t, FormatYAML, "k: v-secret\n", encOpts{age: []*age.X25519Identity{id}})
	if _, err := s.Decrypt(ctx, "f.yaml", enc, FormatAuto); err != nil {
		t.Error(err)
	}
	if _, err := AgeKeysFromSecret(ctx, env.Client(), ns, "missing"); err == nil || !strings.Contains(err.Error(), "secret "+ns+"/missing") {
		t.Errorf("missing secret: %v", err)
	}
}

const secretManifest = `apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: app
type: Opaque
data:
  password: aHVudGVyMi1tYW5pZmVzdA==
stringData:
  user: hunter2-user
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: plain
data:
  key: value
`

func TestDecryptManifestAndCheck(t *testing.T) {
	id := ageKey(t)
	red := NewRedactor(RedactorOptions{})
	s, _ := NewSOPS(SOPSOptions{AgeKeys: []string{id.String()}, Redactor: red})
	enc := encrypt(t, FormatYAML, secretManifest, encOpts{age: []*age.X25519Identity{id}, encryptedRegex: "^(data|stringData)$"})
	if !bytes.Contains(enc, []byte("name: db")) || bytes.Contains(enc, []byte("hunter2")) || bytes.Contains(enc, []byte("aHVudGVy")) {
		t.Fatalf("metadata should stay plain and data be encrypted:\n%s", enc)
	}

	// Before decryption, the manifest must be refused.
	var raw []*unstructured.Unstructured
	for _, doc := range strings.Split(string(enc), "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(yamlToJSON(t, doc)); err != nil {
			t.Fatal(err)
		}
		raw = append(raw, u)
	}
	err := CheckDecrypted(raw...)
	if !errors.Is(err, ErrSOPSMetadata) || !strings.Contains(err.Error(), "Secret/app/db") {
		t.Errorf("CheckDecrypted(encrypted) = %v", err)
	}

	objs, err := s.DecryptManifest(context.Background(), "secrets/db.enc.yaml", enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("got %d objects, want 2", len(objs))
	}
	if err := CheckDecrypted(objs...); err != nil {
		t.Errorf("CheckDecrypted(decrypted) = %v", err)
	}
	got, _, _ := unstructured.NestedString(objs[0].Object, "data", "password")
	if got != base64.StdEncoding.EncodeToString([]byte("hunter2-manifest")) {
		t.Errorf("password = %q", got)
	}
	if objs[0].GetName() != "db" || objs[1].GetKind() != "ConfigMap" {
		t.Errorf("objects: %s %s", objs[0].GetName(), objs[1].GetKind())
	}
	for _, v := range []string{"hunter2-manifest", "aHVudGVyMi1tYW5pZmVzdA==", "hunter2-user"} {
		if red.Redact("x "+v+" y") != "x "+Mask+" y" {
			t.Errorf("%s not registered", v)
		}
	}
	// Plain values (metadata) are not secrets.
	if red.Redact("db Opaque app plain") != "db Opaque app plain" {
		t.Errorf("plain values registered: %q", red.Redact("db Opaque app plain"))
	}

	// An encrypted value alone is refused too.
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "x"}, "stringData": map[string]any{"k": "ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]"}}}
	if err := CheckDecrypted(u); !errors.Is(err, ErrSOPSMetadata) || !strings.Contains(err.Error(), "stringData.k") {
		t.Errorf("CheckDecrypted(ENC value) = %v", err)
	}
}

func TestTempDir(t *testing.T) {
	d, err := NewTempDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := d.WriteFile("gen/app.env", []byte("A=b\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("file mode: %v %v", st, err)
	}
	if st, _ := os.Stat(d.Path); st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", st.Mode())
	}
	if _, err := d.WriteFile("../escape", []byte("x")); err == nil {
		t.Error("wrote outside the folder")
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path); !os.IsNotExist(err) {
		t.Errorf("folder still there: %v", err)
	}
}
