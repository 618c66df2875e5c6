package render

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	fluxkustomize "github.com/fluxcd/pkg/kustomize"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/provider"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/deliverhq/deliver/pkg/object"
)

// The post-build corpus: small repositories generated here whose objects
// use ${var} the ways Flux users write them (plain, quoted, in block and
// folded scalars, in names, numbers and keys, with defaults, bash string
// functions, escapes and broken expressions, objects marked
// substitute: disabled), and variables of every YAML type (numbers, bools,
// null, flow collections, "key: value", multi-line). Each is substituted by
// deliver (a kustomize app and a manifests app of the same files) and by
// Flux's own function (github.com/fluxcd/pkg/kustomize
// SubstituteVariables, run on kustomize's build as kustomize-controller
// runs it), and the objects compared as Flux applies them (its build's
// YAML read by the API machinery's decoder).

// substCase is one generated repository.
type substCase struct {
	name   string
	docs   []string
	vars   map[string]string
	strict bool
	always bool
}

var (
	substNames = []string{"a", "port", "REGION", "_x", "name_1", "Empty", "unset"} // unset last: never defined
	// Values that stay a scalar wherever they go, and values that can
	// change the YAML around them (most make it invalid somewhere).
	substValues = []string{"", "3", "0", "01", "1e3", "0x1F", "-7", "2.50", "true", "no", "null", "~",
		"abc", "a b", "a#b", "multi\nline", "tab\there", "${a}", "$${a}", "prod-eu-1", "é", "8080"}
	substYAML = []string{"x: y", "- item", "{}", "[1, 2]", "{k: v}", "'sq'", `"dq"`, "#hash", "*", "&anchor", "!!str 5", "@at", "%p"}
)

// substValue returns a variable's value, mostly one of substValues.
func substValue(r *rand.Rand) string {
	if r.IntN(12) == 0 {
		return substYAML[r.IntN(len(substYAML))]
	}
	return substValues[r.IntN(len(substValues))]
}

// substExpr returns one expression over a random variable.
func substExpr(r *rand.Rand) string {
	v := substNames[r.IntN(len(substNames)-1)]
	if r.IntN(30) == 0 {
		v = "unset"
	}
	forms := []string{
		"${V}", "${V}", "${V}", "${V:=def}", "${V:-x y}", "${V=3}", "${#V}",
		"${V^^}", "${V,}", "${V:1}", "${V:0:2}", "${V/a/b}", "${V//e/E}", "${V#a}", "${V%e}",
		"$${V}", "$V", "pre-${V}-post", "${V}${V}",
	}
	if r.IntN(150) == 0 {
		forms = []string{"${", "${}", "${V:?x}", "${V", "$", "${V:=${V}}", "${1bad}", "${V-x}"}
	}
	return strings.ReplaceAll(forms[r.IntN(len(forms))], "V", v)
}

