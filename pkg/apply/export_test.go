package apply

import "time"

// Hooks into the Manager's shared watches for the external tests.

// WatchCount is the number of shared watches m runs, idle ones included.
func WatchCount(m *Manager) int { return m.watcher.count() }

// WatchRefs is the number of (wait, watch) pairs in use in m.
func WatchRefs(m *Manager) int { return m.watcher.refs() }

// SetWatchGrace sets how long m keeps a watch after its last waiter left.
func SetWatchGrace(m *Manager, d time.Duration) {
	m.watcher.mu.Lock()
	defer m.watcher.mu.Unlock()
	m.watcher.grace = d
}

// StopIdleWatches stops m's watches that no wait uses.
func StopIdleWatches(m *Manager) { m.watcher.stopIdle() }
