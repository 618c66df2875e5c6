//go:build !linux

package testenv

import "syscall"

// childAttr starts a component in its own process group (stop signals the
// whole group). Only Linux has a parent-death signal: elsewhere a test
// binary killed before its cleanup runs leaves its components running.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
