package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestStatusPages: the status of 1,300 apps, each with a long failure
// message and many drifted objects, is spread over pages that each stay
// under a ConfigMap's 1 MiB (one ConfigMap overflowed at about 3,700
// apps of short statuses); ReadStatus returns every app; a run's end
// rewrites only its app's page; fewer apps drop the pages past the last.
func TestStatusPages(t *testing.T) {
	ctx := context.Background()
	kc := fake.NewClientset()
	r := &Reconciler{
		opts: Options{StatusNamespace: "deliver-system", RetryBase: time.Second, RetryMax: time.Minute},
		log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		kube: kc, head: "c1", apps: map[string]*appState{},
	}
	long := strings.Repeat("Deployment/shop/web: wait: not ready; ", 200)
	setApps := func(n int) {
		r.order, r.apps = nil, map[string]*appState{}
		for i := range n {
			name := fmt.Sprintf("app-%04d", i)
			s := &appState{AppStatus: AppStatus{App: name, Revision: "c1", Result: "failed", Message: long}, drift: map[string]bool{}}
			for j := range 50 {
				s.drift[fmt.Sprintf("ConfigMap/shop/config-%02d-with-a-long-name", j)] = true
			}
			r.order = append(r.order, name)
			r.apps[name] = s
		}
	}
	setApps(1300)
	r.writeStatusOnce(ctx)

	cms, err := kc.CoreV1().ConfigMaps("deliver-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cms.Items) != 4 {
		t.Fatalf("1,300 apps written to %d ConfigMaps, want 4", len(cms.Items))
	}
	for _, cm := range cms.Items {
		size := 0
		for k, v := range cm.Data {
			size += len(k) + len(v)
		}
		if size > 1<<20*3/4 {
			t.Errorf("%s holds %d bytes, over three quarters of 1 MiB", cm.Name, size)
		}
	}
	st, err := ReadStatus(ctx, kc, "deliver-system")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Data) != 1300 || st.Annotations[AnnotationRevision] != "c1" {
		t.Fatalf("ReadStatus: %d apps at %q, want 1300 at c1", len(st.Data), st.Annotations[AnnotationRevision])
	}
	var one AppStatus
	if err := json.Unmarshal([]byte(st.Data["app-0042"]), &one); err != nil {
		t.Fatal(err)
	}
	if len(one.Message) > maxStatusMessage+len("… (cut)") || !strings.HasSuffix(one.Message, "… (cut)") || len(one.Drift) > 30 || !strings.HasPrefix(one.Drift[len(one.Drift)-1], "… and ") {
		t.Errorf("a long status is stored with a message of %d bytes and %d drift entries, want it cut", len(one.Message), len(one.Drift))
	}

	// One app's run ends: one page is written.
	kc.ClearActions()
	r.apps["app-0042"].Result, r.apps["app-0042"].Message = "succeeded", ""
	r.writeStatusOnce(ctx)
	var writes []string
	for _, a := range kc.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok {
			writes = append(writes, u.GetObject().(*corev1.ConfigMap).Name)
		}
	}
	if want := statusPageName(StatusConfigMap, statusPageOf("app-0042", 4)); len(writes) != 1 || writes[0] != want {
		t.Errorf("one app's new status wrote %q, want only %s", writes, want)
	}
	kc.ClearActions()
	r.writeStatusOnce(ctx)
	if n := len(kc.Actions()); n != 0 {
		t.Errorf("an unchanged status sent %d requests, want none", n)
	}

	// Fewer apps: one page, the others deleted.
	setApps(10)
	r.writeStatusOnce(ctx)
	cms, err = kc.CoreV1().ConfigMaps("deliver-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cms.Items) != 1 || cms.Items[0].Name != StatusConfigMap || len(cms.Items[0].Data) != 10 {
		t.Errorf("10 apps left %d ConfigMaps, want only %s with 10 apps", len(cms.Items), StatusConfigMap)
	}
}
