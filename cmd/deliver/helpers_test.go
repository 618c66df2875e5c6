package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
)

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// reconcileProc is a deliver reconcile process of a test.
type reconcileProc struct {
	name   string
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan struct{}
	err    error
}

// startReconcile runs deliver reconcile with args (and environ, if not
// nil); it is killed when the test ends, and its log shown when the test
// failed.
func startReconcile(t *testing.T, name string, environ []string, args ...string) *reconcileProc {
	t.Helper()
	p := &reconcileProc{name: name, logs: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(deliverBin, append([]string{"reconcile", "--kubeconfig", env.Kubeconfig}, args...)...)
	p.cmd.Env = environ
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.logs.String())
		}
	})
	return p
}

// waitExit waits for the process to end and returns its exit code.
func (p *reconcileProc) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s", p.name, timeout)
		return -1
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return testenv.Eventually(t, timeout, 100*time.Millisecond, what, cond)
}

// webRepo is a git repository, served over smart HTTP, with one app, web,
// in namespace ns, of one ConfigMap web with data.color blue.
func webRepo(t *testing.T, ns string) (repo *gitserver.Repo, url, root string) {
	t.Helper()
	root = t.TempDir()
	repo = gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: "+ns+", manifests: {path: web}}\n")
	setColor(repo, "blue")
	repo.CommitAll("first")
	return repo, gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy"), root
}

// setColor writes web's ConfigMap with data.color c (not committed).
func setColor(repo *gitserver.Repo, c string) {
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: "+c+"}\n")
}

// color reads data.color of ConfigMap web in ns, "" when there is none.
func color(ns string) string {
	cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return cm.Data["color"]
}
