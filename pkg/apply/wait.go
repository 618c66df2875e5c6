package apply

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
)

// Wait waits until each of the objects is Current, watching them through
// the Manager's shared watches (see statusWatcher) rather than reading
// each one. Objects of a kind that Options.Health has a rule for are
// judged by its CEL expressions, the others by kstatus. It fails fast
// when one is Failed (a Job whose Pods failed, a health check's failed
// expression), and on timeout it names every object that is not ready
// with kstatus' or the health check's message.
func (m *Manager) Wait(ctx context.Context, objs []*object.Object) error {
	return m.waitFor(ctx, objs, nil, m.opts.Timeout, false, nil)
}

// waitFor waits up to timeout. With finish, a Pod must have ended
// (Succeeded) rather than be ready: a hook Pod is a task, like a Job;
// hooks are not judged by health checks. floors are resourceVersions the
// objects had at or after the caller's last write (see target.floor); nil
// when unknown. verdict, when set, is told the health check's last
// verdict on each object a rule covers.
func (m *Manager) waitFor(parent context.Context, objs []*object.Object, floors map[object.ID]string, timeout time.Duration, finish bool, verdict func(object.ID, health.Verdict)) error {
	if m.err != nil {
		return m.err
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var rules *health.Rules
	if !finish {
		rules = m.opts.Health
	}
	wt, err := m.objects.watcher.watch(objs, floors, rules)
	if err != nil {
		return err
	}
	defer wt.stop()
	if err := wt.fence(ctx); err != nil {
		if parent.Err() != nil {
			return fmt.Errorf("wait: interrupted: %w", context.Cause(parent))
		}
		return fmt.Errorf("wait: %w", m.denied(err, "wait for", describe(objs)))
	}
	pending := map[object.ID]bool{}
	for _, o := range objs {
		pending[o.ID()] = true
	}
	judge := func(ctx context.Context, id object.ID) (status.Status, string, string, error) {
		st, msg, uid, v, err := wt.status(ctx, id, finish, rules)
		if v != nil && verdict != nil {
			verdict(id, *v)
		}
		return st, msg, uid, err
	}
	for {
		// Only the objects whose watch event arrived since the last
		// round are looked at again (all of them in the first round).
		for _, id := range wt.takeDirty() {
			if !pending[id] {
				continue
			}
			st, msg, uid, err := judge(ctx, id)
			if err != nil {
				return fmt.Errorf("%s: wait: %w", id, err)
			}
			switch st {
			case status.CurrentStatus:
				delete(pending, id)
			case status.FailedStatus:
				if ev := m.lastEvents(ctx, id, uid, 3); ev != "" {
					msg += " (events: " + ev + ")"
				}
				return fmt.Errorf("%s: wait: failed: %s", id, m.opts.Redact(msg))
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if err := wt.refused(); err != nil {
			return fmt.Errorf("wait: %w", err)
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				// Stopped, not timed out: say so rather than "not ready".
				return fmt.Errorf("wait: interrupted with %d not ready yet: %w", len(pending), context.Cause(parent))
			}
			var lines []string
			for id := range pending {
				st, msg, uid, err := judge(context.WithoutCancel(ctx), id)
				if err != nil {
					msg = err.Error()
				}
				if st == status.CurrentStatus {
					continue // became ready as time ran out
				}
				line := fmt.Sprintf("%s: %s: %s", id, st, msg)
				if ev := m.lastEvents(context.WithoutCancel(ctx), id, uid, 3); ev != "" {
					line += " (events: " + ev + ")"
				}
				lines = append(lines, line)
			}
			if len(lines) == 0 {
				return nil
			}
			sort.Strings(lines)
			return fmt.Errorf("wait: %d not ready after %s: %s", len(lines), timeout, m.opts.Redact(strings.Join(lines, "; ")))
		case <-wt.changed:
		}
	}
}

// status is the readiness of a watched object: NotFound while it does not
// exist (not yet, or deleted while waiting). When a rule of rules covers
// the object, its verdict decides and is returned too.
func (wt *waiter) status(ctx context.Context, id object.ID, finish bool, rules *health.Rules) (st status.Status, msg, uid string, v *health.Verdict, err error) {
	live, seen := wt.live(id)
	if !seen {
		return status.InProgressStatus, "the watch has not seen the version applied yet", "", nil, nil
	}
	if live == nil {
		return status.NotFoundStatus, "not found", "", nil, nil
	}
	if hv, ok := rules.Evaluate(ctx, live); ok {
		return hv.Status, hv.Message, string(live.GetUID()), &hv, nil
	}
	st, msg, err = liveStatus(live, finish)
	return st, msg, string(live.GetUID()), nil, err
}

// liveStatus computes kstatus' verdict on a live object, with the two
// exceptions deliver makes for tasks (Jobs, and hook Pods with finish).
func liveStatus(live *unstructured.Unstructured, finish bool) (status.Status, string, error) {
	if live.GroupVersionKind().GroupKind().String() == "Job.batch" {
		st, msg := jobStatus(live)
		return st, msg, nil
	}
	if finish && live.GroupVersionKind().GroupKind().String() == "Pod" {
		st, msg := podTaskStatus(live)
		return st, msg, nil
	}
	res, err := status.Compute(live)
	if err != nil {
		return status.UnknownStatus, "", err
	}
	return res.Status, res.Message, nil
}

// jobStatus waits for a Job to finish. kstatus calls a running Job Current,
// which is right for a long-running batch but not for a migration that must
// end before the next stage starts.
func jobStatus(u *unstructured.Unstructured) (status.Status, string) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["status"] != "True" {
			continue
		}
		switch m["type"] {
		case "Complete":
			return status.CurrentStatus, "Job completed"
		case "Failed":
			return status.FailedStatus, fmt.Sprintf("Job failed: %v: %v", m["reason"], m["message"])
		}
	}
	active, _, _ := unstructured.NestedInt64(u.Object, "status", "active")
	succeeded, _, _ := unstructured.NestedInt64(u.Object, "status", "succeeded")
	failed, _, _ := unstructured.NestedInt64(u.Object, "status", "failed")
	return status.InProgressStatus, fmt.Sprintf("Job running: %d active, %d succeeded, %d failed", active, succeeded, failed)
}

