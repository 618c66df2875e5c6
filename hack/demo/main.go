// Command demo starts the local control plane (the one the tests use) and
// runs deliver's whole pipeline on examples/app against it: render, diff,
// apply with the migration hook, then a changed value, diff and apply
// again. It prints the kubeconfig path and keeps the cluster running until
// interrupted (or exits with -exit).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/deliverhq/deliver/internal/testenv"
)

func main() {
	deliver := flag.String("deliver", "bin/deliver", "path of the deliver binary")
	example := flag.String("example", "examples/app", "example repository")
	dir := flag.String("dir", ".cache/demo", "folder for the cluster's data, logs and kubeconfig")
	exit := flag.Bool("exit", false, "stop the cluster and exit after the demo, instead of waiting for Ctrl-C")
	flag.Parse()
	if err := run(*deliver, *example, *dir, *exit); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(deliver, example, dir string, exit bool) error {
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
	// A copy of the example: the demo changes a value in it.
	repo := filepath.Join(dir, "repo")
	if out, err := exec.Command("cp", "-r", example+"/.", repo).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %v %s", example, err, out)
	}
	fmt.Println("demo: starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)...")
	c, err := testenv.Start(ctx, testenv.Options{Dir: filepath.Join(dir, "cluster")})
	if err != nil {
		return err
	}
	defer c.Stop()
	step := func(okCodes []int, args ...string) error {
		args = append(args, "--path", repo)
		if args[0] != "render" {
			args = append(args, "--kubeconfig", c.Kubeconfig)
		}
		cmd := exec.CommandContext(ctx, deliver, args...)
		cmd.Env = append(os.Environ(), "SOPS_AGE_KEY_FILE="+filepath.Join(repo, "demo.agekey"))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		fmt.Printf("\ndemo: $ deliver %s\n", args[0])
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			for _, c := range okCodes {
				if ee.ExitCode() == c {
					return nil
				}
			}
		}
		return err
	}
	steps := [][]string{{"render"}, {"diff"}, {"apply"}}
	for _, s := range steps {
		if err := step([]int{2}, s...); err != nil {
			return fmt.Errorf("deliver %s: %w", s[0], err)
		}
	}
	fmt.Println("\ndemo: changing the web image to 1.1.0 in deliver.yaml")
	cfg := filepath.Join(repo, "deliver.yaml")
	data, err := os.ReadFile(cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(data), "web:1.0.0", "web:1.1.0", 1)), 0o644); err != nil {
		return err
	}
	for _, s := range [][]string{{"diff"}, {"apply"}} {
		if err := step([]int{2}, s...); err != nil {
			return fmt.Errorf("deliver %s: %w", s[0], err)
		}
	}
	fmt.Printf("\ndemo: done. Look around with:\n  export KUBECONFIG=%s\n  %s get all,jobs -n shop\n", c.Kubeconfig, mustBin("kubectl"))
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
