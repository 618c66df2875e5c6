package apply

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/deliverhq/deliver/pkg/object"
)

// Wait polls the objects until kstatus reports each of them Current. It
// fails fast when one is Failed (a Job whose Pods failed), and on timeout it
// names every object that is not ready with kstatus' message.
func (m *Manager) Wait(ctx context.Context, objs []*object.Object) error {
	return m.waitFor(ctx, objs, m.opts.Timeout, false)
}

// waitFor waits up to timeout. With finish, a Pod must have ended
// (Succeeded) rather than be ready: a hook Pod is a task, like a Job.
func (m *Manager) waitFor(parent context.Context, objs []*object.Object, timeout time.Duration, finish bool) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	pending := map[object.ID]*object.Object{}
	for _, o := range objs {
		pending[o.ID()] = o
	}
	messages := map[object.ID]string{}
	uids := map[object.ID]string{} // events of an earlier object of the same name are not ours
	for {
		for id, o := range pending {
			st, msg, uid, err := m.status(ctx, o, finish)
			uids[id] = uid
			if err != nil && ctx.Err() == nil {
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
			default:
				messages[id] = fmt.Sprintf("%s: %s", st, msg)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				// Stopped, not timed out: say so rather than "not ready".
				return fmt.Errorf("wait: interrupted with %d not ready yet: %w", len(pending), context.Cause(parent))
			}
			var lines []string
			for id := range pending {
				line := fmt.Sprintf("%s: %s", id, messages[id])
				if ev := m.lastEvents(context.WithoutCancel(ctx), id, uids[id], 3); ev != "" {
					line += " (events: " + ev + ")"
				}
				lines = append(lines, line)
			}
			sort.Strings(lines)
			return fmt.Errorf("wait: %d not ready after %s: %s", len(lines), timeout, m.opts.Redact(strings.Join(lines, "; ")))
		case <-time.After(m.opts.PollInterval):
		}
	}
}

func (m *Manager) status(ctx context.Context, o *object.Object, finish bool) (st status.Status, msg, uid string, err error) {
	id := o.ID()
	gvr, _, err := m.gvrFor(id.GroupKind(), o.GroupVersionKind().Version)
	if err != nil {
		return status.UnknownStatus, "", "", err
	}
	live, err := m.client(&Change{ID: id, gvr: gvr}).Get(ctx, id.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return status.NotFoundStatus, "not found", "", nil
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return status.UnknownStatus, err.Error(), "", err
		}
		return status.UnknownStatus, "", "", err
	}
	uid = string(live.GetUID())
	if live.GroupVersionKind().GroupKind().String() == "Job.batch" {
		st, msg := jobStatus(live)
		return st, msg, uid, nil
	}
	if finish && live.GroupVersionKind().GroupKind().String() == "Pod" {
		st, msg := podTaskStatus(live)
		return st, msg, uid, nil
	}
	res, err := status.Compute(live)
	if err != nil {
		return status.UnknownStatus, "", uid, err
	}
	return res.Status, res.Message, uid, nil
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
	list, err := m.kube.CoreV1().Events(id.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
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
