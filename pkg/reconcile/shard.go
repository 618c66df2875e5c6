package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// Sharding spreads the apps over several reconciler replicas, each
// delivering its share, instead of one leader delivering all of them.
//
// Each replica holds a Lease of its own (label LabelShardGroup) and
// watches the others'; the replicas whose Leases it has seen renewed
// within LeaseDuration are the members, and each app belongs to one
// member, chosen by rendezvous hashing of the app's name over the members'
// identities, so that a member joining or leaving moves only its share of
// the apps. A replica killed without releasing its Lease loses its apps
// to the others once its Lease has not been renewed for LeaseDuration, as
// they observe it (by their own clocks, as client-go's leader election
// judges a Lease). Views of the membership may differ for a moment; the
// per-app lock remains the fence, and a run for a new revision re-checks
// the inventory under that lock (apply.PlanOptions.UnlessDelivered), so an
// app is delivered once per revision even while it changes hands.
//
// With several environments (Clusters) each environment's engine is a
// member of its own: it holds a Lease of its own, labelled with the
// environment (LabelStatusEnv) as well as the group, and counts as members
// only the replicas whose engine of that environment renews its Lease, so
// that an app is never assigned to a replica whose engine of its
// environment does not run (its cluster unreachable, or restarting on a
// new one). The key hashed is the environment and the app's name, so that
// the apps of one name in several environments are spread too.
type Sharding struct {
	// Enabled turns sharding on; not with LeaderElection or Once.
	Enabled bool
	// Namespace of the members' Leases. Default Options.StatusNamespace.
	Namespace string
	// Group names the set of replicas that share the apps: the value of
	// LabelShardGroup on their Leases. Default "deliver-reconcile".
	Group string
	// Identity names this replica. Default: the host name and a random
	// suffix (as LeaderElection.Identity).
	Identity string
	// LeaseDuration is how long a replica that stopped renewing its Lease
	// keeps its apps. It renews every third of it, and delivers nothing
	// once it could not renew for two thirds. Default 15s.
	LeaseDuration time.Duration
}

// LabelShardGroup marks the Lease of a reconciler replica that shares apps
// with the other replicas of its group (Sharding.Group).
const LabelShardGroup = "deliver.dev/shard-group"

// shards is one replica's view of the membership of its group.
type shards struct {
	kube     kubernetes.Interface
	opts     Sharding
	name     string // of this replica's Lease
	clock    clock.WithTicker
	log      *slog.Logger
	onChange func()
	// env is the environment of a Clusters' engine; "" for a lone
	// Reconciler (see Sharding).
	env string

	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer

	mu sync.Mutex
	// seen holds each Lease of the group by name: its holder, its last
	// renewal as written, and when this replica saw that renewal change.
	seen map[string]seenLease
	// renewed is when this replica last renewed its own Lease.
	renewed time.Time
	// members are the identities currently sharing the apps, sorted;
	// empty while this replica cannot renew its Lease.
	members []string
}

type seenLease struct {
	holder   string
	record   string // renew time and duration, as written
	observed time.Time
	rv       string // its resourceVersion, for a delete of that version only
}

// staleLeases is how many lease durations a member's Lease goes without a
// renewal before the other members delete it (collect): 150 s by default,
// far past the LeaseDuration after which its apps went to the others.
const staleLeases = 10

// shardLeaseName is the Lease name of identity in group: a DNS subdomain
// whatever the identity holds, unique by a hash of it.
func shardLeaseName(group, identity string) string {
	sum := sha256.Sum256([]byte(identity))
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, identity)
	clean = strings.Trim(clean, "-")
	if len(clean) > 40 {
		clean = clean[:40]
	}
	return strings.Trim(group+"-"+clean, "-") + "-" + hex.EncodeToString(sum[:4])
}