// podTaskStatus waits for a hook Pod to end; kstatus calls a running, ready
// Pod Current.
func podTaskStatus(u *unstructured.Unstructured) (status.Status, string) {
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	switch phase {
	case "Succeeded":
		return status.CurrentStatus, "Pod succeeded"
	case "Failed":
		reason, _, _ := unstructured.NestedString(u.Object, "status", "reason")
		return status.FailedStatus, strings.TrimSpace("Pod failed " + reason)
	}
	return status.InProgressStatus, "Pod " + strings.ToLower(defaultPhase(phase))
}

func defaultPhase(p string) string {
	if p == "" {
		return "Pending"
	}
	return p
}

// lastEvents returns the newest warning-or-normal events about an object,
// oldest first, to say why it is not ready. Errors are ignored: events are
// a hint, not the verdict.
func (m *Manager) lastEvents(ctx context.Context, id object.ID, uid string, n int) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sel := "involvedObject.name=" + id.Name + ",involvedObject.kind=" + id.Kind
	if uid != "" {
		sel += ",involvedObject.uid=" + uid
	}
	list, err := m.objects.kube.CoreV1().Events(id.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil || len(list.Items) == 0 {
		return ""
	}
	items := list.Items
	sort.Slice(items, func(i, j int) bool { return items[i].LastTimestamp.Before(&items[j].LastTimestamp) })
	if len(items) > n {
		items = items[len(items)-n:]
	}
	var out []string
	for _, e := range items {
		out = append(out, e.Type+" "+e.Reason+": "+e.Message)
	}
	return strings.Join(out, "; ")
}

// settled reports whether the object of c is ready, for kstatus, at the
// version the run knows and every later one: it is of a kind whose
// readiness no controller's later write decides (settledKind), and it is
// not being deleted, by what the run's write answered (written, nil when
// it wrote nothing), else what its plan read. Such an object's wait needs
// no watch (see stageWait): the version the run wrote or found is as good
// as any later one, which is all a watch would show. With many small apps
// most objects are of these kinds, and watching them held a copy of each
// in memory (of a Secret, its values) and cost a LIST and a WATCH per kind
// and namespace.
func settled(c *Change, written metav1.Object) bool {
	if !settledKind(c.ID.GroupKind()) {
		return false
	}
	switch {
	case written != nil:
		return written.GetDeletionTimestamp() == nil
	case c.Live != nil:
		return c.Live.GetDeletionTimestamp() == nil
	default:
		return c.listed
	}
}

// settledKind reports whether kstatus calls every version of an object of
// kind gk Current that is not being deleted (then Terminating): ConfigMap
// and Secret (kstatus' alwaysReady); ServiceAccount and RBAC's kinds,
// which have no status; Ingress and NetworkPolicy, whose status has no
// conditions; Service, which kstatus calls Current unless it is a
// LoadBalancer without a cluster IP, and the write that creates a Service
// allocates its cluster IP. A health rule for the kind overrides this
// (stageWait checks).
func settledKind(gk schema.GroupKind) bool {
	switch gk.Group {
	case "":
		switch gk.Kind {
		case "ConfigMap", "Secret", "ServiceAccount", "Service":
			return true
		}
	case "rbac.authorization.k8s.io":
		switch gk.Kind {
		case "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
			return true
		}
	case "networking.k8s.io":
		switch gk.Kind {
		case "Ingress", "NetworkPolicy":
			return true
		}
	}
	return false
}
