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
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	pending := map[object.ID]*object.Object{}
	for _, o := range objs {
		pending[o.ID()] = o
	}
	messages := map[object.ID]string{}
	for {
		for id, o := range pending {
			st, msg, err := m.status(ctx, o)
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("%s: wait: %w", id, err)
			}
			switch st {
			case status.CurrentStatus:
				delete(pending, id)
			case status.FailedStatus:
				return fmt.Errorf("%s: wait: failed: %s", id, msg)
			default:
				messages[id] = fmt.Sprintf("%s: %s", st, msg)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var lines []string
			for id := range pending {
				lines = append(lines, fmt.Sprintf("%s: %s", id, messages[id]))
			}
			sort.Strings(lines)
			return fmt.Errorf("wait: %d not ready after %s: %s", len(lines), m.opts.Timeout, strings.Join(lines, "; "))
		case <-time.After(m.opts.PollInterval):
		}
	}
}

func (m *Manager) status(ctx context.Context, o *object.Object) (status.Status, string, error) {
	id := o.ID()
	gvr, _, err := m.gvrFor(id.GroupKind(), o.GroupVersionKind().Version)
	if err != nil {
		return status.UnknownStatus, "", err
	}
	live, err := m.client(&Change{ID: id, gvr: gvr}).Get(ctx, id.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return status.NotFoundStatus, "not found", nil
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return status.UnknownStatus, err.Error(), err
		}
		return status.UnknownStatus, "", err
	}
	if live.GroupVersionKind().GroupKind().String() == "Job.batch" {
		st, msg := jobStatus(live)
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
