package render

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// manifestCases are documents written the way manifests are.
var manifestCases = []string{
	"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-00000\n  namespace: bench\n  labels: {app.kubernetes.io/name: cm-00000, app.kubernetes.io/part-of: bench}\ndata:\n  index: \"0\"\n  payload: xxxx\n",
	"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: app\n        image: registry.example/bench/app:1.0.0\n        ports: [{containerPort: 8080}]\n        env: [{name: INDEX, value: \"0\"}]\n        resources: {requests: {cpu: 10m, memory: 16Mi}}\n",
	"apiVersion: v1\nkind: Service\nmetadata:\n  name: svc # a comment\n  annotations:\n    example.com/quoted: 'it''s'\n    example.com/double: \"a \\\"b\\\" \\\\ c\\n\"\nspec:\n  ports:\n    - port: 80\n      targetPort: http\n      protocol: TCP\n  selector:\n    app: web\n\n# trailing comment\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: files\ndata:\n  app.conf: |\n    server {\n      listen 80;\n\n      # not a YAML comment\n    }\n  strip: |-\n    one\n    two\n\n\n  after: x\n",
	"apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    deliver.dev/hook: pre-apply\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        -   name: m\n            command: [\"sh\", \"-c\", \"echo ok\"]\n            args:\n            - --flag=1\n            - -v\n      volumes: []\n",
	"apiVersion: v1\nkind: Secret\nmetadata: {name: s, labels: {}}\ntype: Opaque\nstringData:\n  password: ref+vault://secret/app#password\n  empty: \"\"\n  nothing:\n  yes-key: yes\n  on-off: [on, off, ~, null, -1, +2, 0.5, 1e3, 0x1F, 017, 1_000, .5, 1.0.0]\n",
	"a:\n  - x\n  -\n  - - y\n",
	"a:\n- b: 1\n  c:\n  - d\n- e\n",
}

// TestUnmarshalObjectManifests: manifests as they are written, with and
// without their last newline, give what kubectl's reading (kubectlUnmarshal) gives.
func TestUnmarshalObjectManifests(t *testing.T) {
	for i, c := range manifestCases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			for _, doc := range []string{c, strings.TrimSuffix(c, "\n")} {
				checkUnmarshalObject(t, []byte(doc))
			}
		})
	}
}

// edgeCases are near the edges of what unmarshalObject converts itself:
// each must give what kubectl's reading (kubectlUnmarshal) gives.
var edgeCases = []string{
	"a: b\n  c\n", "a: 'b\n  c'\n", "a: \"b\n  c\"\n", "a: b: c\n", "a: b:\n", "a: b #c\n", "a: b#c\n", "a:b\n",
	"a:#c\n", "a: |\n", "a: |\nb: 1\n", "a: |+\n  x\n\n", "a: |2\n   x\n", "a: >\n  x\n  y\n", "a: |\n  x\n   y\n z\n",
	"a: |\n    x\n  y\n", "a: |\n  \n   \n  x\n", "a: |\n  x\n   \n", "a: |\n  x\n  #c\n# c\nb: 1\n", "a: |-\n  x\n\n\nb: 1\n",
	"a: |\n  x", "a: {b: c\n", "a: {b: c,}\n", "a: [b, , c]\n", "a: {b}\n", "a: {b: }\n", "a: {: b}\n", "a: [b: c]\n",
	"a: {b: [c, {d: e}]} #x\n", "a: {b: c}x\n", "a: \"x\"y\n", "a: 'x'#y\n", "a: [a#b, c #d]\n", "a: [-1, -, - x]\n", "a: [\"a\\u00e9\\x41\\U0001F600\"]\n",
	"a: \"\\ud800\"\n", "a: \"\\q\"\n", "a: \"\\\n", "\"k\": v\n'k2': v\n\"k\" : v\n", "? a\n: b\n", "a: &x 1\nb: *x\n", "a: !!str 1\n",
	"-a: 1\n", "a:\n - b\n - c\n", "a:\n- b\n - c\n", "a:\n  b: 1\n c: 2\n", "a:\n  - b\n  c: 1\n", "a: 1\na: 2\n", "a: {b: 1, b: 2}\n",
	"on: 1\n", "1: a\n", "null: a\n", "<<: {a: 1}\n", "a: <<\n", "a: 2001-12-14\n", "a: 1e999\n", "a: 0b101\n", "a: +.inf\n", "a: 1nan\n",
	"a: 9223372036854775808\n", "a: -9223372036854775809\n", "a: 00049\n", "a: 0o17\n", "a: +0x1F\n", "a: ._5\n", "a: .5.\n",
	" a: 1\n", "a: 1\n b: 2\n", "a:\n\n  b: 1\n", "a:\n  # c\n  b: 1\n", "a: [b,\n  c]\n", "a: x\n---\nb: y\n", "%YAML 1.1\n---\na: 1\n",
	"a:\tb\n", "a: b\r\n", "a: caf\xc3\xa9\n", "a: -\n", "a: - b\n", "- a\n", "a\n", "a: b\n...\n", "a: @b\n", "a: `b\n", "a: %b\n",
	"a: |\n  x\n b: 1\n", "a:\n  - |\n    x\n  - y\n", "a:\n- |-\n  x\n- y\n", "a: [{b: c}, [d, e], {}, []]\n", "a: {b: {c: {}}}\n",
	"a: '' \nb: ''''\nc: \"\"\n", "a: 'x' # c\n", "key with spaces: 1\nk:ey: 2\n", "a: b:c\n", "a: http://x:80/y\n", "a: [http://x:80/y]\n", "a: {b: c:d}\n",
	"a: |\n    x\n  # c\nb: 1\n", "a: |\n    x\n\n  # c\nb: 1\n", "a: |\n  x\n # c\n", "a:\n  - b\n # c\n  - d\n",
	"a: {b: c?d}\n", "a: [a?b]\n", "a: {b?: c}\n", "a: {? b}\n", "a: [b]c\n", "a: [c:d]\n", "a: b?c\n",
	"a: |\n  x\n  \n  y\n", "a: |-\n  x\n  \n", "a: |\n\n  x\n", "a: |\n \n  x\n", "a: |\n   \n  x\n",
	"a: b \n", "a : b\n", "a  :  b  \n", "'a' : b\n", "\"a\"  : b\n", "a: \"b\"  \n", "a: 0.\n", "a: -.5\n", "a: +1\n",
	"a: 0x_1\n", "a: 1__0\n", "a: _1\n", "a: 1e\n", "a: 1e+\n", "a: 1.e5\n", "a: 0123\n", "a: 0o8\n", "a: 0b2\n", "a: -0b1\n",
	"a: ~x\n", "a: y1\n", "a: .\n", "a: ..\n", "a: --\n", "a: -- x\n", "a: [a b,  c  d ]\n",
}