// substDoc returns document i of a case, one of a few shapes.
func substDoc(r *rand.Rand, i int) string {
	e := func() string { return substExpr(r) }
	// Metadata: labels and annotations, one of them maybe marked.
	label, annotation := "    tier: "+e()+"\n", "    note: "+e()+"\n"
	switch r.IntN(6) {
	case 0:
		label += "    kustomize.toolkit.fluxcd.io/substitute: disabled\n"
	case 1:
		annotation += "    kustomize.toolkit.fluxcd.io/substitute: disabled\n"
	case 2:
		annotation += "    kustomize.toolkit.fluxcd.io/substitute: enabled\n"
	}
	mark := "  labels:\n" + label + "  annotations:\n" + annotation
	switch r.IntN(4) {
	case 0:
		return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-%d-%s
%sdata:
  plain: %s
  double: "%s"
  single: '%s'
  text: prefix-%s-suffix
  block: |
    line one %s
    %s
  folded: >-
    %s folded
    text
  # a comment with %s
`, i, e(), mark, e(), e(), e(), e(), e(), e(), e(), e())
	case 1:
		return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-%d
%s  namespace: ns-%s
spec:
  replicas: %s
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: registry.example/app:%s
        args: ["--region=%s", "%s"]
        env:
        - name: REGION
          value: "%s"
`, i, mark, e(), e(), e(), e(), e(), e())
	case 2:
		return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: svc-%d
%s    %s: "x"
spec:
  ports:
  - port: %s
    targetPort: %s
`, i, mark, "key-"+e(), e(), e())
	default:
		return fmt.Sprintf(`{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s-%d"}, "stringData": {"password": "%s", "url": "https://${a}.example/%s"}}
`, i, e(), e())
	}
}

// substCorpus generates the cases.
func substCorpus() []substCase {
	r := rand.New(rand.NewPCG(7, 19))
	var out []substCase
	for i := range 300 {
		c := substCase{name: fmt.Sprintf("case%03d", i), vars: map[string]string{}, strict: r.IntN(2) == 0, always: r.IntN(5) == 0}
		for range 1 + r.IntN(3) {
			c.docs = append(c.docs, substDoc(r, len(c.docs)))
		}
		if r.IntN(6) != 0 {
			for _, n := range substNames {
				if n != "unset" && (c.strict || r.IntN(3) != 0) {
					c.vars[n] = substValue(r)
				}
			}
		}
		if r.IntN(40) == 0 {
			c.vars["bad-name"] = "x"
		}
		out = append(out, c)
	}
	return out
}

// write puts a case in dir: manifests/ holds the documents (the manifests
// app's path), the folder a kustomization listing them (the kustomize
// app's path and Flux's build).
func (c substCase) write(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "manifests"), 0o755); err != nil {
		t.Fatal(err)
	}
	kust := "resources:\n"
	for i, d := range c.docs {
		name := fmt.Sprintf("manifests/doc%d.yaml", i)
		kust += "- " + name + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fluxSubstitute is kustomize-controller's build: kustomize, then Flux's
// SubstituteVariables on every resource, then the YAML it applies, read
// as the API machinery reads it.
func fluxSubstitute(dir string, c substCase) ([]string, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, err
	}
	subst := map[string]any{}
	for k, v := range c.vars {
		subst[k] = v
	}
	ks := unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
		"metadata": map[string]any{"name": "app", "namespace": "flux-system"},
		"spec":     map[string]any{"postBuild": map[string]any{"substitute": subst}},
	}}
	for _, res := range m.Resources() {
		out, err := fluxkustomize.SubstituteVariables(context.Background(), nil, ks, res,
			fluxkustomize.SubstituteWithDryRun(true), // the vars are all inline
			fluxkustomize.SubstituteWithStrict(c.strict), fluxkustomize.SubstituteWithAlways(c.always))
		if err != nil {
			return nil, err
		}
		if out != nil {
			if _, err := m.Replace(out); err != nil {
				return nil, err
			}
		}
	}
	y, err := m.AsYaml()
	if err != nil {
		return nil, err
	}
	objs, err := kubectlDecode(string(y))
	slices.Sort(objs)
	return objs, err
}

// deliverSubstitute renders a case as an app of src with the case's
// post-build.
func deliverSubstitute(r *Renderer, dir string, c substCase, src Source) ([]string, error) {
	set, err := r.Render(context.Background(), Options{
		Root: dir, App: "corpus", Namespace: "default", Sources: []Source{src},
		PostBuild: &PostBuild{Vars: c.vars, Strict: c.strict, Always: c.always},
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range append(set.Objects, set.Hooks...) {
		s, err := canonical(o.Object)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// TestSubstituteAsFlux compares deliver's post-build substitution with
// Flux's on the generated corpus, for kustomize and manifests apps.
func TestSubstituteAsFlux(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	var r Renderer
	var compared, refused, changed int
	cases := substCorpus()
	for _, c := range cases {
		dir := filepath.Join(root, c.name)
		c.write(t, dir)
		want, ferr := fluxSubstitute(dir, c)
		for _, src := range []Source{{Kustomize: &KustomizeOptions{Path: "."}}, {Plain: &PlainOptions{Path: "manifests"}}} {
			got, err := deliverSubstitute(&r, dir, c, src)
			if (ferr == nil) != (err == nil) {
				t.Errorf("%s (%s): flux: %v\ndeliver: %v\n%s", c.name, sourceKind(src), ferr, err, strings.Join(c.docs, "---\n"))
				continue
			}
			if ferr != nil {
				if testing.Verbose() {
					t.Logf("%s: both refuse: %v", c.name, ferr)
				}
				refused++
				continue
			}
			compared++
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (%s): objects (-flux +deliver):\n%s\nvars %q", c.name, sourceKind(src), diff, c.vars)
			}
		}
		if ferr == nil && !strings.Contains(strings.Join(want, ""), "${") {
			changed++
		}
	}
	t.Logf("%d compared, %d refused by both, %d cases without a ${ left", compared, refused, changed)
	// The corpus must mostly substitute, or it proves little.
	if compared < len(cases) {
		t.Errorf("only %d of %d renders compared", compared, 2*len(cases))
	}
	if refused < 10 {
		t.Errorf("only %d renders refused by both: the corpus has too few errors", refused)
	}
}

func sourceKind(s Source) string {
	if s.Kustomize != nil {
		return "kustomize"
	}
	return "manifests"
}

// canonical is canonicalJSON returning its error.
func canonical(m map[string]any) (string, error) {
	u := unstructured.Unstructured{Object: m}
	b, err := u.MarshalJSON()
	return strings.TrimSpace(string(b)), err
}

// TestSubstitute checks what the corpus cannot tell: errors that name the
// object, the disabled marks, and that a Secret's values stay out of
// errors.
func TestSubstitute(t *testing.T) {
	t.Parallel()
	obj := func(name string, data map[string]any, labels map[string]any) *object.Object {
		md := map[string]any{"name": name}
		if labels != nil {
			md["labels"] = labels
		}
		return &object.Object{
			Unstructured: &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data}},
			Origin:       object.Origin{App: "web", File: "manifests/cm.yaml", Doc: 1},
		}
	}
	tests := []struct {
		name    string
		pb      PostBuild
		labels  map[string]any
		data    map[string]any
		want    map[string]any
		wantErr string
	}{
		{name: "value", pb: PostBuild{Vars: map[string]string{"region": "eu"}}, data: map[string]any{"k": "${region}-1"}, want: map[string]any{"k": "eu-1"}},
		{name: "typed by YAML", pb: PostBuild{Vars: map[string]string{"n": "3"}}, data: map[string]any{"k": "${n}"}, want: map[string]any{"k": int64(3)}},
		{name: "newlines dropped", pb: PostBuild{Vars: map[string]string{"n": "a\nb"}}, data: map[string]any{"k": "${n}"}, want: map[string]any{"k": "ab"}},
		{name: "no vars no change", pb: PostBuild{}, data: map[string]any{"k": "${n:=x}"}, want: map[string]any{"k": "${n:=x}"}},
		{name: "always applies defaults", pb: PostBuild{Always: true}, data: map[string]any{"k": "${n:=x}"}, want: map[string]any{"k": "x"}},
		{name: "escape", pb: PostBuild{Vars: map[string]string{"n": "1"}}, data: map[string]any{"k": "$${n}"}, want: map[string]any{"k": "${n}"}},
		{name: "disabled", pb: PostBuild{Vars: map[string]string{"n": "1"}}, labels: map[string]any{SubstituteKey: SubstituteDisabled}, data: map[string]any{"k": "${n}"}, want: map[string]any{"k": "${n}"}},
		{name: "strict", pb: PostBuild{Vars: map[string]string{"n": "1"}, Strict: true}, data: map[string]any{"k": "${m}"},
			wantErr: `web: manifests/cm.yaml#1: ConfigMap/cm: post-build substitution: variable not set (strict mode): "m"`},
		{name: "not strict", pb: PostBuild{Vars: map[string]string{"n": "1"}}, data: map[string]any{"k": "a${m}b"}, want: map[string]any{"k": "ab"}},
		{name: "bad name", pb: PostBuild{Vars: map[string]string{"a-b": "1"}}, data: map[string]any{"k": "x"}, wantErr: `variable name "a-b" is invalid`},
		{name: "value breaks YAML", pb: PostBuild{Vars: map[string]string{"n": "x: canary-value"}}, data: map[string]any{"k": "${n}"},
			wantErr: "web: manifests/cm.yaml#1: ConfigMap/cm: post-build substitution: the substituted object is not valid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set := &object.Set{Objects: []*object.Object{obj("cm", tt.data, tt.labels)}}
			err := tt.pb.substitute(set)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "canary") {
					t.Fatalf("error carries a value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, set.Objects[0].Object["data"]); diff != "" {
				t.Errorf("data (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzSubstitute compares deliver's substitution of one object with
// Flux's SubstituteVariables on the same object, for any text in a field,
// a label and a name, and any value, strict or not.
func FuzzSubstitute(f *testing.F) {
	for _, s := range [][3]string{
		{"${v}", "x", "a"}, {"${v:=d}", "", "b"}, {"$${v}", "1", "c"}, {"pre-${v}-post", "x: y", "d"},
		{"${v^^}", "é", "e"}, {"${v:1:2}", "multi\nline", "f"}, {"${", "x", "g"}, {"${w}", "x", "h"},
		{"${v}", "[1, 2]", "${v}"}, {"${v/a/b}", "aaa", "i"}, {"${#v}", "12345", "j"},
	} {
		f.Add(s[0], s[1], s[2], false)
		f.Add(s[0], s[1], s[2], true)
	}
	rf := provider.NewDefaultDepProvider().GetResourceFactory()
	f.Fuzz(func(t *testing.T, field, value, name string, strict bool) {
		obj := map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "cm-" + name, "labels": map[string]any{"l": field}},
			"data":     map[string]any{"k": field, "n": name},
		}
		res, err := rf.FromMap(copyValue(obj).(map[string]any))
		if err != nil {
			t.Skip()
		}
		ks := unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
			"metadata": map[string]any{"name": "app"},
			"spec":     map[string]any{"postBuild": map[string]any{"substitute": map[string]any{"v": value}}},
		}}
		var want []string
		out, ferr := fluxkustomize.SubstituteVariables(context.Background(), nil, ks, res,
			fluxkustomize.SubstituteWithDryRun(true), fluxkustomize.SubstituteWithStrict(strict))
		if ferr == nil {
			var y []byte
			if y, ferr = out.AsYAML(); ferr == nil {
				want, ferr = kubectlDecode(string(y))
			}
		}
		set := &object.Set{Objects: []*object.Object{{Unstructured: &unstructured.Unstructured{Object: obj}}}}
		err = (&PostBuild{Vars: map[string]string{"v": value}, Strict: strict}).substitute(set)
		if (ferr == nil) != (err == nil) {
			// Flux takes an object that substitutes to no name or kind;
			// deliver refuses it (every object needs them), as
			// kustomize-controller does after the substitution.
			if err != nil && strings.Contains(err.Error(), "after post-build substitution") {
				return
			}
			t.Fatalf("flux: %v\ndeliver: %v", ferr, err)
		}
		if err != nil {
			return
		}
		got, err := canonical(set.Objects[0].Object)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != 1 || want[0] != got {
			t.Fatalf("objects differ:\nflux:    %q\ndeliver: %q", want, got)
		}
	})
}

// TestCommonMetadata: labels and annotations land on every object and
// hook, replacing those of the same key, and nowhere else (a selector, a
// pod template), after the post-build (its ${var} are not substituted),
// as Flux's commonMetadata.
func TestCommonMetadata(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "m.yaml"), []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {team: old, app: web}}
spec:
  selector: {matchLabels: {app: web}}
  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c, image: "i:${tag}"}]}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, annotations: {deliver.dev/hook: pre-apply}}
