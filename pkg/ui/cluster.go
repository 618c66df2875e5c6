package ui

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/secrets"
)

// ErrNotFound is returned for an app the source does not know.
var ErrNotFound = errors.New("no such app")

// Source is where the view reads apps from.
type Source interface {
	// Apps returns every app, sorted by environment and name.
	Apps(ctx context.Context) ([]AppRow, error)
	// App returns the details of one app (ErrNotFound when unknown).
	// Every secret value it reads (the app's Secrets) it adds to red, so
	// that a Job log quoting one is masked before it is served.
	App(ctx context.Context, ref AppRef, red *secrets.Redactor) (*AppDetail, error)
}

// Actions are what the guarded buttons do. Nothing of it edits an app's
// objects: the run request and pin annotations of the inventory Secret,
// and a fetch request on the control ConfigMap.
type Actions interface {
	// RequestReconcile asks the reconciler for a fetch and a run of app,
	// at once, even when nothing is due.
	RequestReconcile(ctx context.Context, app AppRef) error
	// Pin holds app at its current revision; by and reason are recorded.
	Pin(ctx context.Context, app AppRef, by, reason string) error
	// Unpin removes app's pin.
	Unpin(ctx context.Context, app AppRef) error
	// Suspend pauses app in the reconciler (suspend) or resumes it.
	Suspend(ctx context.Context, app AppRef, suspend bool) error
}

// ClusterOptions configure a Cluster.
type ClusterOptions struct {
	// Config is the cluster the inventories and the status are in.
	// Required.
	Config *rest.Config
	// Environment names the environment the apps are delivered as, for
	// the pages; "" for none.
	Environment string
	// ClusterName names the cluster on the pages. Default: Config.Host.
	ClusterName string
	// InventoryNamespace holds the inventory Secrets, the reconciler's
	// status ConfigMap and the control ConfigMap. Default
	// "deliver-system".
	InventoryNamespace string
	// StatusName is the name of the status ConfigMap's first page.
	// Default reconcile.StatusConfigMap.
	StatusName string
	// StatusConfig and StatusNamespace are where the status and control
	// ConfigMaps are when not beside the inventories: a reconciler of
	// several clusters keeps them in its own cluster (see
	// reconcile.Reconciler.StatusLocation). Defaults: Config and
	// InventoryNamespace.
	StatusConfig    *rest.Config
	StatusNamespace string
	// Live, when set, returns the reconciler's status from its memory
	// instead of the status ConfigMap while it leads: the view served by
	// the reconciler itself sees drift and runs at once. A standby's view
	// reads the ConfigMap the leader writes.
	Live func() reconcile.Status
	// Health returns the app's CEL health checks; nil or a nil result:
	// kstatus decides for every object.
	Health func(app string) *health.Rules
	// LogLines is how many lines of a hook Pod's log are shown. Default 20.
	LogLines int64
	// Events is how many of the app's Events are shown. Default 20.
	Events int
}

// Cluster is a Source and Actions reading the cluster directly: the
// status ConfigMap (or the reconciler's memory), the inventory Secrets,
// the live objects, hook Jobs and their Pods' logs, and Events.
type Cluster struct {
	opts   ClusterOptions
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	mapper meta.RESTMapper
	meta   metadata.Interface
	invMgr *apply.Manager

	// statusKube reads the status and control ConfigMaps (kube unless
	// ClusterOptions.StatusConfig is another cluster).
	statusKube kubernetes.Interface
}