// newShards returns the membership of opts.Group for the apps of env (""
// for a lone Reconciler).
func newShards(kube kubernetes.Interface, opts Sharding, env string, log *slog.Logger, onChange func()) *shards {
	s := &shards{kube: kube, opts: opts, name: shardLeaseName(opts.Group, opts.Identity), clock: clock.RealClock{},
		log: log, onChange: onChange, env: env, seen: map[string]seenLease{}}
	// A lone Reconciler's Leases carry no environment, and it counts none
	// that does: a member for one environment of a Clusters does not
	// deliver the apps of a lone Reconciler of the same group.
	selector := LabelShardGroup + "=" + opts.Group + ",!" + LabelStatusEnv
	if env != "" {
		s.name = shardLeaseName(opts.Group+"."+env, opts.Identity)
		selector = LabelShardGroup + "=" + opts.Group + "," + LabelStatusEnv + "=" + env
	}
	s.factory = informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	s.informer = s.factory.Coordination().V1().Leases().Informer()
	return s
}

// run renews this replica's Lease and keeps the membership up to date
// until ctx ends, then deletes the Lease, so that the others take its apps
// at once rather than after LeaseDuration. It returns once the Lease is
// deleted; call it after the runs of this replica ended.
func (s *shards) run(ctx context.Context, started chan<- struct{}) {
	_, _ = s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.observe(obj, false) },
		UpdateFunc: func(_, obj any) { s.observe(obj, false) },
		DeleteFunc: func(obj any) { s.observe(obj, true) },
	})
	s.factory.Start(ctx.Done())
	defer s.factory.Shutdown()
	cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced)
	s.renew(ctx)
	close(started)
	renew := s.clock.NewTicker(s.opts.LeaseDuration / 3)
	defer renew.Stop()
	// Another replica's Lease expires LeaseDuration after this one saw
	// its last renewal; looking every tenth of that bounds how late.
	expire := s.clock.NewTicker(s.opts.LeaseDuration / 10)
	defer expire.Stop()
	for {
		select {
		case <-ctx.Done():
			s.release()
			return
		case <-renew.C():
			s.renew(ctx)
			s.collect(ctx)
		case <-expire.C():
			s.update()
		}
	}
}

// renew writes this replica's Lease with a deadline of a third of the
// lease, then recomputes the membership (which also expires the replicas
// that stopped renewing).
func (s *shards) renew(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, s.opts.LeaseDuration/3)
	defer cancel()
	now := metav1.NewMicroTime(s.clock.Now())
	leases := s.kube.CoordinationV1().Leases(s.opts.Namespace)
	lease, err := leases.Get(rctx, s.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.opts.Namespace,
			Labels: s.labels()}}
		lease.Spec = s.spec(now, now)
		_, err = leases.Create(rctx, lease, metav1.CreateOptions{})
	case err == nil:
		acquired := now
		if lease.Spec.AcquireTime != nil && ptr.Deref(lease.Spec.HolderIdentity, "") == s.opts.Identity {
			acquired = *lease.Spec.AcquireTime
		}
		lease.Spec = s.spec(acquired, now)
		_, err = leases.Update(rctx, lease, metav1.UpdateOptions{})
	}
	s.mu.Lock()
	if err == nil {
		s.renewed = s.clock.Now()
	} else if ctx.Err() == nil {
		s.log.Warn("renew shard lease", "lease", s.opts.Namespace+"/"+s.name, "err", err)
	}
	s.mu.Unlock()
	s.update()
}

// collect deletes the Leases of the group that went staleLeases lease
// durations without a renewal: those of replicas killed without releasing
// theirs (SIGKILL, a lost node), which would otherwise stay in the
// namespace, and in every member's informer, for ever: one per killed pod
// over the months. The delete is of the version seen only, so a Lease
// renewed meanwhile stays; a replica whose Lease went and that comes back
// creates it again at its next renewal.
func (s *shards) collect(ctx context.Context) {
	s.mu.Lock()
	now := s.clock.Now()
	stale := map[string]seenLease{}
	for name, l := range s.seen {
		if name != s.name && now.Sub(l.observed) >= staleLeases*s.opts.LeaseDuration {
			stale[name] = l
		}
	}
	s.mu.Unlock()
	for name, l := range stale {
		dctx, cancel := context.WithTimeout(ctx, s.opts.LeaseDuration/3)
		err := s.kube.CoordinationV1().Leases(s.opts.Namespace).Delete(dctx, name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{ResourceVersion: &l.rv}})
		cancel()
		switch {
		case err == nil:
			s.log.Info("deleted the shard lease of a replica gone", "lease", s.opts.Namespace+"/"+name, "holder", l.holder,
				"unrenewed_for", now.Sub(l.observed).Round(time.Second))
		case apierrors.IsNotFound(err), apierrors.IsConflict(err), ctx.Err() != nil:
			// Another member deleted it, or it was renewed.
		default:
			s.log.Warn("delete stale shard lease", "lease", s.opts.Namespace+"/"+name, "err", err)
		}
	}
}

