package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestWalk: the loop over a run's stages runs them in order, skips those
// of negative size, reports progress (a size of 0 only for reportEmpty
// stages), stops at the first failure, and stops before a boundary stage
// once the run's context is done, naming the cause; stages that are no
// boundary run and check for themselves. A pure-logic test of the loop:
// the stages are stand-ins.
func TestWalk(t *testing.T) {
	cause := errors.New("SIGTERM")
	tests := []struct {
		name     string
		stages   []string // name:size[:flags]; flags b (boundary), e (reportEmpty), f (fails), c (cancels the run)
		wantRan  []string
		wantSeen []string // progress reports, step=n
		wantErr  string
	}{
		{
			name:     "all run",
			stages:   []string{"a:2", "b:0", "c:0:e", "d:-1:e", "e:1:b"},
			wantRan:  []string{"a", "b", "c", "e"},
			wantSeen: []string{"a=2", "c=0", "e=1"},
		},
		{
			name:     "a failure stops the run",
			stages:   []string{"a:1", "b:1:f", "c:1:b", "d:1"},
			wantRan:  []string{"a", "b"},
			wantSeen: []string{"a=1", "b=1"},
			wantErr:  "b failed",
		},
		{
			name:     "a stop ends the run before the next boundary",
			stages:   []string{"a:1:c", "b:1", "c:1:b", "d:1"},
			wantRan:  []string{"a", "b"},
			wantSeen: []string{"a=1", "b=1"},
			wantErr:  "interrupted: stopped before the next stage: SIGTERM",
		},
		{
			name:     "a skipped boundary still stops the run",
			stages:   []string{"a:1:c", "b:-1:b", "c:1"},
			wantRan:  []string{"a"},
			wantSeen: []string{"a=1"},
			wantErr:  "interrupted: stopped before the next stage: SIGTERM",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			var ran, seen []string
			m := &Manager{opts: Options{Progress: func(_ string, s Step, n int) { seen = append(seen, fmt.Sprintf("%s=%d", s, n)) }}}
			r := &run{m: m, p: &Plan{App: "app"}, rep: &Report{}}
			var stages []stage
			for _, spec := range tt.stages {
				parts := strings.Split(spec, ":")
				var size int
				if _, err := fmt.Sscan(parts[1], &size); err != nil {
					t.Fatal(err)
				}
				flags := ""
				if len(parts) > 2 {
					flags = parts[2]
				}
				name := parts[0]
				stages = append(stages, stage{
					step:        Step(name),
					boundary:    strings.Contains(flags, "b"),
					reportEmpty: strings.Contains(flags, "e"),
					size:        func(*run) int { return size },
					run: func(context.Context, *run) error {
						ran = append(ran, name)
						if strings.Contains(flags, "c") {
							cancel(cause)
						}
						if strings.Contains(flags, "f") {
							return errors.New(name + " failed")
						}
						return nil
					},
				})
			}
			err := r.walk(ctx, stages)
			if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
			if tt.wantErr != "" && strings.HasPrefix(tt.wantErr, "interrupted") && !errors.Is(err, cause) {
				t.Errorf("error %v does not wrap the cause", err)
			}
			if diff := cmp.Diff(tt.wantRan, ran); diff != "" {
				t.Errorf("stages run (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSeen, seen); diff != "" {
				t.Errorf("progress (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRunStagesOrder: the stages of a run are the documented steps, in
// the order of Execute, each reported under its Step.
func TestRunStagesOrder(t *testing.T) {
	var got []Step
	for _, s := range runStages {
		got = append(got, s.step)
	}
	want := []Step{StepConfig, StepScaleDown, StepPreApplyHooks, StepWorkloads, StepWait, StepPostApplyHooks, StepPrune}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
}