// NewCluster returns a Cluster; it does not touch the cluster.
func NewCluster(opts ClusterOptions) (*Cluster, error) {
	if opts.Config == nil {
		return nil, errors.New("ui: a cluster (Config) is required")
	}
	opts.InventoryNamespace = cmp.Or(opts.InventoryNamespace, "deliver-system")
	opts.StatusName = cmp.Or(opts.StatusName, reconcile.StatusConfigMap)
	opts.ClusterName = cmp.Or(opts.ClusterName, opts.Config.Host)
	opts.StatusNamespace = cmp.Or(opts.StatusNamespace, opts.InventoryNamespace)
	if opts.LogLines <= 0 {
		opts.LogLines = 20
	}
	if opts.Events <= 0 {
		opts.Events = 20
	}
	kube, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("ui: client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("ui: client: %w", err)
	}
	mgr, err := apply.New(opts.Config, apply.Options{InventoryNamespace: opts.InventoryNamespace})
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	mc, err := metadata.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("ui: client: %w", err)
	}
	statusKube := kubernetes.Interface(kube)
	if opts.StatusConfig != nil && opts.StatusConfig != opts.Config {
		if statusKube, err = kubernetes.NewForConfig(opts.StatusConfig); err != nil {
			return nil, fmt.Errorf("ui: client: %w", err)
		}
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Discovery()))
	return &Cluster{opts: opts, kube: kube, statusKube: statusKube, dyn: dyn, mapper: mapper, meta: mc, invMgr: mgr}, nil
}

// ref is the AppRef of app.
func (c *Cluster) ref(app string) AppRef {
	return AppRef{Environment: c.opts.Environment, Name: app, InventoryNamespace: c.opts.InventoryNamespace, InventoryName: apply.InventoryName(app)}
}

// Apps merges the reconciler's status with the inventory Secrets'
// metadata (suspend and pin annotations): the apps of either.
func (c *Cluster) Apps(ctx context.Context) ([]AppRow, error) {
	return c.apps(ctx, nil)
}

// apps is Apps with the live status live already read (nil: read it),
// so that a caller that needs it too reads the status once per page.
func (c *Cluster) apps(ctx context.Context, live *reconcile.Status) ([]AppRow, error) {
	st, err := c.status(ctx, live)
	if err != nil {
		return nil, err
	}
	rows := map[string]*AppRow{}
	for _, a := range st.Apps {
		rows[a.App] = c.rowOf(a)
	}
	// Metadata only: the inventories' content is not needed for the
	// apps the reconciler reports, and a thousand of them would be
	// megabytes.
	invs, err := c.meta.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(c.opts.InventoryNamespace).
		List(ctx, metav1.ListOptions{LabelSelector: apply.LabelInventory})
	switch {
	case apierrors.IsForbidden(err):
		// A user who may not list them still sees the reconciler's view.
	case err != nil:
		return nil, fmt.Errorf("inventories in %s: %w", c.opts.InventoryNamespace, err)
	default:
		var unreported []string
		for _, s := range invs.Items {
			app := s.Labels[apply.LabelInventory]
			if app == "" || s.Name != apply.InventoryName(app) {
				continue
			}
			row := rows[app]
			if row == nil {
				// Delivered by the CLI or CI, or not reported yet:
				// its inventory says how its last run went.
				row = &AppRow{AppRef: c.ref(app), Cluster: c.opts.ClusterName}
				unreported = append(unreported, app)
				rows[app] = row
			}
			row.Suspended = row.Suspended || s.Annotations[reconcile.AnnotationSuspend] == "true"
			// The inventory's annotations are where pins are kept; the
			// reconciler's status learns of an unpin only at its next
			// look, and a page right after "unpin" showed the pin still.
			row.Pin = apply.PinOf(s.Annotations)
			row.Requested = s.Annotations[reconcile.AnnotationReconcileRequestedAt]
		}
		if len(unreported) > 0 {
			read, _ := c.invMgr.ReadInventories(ctx, unreported) // an unreadable one stays unknown
			for app, inv := range read {
				row := rows[app]
				row.Result, row.Message, row.LastRun = inv.Result, inv.Message, inv.Time
				if inv.Result == apply.ResultSucceeded {
					row.Revision = inv.Revision
				} else if n := len(inv.History); n > 0 {
					row.Revision = inv.History[n-1].Revision
				}
				row.Health = healthOf(row.Result, nil)
			}
		}
	}
	out := make([]AppRow, 0, len(rows))
	for _, r := range rows {
		r.Suspended = r.Suspended || st.PausedAll
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b AppRow) int {
		return cmp.Or(strings.Compare(a.Environment, b.Environment), strings.Compare(a.Name, b.Name))
	})
	return out, nil
}