spec: {template: {spec: {restartPolicy: Never, containers: [{name: m, image: i}]}}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var r Renderer
	set, err := r.Render(context.Background(), Options{
		Root: root, App: "web", Namespace: "web", Sources: []Source{{Plain: &PlainOptions{Path: "m.yaml"}}},
		PostBuild:    &PostBuild{Vars: map[string]string{"tag": "1"}},
		CommonLabels: map[string]string{"team": "shop", "env": "${tag}"}, CommonAnnotations: map[string]string{"owner": "sre"},
	})
	if err != nil {
		t.Fatal(err)
	}
	d, hook := set.Objects[0], set.Hooks[0]
	if diff := cmp.Diff(map[string]string{"team": "shop", "app": "web", "env": "${tag}"}, d.GetLabels()); diff != "" {
		t.Errorf("Deployment labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"owner": "sre"}, d.GetAnnotations()); diff != "" {
		t.Errorf("Deployment annotations (-want +got):\n%s", diff)
	}
	sel, _, _ := unstructured.NestedStringMap(d.Object, "spec", "selector", "matchLabels")
	tmpl, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "labels")
	if len(sel) != 1 || len(tmpl) != 1 {
		t.Errorf("selector %v, template labels %v: want them untouched", sel, tmpl)
	}
	if hook.GetLabels()["team"] != "shop" || hook.GetAnnotations()["owner"] != "sre" || hook.GetAnnotations()["deliver.dev/hook"] != "pre-apply" {
		t.Errorf("hook metadata: labels %v, annotations %v", hook.GetLabels(), hook.GetAnnotations())
	}
}
