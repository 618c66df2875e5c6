// Command demo starts the local control plane (the one the tests use), runs
// `deliver apply` on an example against it, prints the kubeconfig path and
// keeps the cluster running until interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/deliverhq/deliver/internal/testenv"
)

func main() {
	deliver := flag.String("deliver", "bin/deliver", "path of the deliver binary")
	example := flag.String("example", "examples/plain", "example folder (the repository root for deliver)")
	path := flag.String("f", "manifests", "manifests path inside the example")
	dir := flag.String("dir", ".cache/demo", "folder for the cluster's data, logs and kubeconfig")
	exit := flag.Bool("exit", false, "stop the cluster and exit after the apply, instead of waiting for Ctrl-C")
	flag.Parse()
	if err := run(*deliver, *example, *path, *dir, *exit); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(deliver, example, path, dir string, exit bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// A fresh cluster every time: the old data belongs to stopped processes.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fmt.Println("demo: starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)...")
	c, err := testenv.Start(ctx, testenv.Options{Dir: dir})
	if err != nil {
		return err
	}
	defer c.Stop()
	cmd := exec.CommandContext(ctx, deliver, "apply", "--kubeconfig", c.Kubeconfig, "--path", example, "-f", path, "--timeout", "2m")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fmt.Printf("demo: %s\n", cmd.String())
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("deliver apply: %w", err)
	}
	fmt.Printf("\ndemo: done. Look around with:\n  export KUBECONFIG=%s\n  %s get all -n demo\n", c.Kubeconfig, filepath.Join(filepath.Dir(mustBin("kubectl")), "kubectl"))
	if exit {
		return nil
	}
	fmt.Println("demo: the cluster runs until you press Ctrl-C.")
	<-ctx.Done()
	return nil
}

func mustBin(name string) string {
	p, err := testenv.Binary(name)
	if err != nil {
		return name
	}
	return p
}
