package apply

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// DeletionPolicy is what removing an app (Remove: deliver delete, or
// pruneApps) does with the objects its inventory lists. Each run records
// its app's in the inventory, since an app that left deliver.yaml has no
// configuration left to ask: as Flux's spec.deletionPolicy, read from
// the Kustomization being deleted.
type DeletionPolicy string

// The deletion policies.
const (
	// DeletionDelete deletes the objects, on the terms of a prune (the
	// opt-out annotations, the ownership label). The policy of an
	// inventory that records none (an older deliver's).
	DeletionDelete DeletionPolicy = "Delete"
	// DeletionWaitForTermination deletes them, then waits until every
	// one is gone (finalizers run), for at most Options.Timeout.
	DeletionWaitForTermination DeletionPolicy = "WaitForTermination"
	// DeletionOrphan leaves them in the cluster, labels and all: only the
	// inventory (history, pin) is deleted. Another app takes one over
	// with AnnotationAdopt.
	DeletionOrphan DeletionPolicy = "Orphan"
)

// DeletionMirrorPrune is the deliver.yaml value (the default) that
// follows the app's prune setting: Delete when it prunes, Orphan when
// it keeps what left git.
const DeletionMirrorPrune = "MirrorPrune"

// ParseDeletionPolicy resolves deliver.yaml's deletionPolicy for an app
// that prunes (prune) or not: "" and MirrorPrune mirror prune.
func ParseDeletionPolicy(s string, prune bool) (DeletionPolicy, error) {
	switch s {
	case "", DeletionMirrorPrune:
		if prune {
			return DeletionDelete, nil
		}
		return DeletionOrphan, nil
	case string(DeletionDelete), string(DeletionWaitForTermination), string(DeletionOrphan):
		return DeletionPolicy(s), nil
	}
	return "", fmt.Errorf("unknown deletionPolicy %q (want MirrorPrune, Delete, WaitForTermination or Orphan)", s)
}

// ParseRemovePolicy parses a policy that replaces, for one removal, the
// one an app's inventory recorded (deliver delete --deletion-policy):
// Delete, WaitForTermination or Orphan; "" keeps the recorded one.
// MirrorPrune is refused: an app that left deliver.yaml has no prune
// setting left to mirror.
func ParseRemovePolicy(s string) (DeletionPolicy, error) {
	switch s {
	case "", string(DeletionDelete), string(DeletionWaitForTermination), string(DeletionOrphan):
		return DeletionPolicy(s), nil
	}
	return "", fmt.Errorf("unknown deletion policy %q for a removal (want Delete, WaitForTermination or Orphan)", s)
}

// or is p, or Delete for an inventory that recorded none.
func (p DeletionPolicy) or() DeletionPolicy {
	if p == "" {
		return DeletionDelete
	}
	return p
}

// waitGone polls c's object every interval until it is not found.
func (m *Manager) waitGone(ctx context.Context, c *Change, interval time.Duration) error {
	ri := m.client(c)
	return wait.PollUntilContextCancel(ctx, interval, true, func(ctx context.Context) (bool, error) {
		_, err := ri.Get(ctx, c.ID.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}
