package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// The shards rows measure how long a shard group of deliver reconcile
// takes to re-balance when one replica dies: three replicas
// (deliver reconcile --shard) share the apps of the apps rows' shape; one
// is killed with SIGKILL, which leaves its Lease behind, so the two others
// take its apps only once they have not seen that Lease renewed for the
// lease duration. Right after the kill, a commit changes the killed
// replica's apps (and only those) and a fetch is asked for through
// deliver-control, as a webhook does. Two times are measured from the
// kill: until both survivors log the membership without the killed
// replica, and until deliver-status lists every app the killed replica
// owned as succeeded at that commit, delivered by a survivor. Each run
// then restarts the killed replica (same identity) and waits for the
// three to share the apps again; the next run kills another.

// shardReplicas is the number of replicas of the shards rows.
const shardReplicas = 3

// shardLease is the replicas' --shard-lease-duration: deliver's default.
const shardLease = 15 * time.Second

// shardGroup is the replicas of the shards rows and the repository they
// follow.
type shardGroup struct {
	a      *appsBench
	r      *appsRepo
	procs  map[string]*longProc
	starts int // processes started, for their log files
}

func shardID(i int) string { return fmt.Sprintf("replica-%c", 'a'+i) }

// start runs replica id, with a cache of its own.
func (g *shardGroup) start(id string) error {
	g.starts++
	args := g.a.deliverArgs(g.r, "reconcile", "--repo", g.a.url(g.r), "--ref", "main", "--interval", "1h",
		"--shard", "--shard-identity", id, "--shard-lease-duration", shardLease.String(),
		"--cache-dir", filepath.Join(g.a.root, "cache-"+id))
	p, err := startLong(g.a.deliver, args, g.a.env(), filepath.Join(g.a.opts.Dir, fmt.Sprintf("%s-%s-%d.log", g.r.Name, id, g.starts)))
	if err != nil {
		return err
	}
	g.procs[id] = p
	return nil
}

func (g *shardGroup) stop() {
	for _, p := range g.procs {
		p.stop()
	}
}

// logRecord is what the shards rows read of a reconciler's JSON log.
type logRecord struct {
	Time     time.Time `json:"time"`
	Msg      string    `json:"msg"`
	App      string    `json:"app"`
	Revision string    `json:"revision"`
	// Members is logged as one string: "[replica-a replica-b]".
	Members string `json:"members"`
}

// members splits the logged membership into identities.
func (l logRecord) members() []string { return strings.Fields(strings.Trim(l.Members, "[]")) }

// records returns p's log records with message msg.
func records(p *longProc, msg string) []logRecord {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return nil
	}
	var out []logRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec logRecord
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == msg {
			out = append(out, rec)
		}
	}
	return out
}

// members returns the membership p logged last, and when.
func members(p *longProc) ([]string, time.Time) {
	recs := records(p, "shard members")
	if len(recs) == 0 {
		return nil, time.Time{}
	}
	last := recs[len(recs)-1]
	return last.members(), last.Time
}