// status is the reconciler's status: live (the one given, else
// Options.Live's), or from its ConfigMap (empty when no reconciler wrote
// one).
func (c *Cluster) status(ctx context.Context, live *reconcile.Status) (reconcile.Status, error) {
	if live == nil && c.opts.Live != nil {
		st := c.opts.Live()
		live = &st
	}
	// A standby replica knows nothing of the runs: the leader's
	// ConfigMap does.
	if live != nil && live.Leader {
		return *live, nil
	}
	var st reconcile.Status
	cm, err := reconcile.ReadStatusNamed(ctx, c.statusKube, c.opts.StatusNamespace, c.opts.StatusName)
	switch {
	case apierrors.IsNotFound(err), apierrors.IsForbidden(err):
		return st, nil
	case err != nil:
		return st, fmt.Errorf("status %s/%s: %w", c.opts.StatusNamespace, c.opts.StatusName, err)
	}
	st.Revision = cm.Annotations[reconcile.AnnotationRevision]
	st.SourceError = cm.Annotations[reconcile.AnnotationSourceError]
	for app, data := range cm.Data {
		var a reconcile.AppStatus
		if err := json.Unmarshal([]byte(data), &a); err != nil {
			return st, fmt.Errorf("status %s/%s key %s: %w", c.opts.StatusNamespace, c.opts.StatusName, app, err)
		}
		a.App = cmp.Or(a.App, app)
		st.Apps = append(st.Apps, a)
	}
	ctl, err := c.statusKube.CoreV1().ConfigMaps(c.opts.StatusNamespace).Get(ctx, reconcile.ControlConfigMap, metav1.GetOptions{})
	if err == nil {
		st.PausedAll = ctl.Annotations[reconcile.AnnotationSuspend] == "true"
	}
	return st, nil
}

// rowOf is the row of an app the reconciler reports.
func (c *Cluster) rowOf(a reconcile.AppStatus) *AppRow {
	return &AppRow{
		AppRef: c.ref(a.App), Cluster: c.opts.ClusterName,
		Revision: a.Revision, Result: a.Result, Message: a.Message,
		Health: healthOf(a.Result, a.Drift), Drift: a.Drift, Pin: a.Pin,
		Held: a.Held, HeldUntil: a.HeldUntil, Suspended: a.Suspended,
		LastRun: a.LastRun, Duration: a.Duration, Served: a.LastHandledRequest,
	}
}

// healthOf sums a result and drift up.
func healthOf(result string, drift []string) Health {
	switch result {
	case apply.ResultSucceeded:
		if len(drift) > 0 {
			return HealthDrifted
		}
		return HealthHealthy
	case apply.ResultFailed:
		return HealthDegraded
	case reconcile.ResultRunning, reconcile.ResultWaiting, reconcile.ResultPending, apply.ResultApplying:
		return HealthProgressing
	}
	return HealthUnknown
}

