package main

import (
	"math"
	"testing"
)

func TestSlopePerMinute(t *testing.T) {
	tests := []struct {
		name string
		ss   []RSSSample
		want float64
	}{
		{"none", nil, 0},
		{"one sample", []RSSSample{{0, 50}}, 0},
		{"flat", []RSSSample{{0, 50}, {10, 50}, {20, 50}}, 0},
		{"1 MiB per 10 s", []RSSSample{{60, 50}, {70, 51}, {80, 52}}, 6},
		{"falling, noisy", []RSSSample{{0, 60}, {10, 59}, {20, 57}, {30, 57}}, -6.6},
		{"no spread in time", []RSSSample{{5, 40}, {5, 60}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := slopePerMinute(tt.ss); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("slopePerMinute = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSteadySummarize(t *testing.T) {
	r := SteadyRow{
		// The first half grows (the start-up heap settling); only the
		// second half, from 60 s, counts for the slope.
		RSS:      []RSSSample{{0, 40}, {30, 80}, {60, 70}, {90, 70}, {120, 70}},
		RevertMS: []float64{300, 100, 900, 200},
	}
	r.summarize()
	if r.StartRSSMiB != 40 || r.EndRSSMiB != 70 || r.MaxRSSMiB != 80 {
		t.Errorf("start, end, max = %v, %v, %v; want 40, 70, 80", r.StartRSSMiB, r.EndRSSMiB, r.MaxRSSMiB)
	}
	if r.SlopeMiBPerMin != 0 {
		t.Errorf("slope = %v, want 0 (second half flat)", r.SlopeMiBPerMin)
	}
	if r.RevertMedianMS != 250 || r.RevertMaxMS != 900 {
		t.Errorf("revert median, max = %v, %v; want 250, 900", r.RevertMedianMS, r.RevertMaxMS)
	}
}
