package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// annotateControl sets (or with value "" removes) an annotation of the
// ControlConfigMap, as kubectl annotate does.
func annotateControl(t *testing.T, ns, key, value string) {
	t.Helper()
	ctx := context.Background()
	cms := env.Client().CoreV1().ConfigMaps(ns)
	var v any = value
	if value == "" {
		v = nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: v}}})
	if _, err := cms.Patch(ctx, reconcile.ControlConfigMap, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: reconcile.ControlConfigMap, Annotations: map[string]string{key: value}}}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPauseAllAndRequestedAt: the annotations of the ConfigMap
// deliver-control pause every app at run time, and ask for a fetch now.
func TestPauseAllAndRequestedAt(t *testing.T) {
	ns := env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, "- {name: web, namespace: $NS, manifests: {path: web}}", "- {name: api, namespace: $NS, manifests: {path: api}}"),
		"web/cm.yaml":  configMap("web", map[string]string{"color": "blue"}),
		"api/cm.yaml":  configMap("api", map[string]string{"color": "blue"}),
	})
	opts := options(t, repo, env.Config)
	opts.Interval = time.Hour // only requests fetch
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first apply", func() bool {
		return appStatus(r, "web").Revision == repo.Head() && appStatus(r, "api").Revision == repo.Head()
	})
	ctlNS := opts.Pipeline.Apply.InventoryNamespace

	annotateControl(t, ctlNS, reconcile.AnnotationSuspend, "true")
	waitFor(t, 10*time.Second, "every app paused", func() bool {
		return r.Status().PausedAll && appStatus(r, "web").Suspended && appStatus(r, "api").Suspended
	})
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "green"}))
	head := repo.CommitAll("green")
	annotateControl(t, ctlNS, reconcile.AnnotationRequestedAt, "1")
	waitFor(t, 10*time.Second, "requested fetch", func() bool { return r.Status().Revision == head })
	time.Sleep(time.Second)
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Fatalf("color = %s while every app is paused, want blue", got)
	}

	annotateControl(t, ctlNS, reconcile.AnnotationSuspend, "")
	took := waitFor(t, 10*time.Second, "resumed app delivered", func() bool { return cmData(t, ns, "web")["color"] == "green" })
	t.Logf("resume to applied: %s", took.Round(time.Millisecond))
	if appStatus(r, "web").Suspended || r.Status().PausedAll {
		t.Errorf("still paused after the annotation went: %+v", r.Status())
	}
}

// TestWebhookToStandby: a push webhook that reaches the standby replica
// (a Service sends it to any ready one) is forwarded to the leader through
// deliver-control, and the leader applies the commit at once.
func TestWebhookToStandby(t *testing.T) {
	ns := env.Namespace(t)
	repo := webRepo(t, ns)
	secret := []byte("webhook-secret-77aa")
	base := options(t, repo, env.Config)
	base.Interval = time.Hour
	base.WebhookSecretFile = secretFile(t, secret)
	leader, standby := electedPair(t, base)
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(leader.Reconciler, "web").Revision == repo.Head() })

	srv := httptest.NewServer(standby.Handler())
	defer srv.Close()
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "green"}))
	head := repo.CommitAll("green")
	body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q}`, head))
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhook", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "standby-1")
	req.Header.Set("X-Hub-Signature-256", sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("signed push to the standby: status %d, want 202", resp.StatusCode)
	}
	took := waitFor(t, 10*time.Second, "leader applies the forwarded push", func() bool {
		return cmData(t, ns, "web")["color"] == "green" && appStatus(leader.Reconciler, "web").Revision == head
	})
	t.Logf("webhook at the standby to applied by the leader: %s", took.Round(time.Millisecond))
	// Forwarded through a ConfigMap the leader watches, then a fetch and
	// a run of one object: docs/reliability.md gives this bound.
	if took > 5*time.Second {
		t.Errorf("webhook at the standby applied by the leader after %s, want under 5s", took.Round(time.Millisecond))
	}
	if standby.Status().Leader || len(standby.Status().Apps) != 0 {
		t.Errorf("standby reconciled itself: %+v", standby.Status())
	}
}

// TestOnce: a single pass delivers what is due and returns: nothing on a
// no-op, a reverted drift, a new commit; an error naming a failed app.
func TestOnce(t *testing.T) {
	ns := env.Namespace(t)
	repo := webRepo(t, ns)
	opts := options(t, repo, env.Config)
	opts.Once = true
	once := func() error {
		t.Helper()
		_, err := runPass(t, opts)
		return err
	}
	if err := once(); err != nil {
		t.Fatalf("first pass: %v", err)
	}
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Fatalf("after the first pass: color %q, want blue", got)
	}
	inv := func() string {
		s, err := env.Client().CoreV1().Secrets(opts.Pipeline.Apply.InventoryNamespace).Get(context.Background(), "deliver-inventory-web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.ResourceVersion
	}
	before := inv()
	if err := once(); err != nil {
		t.Fatalf("no-op pass: %v", err)
	}
	if after := inv(); after != before {
		t.Errorf("a no-op pass wrote the inventory (resourceVersion %s -> %s)", before, after)
	}

	// kubectl edit, then a pass reverts it.
	patch := []byte(`{"data":{"color":"red"}}`)
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Patch(context.Background(), "web", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if err := once(); err != nil {
		t.Fatalf("drift pass: %v", err)
	}
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Errorf("drift not reverted by a pass: color %q", got)
	}

	// A commit the server rejects: the pass fails and says which app.
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: [not, a, string]}\n")
	repo.CommitAll("broken")
	err := once()
	if err == nil || !strings.Contains(err.Error(), "app web") {
		t.Errorf("pass over a broken commit: %v, want an error naming app web", err)
	}
	if _, err := reconcile.New(func() reconcile.Options {
		o := opts
		o.LeaderElection.Enabled = true
		return o
	}()); err == nil {
		t.Error("Once with leader election: no error")
	}
}