// App reads one app: its row, inventory, live objects, hook runs and
// Events. What it may not read is named in Problems, not an error.
func (c *Cluster) App(ctx context.Context, ref AppRef, red *secrets.Redactor) (*AppDetail, error) {
	rows, err := c.Apps(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(rows, func(r AppRow) bool { return r.Environment == ref.Environment && r.Name == ref.Name })
	if i < 0 {
		return nil, fmt.Errorf("app %s: %w", ref.Name, ErrNotFound)
	}
	d := &AppDetail{AppRow: rows[i]}
	// The plan comes with the inventory, in the same read.
	inv, sp, err := c.invMgr.ReadInventoryPlan(ctx, ref.Name)
	if err != nil {
		d.Problems = append(d.Problems, err.Error())
	}
	if inv == nil {
		inv = &apply.Inventory{App: ref.Name}
	}
	d.Plan = planViewOf(sp, c.opts.InventoryNamespace+"/"+apply.InventoryName(ref.Name))
	d.Stages = BuildTree(c.objects(ctx, d, inv, red))
	d.Hooks = c.hookRuns(ctx, d, ref.Name, inv)
	d.History = historyOf(inv, d.AppRow)
	d.Events = c.events(ctx, d, ref)
	return d, nil
}

// objects reads the live objects of inv's entries, one list per kind and
// namespace (the app's label selects them), and judges each.
func (c *Cluster) objects(ctx context.Context, d *AppDetail, inv *apply.Inventory, red *secrets.Redactor) []ObjectNode {
	type key struct {
		gvk schema.GroupVersionKind
		ns  string
	}
	groups := map[key][]object.ID{}
	var keys []key
	for _, e := range inv.Entries {
		k := key{schema.GroupVersionKind{Group: e.Group, Version: e.Version, Kind: e.Kind}, e.Namespace}
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], e.ID)
	}
	var rules *health.Rules
	if c.opts.Health != nil {
		rules = c.opts.Health(inv.App)
	}
	sel := labels.Set{apply.LabelApp: inv.App}.AsSelector().String()
	var out []ObjectNode
	for _, k := range keys {
		ids := groups[k]
		live := map[string]*unstructured.Unstructured{}
		m, err := c.mapper.RESTMapping(k.gvk.GroupKind(), k.gvk.Version)
		if err == nil {
			var list *unstructured.UnstructuredList
			list, err = c.dyn.Resource(m.Resource).Namespace(k.ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err == nil {
				for i := range list.Items {
					live[list.Items[i].GetName()] = &list.Items[i]
				}
			}
		}
		for _, id := range ids {
			n := ObjectNode{ID: id, Status: status.UnknownStatus, By: "kstatus"}
			u := live[id.Name]
			switch {
			case err != nil:
				n.Reason = fmt.Sprintf("cannot read: %v", err)
			case u == nil:
				n.Status, n.Reason = status.NotFoundStatus, "not in the cluster"
			default:
				if id.Group == "" && id.Kind == "Secret" {
					red.AddSecret(u)
				}
				n.Status, n.Reason, n.By = judge(ctx, u, rules)
			}
			out = append(out, n)
		}
	}
	return out
}

// judge is the health of a live object: its CEL check's verdict when the
// app has one for its kind, else kstatus'.
func judge(ctx context.Context, u *unstructured.Unstructured, rules *health.Rules) (status.Status, string, string) {
	if rules != nil {
		if v, ok := rules.Evaluate(ctx, u); ok {
			by := "health check"
			if v.Expr != "" {
				by = string(v.Field) + ": " + v.Expr
			}
			return v.Status, v.Message, by
		}
	}
	res, err := status.Compute(u)
	if err != nil {
		return status.UnknownStatus, err.Error(), "kstatus"
	}
	return res.Status, res.Message, "kstatus"
}

// BuildTree groups objects by apply stage, in apply order, each stage
// sorted by kind, namespace and name.
func BuildTree(objs []ObjectNode) []StageNode {
	byStage := map[apply.Stage][]ObjectNode{}
	for _, o := range objs {
		s := apply.StageOf(o.ID)
		byStage[s] = append(byStage[s], o)
	}
	var out []StageNode
	for s := apply.StageDefinitions; s <= apply.StageWebhooks; s++ {
		nodes := byStage[s]
		if len(nodes) == 0 {
			continue
		}
		slices.SortFunc(nodes, func(a, b ObjectNode) int {
			return cmp.Or(strings.Compare(a.ID.Kind, b.ID.Kind), strings.Compare(a.ID.Namespace, b.ID.Namespace), strings.Compare(a.ID.Name, b.ID.Name))
		})
		out = append(out, StageNode{Name: s.String(), Objects: nodes})
	}
	return out
}

// hookRuns lists the app's hook Jobs with their Pods and the tail of each
// Pod's log. It looks in the namespaces of the app's inventory (its
// objects and its hooks' last successful runs) only: the label names the
// app, not its environment, and another environment's app of the same
// name, in other namespaces, has hook Jobs with the same label.
func (c *Cluster) hookRuns(ctx context.Context, d *AppDetail, app string, inv *apply.Inventory) []HookRun {
	sel := labels.Set{apply.LabelApp: app}.AsSelector().String()
	namespaces := map[string]bool{}
	for _, e := range inv.Entries {
		if e.Namespace != "" {
			namespaces[e.Namespace] = true
		}
	}
	for _, h := range inv.Hooks {
		if h.Namespace != "" {
			namespaces[h.Namespace] = true
		}
	}
	var jobs []batchv1.Job
	for _, ns := range slices.Sorted(maps.Keys(namespaces)) {
		list, err := c.kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			d.Problems = append(d.Problems, fmt.Sprintf("hook Jobs in %s: %v", ns, err))
			continue
		}
		jobs = append(jobs, list.Items...)
	}
	var out []HookRun
	for _, j := range jobs {
		if !isHook(&j) {
			continue
		}
		h := HookRun{ID: object.ID{Group: "batch", Kind: "Job", Namespace: j.Namespace, Name: j.Name}, Started: j.CreationTimestamp.Time}
		h.Status, h.Reason = jobVerdict(&j)
		pods, err := c.kube.CoreV1().Pods(j.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{"job-name": j.Name}.AsSelector().String()})
		if err != nil {
			d.Problems = append(d.Problems, fmt.Sprintf("Pods of %s: %v", h.ID, err))
		} else {
			slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
			for _, p := range pods.Items {
				h.Pods = append(h.Pods, c.hookPod(ctx, &p))
			}
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b HookRun) int { return b.Started.Compare(a.Started) })
	return out
}

