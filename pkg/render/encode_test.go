package render

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// encodeCases are objects whose YAML must be byte for byte that of
// sigs.k8s.io/yaml.Marshal.
func encodeCases() []map[string]any {
	cases := []map[string]any{
		{},
		{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "a", "labels": map[string]any{"x": "y"}}, "data": map[string]any{"k": "v"}},
		{"a": float64(1), "b": float64(-1), "c": 1.5, "d": 1e21, "e": 1e20, "f": 1e-7, "g": math.Copysign(0, -1), "h": float64(1 << 53), "i": 123456789.125, "j": 5e-324, "k": math.MaxFloat64},
		{"a": int64(math.MaxInt64), "b": int64(math.MinInt64), "c": int64(7), "d": int(3), "e": uint64(math.MaxUint64), "f": int32(-5)},
		{"a": "true", "b": "yes", "c": "1", "d": "1.5", "e": "null", "f": "~", "g": "", "h": " lead", "i": "trail ", "j": "a: b", "k": "- x", "l": "#c", "m": "0x1F", "n": "1e3", "o": "2001-12-14", "p": "on", "q": "<html> & </html>"},
		{"multi": "line one\nline two\n", "tabs": "a\tb", "long": strings.Repeat("word ", 40), "longnospace": strings.Repeat("x", 200), "unicode": "café ✓ \u2028 \u00a0", "ctl": "bell\a", "quote": `it's "quoted"`},
		{"invalid": "caf\xe9", "invalid2": "\xff\xfe"},
		{"list": []any{"a", float64(1), true, nil, map[string]any{"b": []any{}}, []any{[]any{"deep"}}}, "empty": map[string]any{}, "nil": nil},
		{"1": "int-like key", "true": "bool-like key", "": "empty key", "a b": "space", "10": "x", "9": "y", "a10": 1.0, "a9": 2.0, "B": 3.0, "b": 4.0},
	}
	// Every document of the decode cases that decodes.
	for _, c := range decodeCases {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(c), &m); err == nil && m != nil {
			cases = append(cases, m)
		}
	}
	return cases
}

func TestMarshalYAMLMatchesSigsYAML(t *testing.T) {
	for i, obj := range encodeCases() {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkMarshalYAML(t, obj) })
	}
}

func checkMarshalYAML(t *testing.T, obj map[string]any) {
	t.Helper()
	want, wantErr := yaml.Marshal(obj)
	got, err := MarshalYAML(obj)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%#v: error %v, want %v", obj, err, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%#v:\n got %q\nwant %q", obj, got, want)
	}
}

// FuzzMarshalYAML: any document the decoder accepts prints the same.
func FuzzMarshalYAML(f *testing.F) {
	for _, c := range decodeCases {
		if len(c) < 4096 {
			f.Add([]byte(c))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := unmarshalObject(raw)
		if err != nil || m == nil {
			return
		}
		checkMarshalYAML(t, m)
	})
}

func BenchmarkMarshalYAML(b *testing.B) {
	obj := map[string]any{}
	if err := yaml.Unmarshal([]byte(benchDeployment), &obj); err != nil {
		b.Fatal(err)
	}
	b.Run("sigs.k8s.io/yaml", func(b *testing.B) {
		for b.Loop() {
			if _, err := yaml.Marshal(obj); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("MarshalYAML", func(b *testing.B) {
		for b.Loop() {
			if _, err := MarshalYAML(obj); err != nil {
				b.Fatal(err)
			}
		}
	})
}

const benchDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: deploy-00001
  namespace: bench
  labels: {app.kubernetes.io/name: deploy-00001, app.kubernetes.io/part-of: bench, app.kubernetes.io/instance: bench}
spec:
  replicas: 1
  selector:
    matchLabels: {app: deploy-00001}
  template:
    metadata:
      labels: {app: deploy-00001}
    spec:
      containers:
      - name: app
        image: registry.example/bench/app:1.0.0
        ports: [{containerPort: 8080}]
        env: [{name: INDEX, value: "1"}]
        resources: {requests: {cpu: 10m, memory: 16Mi}}
`
