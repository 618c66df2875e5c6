package apply

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
)

// Hooks into the Manager's shared watches for the external tests.

// WatchCount is the number of shared watches m runs, idle ones included.
func WatchCount(m *Manager) int { return m.objects.watcher.count() }

// WatchRefs is the number of (wait, watch) pairs in use in m.
func WatchRefs(m *Manager) int { return m.objects.watcher.refs() }

// SetWatchGrace sets how long m keeps a watch after its last waiter left.
func SetWatchGrace(m *Manager, d time.Duration) {
	m.objects.watcher.mu.Lock()
	defer m.objects.watcher.mu.Unlock()
	m.objects.watcher.grace = d
}

// StopIdleWatches stops m's watches that no wait uses.
func StopIdleWatches(m *Manager) { m.objects.watcher.stopIdle() }

// WaitVerdicts is Wait, telling verdict each health check verdict as the
// wait reaches it.
func WaitVerdicts(ctx context.Context, m *Manager, objs []*object.Object, verdict func(object.ID, health.Verdict)) error {
	return m.waitFor(ctx, objs, nil, m.opts.Timeout, false, verdict)
}

// DryRunAgainst classifies o's change for app as a plan does, with live
// as the object the plan read: it returns the change's type and the live
// object it was judged against.
func DryRunAgainst(ctx context.Context, m *Manager, o *object.Object, app string, live *unstructured.Unstructured) (ChangeType, *unstructured.Unstructured, error) {
	c, err := m.desiredWith(o, PlanOptions{App: app}, nil, (&gvrCache{m: m}).gvrFor)
	if err != nil {
		return "", nil, err
	}
	c.Live = live
	if err := m.dryRun(ctx, c); err != nil {
		return "", nil, err
	}
	return c.Type, c.Live, nil
}