// isHook reports whether j is a hook run: it carries a hook annotation
// (deliver's, Helm's or Argo CD's) or LabelHookID.
func isHook(j *batchv1.Job) bool {
	if _, ok := j.Labels[apply.LabelHookID]; ok {
		return true
	}
	for _, k := range []string{apply.AnnotationHook, "helm.sh/hook", "argocd.argoproj.io/hook"} {
		if _, ok := j.Annotations[k]; ok {
			return true
		}
	}
	return false
}

// jobVerdict is a Job's state as the hook stage judges it.
func jobVerdict(j *batchv1.Job) (status.Status, string) {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return status.CurrentStatus, "Job completed"
		case batchv1.JobFailed:
			return status.FailedStatus, fmt.Sprintf("Job failed: %s: %s", c.Reason, c.Message)
		}
	}
	return status.InProgressStatus, fmt.Sprintf("Job running: %d active, %d succeeded, %d failed", j.Status.Active, j.Status.Succeeded, j.Status.Failed)
}

// hookPod describes a hook Pod: phase, exit codes and the tail of its
// log.
func (c *Cluster) hookPod(ctx context.Context, p *corev1.Pod) HookPod {
	hp := HookPod{Name: p.Name, Phase: string(p.Status.Phase)}
	var details []string
	if p.Status.Reason != "" {
		details = append(details, p.Status.Reason)
	}
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			details = append(details, fmt.Sprintf("container %s exited %d (%s)", cs.Name, t.ExitCode, t.Reason))
		}
	}
	hp.Detail = strings.Join(details, ", ")
	lines := c.opts.LogLines
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	logs, err := c.kube.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &lines}).DoRaw(lctx)
	if err == nil {
		hp.LogTail = strings.TrimRight(string(logs), "\n")
	}
	return hp
}

// historyOf is the app's runs, newest first: the inventory's successful
// revisions, and the last run when it failed (a failed run adds none to
// the history).
func historyOf(inv *apply.Inventory, row AppRow) []HistoryRow {
	var out []HistoryRow
	if inv.Result == apply.ResultFailed {
		out = append(out, HistoryRow{Revision: inv.Revision, Time: inv.Time, Result: apply.ResultFailed, Message: inv.Message})
		if row.Result == apply.ResultFailed && !row.LastRun.IsZero() && row.LastRun.Sub(inv.Time).Abs() < time.Minute {
			out[0].Duration = row.Duration
		}
	}
	for i := len(inv.History) - 1; i >= 0; i-- {
		h := inv.History[i]
		out = append(out, HistoryRow{Revision: h.Revision, Time: h.Time, Result: apply.ResultSucceeded, Duration: h.Duration, By: h.By})
	}
	return out
}

// events lists the Events on the app's inventory Secret, newest first.
func (c *Cluster) events(ctx context.Context, d *AppDetail, ref AppRef) []EventRow {
	fs := fields.Set{"involvedObject.kind": "Secret", "involvedObject.name": ref.InventoryName}.AsSelector().String()
	list, err := c.kube.CoreV1().Events(ref.InventoryNamespace).List(ctx, metav1.ListOptions{FieldSelector: fs})
	if err != nil {
		d.Problems = append(d.Problems, fmt.Sprintf("events: %v", err))
		return nil
	}
	var out []EventRow
	for _, e := range list.Items {
		t := e.LastTimestamp.Time
		if t.IsZero() {
			t = e.EventTime.Time
		}
		out = append(out, EventRow{Time: t, Type: e.Type, Reason: e.Reason, Message: e.Message, Count: e.Count})
	}
	slices.SortFunc(out, func(a, b EventRow) int { return b.Time.Compare(a.Time) })
	if len(out) > c.opts.Events {
		out = out[:c.opts.Events]
	}
	return out
}

