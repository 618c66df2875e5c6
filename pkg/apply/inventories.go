package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// inventoryBatch is how many apps one list of inventories names in its
// label selector: a thousand apps are read with ten lists instead of a
// thousand GETs, and a selector of a hundred names stays a few kilobytes
// of URL.
const inventoryBatch = 100

// inventoryRead is the outcome of reading one app's inventory.
type inventoryRead struct {
	inv     *Inventory
	version string // resourceVersion of the inventory Secret; "" when there is none
	err     error
	// at is when the read was answered: what the inventory says is at
	// least as old as that.
	at time.Time
}

// ReadInventories returns the stored inventories of apps (an empty one
// for an app that has none), read with one list per hundred apps instead
// of one GET each; what cannot be read is in the joined error, and its
// app is not in the map.
func (m *Manager) ReadInventories(ctx context.Context, apps []string) (map[string]*Inventory, error) {
	out := make(map[string]*Inventory, len(apps))
	var errs []error
	for app, r := range m.readInventories(ctx, apps) {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		out[app] = r.inv
	}
	return out, errors.Join(errs...)
}

// readInventories reads the inventories of apps by lists whose label
// selector names them (LabelInventory). An app no list returned is read
// with a GET, which tells an app without inventory from one whose Secret
// lacks the label; so is every app of a list that failed (a role that may
// get its inventory Secret but not list Secrets).
func (m *Manager) readInventories(ctx context.Context, apps []string) map[string]inventoryRead {
	batches := (len(apps) + inventoryBatch - 1) / inventoryBatch
	var (
		mu  sync.Mutex
		out = make(map[string]inventoryRead, len(apps))
	)
	m.forEach(ctx, batches, func(b int) {
		names := apps[b*inventoryBatch : min(len(apps), (b+1)*inventoryBatch)]
		list, err := m.kube.CoreV1().Secrets(m.opts.InventoryNamespace).List(ctx, metav1.ListOptions{
			LabelSelector: LabelInventory + " in (" + strings.Join(names, ",") + ")",
		})
		at := time.Now()
		if err != nil {
			return // each app is read on its own below
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range list.Items {
			s := &list.Items[i]
			app := s.Labels[LabelInventory]
			if s.Name != InventoryName(app) {
				continue // not an inventory of this name: the GET decides
			}
			inv, err := inventoryOf(s)
			out[app] = inventoryRead{inv: inv, version: s.ResourceVersion, err: err, at: at}
		}
	})
	var missing []string
	for _, app := range apps {
		if _, ok := out[app]; !ok {
			missing = append(missing, app)
		}
	}
	missing = m.withoutAbsent(ctx, missing, out)
	m.forEach(ctx, len(missing), func(i int) {
		inv, version, err := m.readInventory(ctx, missing[i])
		r := inventoryRead{inv: inv, version: version, err: err, at: time.Now()}
		mu.Lock()
		out[missing[i]] = r
		mu.Unlock()
	})
	for _, app := range missing {
		if _, ok := out[app]; !ok { // stopped before its turn
			out[app] = inventoryRead{err: fmt.Errorf("inventory %s/%s: read: %w", m.opts.InventoryNamespace, InventoryName(app), ctx.Err())}
		}
	}
	return out
}

// inventoryOf decodes the inventory Secret s.
func inventoryOf(s *corev1.Secret) (*Inventory, error) {
	inv, err := decodeInventory(s)
	if err != nil {
		return nil, fmt.Errorf("inventory %s/%s: decode: %w", s.Namespace, s.Name, err)
	}
	inv.adopt = adoptRequested(s.Annotations)
	inv.Pin = PinOf(s.Annotations)
	inv.stored = true
	return inv, nil
}

// withoutAbsent returns the apps of missing whose inventory Secret exists
// after all (it lacks the label the lists select on, or a list failed),
// and records the others in out as having no inventory: one list of the
// names of the Secrets in the inventory namespace, metadata only, instead
// of a GET per app, when more than one app is missing (a new repository of
// a thousand apps). When that list fails, every app is read with a GET.
func (m *Manager) withoutAbsent(ctx context.Context, missing []string, out map[string]inventoryRead) []string {
	if len(missing) < 2 {
		return missing
	}
	list, err := m.meta.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(m.opts.InventoryNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return missing
	}
	at := time.Now()
	names := make(map[string]bool, len(list.Items))
	for i := range list.Items {
		names[list.Items[i].Name] = true
	}
	var exist []string
	for _, app := range missing {
		if names[InventoryName(app)] {
			exist = append(exist, app)
			continue
		}
		out[app] = inventoryRead{inv: &Inventory{App: app}, at: at}
	}
	return exist
}

// InventoryApps returns the apps that have an inventory in the inventory
// namespace: the Secrets that carry LabelInventory and the name of their
// app's inventory, read with one metadata-only list, sorted.
func (m *Manager) InventoryApps(ctx context.Context) ([]string, error) {
	list, err := m.meta.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(m.opts.InventoryNamespace).
		List(ctx, metav1.ListOptions{LabelSelector: LabelInventory})
	if err != nil {
		return nil, fmt.Errorf("inventories in %s: list: %w", m.opts.InventoryNamespace, err)
	}
	var out []string
	for _, s := range list.Items {
		if app := s.Labels[LabelInventory]; s.Name == InventoryName(app) {
			out = append(out, app)
		}
	}
	slices.Sort(out)
	return out, nil
}
