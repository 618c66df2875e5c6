package reconcile

import (
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/pipeline"
)

// TestDefaults: the defaults README.md and docs/clusters.md document.
func TestDefaults(t *testing.T) {
	t.Parallel()
	o := Options{Pipeline: pipeline.Options{Repo: "https://git.example/deploy"}, Config: &rest.Config{}}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"Interval", o.Interval, time.Minute},
		{"FullResync", o.FullResync, time.Hour},
		{"InputsInterval", o.InputsInterval, 10 * time.Minute},
		{"RetryBase", o.RetryBase, 10 * time.Second},
		{"RetryMax", o.RetryMax, 5 * time.Minute},
		{"DriftSettle", o.DriftSettle, time.Second},
		{"MaxConcurrentRuns", o.MaxConcurrentRuns, 16},
		{"InventoryNamespace", o.Pipeline.Apply.InventoryNamespace, "deliver-system"},
		{"StatusNamespace", o.StatusNamespace, "deliver-system"},
		{"LeaseDuration", o.LeaderElection.LeaseDuration, 15 * time.Second},
		{"Sharding.LeaseDuration", o.Sharding.LeaseDuration, 15 * time.Second},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if o.Target != o.Config {
		t.Error("Target defaults to Config: the reconciler's own cluster")
	}
}