// RequestReconcile sets the run request annotation
// (reconcile.AnnotationReconcileRequestedAt) of the app's inventory
// Secret to the time, as `kubectl annotate` would: the reconciler that
// delivers the app fetches, then runs it, even when it is up to date, and
// reports the value in the app's status (LastHandledRequest). An app
// without an inventory Secret was never delivered, so it is due anyway:
// for it the control ConfigMap's requested-at annotation makes the leader
// fetch at once, and run it with the other apps that are due.
func (c *Cluster) RequestReconcile(ctx context.Context, app AppRef) error {
	ns := cmp.Or(app.InventoryNamespace, c.opts.InventoryNamespace)
	_, err := reconcile.RequestRun(ctx, c.kube, app.Name, reconcile.RequestOptions{InventoryNamespace: ns, FieldManager: "deliver-ui"})
	if errors.Is(err, reconcile.ErrNoInventory) {
		return reconcile.RequestFetch(ctx, c.statusKube, c.opts.StatusNamespace, "deliver-ui")
	}
	return err
}

// Pin holds the app at the revision its inventory records as last
// delivered successfully.
func (c *Cluster) Pin(ctx context.Context, app AppRef, by, reason string) error {
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("pin app %s: a reason is required: it is recorded with the pin for who comes next", app.Name)
	}
	if len(reason) > apply.MaxPinReason {
		return fmt.Errorf("pin app %s: the reason is %d bytes, more than %d", app.Name, len(reason), apply.MaxPinReason)
	}
	inv, err := c.invMgr.ReadInventory(ctx, app.Name)
	if err != nil {
		return fmt.Errorf("pin app %s: %w", app.Name, err)
	}
	rev := inv.Revision
	if inv.Result != apply.ResultSucceeded && len(inv.History) > 0 {
		rev = inv.History[len(inv.History)-1].Revision
	}
	if rev == "" {
		return fmt.Errorf("pin app %s: never delivered: no revision to hold it at", app.Name)
	}
	p := apply.Pin{Revision: rev, By: by, At: time.Now().UTC().Truncate(time.Second), Reason: reason}
	return c.invMgr.SetPin(ctx, app.Name, p)
}

// Unpin removes the app's pin.
func (c *Cluster) Unpin(ctx context.Context, app AppRef) error {
	_, err := c.invMgr.ClearPin(ctx, app.Name)
	return err
}

// Suspend sets (suspend) or removes the annotation
// reconcile.AnnotationSuspend on the app's inventory Secret. Resuming an
// app that the annotation does not pause is refused, saying what does:
// removing nothing would report a resume that did not happen.
func (c *Cluster) Suspend(ctx context.Context, app AppRef, suspend bool) error {
	opts := reconcile.RequestOptions{InventoryNamespace: cmp.Or(app.InventoryNamespace, c.opts.InventoryNamespace), FieldManager: "deliver-ui"}
	if suspend {
		return reconcile.Suspend(ctx, c.kube, []string{app.Name}, opts)
	}
	s, err := c.kube.CoreV1().Secrets(opts.InventoryNamespace).Get(ctx, inventoryName(app.Name), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("resume app %s: %w", app.Name, err)
	}
	if s.Annotations[reconcile.AnnotationSuspend] != "true" {
		return fmt.Errorf("resume app %s: its inventory Secret has no %s=true; suspend: true in deliver.yaml, the reconciler's --suspend or --suspend-all, or the annotation on %s pause it", app.Name, reconcile.AnnotationSuspend, reconcile.ControlConfigMap)
	}
	return reconcile.Resume(ctx, c.kube, []string{app.Name}, opts)
}

// inventoryName is the name of app's inventory Secret.
func inventoryName(app string) string { return apply.InventoryName(app) }
