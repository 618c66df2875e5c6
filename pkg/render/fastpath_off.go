//go:build deliver_nofast

package render

// fastPaths is off: every document is parsed by yaml.v2 (see fastpath.go).
const fastPaths = false
