package main

import "github.com/deliverhq/deliver/internal/startup"

// The garbage collector is off while the packages initialize (see
// internal/startup); package main's init runs after all of theirs.
func init() { startup.Done() }
