package testenv

import "syscall"

// childAttr starts a component in its own process group (stop signals the
// whole group) with SIGKILL as its parent-death signal, so the kernel kills
// it when the test binary dies, even of SIGKILL or a panic.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
