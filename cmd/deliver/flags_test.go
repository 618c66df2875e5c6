package main

import "testing"

// TestFlagDefaults: the defaults README.md documents, per command.
func TestFlagDefaults(t *testing.T) {
	t.Parallel()
	root := newRootCmd()
	for _, tt := range []struct{ cmd, flag, want string }{
		{"apply", "qps", "1000"},
		{"apply", "burst", "2000"},
		{"apply", "parallel", "16"},
		{"apply", "concurrency", "48"},
		{"diff", "parallel", "16"},
		{"diff", "concurrency", "48"},
		{"apply", "wait", "true"},
		{"apply", "inventory-namespace", "deliver-system"},
	} {
		c, _, err := root.Find([]string{tt.cmd})
		if err != nil {
			t.Fatalf("%s: %v", tt.cmd, err)
		}
		f := c.Flag(tt.flag)
		if f == nil {
			t.Errorf("%s --%s: no such flag", tt.cmd, tt.flag)
			continue
		}
		if f.DefValue != tt.want {
			t.Errorf("%s --%s defaults to %q, want %q", tt.cmd, tt.flag, f.DefValue, tt.want)
		}
	}
}

// TestReconcileEnvList: deliver reconcile's --env takes several
// environments, repeated or comma-separated, each once, in order; the
// pipeline's one environment is the first (docs/clusters.md).
func TestReconcileEnvList(t *testing.T) {
	t.Parallel()
	root := newRootCmd()
	c, _, err := root.Find([]string{"reconcile"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ParseFlags([]string{"--env", "prod,staging", "--env", " edge ", "--env", "prod"}); err != nil {
		t.Fatal(err)
	}
	l, ok := c.Flag("env").Value.(*envList)
	if !ok {
		t.Fatalf("--env is a %T, want an envList", c.Flag("env").Value)
	}
	if got := l.String(); got != "prod,staging,edge" || *l.dst != "prod" {
		t.Errorf("environments %q, first %q; want prod,staging,edge and prod", got, *l.dst)
	}
}
