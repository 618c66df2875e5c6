package browser

import (
	"os"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
)

// env is the control plane the view's pages read; nil under -short.
var env *testenv.Cluster

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, &env, testenv.Options{}))
}
