package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// diffWorld is the git side of TestDiffMatchesKubectlDiff: objects by
// name, each written as a YAML or JSON document.
type diffWorld struct {
	r    *rand.Rand
	objs map[string]map[string]any
	json map[string]bool // written as a JSON document
	next int
}

func (w *diffWorld) add() string {
	i := w.next
	w.next++
	var name string
	var o map[string]any
	switch i % 5 {
	case 0:
		name = fmt.Sprintf("cm-%d", i)
		o = map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": map[string]any{"a": "1", "b": "x\ny\n"}}
	case 1:
		name = fmt.Sprintf("secret-%d", i)
		o = map[string]any{"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "stringData": map[string]any{"password": fmt.Sprintf("p%d", w.r.IntN(1000))}}
	case 2:
		name = fmt.Sprintf("deploy-%d", i)
		o = map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "spec": map[string]any{
			"replicas": int64(w.r.IntN(3)),
			"selector": map[string]any{"matchLabels": map[string]any{"app": name}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": name}},
				"spec": map[string]any{"containers": []any{map[string]any{
					"name": "web", "image": "nginx:1.27",
					"env":   []any{map[string]any{"name": "MODE", "value": "a"}},
					"ports": []any{map[string]any{"containerPort": int64(8080)}},
				}}},
			},
		}}
	case 3:
		name = fmt.Sprintf("svc-%d", i)
		o = map[string]any{"apiVersion": "v1", "kind": "Service", "spec": map[string]any{
			"selector": map[string]any{"app": name},
			"ports":    []any{map[string]any{"name": "http", "port": int64(80), "targetPort": int64(8080)}},
		}}
	default:
		name = fmt.Sprintf("sa-%d", i)
		o = map[string]any{"apiVersion": "v1", "kind": "ServiceAccount"}
	}
	o["metadata"] = map[string]any{"name": name, "labels": map[string]any{"tier": "web"}}
	w.objs[name] = o
	return name
}

