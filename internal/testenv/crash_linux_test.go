package testenv

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashEnv, when set, makes TestCrashHelper start a control plane, print its
// PIDs and then crash the way the variable says.
const (
	crashEnv    = "DELIVER_TESTENV_CRASH"
	crashDirEnv = "DELIVER_TESTENV_CRASH_DIR"
)

func TestCrashHelper(t *testing.T) {
	mode := os.Getenv(crashEnv)
	if mode == "" {
		t.Skip("helper for TestNoProcessLeftBehind")
	}
	// The parent's folder: a crashed test leaves its own behind.
	c, err := Start(context.Background(), Options{NoControllers: true, Dir: os.Getenv(crashDirEnv)})
	if err != nil {
		t.Fatal(err)
	}
	// No Stop on purpose: the kernel must clean up after a crash.
	fmt.Printf("PIDS %s\n", strings.Trim(fmt.Sprint(c.PIDs()), "[]"))
	os.Stdout.Sync()
	switch mode {
	case "panic":
		panic("testenv: crashing on purpose")
	case "kill":
		time.Sleep(time.Minute) // the parent kills us with SIGKILL
	}
}

// TestNoProcessLeftBehind (Linux only: it checks the parent-death signal,
// and reads /proc) runs a test binary that starts etcd and
// kube-apiserver and then panics or is killed with SIGKILL, and checks that
// no component outlives it.
func TestNoProcessLeftBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	for _, mode := range []string{"panic", "kill"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.v")
			cmd.Env = append(os.Environ(), crashEnv+"="+mode, crashDirEnv+"="+t.TempDir())
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var pids []int
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if f, ok := strings.CutPrefix(sc.Text(), "PIDS "); ok {
					for _, s := range strings.Fields(f) {
						pid, _ := strconv.Atoi(s)
						pids = append(pids, pid)
					}
					break
				}
			}
			if len(pids) != 2 {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("helper printed pids %v, want etcd and kube-apiserver", pids)
			}
			for _, pid := range pids {
				if syscall.Kill(pid, 0) != nil {
					t.Fatalf("pid %d not running before the crash", pid)
				}
			}
			if mode == "kill" {
				cmd.Process.Kill()
			}
			go func() { _, _ = bufio.NewReader(stdout).WriteTo(os.Stdout) }()
			_ = cmd.Wait()
			deadline := time.Now().Add(10 * time.Second)
			for _, pid := range pids {
				for alive(pid) {
					if time.Now().After(deadline) {
						syscall.Kill(pid, syscall.SIGKILL)
						t.Fatalf("pid %d still running after the test binary ended (%s)", pid, mode)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
}

// alive reports whether pid runs and is not a zombie waiting to be reaped
// (an orphan is reaped by init, which may take a moment).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(data))
	return len(f) > 2 && f[2] != "Z"
}
