package reconcile

import (
	"fmt"
	"regexp"
	"testing"
)

// TestAssign checks the properties the shards rely on: every app has one
// owner among the members, the apps spread about evenly, a member leaving
// moves only its own apps, and a member joining takes apps only for
// itself.
func TestAssign(t *testing.T) {
	const apps = 3000
	names := make([]string, apps)
	for i := range names {
		names[i] = fmt.Sprintf("app-%d", i)
	}
	three := []string{"replica-a", "replica-b", "replica-c"}
	owner := map[string]string{}
	count := map[string]int{}
	for _, a := range names {
		o := assign(a, three)
		owner[a] = o
		count[o]++
	}
	for _, m := range three {
		// 1,000 expected each; 10% either way is far outside chance.
		if n := count[m]; n < 900 || n > 1100 {
			t.Errorf("%s owns %d of %d apps, want about a third", m, n, apps)
		}
	}
	tests := []struct {
		name    string
		members []string
		// may reports whether an app may move from old to new owner.
		may func(old, new string) bool
	}{
		{"b leaves", []string{"replica-a", "replica-c"}, func(old, _ string) bool { return old == "replica-b" }},
		{"d joins", []string{"replica-a", "replica-b", "replica-c", "replica-d"}, func(_, new string) bool { return new == "replica-d" }},
		{"order does not matter", []string{"replica-c", "replica-a", "replica-b"}, func(string, string) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			moved := 0
			for _, a := range names {
				if n := assign(a, tt.members); n != owner[a] {
					moved++
					if !tt.may(owner[a], n) {
						t.Fatalf("%s moved from %s to %s", a, owner[a], n)
					}
				}
			}
			t.Logf("%d of %d apps moved", moved, apps)
		})
	}
	if got := assign("x", nil); got != "" {
		t.Errorf("no members: owner %q", got)
	}
}

// TestShardLeaseName: a Lease name is a DNS subdomain whatever the
// identity, and two identities that clean up the same differ.
func TestShardLeaseName(t *testing.T) {
	dns := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	seen := map[string]string{}
	for _, id := range []string{"host_1234abcd", "HOST_1234ABCD", "pod-0", "", "a.b.c", "___", "x" + string(make([]byte, 300))} {
		n := shardLeaseName("deliver-reconcile", id)
		if !dns.MatchString(n) || len(n) > 63 {
			t.Errorf("identity %q: lease name %q is not a DNS label", id, n)
		}
		if other, ok := seen[n]; ok {
			t.Errorf("identities %q and %q share the lease name %q", other, id, n)
		}
		seen[n] = id
	}
}
