package version

import (
	"runtime"
	"testing"
)

func TestGet(t *testing.T) {
	info := Get()
	if info.Go != runtime.Version() {
		t.Errorf("Go = %q, want %q", info.Go, runtime.Version())
	}
	if info.Version == "" || info.Commit == "" {
		t.Errorf("empty version or commit: %+v", info)
	}
}
