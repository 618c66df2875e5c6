package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// TestExampleHealth runs examples/health against the real control plane,
// the test playing the Database's operator: diff names the health check,
// apply waits until the test reports the Database Ready and prints the
// expression that decided; a second revision whose Database the test
// reports Failed stops early with the object and the expression in the
// error and in deliver status, and leaves the earlier web version and
// Database spec running (rollbackOnFailure).
func TestExampleHealth(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-r", "../../examples/health/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy example: %v %s", err, out)
	}
	gvr := schema.GroupVersionResource{Group: "demo.deliver.dev", Version: "v1", Resource: "databases"}
	const (
		current = "self.?status.?phase.orValue('') == 'Ready'"
		failed  = "self.?status.?phase.orValue('') == 'Failed'"
	)
	// An inventory namespace of its own: other tests deliver apps of
	// the same names from other repositories.
	inv := env.Namespace(t)
	args := func(verb string) []string {
		return []string{verb, "--path", dir, "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv}
	}
	// apply runs deliver apply while the test writes the Database's
	// status (at generation gen) as its operator would.
	apply := func(gen int64, phase string, extra ...string) (string, int, time.Duration) {
		t.Helper()
		cmd := exec.Command(deliverBin, append(args("apply"), extra...)...)
		// Only stdout: -o json must decode.
		cmd.Stderr = os.Stderr
		var out bytes.Buffer
		cmd.Stdout = &out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		env.SetStatus(t, gvr, "health-demo", "orders", gen, map[string]any{"phase": phase})
		if phase == "Failed" {
			// rollbackOnFailure re-applies the last good Database
			// (generation gen+1), which the operator finds Ready again.
			env.SetStatus(t, gvr, "health-demo", "orders", gen+1, map[string]any{"phase": "Ready"})
		}
		_ = cmd.Wait()
		return out.String(), cmd.ProcessState.ExitCode(), time.Since(start)
	}

	out, code := run(t, args("diff")...)
	if want := "Database/health-demo/orders will be ready when health check current `" + current + "` is true; failed `" + failed + "` fails the run"; code != 2 || !strings.Contains(out, want) {
		t.Errorf("diff: exit %d, want 2 and %q:\n%s", code, want, out)
	}

	// The plan in JSON lists the rule the wait will use.
	out, code = run(t, append(args("diff"), "-o", "json")...)
	var plan struct {
		Apps []struct {
			Plan struct {
				HealthChecks []struct {
					ID    struct{ Kind, Name string }
					Check struct{ Current, Failed string }
				} `json:"healthChecks"`
			} `json:"plan"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil || code != 2 || len(plan.Apps) != 1 || len(plan.Apps[0].Plan.HealthChecks) != 1 ||
		plan.Apps[0].Plan.HealthChecks[0].ID.Name != "orders" || plan.Apps[0].Plan.HealthChecks[0].Check.Failed != failed {
		t.Errorf("diff -o json: exit %d, %v, want the Database's health check:\n%s", code, err, out)
	}

	out, code, _ = apply(1, "Ready")
	if want := "Database/health-demo/orders health Current: health check current `" + current + "` is true"; code != 0 || !strings.Contains(out, want) {
		t.Fatalf("first apply: exit %d, want 0 and %q:\n%s", code, want, out)
	}

	// v2: a new database version and a new web image; the operator
	// fails the database.
	for file, repl := range map[string][2]string{
		"orders/database.yaml": {`version: "16"`, `version: "17"`},
		"orders/web.yaml":      {"web:1.0.0", "web:2.0.0"},
	} {
		p := filepath.Join(dir, file)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Replace(b, []byte(repl[0]), []byte(repl[1]), 1), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, code, took := apply(2, "Failed", "-o", "json")
	var res struct {
		Apps []struct {
			Error  string `json:"error"`
			Report struct {
				Health []struct {
					ID                  struct{ Kind, Name string }
					Status, Field, Expr string
				} `json:"health"`
			} `json:"report"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code == 0 || len(res.Apps) != 1 {
		t.Fatalf("second apply -o json: exit %d, %v, want a failed app:\n%s", code, err, out)
	}
	for _, want := range []string{
		"Database/health-demo/orders: wait: failed: health check failed `" + failed + "` is true",
		"rolled back Deployment/health-demo/web, Database/health-demo/orders",
	} {
		if !strings.Contains(res.Apps[0].Error, want) {
			t.Errorf("second apply: error %q, want %q in it", res.Apps[0].Error, want)
		}
	}
	if h := res.Apps[0].Report.Health; len(h) != 1 || h[0].ID.Name != "orders" || h[0].Status != "Failed" || h[0].Field != "failed" || h[0].Expr != failed {
		t.Errorf("second apply: report health %+v, want the Database failed by %q", h, failed)
	}
	if took > time.Minute { // the example's waitTimeout is 2m
		t.Errorf("the failed Database stopped the run after %s: not at once", took)
	}
	d, err := env.Client().AppsV1().Deployments("health-demo").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/orders/web:1.0.0" {
		t.Errorf("web runs %s after the failed run, want 1.0.0 back", img)
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	db, err := dyn.Resource(gvr).Namespace("health-demo").Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := unstructured.NestedString(db.Object, "spec", "version"); v != "16" {
		t.Errorf("Database orders has version %q after the failed run, want 16 back", v)
	}

	out, code = run(t, "status", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv, "--app", "orders")
	if want := "health check failed `" + failed + "`"; code != 0 || !strings.Contains(out, "failed") || !strings.Contains(out, want) {
		t.Errorf("status: exit %d, want the failed expression %q:\n%s", code, want, out)
	}
}
