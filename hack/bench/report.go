package main

import (
	"debug/elf"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// Report is what the run writes as JSON; the table prints the same rows.
type Report struct {
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	Quick    bool      `json:"quick"`
	Runs     int       `json:"runs"`
	Sizes    []int     `json:"sizes"`
	Machine  Machine   `json:"machine"`
	// Deliver describes the binary measured: its size and linking change
	// its start-up time and resident memory.
	Deliver string `json:"deliver"`
	// Baseline describes the -baseline binary, if any.
	Baseline string `json:"baseline,omitempty"`
	// DeliverArgs are the flags added to every deliver apply and diff.
	DeliverArgs []string `json:"deliverArgs,omitempty"`
	LoadAfter   string   `json:"loadAfter"`
	Rows        []Row    `json:"rows"`
	// Reconcile is "measured" (a row is in Rows) or why it is not.
	Reconcile string `json:"reconcile"`
	// ControllerManager is kube-controller-manager's client limits
	// (-controller-qps, -controller-burst).
	ControllerManager string `json:"controllerManager,omitempty"`
	// Steady are the steady rows: the running reconciler over time.
	Steady []SteadyRow `json:"steady,omitempty"`
	// Flux names the controllers of the apps rows' Flux side, if any.
	Flux string `json:"flux,omitempty"`
	// AppsNotes say why a side of the apps rows is missing.
	AppsNotes []string `json:"appsNotes,omitempty"`
	// Profiles are of deliver's slowest row and of its worst ratio.
	Profiles []*Profile `json:"profiles,omitempty"`
}

// Machine says where the numbers come from.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpuModel"`
	MemoryGiB int    `json:"memoryGiB"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	// LoadBefore is /proc/loadavg when the run started: other work on a
	// shared machine moves absolute times, not ratios within one run.
	LoadBefore string `json:"loadBefore"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs (%s), %d GiB, Linux %s, %s, load %s", m.CPUs, m.CPUModel, m.MemoryGiB, m.Kernel, m.Go, m.LoadBefore)
}

// Row compares deliver with one other tool on one workload size.
type Row struct {
	Objects int `json:"objects"`
	// Apps is the number of apps of an apps row (Objects is 4 per app);
	// 0 for the other rows.
	Apps    int     `json:"apps,omitempty"`
	Name    string  `json:"row"`
	Deliver Measure `json:"deliver"`
	Other   Measure `json:"other"`
	// Ratio is deliver's median over the other's: below 1 deliver is faster.
	Ratio float64 `json:"ratio"`
	// Target is the goal the row is measured against, if it has one.
	Target string `json:"target,omitempty"`
}

// Measure is one side of a row.
type Measure struct {
	Tool     string    `json:"tool"`
	MedianMS float64   `json:"medianMs"`
	RunsMS   []float64 `json:"runsMs"`
	// PeakRSSMiB is the highest VmHWM of the tool's processes over the
	// runs; 0 for the in-process raw client.
	PeakRSSMiB float64 `json:"peakRssMiB,omitempty"`
	// CPUMS is the median user+system time of the tool itself.
	CPUMS float64 `json:"cpuMs,omitempty"`
	// ClusterCPUMS is the median user+system time of the control plane's
	// processes during the tool's runs (cluster rows only). With CPUMS it
	// shows where a run's time went: on a 2-core machine, a run whose
	// CPUMS+ClusterCPUMS is near twice its wall time was CPU-bound.
	ClusterCPUMS float64 `json:"clusterCpuMs,omitempty"`
	// ProcessRSSMiB is the peak RSS of each process of a side made of
	// several (Flux's controllers); PeakRSSMiB is then the main one's.
	ProcessRSSMiB map[string]float64 `json:"processRssMiB,omitempty"`
}

func newReport(opts Options) *Report {
	return &Report{
		Started: time.Now().UTC().Round(time.Second), Quick: opts.Quick, Runs: opts.Runs, Sizes: opts.Sizes,
		Machine: Machine{
			CPUs: runtime.NumCPU(), CPUModel: cpuModel(), MemoryGiB: memGiB(), Kernel: readTrim("/proc/sys/kernel/osrelease"),
			Go: runtime.Version(), LoadBefore: loadAvg(),
		},
	}
}

func measure(tool string, ss []sample) Measure {
	med, peak := summarize(ss)
	m := Measure{
		Tool: tool, MedianMS: ms(med), PeakRSSMiB: float64(peak) / 1024,
		CPUMS:        ms(medianOf(ss, func(s sample) time.Duration { return s.CPU })),
		ClusterCPUMS: ms(medianOf(ss, func(s sample) time.Duration { return s.ClusterCPU })),
	}
	for _, s := range ss {
		m.RunsMS = append(m.RunsMS, ms(s.Wall))
	}
	return m
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *Report) add(n int, name string, deliver, other Measure) {
	row := Row{Objects: n, Name: name, Deliver: deliver, Other: other}
	if other.MedianMS > 0 {
		row.Ratio = deliver.MedianMS / other.MedianMS
	}
	r.Rows = append(r.Rows, row)
}

// addApps adds an apps row; other may be empty (no other side).
func (r *Report) addApps(apps, objects int, name string, deliver, other Measure, target string) {
	r.add(objects, name, deliver, other)
	r.Rows[len(r.Rows)-1].Apps = apps
	r.Rows[len(r.Rows)-1].Target = target
}

func readTrim(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(data))
}

func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	for line := range strings.SplitSeq(readTrim("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memGiB() int {
	for line := range strings.SplitSeq(readTrim("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int
			if _, err := fmt.Sscan(strings.TrimSpace(v), &kb); err == nil {
				return (kb + 512*1024) / (1024 * 1024)
			}
		}
	}
	return 0
}

// binaryInfo says how big a binary is and whether it is dynamically linked
// (built with cgo): a dynamic Go binary that imports package plugin, as
// kustomize's API does, exports every symbol to the dynamic linker.
func binaryInfo(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return path
	}
	linking := "static"
	if f, err := elf.Open(path); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				linking = "dynamically linked"
			}
		}
		f.Close()
	}
	return fmt.Sprintf("%s (%d MiB, %s)", path, st.Size()>>20, linking)
}
