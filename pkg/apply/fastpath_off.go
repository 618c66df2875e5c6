//go:build deliver_nofast

package apply

// fastPaths is off: every apply body is JSON (see fastpath.go).
const fastPaths = false