// labels are those of this replica's Lease.
func (s *shards) labels() map[string]string {
	l := map[string]string{LabelShardGroup: s.opts.Group}
	if s.env != "" {
		l[LabelStatusEnv] = s.env
	}
	return l
}

func (s *shards) spec(acquired, now metav1.MicroTime) coordinationv1.LeaseSpec {
	return coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(s.opts.Identity),
		LeaseDurationSeconds: ptr.To(int32(max(1, s.opts.LeaseDuration/time.Second))),
		AcquireTime:          &acquired,
		RenewTime:            &now,
	}
}

// release deletes this replica's Lease.
func (s *shards) release() {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.LeaseDuration/3)
	defer cancel()
	err := s.kube.CoordinationV1().Leases(s.opts.Namespace).Delete(ctx, s.name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		s.log.Warn("release shard lease", "lease", s.opts.Namespace+"/"+s.name, "err", err)
	}
}

// observe records a Lease of the group as the informer saw it.
func (s *shards) observe(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return
	}
	s.mu.Lock()
	if deleted || l.Spec.HolderIdentity == nil {
		delete(s.seen, l.Name)
	} else {
		rec := fmt.Sprint(l.Spec.RenewTime, ptr.Deref(l.Spec.LeaseDurationSeconds, 0))
		seen, ok := s.seen[l.Name]
		if !ok || seen.record != rec || seen.holder != *l.Spec.HolderIdentity {
			seen = seenLease{holder: *l.Spec.HolderIdentity, record: rec, observed: s.clock.Now()}
		}
		seen.rv = l.ResourceVersion
		s.seen[l.Name] = seen
	}
	s.mu.Unlock()
	s.update()
}

// update recomputes the members and tells onChange when they changed.
func (s *shards) update() {
	s.mu.Lock()
	now := s.clock.Now()
	var members []string
	// Without a recent renewal of its own Lease this replica may already
	// count as gone for the others, who then deliver its apps.
	if !s.renewed.IsZero() && now.Sub(s.renewed) < s.opts.LeaseDuration*2/3 {
		members = append(members, s.opts.Identity)
		for name, l := range s.seen {
			if name != s.name && now.Sub(l.observed) < s.opts.LeaseDuration && !slices.Contains(members, l.holder) {
				members = append(members, l.holder)
			}
		}
	}
	slices.Sort(members)
	changed := !slices.Equal(members, s.members)
	s.members = members
	if changed {
		// Logged under the lock: two updates at once (a Lease event and
		// the renewal's) log in the order they set the members, so the
		// last line logged is the membership in force.
		s.log.Info("shard members", "members", members)
	}
	s.mu.Unlock()
	if changed {
		s.onChange()
	}
}

// owns reports whether app is this replica's in the current membership.
func (s *shards) owns(app string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.members) > 0 && assign(shardKey(s.env, app), s.members) == s.opts.Identity
}

// shardKey is what assign hashes for app of env: the app's name alone for
// a lone Reconciler, as ever, so that an upgrade moves no app; the
// environment and the name for a Clusters' engine (an environment is a
// DNS label, so the slash cannot be part of it).
func shardKey(env, app string) string {
	if env == "" {
		return app
	}
	return env + "/" + app
}

// assign returns the member app belongs to: rendezvous (highest random
// weight) hashing, written here because it is the whole assignment
// function: each member's weight for the app is a hash of both, and the
// heaviest wins, so a member leaving moves only its own apps, spread
// evenly over the others, and a member joining takes about 1/n of each.
func assign(app string, members []string) string {
	var best string
	var bestW uint64
	for _, m := range members {
		h := sha256.Sum256([]byte(m + "\x00" + app))
		if w := binary.BigEndian.Uint64(h[:8]); best == "" || w > bestW {
			best, bestW = m, w
		}
	}
	return best
}
