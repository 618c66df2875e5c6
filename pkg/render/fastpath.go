//go:build !deliver_nofast

package render

// fastPaths enables fastYAML. Building with the tag deliver_nofast turns it
// off, so that `make bench` can measure what it buys end to end against a
// binary without it (the rows marked [baseline]), as the rule for code that
// re-implements a library asks.
const fastPaths = true