// longKeyCases have keys near libyaml's limit of 1,024 characters for an
// implicit key (go test -fuzz found the first).
var longKeyCases = []string{
	strings.Repeat("k", 999) + ": v\n", strings.Repeat("k", 1024) + ": v\n", strings.Repeat("k", 1025) + ": v\n",
	"\"" + strings.Repeat("k", 1030) + "\": v\n", "a: {" + strings.Repeat("k", 1030) + ": v}\n", "a: {\"" + strings.Repeat("k", 1030) + "\": v}\n",
	"- " + strings.Repeat("k", 1030) + ": v\n", strings.Repeat("k", 1030) + ":\n-\n",
}

// deepCases nest past the fast path's depth limit, in block and flow
// style and both.
var deepCases = func() []string {
	var block, seq strings.Builder
	for i := range 1100 {
		block.WriteString(strings.Repeat(" ", i) + "k:\n")
		seq.WriteString(strings.Repeat(" ", i) + "- \n")
	}
	var mixed strings.Builder
	for i := range 600 {
		mixed.WriteString(strings.Repeat(" ", i) + "k:\n")
	}
	mixed.WriteString(strings.Repeat(" ", 600) + "k: " + strings.Repeat("[", 500) + strings.Repeat("]", 500) + "\n")
	return []string{block.String(), "a:\n" + seq.String(), mixed.String()}
}()

// openCases end without a newline, as Helm's documents do.
var openCases = []string{
	"a: 1", "a: |\n  x\nb: 1", "a: |\n  x", "a: |\n  x\n  ", "a: |-\n  x\n\n", "a:\n  b: [1]", "a: 'x'", "a: {b: c} ",
	"a:\n- b", "a:\n  - |\n    x", "# c\na: b\n# c", "a: b\n\n",
}

// TestUnmarshalObjectEdges: the same for edgeCases and the cases below.
func TestUnmarshalObjectEdges(t *testing.T) {
	for i, c := range slices.Concat(edgeCases, openCases, longKeyCases, deepCases) {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkUnmarshalObject(t, []byte(c)) })
	}
}

func BenchmarkUnmarshalObject(b *testing.B) {
	for i, c := range manifestCases[:2] {
		b.Run(fmt.Sprint(i), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := unmarshalObject([]byte(c)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

var documentCases = []string{
	"", "\n", "a: 1\n", "a: 1", "a: 1\n---\nb: 2\n", "---\na: 1\n", "a: 1\n--- # c\nb: 2\n", "a: 1\n---x\n", "a: |\n  ---\n",
	"a: 1\r\n", "a: 1\rb\n", "a:\n- 1\n- 2\n", "# c\n", "a: 1\n\n\n", "--\n", " ---\n", "a: " + strings.Repeat("x", 9000) + "\n",
}

func checkReadDocuments(t *testing.T, data []byte) {
	want, wantErr := splitDocuments(data)
	got, err := readDocuments(data)
	if fmt.Sprint(err) != fmt.Sprint(wantErr) {
		t.Fatalf("%q: error %v, want %v", data, err, wantErr)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("%q (-want +got):\n%s", data, diff)
	}
}

func TestReadDocumentsMatchesYAMLReader(t *testing.T) {
	for _, c := range append(documentCases, manifestCases...) {
		checkReadDocuments(t, []byte(c))
	}
}

func FuzzReadDocuments(f *testing.F) {
	for _, c := range documentCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkReadDocuments(t, data) })
}
