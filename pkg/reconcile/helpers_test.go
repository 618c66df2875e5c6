package reconcile_test

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// testLogger logs through t.Log, shown for a failed test or with -v.
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// webDeployment is the Deployment "web" (one container, image web:1) of
// the drift tests; spec holds extra lines of its spec, indented by two.
func webDeployment(spec string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
` + spec + `  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web:1}]}
`
}

// startWeb commits an app "web" (its deliver.yaml entry app, with $NS for
// ns) of the ConfigMap cm and the Deployment deployment, starts a
// reconciler on it and waits for the first apply. It returns the
// reconciler and its inventory namespace.
func startWeb(t *testing.T, ns, app string, cm map[string]string, deployment string) (*reconcile.Reconciler, string) {
	t.Helper()
	return startWebFiles(t, ns, app, map[string]string{"web/cm.yaml": configMap("web", cm), "web/deployment.yaml": deployment})
}

// startWebFiles is startWeb with the app's files given whole (besides
// deliver.yaml).
func startWebFiles(t *testing.T, ns, app string, files map[string]string) (*reconcile.Reconciler, string) {
	t.Helper()
	files = maps.Clone(files)
	files["deliver.yaml"] = deliverYAML(ns, app)
	repo := newGitRepo(t, files)
	opts := options(t, repo, env.Config)
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(r, "web").Revision == repo.Head() })
	return r, opts.Pipeline.Apply.InventoryNamespace
}

// driftEvents are the messages of the DriftDetected events of app's
// inventory in the inventory namespace inv.
func driftEvents(t *testing.T, inv, app string) []string {
	t.Helper()
	list, err := env.Client().CoreV1().Events(inv).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=deliver-inventory-" + app})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Reason == reconcile.ReasonDriftDetected {
			out = append(out, e.Message)
		}
	}
	return out
}
