package ui

import (
	"fmt"
	"strings"
	"time"

	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
)

// Health is an app's health at a glance, a closed enum.
type Health int

const (
	// HealthUnknown: nothing says yet (never delivered by a reconciler).
	HealthUnknown Health = iota
	// HealthHealthy: the last run succeeded (it waits for its objects to
	// be ready when the app waits) and nothing drifted since.
	HealthHealthy
	// HealthProgressing: a run is under way, waits for a dependency, or
	// has not happened yet.
	HealthProgressing
	// HealthDrifted: the last run succeeded, but objects changed in the
	// cluster since.
	HealthDrifted
	// HealthDegraded: the last run failed.
	HealthDegraded
)

// String returns the health as pages show it and filters name it.
func (h Health) String() string {
	switch h {
	case HealthHealthy:
		return "healthy"
	case HealthProgressing:
		return "progressing"
	case HealthDrifted:
		return "drifted"
	case HealthDegraded:
		return "degraded"
	}
	return "unknown"
}

// AppRow is one app on the page of all apps.
type AppRow struct {
	AppRef
	// Cluster names the cluster the app is delivered to.
	Cluster string
	// Revision is the last commit delivered successfully.
	Revision string
	// Result is the reconciler's (running, waiting, pending, succeeded,
	// failed), or the inventory's when no reconciler reported the app.
	Result string
	// Message explains a failed or waiting result.
	Message string
	// Health sums Result and Drift up.
	Health Health
	// Drift lists the objects changed in the cluster since deliver
	// applied them.
	Drift []string
	// Pin is the app's pin; nil when it has none.
	Pin *apply.Pin
	// Held names the change window holding a due run; HeldUntil is
	// when it opens.
	Held      string
	HeldUntil time.Time
	// Suspended: no run until resumed.
	Suspended bool
	// Requested is the app's last run request ("reconcile now": the
	// inventory Secret's reconcile.AnnotationReconcileRequestedAt), ""
	// for none; Served is the last one the reconciler ran
	// (AppStatus.LastHandledRequest). They differ while a request waits.
	Requested, Served string
	// LastRun is when the last run ended; Duration how long it took.
	LastRun  time.Time
	Duration time.Duration
}

// AppDetail is what the page of one app shows.
type AppDetail struct {
	AppRow
	// Stages are the app's objects by apply stage, in apply order.
	Stages []StageNode
	// Plan is the last plan that changed the app, as its inventory
	// Secret keeps it (apply.StoredPlan); nil when none is stored.
	Plan *PlanView
	// Hooks are the hook runs kept in the cluster (deliver keeps each
	// hook's last run until the next one).
	Hooks []HookRun
	// History lists the runs, newest first.
	History []HistoryRow
	// Events are the reconciler's recent Events on the app, newest
	// first.
	Events []EventRow
	// Problems says what could not be read (a kind the user may not
	// list); the rest of the page is still shown.
	Problems []string
}

// StageNode is one stage of the object tree.
type StageNode struct {
	// Name is the stage's name (apply.Stage.String) or "hooks".
	Name    string
	Objects []ObjectNode
}

// ObjectNode is one object of the tree, with its health.
type ObjectNode struct {
	ID object.ID
	// Status is kstatus' verdict on the live object, or the health
	// check's (CEL) when the app has one for its kind.
	Status status.Status
	// Reason says why, as kstatus or the health check put it.
	Reason string
	// By says what decided: "kstatus" or the CEL expression.
	By string
}

// PlanView is the masked diff of a run's plan.
type PlanView struct {
	Revision string
	// At is when the run ended (or when this process learnt of it).
	At time.Time
	// Result is the run's result; "" when unknown.
	Result  string
	Summary string
	Diffs   []apply.ObjectDiff
	// Note says what of the plan is not shown ("N more objects
	// changed"); "" when nothing is left out.
	Note string
	// From says where the plan comes from.
	From PlanSource
	// Where names the inventory Secret (namespace/name) of a plan
	// FromInventory.
	Where string
}

// PlanSource is where a PlanView comes from, a closed enum.
type PlanSource int

const (
	// PlanFromRun: this process made the run (the reconciler serving
	// the view) and kept its plan in memory.
	PlanFromRun PlanSource = iota + 1
	// PlanFromInventory: the app's inventory Secret, where the last run
	// that changed the app stored it (apply.StoredPlan): what `deliver
	// ui` and a restarted reconciler show.
	PlanFromInventory
)

// String says it as the page does.
func (s PlanSource) String() string {
	switch s {
	case PlanFromRun:
		return "this reconciler's run"
	case PlanFromInventory:
		return "the inventory Secret"
	}
	return fmt.Sprintf("PlanSource(%d)", int(s))
}

// planViewOf is the view of a plan stored in the inventory Secret where
// (namespace/name); nil for nil.
func planViewOf(sp *apply.StoredPlan, where string) *PlanView {
	if sp == nil {
		return nil
	}
	v := &PlanView{Revision: sp.Revision, At: sp.Time, Result: sp.Result, Summary: sp.Summary, Diffs: sp.Diffs,
		Note: sp.Note(), From: PlanFromInventory, Where: where}
	if sp.Error != "" {
		v.Note = strings.TrimSpace(sp.Error + ". " + v.Note)
	}
	return v
}

// newerPlan is the plan a page shows of a and b: the newer; a (this
// process's) when they are as old.
func newerPlan(a, b *PlanView) *PlanView {
	if a == nil || (b != nil && b.At.After(a.At)) {
		return b
	}
	return a
}

// HookRun is a hook run kept in the cluster: a Job (or Pod) and its Pods.
type HookRun struct {
	ID object.ID
	// Status and Reason are the Job's verdict (complete, failed, running).
	Status status.Status
	Reason string
	// Started is when the Job was created.
	Started time.Time
	Pods    []HookPod
}

// HookPod is a Pod of a hook run with the tail of its log.
type HookPod struct {
	Name   string
	Phase  string
	Detail string
	// LogTail holds the last lines of the Pod's log.
	LogTail string
}

// HistoryRow is one run in the history.
type HistoryRow struct {
	Revision string
	Time     time.Time
	Result   string
	Duration time.Duration
	// By is who ran it: the host (reconciler Pod or laptop) recorded in
	// the inventory, when known.
	By      string
	Message string
}

// EventRow is a Kubernetes Event the reconciler recorded on the app.
type EventRow struct {
	Time    time.Time
	Type    string
	Reason  string
	Message string
	Count   int32
}
