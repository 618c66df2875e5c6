package notify

import (
	"testing"
	"time"
)

// TestDefaults: the defaults docs/notify.md documents.
func TestDefaults(t *testing.T) {
	t.Parallel()
	var o Options
	o.defaults()
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"Workers", o.Workers, 4},
		{"Timeout", o.Timeout, 10 * time.Second},
		{"RetryBase", o.RetryBase, time.Second},
		{"RetryMax", o.RetryMax, time.Minute},
		{"MaxAttempts", o.MaxAttempts, 5},
		{"QueueSize", o.QueueSize, 256},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}
