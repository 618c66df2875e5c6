package apply

import (
	"testing"
	"time"

	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestSessionLetsIdleImpersonationGo: the clients of a ServiceAccount
// are kept while they are asked for, and let go once nothing asked for
// them in impersonatedIdle (an app per pull request, each its own
// ServiceAccount, would otherwise leave a set behind per namespace);
// deliver's own clients are never let go.
func TestSessionLetsIdleImpersonationGo(t *testing.T) {
	s, err := NewSession(&rest.Config{Host: "https://127.0.0.1:1"}, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Now())
	s.clock = clk
	ask := func(user string) *clients {
		t.Helper()
		c, err := s.clientsAs(user)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	own, a := ask(""), ask("system:serviceaccount:pr-1:deployer")
	clk.Step(impersonatedIdle / 2)
	ask("system:serviceaccount:pr-2:deployer")
	if ask("system:serviceaccount:pr-1:deployer") != a {
		t.Error("the clients of a ServiceAccount asked for half an idle period ago were made again")
	}
	clk.Step(impersonatedIdle)
	ask("system:serviceaccount:pr-3:deployer") // both others idle since
	if len(s.as) != 1 {
		t.Errorf("%d ServiceAccounts' clients kept, want only the one just asked for", len(s.as))
	}
	if ask("system:serviceaccount:pr-1:deployer") == a {
		t.Error("the idle clients were kept")
	}
	if ask("") != own {
		t.Error("deliver's own clients were made again")
	}
}