// waitFor polls cond every 100 ms until it holds, a replica exits or the
// apps rows' timeout passes.
func (g *shardGroup) waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, appsTimeout(g.r.N))
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		for id, p := range g.procs {
			if p.exited() {
				return fmt.Errorf("shards: %s exited while waiting for %s (log: %s)", id, what, p.log)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shards: %s: not within %s", what, appsTimeout(g.r.N))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// delivered reports whether deliver-status lists the apps as succeeded at
// commit head.
func (g *shardGroup) delivered(ctx context.Context, apps []int, head string) (bool, error) {
	cm, err := reconcile.ReadStatus(ctx, g.a.cs, g.r.inventory())
	if err != nil {
		return false, nil // not written yet, or a passing error: polled again
	}
	for _, i := range apps {
		var st struct{ Revision, Result string }
		if json.Unmarshal([]byte(cm.Data[appName(i)]), &st) != nil || st.Result != "succeeded" || !sameCommit(st.Revision, head) {
			return false, nil
		}
	}
	return true, nil
}

// allShare reports whether every replica counts all of them as members.
func (g *shardGroup) allShare() bool {
	for _, p := range g.procs {
		if m, _ := members(p); len(m) != len(g.procs) {
			return false
		}
	}
	return true
}

// owned returns the apps replica id delivered at commit head.
func (g *shardGroup) owned(id, head string) []int {
	var out []int
	for _, rec := range records(g.procs[id], "run succeeded") {
		if !sameCommit(rec.Revision, head) {
			continue
		}
		var i int
		if _, err := fmt.Sscanf(rec.App, "app-%d", &i); err == nil && !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	slices.Sort(out)
	return out
}

// changeApps gives the Deployments of apps a new pod template, commits,
// and returns the new commit.
func (r *appsRepo) changeApps(apps []int) (string, error) {
	for _, i := range apps {
		r.gen[i]++
		if err := r.write(i); err != nil {
			return "", err
		}
	}
	cmd := exec.Command("git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "commit", "-q", "-a", "--no-gpg-sign", "-m", fmt.Sprintf("change %d apps", len(apps)))
	cmd.Dir = r.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("git commit in %s: %w\n%s", r.Dir, err, out)
	}
	return r.head()
}

// shardsRows measures the shards rows at n apps.
func (b *bench) shardsRows(ctx context.Context, n int) error {
	a, err := b.startApps("shards", n)
	if err != nil {
		return err
	}
	defer a.git.Close()
	r, err := a.newRepo(ctx, "s")
	if err != nil {
		return err
	}
	head, err := r.head()
	if err != nil {
		return err
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	g := &shardGroup{a: a, r: r, procs: map[string]*longProc{}}
	defer g.stop()
	b.logf("bench: %d apps: %d shards, first delivery", n, shardReplicas)
	started := time.Now()
	for i := range shardReplicas {
		if err := g.start(shardID(i)); err != nil {
			return err
		}
	}
	if err := g.waitFor(ctx, "every app delivered", func() (bool, error) { return g.delivered(ctx, all, head) }); err != nil {
		return err
	}
	first := sample{Wall: time.Since(started)}

	var dropped, moved []sample
	var killedApps []int
	for run := range b.runs {
		victim := shardID(run % shardReplicas)
		if err := g.waitFor(ctx, "every replica sharing the apps", func() (bool, error) { return g.allShare(), nil }); err != nil {
			return err
		}
		// Every app changes: the replica that delivers one at this commit
		// is its owner.
		head, err := r.changeApps(all)
		if err != nil {
			return err
		}
		if err := requestDeliverFetch(ctx, b, r.inventory()); err != nil {
			return err
		}
		if err := g.waitFor(ctx, "every app delivered", func() (bool, error) { return g.delivered(ctx, all, head) }); err != nil {
			return err
		}
		owned := g.owned(victim, head)
		if len(owned) == 0 {
			return fmt.Errorf("shards: %s delivered none of the %d apps at %.12s (log: %s)", victim, n, head, g.procs[victim].log)
		}
		killedApps = append(killedApps, len(owned))

		p := g.procs[victim]
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			return err
		}
		killed := time.Now()
		<-p.done
		delete(g.procs, victim)
		b.logf("bench: %d apps: killed %s, which owned %d apps", n, victim, len(owned))
		head, err = r.changeApps(owned)
		if err != nil {
			return err
		}
		if err := requestDeliverFetch(ctx, b, r.inventory()); err != nil {
			return err
		}
		var droppedAt time.Time
		err = g.waitFor(ctx, "the killed replica's apps delivered", func() (bool, error) {
			if droppedAt.IsZero() {
				var last time.Time
				for _, sp := range g.procs {
					m, at := members(sp)
					if len(m) != shardReplicas-1 || slices.Contains(m, victim) {
						last = time.Time{}
						break
					}
					if at.After(last) {
						last = at
					}
				}
				droppedAt = last
			}
			return g.delivered(ctx, owned, head)
		})
		if err != nil {
			return err
		}
		done := time.Now()
		// The survivors' logs say when each dropped the killed replica
		// (by its own clock, the machine's).
		if droppedAt.IsZero() {
			return fmt.Errorf("shards: the survivors delivered %s's apps without logging a membership without it", victim)
		}
		dropped = append(dropped, sample{Wall: droppedAt.Sub(killed)})
		moved = append(moved, sample{Wall: done.Sub(killed)})
		b.logf("bench: %d apps: %s dropped after %s, its apps delivered after %s (lease %s)", n, victim,
			droppedAt.Sub(killed).Round(time.Millisecond), done.Sub(killed).Round(time.Millisecond), shardLease)

		// Back to three for the next run.
		if err := g.start(victim); err != nil {
			return err
		}
	}
	objects := 4 * n
	b.report.addApps(n, objects, fmt.Sprintf("first delivery from git, %d shards", shardReplicas), measure("deliver reconcile --shard (start to all applied)", []sample{first}), Measure{}, "")
	b.report.addApps(n, objects, fmt.Sprintf("shard killed: dropped by the others (lease %s)", shardLease), measure("kill to both survivors' new membership", dropped), Measure{}, "<= lease + lease/10")
	b.report.addApps(n, objects, fmt.Sprintf("shard killed: its apps at a new commit (lease %s)", shardLease), measure("kill to its apps delivered by the others", moved), Measure{}, "")
	b.report.AppsNotes = append(b.report.AppsNotes, fmt.Sprintf(
		"%d apps, shards: %d replicas of deliver reconcile --shard (lease %s); each run SIGKILLs one (its Lease stays), commits a change of its apps only (%v apps per run) and asks for a fetch through deliver-control; "+
			"measured from the kill until both survivors log a membership without it, and until deliver-status lists each of its apps succeeded at that commit",
		n, shardReplicas, shardLease, killedApps))
	return nil
}
