package pipeline

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/restart"
)

// digestKey reads the key of the config digests once per run, when the
// first app that restarts on config changes needs it: from the cluster
// (see apply.Manager.DigestKey), made there by an apply, never by a diff;
// none for a render, which has no cluster. The key is added to the
// redactor, so that no output shows it even by accident.
type digestKey struct {
	get func() ([]byte, error)
}

// newDigestKey returns the run's digest key reader; apps are the run's,
// any of whose Managers can read deliver's namespace.
func newDigestKey(ctx context.Context, opts *Options, apps []*AppResult, m mode) *digestKey {
	return &digestKey{get: sync.OnceValues(func() ([]byte, error) {
		for _, ar := range apps {
			if ar.mgr == nil {
				continue
			}
			key, err := ar.mgr.DigestKey(ctx, m == modeApply)
			if err != nil {
				return nil, fmt.Errorf("config digest key: %w", err)
			}
			if key != nil {
				opts.Redactor.Add(string(key), hex.EncodeToString(key))
			}
			return key, nil
		}
		return nil, nil // render: no cluster
	})}
}

// stampConfig stamps the config digest into the workloads of an app that
// restarts on config changes. It runs after the render resolved every
// secret, so that the digest is of the data the Pods will read, and
// before the plan, so that the diff shows the new pod template.
func stampConfig(set *object.Set, namespace string, key *digestKey) error {
	k, err := key.get()
	if err != nil {
		return err
	}
	return restart.Stamp(set, namespace, k)
}
