//go:build !linux

package main

import "syscall"

// longAttr: without Pdeathsig (Linux only) the benchmark's own cleanup
// stops the peer processes.
func longAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
