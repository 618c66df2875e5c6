package ui_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/ui"
)

// TestReconcileNowButton: the "reconcile now" button of an up-to-date
// app (a POST with the page's CSRF token) sets the run request
// annotation on its inventory Secret, as deliver-ui, and the reconciler
// runs that app, not the other, and reports the request served; for an
// app without an inventory Secret the view asks for a fetch through the
// control ConfigMap instead.
func TestReconcileNowButton(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v := startView(t)
	base := v.http.URL
	testenv.Eventually(t, 90*time.Second, time.Second/4, "web delivered and db failed", func() bool {
		return appStatus(v.r, "web").Result == apply.ResultSucceeded && appStatus(v.r, "db").Result == apply.ResultFailed
	})
	webRun, dbRun := appStatus(v.r, "web").LastRun, appStatus(v.r, "db").LastRun

	_, page := get(t, base, "/apps/_/web")
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if csrf == nil {
		t.Fatalf("web page has no action form:\n%s", page)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/apps/_/web/reconcile", strings.NewReader(url.Values{"csrf": {csrf[1]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "done: reconcile") {
		t.Fatalf("reconcile = %d:\n%s", resp.StatusCode, body)
	}

	secret, err := env.Client().CoreV1().Secrets(v.invNS).Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	value := secret.Annotations[reconcile.AnnotationReconcileRequestedAt]
	if value == "" {
		t.Fatalf("the inventory Secret has no %s: %v", reconcile.AnnotationReconcileRequestedAt, secret.Annotations)
	}
	var byUI bool
	for _, f := range secret.ManagedFields {
		byUI = byUI || (f.Manager == "deliver-ui" && strings.Contains(string(f.FieldsV1.Raw), reconcile.AnnotationReconcileRequestedAt))
	}
	if !byUI {
		t.Errorf("the annotation is not deliver-ui's in managedFields")
	}
	testenv.Eventually(t, 30*time.Second, time.Second/4, "web run for the request", func() bool {
		a := appStatus(v.r, "web")
		return a.LastHandledRequest == value && a.LastRun.After(webRun) && a.Result == apply.ResultSucceeded
	})
	// The app page says the request was served (the inventory's value
	// equals the status's).
	if _, page := get(t, base, "/apps/_/web"); !strings.Contains(page, `id="request">`+value+`: served<`) {
		t.Errorf("web's page after the run does not say the request %s was served:\n%s", value, page)
	}
	// db failed and waits a minute for its retry (startView): a run now
	// would be for the request of web.
	if a := appStatus(v.r, "db"); !a.LastRun.Equal(dbRun) || a.Result != apply.ResultFailed || a.LastHandledRequest != "" {
		t.Errorf("db ran for web's request: %+v", a)
	}

	// No inventory Secret: the fetch request of the control ConfigMap.
	src, err := ui.NewCluster(ui.ClusterOptions{Config: env.Config, InventoryNamespace: v.invNS})
	if err != nil {
		t.Fatal(err)
	}
	ref := ui.AppRef{Name: "nosuch", InventoryNamespace: v.invNS, InventoryName: apply.InventoryName("nosuch")}
	if err := src.RequestReconcile(ctx, ref); err != nil {
		t.Fatal(err)
	}
	cm, err := env.Client().CoreV1().ConfigMaps(v.invNS).Get(ctx, reconcile.ControlConfigMap, metav1.GetOptions{})
	if err != nil || cm.Annotations[reconcile.AnnotationRequestedAt] == "" {
		t.Errorf("control ConfigMap after a request for an app without inventory: %v, %v", cm.GetAnnotations(), err)
	}
}

// TestSuspendAction: the view's suspend and resume set and remove the
// annotation on the inventory Secret, written as deliver-ui; resuming an
// app the annotation does not pause is refused saying what may, and an
// app without inventory is refused naming its Secret.
func TestSuspendAction(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	inv := env.Namespace(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: apply.InventoryName("web"), Namespace: inv,
		Labels: map[string]string{apply.LabelInventory: "web"}}}
	if _, err := env.Client().CoreV1().Secrets(inv).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	src, err := ui.NewCluster(ui.ClusterOptions{Config: env.Config, InventoryNamespace: inv})
	if err != nil {
		t.Fatal(err)
	}
	ref := ui.AppRef{Name: "web", InventoryNamespace: inv, InventoryName: apply.InventoryName("web")}
	annotation := func() (string, bool) {
		t.Helper()
		s, err := env.Client().CoreV1().Secrets(inv).Get(ctx, ref.InventoryName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range s.ManagedFields {
			if strings.Contains(string(f.FieldsV1.Raw), reconcile.AnnotationSuspend) && f.Manager != "deliver-ui" {
				t.Errorf("the annotation is written by %q, want deliver-ui", f.Manager)
			}
		}
		v, ok := s.Annotations[reconcile.AnnotationSuspend]
		return v, ok
	}
	if err := src.Suspend(ctx, ref, true); err != nil {
		t.Fatal(err)
	}
	if v, _ := annotation(); v != "true" {
		t.Errorf("after suspend: annotation %q, want true", v)
	}
	if err := src.Suspend(ctx, ref, false); err != nil {
		t.Fatal(err)
	}
	if v, ok := annotation(); ok {
		t.Errorf("after resume: annotation %q still there", v)
	}
	if err := src.Suspend(ctx, ref, false); err == nil || !strings.Contains(err.Error(), "suspend: true in deliver.yaml") {
		t.Errorf("resume of an app not paused by its annotation: %v, want a refusal saying what pauses it", err)
	}
	nosuch := ui.AppRef{Name: "nosuch", InventoryNamespace: inv, InventoryName: apply.InventoryName("nosuch")}
	if err := src.Suspend(ctx, nosuch, true); !errors.Is(err, reconcile.ErrNoInventory) {
		t.Errorf("suspend of an app without inventory: %v, want ErrNoInventory", err)
	}
}
