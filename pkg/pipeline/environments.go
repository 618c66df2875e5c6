package pipeline

import (
	"context"
	"fmt"
)

// DiffEnvironments is Diff for several environments of deliver.yaml in
// one run, so that one pull request comment covers staging and prod: each
// environment is diffed in turn with opts, Env set to it, and the results
// come back in envs' order. No env is opts.Env alone. A run that fails
// before it has a result (deliver.yaml, secrets, render, cluster) stops
// there: the results so far are returned with its error, which names the
// environment; the apps' own errors are in each result (Result.Err).
func DiffEnvironments(ctx context.Context, opts Options, envs []string) ([]*Result, error) {
	if len(envs) == 0 {
		envs = []string{opts.Env}
	}
	seen := map[string]bool{}
	var out []*Result
	for _, env := range envs {
		if seen[env] {
			return out, fmt.Errorf("environment %q is named twice", env)
		}
		seen[env] = true
		o := opts
		o.Env = env
		res, err := Diff(ctx, o)
		if err != nil {
			if len(envs) == 1 {
				return out, err
			}
			return out, fmt.Errorf("environment %s: %w", env, err)
		}
		out = append(out, res)
	}
	return out, nil
}
