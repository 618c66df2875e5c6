package main

import "testing"

func TestLongRunning(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"reconcile"}, true},
		{[]string{"reconcile", "--once=false"}, true},
		{[]string{"reconcile", "--once"}, false},
		{[]string{"apply", "-f", "x"}, false},
		{[]string{"diff", "-f", "x"}, false},
		{[]string{"render", "-f", "x"}, false},
	} {
		root := newRootCmd()
		cmd, rest, err := root.Find(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := longRunning(cmd); got != tc.want {
			t.Errorf("longRunning(%v) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
