package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Run starts a cluster, stores it in *c, runs the package's tests and stops
// the cluster. It returns the exit code for TestMain:
//
//	var env *testenv.Cluster
//	func TestMain(m *testing.M) { os.Exit(testenv.Run(m, &env, testenv.Options{})) }
//
// With -short the cluster is not started and *c stays nil; tests that need it
// call env.Require(t) or skip.
func Run(m *testing.M, c **Cluster, opts Options) int {
	flag.Parse() // testing.Short needs the flags parsed; m.Run parses them again harmlessly
	if testing.Short() {
		return m.Run()
	}
	return run(m, c, opts, nil)
}

// E2EOptions configure RunE2E.
type E2EOptions struct {
	// Cluster configures the control plane.
	Cluster Options
	// Deliver receives the path of the deliver binary, built for the
	// package from this module.
	Deliver *string
	// BuildInShort builds Deliver with -short too, for tests that run the
	// binary without a cluster.
	BuildInShort bool
	// Vault, when set, receives a Vault dev server started for the
	// package.
	Vault **Vault
}

// RunE2E is Run for the packages that test the deliver binary: it builds
// the binary while Vault (when asked for) and the control plane start,
// runs the tests once all are ready, and removes the binary at the end.
// With -short neither cluster nor Vault start; *c and *opts.Vault stay nil.
func RunE2E(m *testing.M, c **Cluster, opts E2EOptions) int {
	flag.Parse()
	short := testing.Short()
	if short && !opts.BuildInShort {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "deliver-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	built := make(chan error, 1)
	go func() {
		bin, err := BuildDeliver(dir)
		*opts.Deliver = bin
		built <- err
	}()
	var buildErr error
	waited := false
	waitBuild := func() error {
		if !waited {
			buildErr, waited = <-built, true
		}
		return buildErr
	}
	defer waitBuild() // the folder goes only once the build has ended
	if short {
		if err := waitBuild(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}
	if opts.Vault != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		v, err := StartVault(ctx)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "testenv: start vault: %v\n", err)
			return 1
		}
		defer v.Stop()
		*opts.Vault = v
	}
	return run(m, c, opts.Cluster, waitBuild)
}

// run starts the cluster, then calls before, if set, and runs the tests.
func run(m *testing.M, c **Cluster, opts Options, before func() error) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	start := time.Now()
	cl, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: start control plane: %v\n", err)
		return 1
	}
	defer cl.Stop()
	fmt.Fprintf(os.Stderr, "testenv: control plane ready in %s (%s)\n", time.Since(start).Round(time.Millisecond), cl.Dir)
	*c = cl
	if before != nil {
		if err := before(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace of its own for one test and deletes it when
// the test ends. The name starts with the test's name, for readable logs.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	if c == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	base := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := base + "-" + hex.EncodeToString(b[:])
	cs := c.Client()
	ctx := context.Background()
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("testenv: create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}
