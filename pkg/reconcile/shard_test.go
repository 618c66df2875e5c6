package reconcile_test

import (
	"context"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestStaleShardLeaseDeleted: the Lease of a member killed without
// releasing it (here written by the test, its renewal an hour old) is
// deleted by the live members once it went ten lease durations without a
// renewal, instead of staying in the namespace and every member's
// informer for ever; the live member's own Lease and a Lease of another
// group stay.
func TestStaleShardLeaseDeleted(t *testing.T) {
	ns := env.Namespace(t)
	t.Parallel()
	ctx := context.Background()
	leases := env.Client().CoordinationV1().Leases(ns)
	old := metav1.NewMicroTime(time.Now().Add(-time.Hour))
	for _, l := range []struct{ name, group string }{{"gone", "gc"}, {"other-group", "other"}} {
		_, err := leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: l.name, Labels: map[string]string{reconcile.LabelShardGroup: l.group}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("replica-" + l.name), LeaseDurationSeconds: ptr.To(int32(1)),
				AcquireTime: &old, RenewTime: &old},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, "- {name: web, namespace: $NS, manifests: {path: web}}"),
		"web/cm.yaml":  configMap("web", map[string]string{"v": "one"}),
	})
	opts := options(t, repo, env.Config)
	opts.Sharding = reconcile.Sharding{Enabled: true, Namespace: ns, Group: "gc", Identity: "replica-live", LeaseDuration: time.Second}
	start(t, opts)
	waitFor(t, 60*time.Second, "the stale Lease deleted", func() bool {
		_, err := leases.Get(ctx, "gone", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	list, err := leases.List(ctx, metav1.ListOptions{LabelSelector: reconcile.LabelShardGroup})
	if err != nil {
		t.Fatal(err)
	}
	var holders []string
	for _, l := range list.Items {
		holders = append(holders, ptr.Deref(l.Spec.HolderIdentity, ""))
	}
	if len(holders) != 2 || !slices.Contains(holders, "replica-live") || !slices.Contains(holders, "replica-other-group") {
		t.Errorf("Leases held by %q, want the live member's and the other group's", holders)
	}
}
