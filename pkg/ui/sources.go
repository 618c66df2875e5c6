package ui

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/deliverhq/deliver/pkg/secrets"
)

// PartialError is returned by a Source's Apps with the rows it could
// read when some of its apps could not be: one environment's cluster
// that does not answer. The pages show the rows and name each problem;
// they are not left blank for one environment's sake.
type PartialError struct {
	// Problems says what could not be read, one line each.
	Problems []string
}

// Error joins the problems.
func (e *PartialError) Error() string { return strings.Join(e.Problems, "; ") }

// partialOf splits err into the problems of a PartialError, or returns
// err when it is another error.
func partialOf(err error) ([]string, error) {
	if err == nil {
		return nil, nil
	}
	var p *PartialError
	if errors.As(err, &p) {
		return p.Problems, nil
	}
	return nil, err
}

// EnvSource is one environment of a Sources.
type EnvSource struct {
	// Environment is the environment whose apps Source reads: the
	// Environment of each of its AppRefs. Required, unique in a Sources.
	Environment string
	// Source reads the environment's apps. Required.
	Source Source
	// Actions act on them; nil: Sources' actions refuse the
	// environment's apps.
	Actions Actions
}

// Sources is a Source and Actions over several environments, each read
// by its own Source (its own cluster, as a reconciler of several clusters
// delivers them): the apps of all, sorted by environment and name; an
// app's page and actions are routed to the Source of its environment.
// An environment whose apps cannot be read is named in a PartialError
// with the rows of the others.
type Sources struct {
	envs []EnvSource
}

// NewSources returns a Sources of envs.
func NewSources(envs ...EnvSource) (*Sources, error) {
	seen := map[string]bool{}
	for _, e := range envs {
		if e.Source == nil {
			return nil, fmt.Errorf("ui: sources: environment %q has no source", e.Environment)
		}
		if seen[e.Environment] {
			return nil, fmt.Errorf("ui: sources: environment %q given twice", e.Environment)
		}
		seen[e.Environment] = true
	}
	return &Sources{envs: slices.Clone(envs)}, nil
}

// Apps reads every environment at once, so a slow cluster delays the
// page by its own time only.
func (s *Sources) Apps(ctx context.Context) ([]AppRow, error) {
	rows := make([][]AppRow, len(s.envs))
	problems := make([][]string, len(s.envs))
	var wg sync.WaitGroup
	for i, e := range s.envs {
		wg.Go(func() {
			r, err := e.Source.Apps(ctx)
			p, err := partialOf(err)
			if err != nil {
				p = append(p, fmt.Sprintf("environment %s: %v", e.Environment, err))
			}
			rows[i], problems[i] = r, p
		})
	}
	wg.Wait()
	var out []AppRow
	var all []string
	for i := range s.envs {
		out = append(out, rows[i]...)
		all = append(all, problems[i]...)
	}
	slices.SortFunc(out, func(a, b AppRow) int {
		return cmp.Or(strings.Compare(a.Environment, b.Environment), strings.Compare(a.Name, b.Name))
	})
	if len(all) > 0 {
		return out, &PartialError{Problems: all}
	}
	return out, nil
}

// env returns the EnvSource of ref's environment.
func (s *Sources) env(ref AppRef) (EnvSource, error) {
	i := slices.IndexFunc(s.envs, func(e EnvSource) bool { return e.Environment == ref.Environment })
	if i < 0 {
		return EnvSource{}, fmt.Errorf("app %s of environment %q: %w", ref.Name, ref.Environment, ErrNotFound)
	}
	return s.envs[i], nil
}

// App reads ref from its environment's Source.
func (s *Sources) App(ctx context.Context, ref AppRef, red *secrets.Redactor) (*AppDetail, error) {
	e, err := s.env(ref)
	if err != nil {
		return nil, err
	}
	return e.Source.App(ctx, ref, red)
}

// actions returns the Actions of ref's environment.
func (s *Sources) actions(ref AppRef) (Actions, error) {
	e, err := s.env(ref)
	if err != nil {
		return nil, err
	}
	if e.Actions == nil {
		return nil, fmt.Errorf("app %s of environment %s: no actions in this environment", ref.Name, ref.Environment)
	}
	return e.Actions, nil
}

// RequestReconcile asks ref's environment's reconciler to run.
func (s *Sources) RequestReconcile(ctx context.Context, ref AppRef) error {
	a, err := s.actions(ref)
	if err != nil {
		return err
	}
	return a.RequestReconcile(ctx, ref)
}

// Pin pins ref in its environment's cluster.
func (s *Sources) Pin(ctx context.Context, ref AppRef, by, reason string) error {
	a, err := s.actions(ref)
	if err != nil {
		return err
	}
	return a.Pin(ctx, ref, by, reason)
}

// Suspend suspends or resumes ref in its environment's cluster.
func (s *Sources) Suspend(ctx context.Context, ref AppRef, suspend bool) error {
	a, err := s.actions(ref)
	if err != nil {
		return err
	}
	return a.Suspend(ctx, ref, suspend)
}

// Unpin unpins ref in its environment's cluster.
func (s *Sources) Unpin(ctx context.Context, ref AppRef) error {
	a, err := s.actions(ref)
	if err != nil {
		return err
	}
	return a.Unpin(ctx, ref)
}
