package pipeline

import (
	"os"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
)

// env is the control plane of the tests that diff and apply; nil with
// -short. No controllers: these tests need discovery and the API, not
// rollouts.
var env *testenv.Cluster

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, &env, testenv.Options{NoControllers: true}))
}
