package testenv

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one child of the test binary, in a process group of its own.
// On Linux it is started with Pdeathsig, so the kernel kills it when the
// test binary dies for any reason (a panic, a test timeout, SIGKILL): no etcd
// or apiserver is ever left behind (procattr_linux.go). Elsewhere only a test
// binary that ends normally stops it (procattr_other.go).
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error

	bin, logDir string
	args, env   []string
}

func startProcess(name, bin, logDir string, args []string, env []string) (*process, error) {
	logPath := filepath.Join(logDir, name+".log")
	// Append: a restarted component keeps the log of its earlier life.
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{}), bin: bin, logDir: logDir, args: args, env: env}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after the grace period.
func (p *process) stop(grace time.Duration) {
	if p == nil {
		return
	}
	if done, _ := p.exited(); done {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// tail returns the end of the process log, for error messages.
func (p *process) tail() string {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	const max = 3000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return string(data)
}

// waitFor polls check until it returns nil, the process dies or ctx ends.
func (p *process) waitFor(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if done, err := p.exited(); done {
			return fmt.Errorf("%s exited (%v) before it was ready; log %s:\n%s", p.name, err, p.log, p.tail())
		}
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w; log %s:\n%s", p.name, timeout, errors.Join(ctx.Err(), last), p.log, p.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePort returns an unused loopback port below the kernel's ephemeral range
// (32768-60999 on Linux). A port handed out by the kernel (":0") is an
// ephemeral one, and any outgoing connection (the apiserver to etcd, for
// instance) can take it between our check and the component's bind; ports
// below that range are only ever taken by other listeners. What is left of
// the race is handled by retrying the start (see addrInUse).
func FreePort() (int, error) {
	const lo, hi = 20000, 32768
	var last error
	for range 50 {
		port := lo + mrand.IntN(hi-lo)
		l, err := net.Listen("tcp", hostPort(port))
		if err != nil {
			last = err
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d: %w", lo, hi, last)
}

// addrInUse reports whether a component failed because another process took
// its port first, so that starting again on new ports is the cure.
func addrInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "address already in use")
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// restart starts a stopped process again with the same arguments.
func (p *process) restart() (*process, error) {
	p.stop(10 * time.Second)
	return startProcess(p.name, p.bin, p.logDir, p.args, p.env)
}
