package main

import "syscall"

// longAttr makes the kernel kill a long-running peer process (Flux's
// controllers) when the benchmark dies, even of SIGKILL.
func longAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
