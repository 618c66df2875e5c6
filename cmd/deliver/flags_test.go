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