// mutate changes the object in git in one of the ways a commit does:
// a value, a label added or removed, a field set to the value the server
// defaults it to, or only its writing (YAML or JSON).
func (w *diffWorld) mutate(name string) string {
	o := w.objs[name]
	md := o["metadata"].(map[string]any)
	labels, _ := md["labels"].(map[string]any)
	switch w.r.IntN(5) {
	case 0:
		if labels == nil {
			labels = map[string]any{}
			md["labels"] = labels
		}
		labels[fmt.Sprintf("l%d", w.r.IntN(3))] = fmt.Sprint(w.r.IntN(3))
		return "label set"
	case 1:
		if len(labels) > 0 {
			delete(labels, slices.Sorted(maps.Keys(labels))[0])
			return "label removed"
		}
		return "no label to remove"
	case 2:
		w.json[name] = !w.json[name]
		return "rewritten as YAML or JSON"
	case 3:
		switch o["kind"] {
		case "Service":
			port := o["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)
			port["protocol"] = "TCP"
			return "protocol TCP set explicitly"
		case "Deployment":
			c := o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
			c["terminationMessagePath"] = "/dev/termination-log"
			return "terminationMessagePath default set explicitly"
		}
		return "nothing defaulted"
	default:
		switch o["kind"] {
		case "ConfigMap":
			o["data"].(map[string]any)["a"] = fmt.Sprint(w.r.IntN(4))
		case "Secret":
			o["stringData"].(map[string]any)["password"] = fmt.Sprintf("p%d", w.r.IntN(4))
		case "Deployment":
			o["spec"].(map[string]any)["replicas"] = int64(w.r.IntN(3))
		case "Service":
			o["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)["port"] = int64(80 + w.r.IntN(2))
		default:
			o["automountServiceAccountToken"] = w.r.IntN(2) == 0
		}
		return "value changed (maybe to the same)"
	}
}

// write writes every object into manifests/ under dir.
func (w *diffWorld) write(t *testing.T, dir string) {
	t.Helper()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(w.objs)) {
		var doc []byte
		var err error
		if w.json[name] {
			doc, err = json.Marshal(w.objs[name])
		} else {
			doc, err = yaml.Marshal(w.objs[name])
		}
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(doc)
		b.WriteString("\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "manifests", "all.yaml"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// kubectlDiff runs kubectl diff --server-side on deliver's rendered
// objects as deliver sends them (its app label, the namespace defaulted),
// with deliver's field manager, and returns the names of the objects it
// shows a difference for.
func kubectlDiff(t *testing.T, opts Options, ns string) []string {
	t.Helper()
	res, err := Render(context.Background(), opts)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, o := range res.Apps[0].Set.Objects {
		u := o.DeepCopy()
		l := u.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		l[apply.LabelApp] = res.Apps[0].Name
		u.SetLabels(l)
		if u.GetNamespace() == "" {
			u.SetNamespace(ns)
		}
		doc, err := yaml.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(doc)
	}
	file := filepath.Join(t.TempDir(), "desired.yaml")
	if err := os.WriteFile(file, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl, err := testenv.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kubectl, "--kubeconfig", env.Kubeconfig, "diff", "--server-side", "--force-conflicts",
		"--field-manager", apply.DefaultFieldManager, "-f", file)
	cmd.Env = append(os.Environ(), "KUBECTL_EXTERNAL_DIFF=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// Exit 1: differences found; more is an error.
	if ee := (*exec.ExitError)(nil); err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1) {
		t.Fatalf("kubectl diff: %v\n%s", err, stderr.String())
	}
	var changed []string
	for line := range strings.Lines(string(out)) {
		// diff -u -N /tmp/LIVE-1/v1.ConfigMap.NS.NAME /tmp/MERGED-1/v1.ConfigMap.NS.NAME
		if !strings.HasPrefix(line, "diff -u -N ") {
			continue
		}
		fields := strings.Fields(line)
		parts := strings.Split(filepath.Base(fields[len(fields)-1]), ".")
		changed = append(changed, parts[len(parts)-1])
	}
	slices.Sort(changed)
	return changed
}

// deliverChanged runs deliver's diff and returns the names of the objects
// of git it would create or update.
func deliverChanged(t *testing.T, opts Options) []string {
	t.Helper()
	res, err := Diff(context.Background(), opts)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, c := range res.Apps[0].Plan.Changes {
		if c.Type == apply.ChangeCreate || c.Type == apply.ChangeUpdate {
			changed = append(changed, c.ID.Name)
		}
	}
	slices.Sort(changed)
	return changed
}

// TestDiffMatchesKubectlDiff: over rounds of random commits (values,
// labels added and removed, a field set to its server default, objects
// added and removed, a document rewritten as JSON) and of edits in the
// cluster by another field manager (a field deliver owns changed, an
// annotation deliver does not own added), the objects deliver's diff says
// it would change are those `kubectl diff --server-side` shows, with
// deliver's field manager: once with deliver's fast path (an app whose
// inputs did not change is planned from its inventory and a LIST), once
// with every object dry-run. After each apply both show nothing.
func TestDiffMatchesKubectlDiff(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "manifests"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: d\n  namespace: " + ns + "\n  wait: false\n  manifests: {path: manifests}\n"
	if err := os.WriteFile(filepath.Join(dir, "deliver.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	w := &diffWorld{r: rand.New(rand.NewPCG(5, 8)), objs: map[string]map[string]any{}, json: map[string]bool{}}
	for range 25 {
		w.add()
	}
	w.write(t, dir)
	opts := clusterOptions(dir, ns)
	applyAll := func(what string) { t.Helper(); mustRun(t, what+": apply", Apply, opts) }
	applyAll("first")
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	gvr := map[string]schema.GroupVersionResource{
		"ConfigMap": {Version: "v1", Resource: "configmaps"}, "Secret": {Version: "v1", Resource: "secrets"},
		"Deployment": {Group: "apps", Version: "v1", Resource: "deployments"}, "Service": {Version: "v1", Resource: "services"},
		"ServiceAccount": {Version: "v1", Resource: "serviceaccounts"},
	}
	compared, changed := 0, 0
	for round := range 10 {
		var did []string
		names := slices.Sorted(maps.Keys(w.objs))
		if round%3 != 2 { // every third round changes only the cluster: git is as applied
			for _, name := range names {
				if w.r.IntN(3) == 0 {
					did = append(did, name+": "+w.mutate(name))
				}
			}
			if w.r.IntN(2) == 0 {
				did = append(did, w.add()+": added")
			}
			if victim := names[w.r.IntN(len(names))]; w.r.IntN(2) == 0 {
				delete(w.objs, victim)
				did = append(did, victim+": removed from git")
			}
			w.write(t, dir)
		}
		// Edits in the cluster by someone else.
		for _, name := range names {
			o, ok := w.objs[name]
			if !ok || w.r.IntN(3) != 0 {
				continue
			}
			kind := o["kind"].(string)
			var patch string
			switch w.r.IntN(3) {
			case 0:
				patch = `{"metadata":{"annotations":{"someone.example/note":"x"}}}`
				did = append(did, name+": annotation added by someone else")
			case 1:
				patch = `{"metadata":{"labels":{"tier":"edited"}}}`
				did = append(did, name+": label deliver owns edited by someone else")
			default:
				switch kind {
				case "ConfigMap":
					patch = `{"data":{"b":"edited"}}`
				case "Deployment":
					patch = `{"spec":{"replicas":5}}`
				case "Service":
					patch = `{"spec":{"sessionAffinity":"ClientIP"}}`
				default:
					patch = `{"metadata":{"labels":{"someone":"x"}}}`
				}
				did = append(did, name+": "+patch+" by someone else")
			}
			if _, err := dyn.Resource(gvr[kind]).Namespace(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "someone"}); err != nil {
				t.Fatal(err)
			}
		}
		slices.Sort(did)
		want := kubectlDiff(t, opts, ns)
		fast := deliverChanged(t, opts)
		forced := opts
		forced.ForceRender = true
		full := deliverChanged(t, forced)
		if diff := cmp.Diff(want, fast); diff != "" {
			t.Errorf("round %d: objects changed (-kubectl diff +deliver diff):\n%s\nthe round did:\n%s", round, diff, strings.Join(did, "\n"))
		}
		if diff := cmp.Diff(want, full); diff != "" {
			t.Errorf("round %d: objects changed (-kubectl diff +deliver diff --force-render):\n%s\nthe round did:\n%s", round, diff, strings.Join(did, "\n"))
		}
		compared += len(w.objs)
		changed += len(want)
		t.Logf("round %d: %d of %d objects changed for both", round, len(want), len(w.objs))
		applyAll(fmt.Sprintf("round %d", round))
		if left := kubectlDiff(t, opts, ns); len(left) > 0 {
			t.Errorf("round %d: after deliver's apply, kubectl diff still shows %v", round, left)
		}
		if left := deliverChanged(t, opts); len(left) > 0 {
			t.Errorf("round %d: after deliver's apply, deliver diff still shows %v", round, left)
		}
	}
	t.Logf("%d object states compared, %d changed", compared, changed)
	if changed < compared/5 || changed > compared*4/5 {
		t.Errorf("%d of %d object states changed: the rounds test little", changed, compared)
	}
}
