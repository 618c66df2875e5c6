package apply

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/pkg/object"
)

// DiffOptions configure how a plan is printed.
type DiffOptions struct {
	// Color adds ANSI colours, for terminals.
	Color bool
	// Context is the number of unchanged lines around each change. Default 3.
	Context int
	// ShowUnchanged lists unchanged objects by name too.
	ShowUnchanged bool
}

// WriteDiff prints a unified diff per changed object, then the summary line.
// Secret data is masked: only whether each key was added, removed or changed
// shows. Every line also goes through the manager's Redact.
func (p *Plan) WriteDiff(w io.Writer, opts DiffOptions) error {
	if opts.Context == 0 {
		opts.Context = 3
	}
	for _, c := range p.Changes {
		if c.Type == ChangeUnchanged {
			if opts.ShowUnchanged {
				fmt.Fprintf(w, "%s unchanged\n", c.ID)
			}
			continue
		}
		text, err := p.maskedDiff(c, opts.Context)
		if err != nil {
			return err
		}
		header := fmt.Sprintf("%s %s", c.ID, c.Type)
		if c.Note != "" {
			header += " (" + c.Note + ")"
		}
		fmt.Fprintln(w, colorize(opts.Color, "1", header))
		for _, line := range strings.SplitAfter(text, "\n") {
			if line == "" {
				continue
			}
			switch {
			case strings.HasPrefix(line, "+") && !strings.HasPrefix(line, "+++"):
				line = colorize(opts.Color, "32", strings.TrimSuffix(line, "\n")) + "\n"
			case strings.HasPrefix(line, "-") && !strings.HasPrefix(line, "---"):
				line = colorize(opts.Color, "31", strings.TrimSuffix(line, "\n")) + "\n"
			}
			io.WriteString(w, line)
		}
	}
	p.writeIdentity(w, opts.Color)
	p.writeOwnership(w, opts.Color)
	for _, id := range p.ScaleDown {
		fmt.Fprintf(w, "%s will be scaled to 0 before the pre-apply hooks (recreate: %s)\n", id, p.scaleDownReason(id))
	}
	for _, h := range p.Hooks {
		verb := "will not run"
		if h.Run {
			verb = "will run"
		}
		fmt.Fprintf(w, "hook %s (%s, weight %d) %s: %s\n", h.ID, joinPhases(h.Phases), h.Weight, verb, h.Reason)
	}
	for _, id := range p.WaitFor {
		fmt.Fprintf(w, "%s (not the app's) will be waited for until ready (waitFor)\n", id)
	}
	if p.CreateNamespace != "" {
		fmt.Fprintf(w, "Namespace/%s will be created first (createNamespace; not an object of the app)\n", p.CreateNamespace)
	}
	for _, id := range p.Orphaned {
		fmt.Fprintf(w, "%s stays in the cluster (deletionPolicy %s)\n", id, DeletionOrphan)
	}
	for _, id := range p.removedHooks() {
		fmt.Fprintf(w, "hook %s left git: its last run will be deleted\n", id)
	}
	for _, id := range p.Rollback {
		fmt.Fprintf(w, "%s will be rolled back to the last successful run if its rollout fails\n", id)
	}
	for _, h := range p.HealthChecks {
		line := fmt.Sprintf("%s will be ready when health check current `%s` is true", h.ID, h.Check.Current)
		if h.Check.Failed != "" {
			line += fmt.Sprintf("; failed `%s` fails the run", h.Check.Failed)
		}
		fmt.Fprintln(w, line)
	}
	if steps := p.Order(); len(steps) > 1 {
		fmt.Fprintf(w, "order: %s\n", strings.Join(steps, ", then "))
	}
	_, err := fmt.Fprintln(w, p.Summary())
	return err
}

// Order describes the steps Execute will take for the plan, in order:
// how many objects each stage sends, which workloads a recreate scales
// down, which hooks run by weight. Unchanged objects and hooks that do not
// run are left out.
func (p *Plan) Order() []string {
	var config, rest, prune int
	for _, c := range p.Changes {
		switch {
		case c.Type == ChangeUnchanged:
		case c.Type == ChangeDelete:
			prune++
		case c.stage < StageWorkloads:
			config++
		default:
			rest++
		}
	}
	objects := func(n int) string {
		if n == 1 {
			return "1 object"
		}
		return fmt.Sprintf("%d objects", n)
	}
	var steps []string
	if config > 0 {
		steps = append(steps, "apply "+objects(config)+" of config")
	}
	if len(p.ScaleDown) > 0 {
		ids := make([]string, len(p.ScaleDown))
		for i, id := range p.ScaleDown {
			ids[i] = id.String()
		}
		steps = append(steps, "scale to 0 and wait for the Pods to stop: "+strings.Join(ids, ", "))
	}
	hooks := func(phase HookPhase) {
		var groups []string
		for _, g := range byWeight(p.hooksToRun(phase)) {
			ids := make([]string, len(g))
			for i, h := range g {
				ids[i] = h.ID().String()
			}
			groups = append(groups, fmt.Sprintf("%s (weight %d)", strings.Join(ids, " and "), g[0].Weight))
		}
		if len(groups) > 0 {
			steps = append(steps, "run "+string(phase)+" hooks "+strings.Join(groups, ", then "))
		}
	}
	hooks(PreApply)
	if rest > 0 {
		steps = append(steps, "apply "+objects(rest)+" (workloads and the rest)")
	}
	if p.opts.Wait || p.runs(PostApply) {
		steps = append(steps, "wait until ready")
	}
	hooks(PostApply)
	if prune > 0 {
		steps = append(steps, "prune "+objects(prune))
	}
	return steps
}

func joinPhases(ps []HookPhase) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ",")
}

func colorize(on bool, code, s string) string {
	if !on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// ObjectDiff is the diff of one changed object, as WriteDiff prints it:
// Secret values masked and the text redacted.
type ObjectDiff struct {
	ID   object.ID  `json:"id"`
	Type ChangeType `json:"type"`
	// Note explains an unusual change (see Change.Note).
	Note string `json:"note,omitempty"`
	// Recreate is set for an object deleted and re-created because an
	// immutable field changed.
	Recreate bool `json:"recreate,omitempty"`
	// Text is the unified diff, live before git, with 3 lines of context.
	Text string `json:"text"`
}

// Diffs returns the diff of each object the plan creates, changes or
// deletes, in the plan's order, masked and redacted as WriteDiff's: for
// formats other than WriteDiff's and WriteJSON's (deliver diff -o
// markdown), which must not show more than they do.
func (p *Plan) Diffs() ([]ObjectDiff, error) {
	var out []ObjectDiff
	for _, c := range p.Changes {
		if c.Type == ChangeUnchanged {
			continue
		}
		text, err := p.maskedDiff(c, 3)
		if err != nil {
			return nil, err
		}
		out = append(out, ObjectDiff{ID: c.ID, Type: c.Type, Note: c.Note, Recreate: c.Recreate, Text: text})
	}
	return out, nil
}

// maskedDiff is the change's unified diff with Secret values masked and
// every line through the manager's Redact: what every format prints.
func (p *Plan) maskedDiff(c *Change, context int) (string, error) {
	text, err := c.unifiedDiff(context, p.redact)
	if err != nil {
		return "", fmt.Errorf("%s: diff: %w", c.ID, err)
	}
	if p.redact == nil { // a plan made by hand, not by a Manager
		return text, nil
	}
	return p.redact(text), nil
}

// unifiedDiff renders the masked before and after of the change; with
// redact, also the fields of any kind whose value in git holds a secret
// (see maskSecretFields).
func (c *Change) unifiedDiff(context int, redact func(string) string) (string, error) {
	var before, after *unstructured.Unstructured
	switch c.Type {
	case ChangeCreate:
		after = c.Desired
	case ChangeDelete:
		before = c.Live
	default:
		before, after = c.Live, c.Merged
		if after == nil { // re-create: the desired object replaces the live one
			after = c.Desired
		}
	}
	before, after = maskSecrets(before, after)
	before, after = maskSecretFields(before, after, redact)
	before = maskLeftSecrets(before, after, c.leftSecrets)
	if c.unknownSecrets {
		before = maskUnknownSecrets(before, after)
	}
	a, err := toYAML(before)
	if err != nil {
		return "", err
	}
	b, err := toYAML(after)
	if err != nil {
		return "", err
	}
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(a), B: difflib.SplitLines(b),
		FromFile: "live/" + c.ID.String(), ToFile: "git/" + c.ID.String(),
		Context: context,
	})
}

func toYAML(u *unstructured.Unstructured) (string, error) {
	if u == nil {
		return "", nil
	}
	data, err := yaml.Marshal(normalize(u))
	return string(data), err
}

// Mask strings. Neither length nor a hash of the value shows.
const (
	mask        = "***"
	maskBefore  = "*** (before)"
	maskAfter   = "*** (after)"
	lastApplied = "kubectl.kubernetes.io/last-applied-configuration"
)

// maskSecrets returns copies of a Secret's two versions with every value of
// data and stringData replaced by a mask that tells only whether it changed.
// stringData is folded into data first, as the server does, so a value
// moved from one to the other does not show as a change.
func maskSecrets(before, after *unstructured.Unstructured) (*unstructured.Unstructured, *unstructured.Unstructured) {
	isSecret := func(u *unstructured.Unstructured) bool {
		return u != nil && u.GetKind() == "Secret" && u.GroupVersionKind().Group == ""
	}
	if !isSecret(before) && !isSecret(after) {
		return before, after
	}
	values := func(u *unstructured.Unstructured) map[string]string {
		out := map[string]string{}
		if u == nil {
			return out
		}
		data, _, _ := unstructured.NestedMap(u.Object, "data")
		for k, v := range data {
			out[k] = fmt.Sprint(v)
		}
		sd, _, _ := unstructured.NestedMap(u.Object, "stringData")
		for k, v := range sd {
			out[k] = "string:" + fmt.Sprint(v) // compared, never printed
		}
		return out
	}
	bv, av := values(before), values(after)
	masked := func(u *unstructured.Unstructured, mine, other map[string]string, changedMask string) *unstructured.Unstructured {
		if u == nil {
			return nil
		}
		u = u.DeepCopy()
		unstructured.RemoveNestedField(u.Object, "stringData")
		if len(mine) > 0 {
			data := map[string]any{}
			for k, v := range mine {
				if o, ok := other[k]; ok && o != v {
					data[k] = changedMask
				} else {
					data[k] = mask
				}
			}
			u.Object["data"] = data
		}
		if ann := u.GetAnnotations(); ann[lastApplied] != "" {
			ann[lastApplied] = mask
			u.SetAnnotations(ann)
		}
		return u
	}
	return masked(before, bv, av, maskBefore), masked(after, av, bv, maskAfter)
}

// maskSecretFields returns copies of the two versions of an object of any
// kind where the fields whose value in git (after) holds a secret value
// (redact changes it) and differs from the live one are masked in both,
// telling only that the field changed. The text redaction masks the new
// value anyway; the live value of such a field is the previous secret
// (rotated in Vault, in a SOPS file or in a Secret a lookup or a
// post-build substitution read), which the redactor of this run does not
// know. A secret in a field that left git is masked by the places the
// inventory recorded (maskLeftSecrets).
func maskSecretFields(before, after *unstructured.Unstructured, redact func(string) string) (*unstructured.Unstructured, *unstructured.Unstructured) {
	if before == nil || after == nil || redact == nil {
		return before, after // a create or a delete: no value replaced
	}
	before, after = before.DeepCopy(), after.DeepCopy()
	maskFields(before.Object, after.Object, redact)
	return before, after
}

// maskFields masks, in place, the string leaves of after that redact
// changes and that differ from the value at the same place in before,
// in both.
func maskFields(before, after any, redact func(string) string) {
	for _, sl := range slots(before, after) {
		s, ok := sl.after.(string)
		switch {
		case !ok:
			maskFields(sl.before, sl.after, redact)
		case sl.inBefore && redact(s) != s && !reflect.DeepEqual(sl.after, sl.before):
			sl.set(maskAfter, maskBefore)
		}
		// Otherwise the text redaction masks a secret in after, and an
		// equal value in before alike.
	}
}

// slot is a field or item of a map or list of after, with the value at
// the same place in before.
type slot struct {
	after, before any
	inBefore      bool
	// set replaces the value in after, and the one in before if any.
	set func(after, before any)
}

// slots lists the children of after (a map or a list; none otherwise).
func slots(before, after any) []slot {
	var out []slot
	switch a := after.(type) {
	case map[string]any:
		b, _ := before.(map[string]any)
		for k, av := range a {
			bv, in := b[k]
			out = append(out, slot{av, bv, in, func(x, y any) {
				a[k] = x
				if in {
					b[k] = y
				}
			}})
		}
	case []any:
		b, _ := before.([]any)
		for i, av := range a {
			in := i < len(b)
			var bv any
			if in {
				bv = b[i]
			}
			out = append(out, slot{av, bv, in, func(x, y any) {
				a[i] = x
				if in {
					b[i] = y
				}
			}})
		}
	}
	return out
}

// jsonChange is the machine form of a change.
type jsonChange struct {
	*Change
	Diff string `json:"diff,omitempty"`
}

// MarshalJSON is WriteJSON: a plan encoded inside another document
// (`deliver apply --diff -o json`) reads as `deliver diff -o json` prints
// it, with its summary and masked diffs.
func (p *Plan) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	if err := p.WriteJSON(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// WriteJSON prints the plan as JSON, with the same masked diffs.
func (p *Plan) WriteJSON(w io.Writer) error {
	out := struct {
		App       string       `json:"app"`
		Revision  string       `json:"revision,omitempty"`
		Summary   string       `json:"summary"`
		Changes   []jsonChange `json:"changes"`
		Hooks     []*HookRun   `json:"hooks,omitempty"`
		ScaleDown any          `json:"scaleDown,omitempty"`
		Rollback  any          `json:"rollback,omitempty"`
		Order     []string     `json:"order,omitempty"`
		Conflicts []OtherApp   `json:"conflicts,omitempty"`
		Kept      []OtherApp   `json:"kept,omitempty"`
		Orphaned  []object.ID  `json:"orphaned,omitempty"`
		// CreateNamespace: see Plan.CreateNamespace.
		CreateNamespace string `json:"createNamespace,omitempty"`
		// WaitFor: see Plan.WaitFor.
		WaitFor []object.ID `json:"waitFor,omitempty"`

		IdentityConflict *IdentityConflict `json:"identityConflict,omitempty"`
		AdoptedIdentity  *IdentityConflict `json:"adoptedIdentity,omitempty"`
		HealthChecks     []HealthCheckNote `json:"healthChecks,omitempty"`
	}{App: p.App, Revision: p.Revision, Summary: p.Summary(), Hooks: p.Hooks, ScaleDown: p.ScaleDown, Rollback: p.Rollback, Order: p.Order(),
		Conflicts: p.Conflicts, Kept: p.Kept, Orphaned: p.Orphaned, CreateNamespace: p.CreateNamespace, WaitFor: p.WaitFor, IdentityConflict: p.IdentityConflict, AdoptedIdentity: p.AdoptedIdentity, HealthChecks: p.HealthChecks}
	for _, c := range p.Changes {
		jc := jsonChange{Change: c}
		if c.Type != ChangeUnchanged {
			text, err := p.maskedDiff(c, 3)
			if err != nil {
				return err
			}
			jc.Diff = text
		}
		out.Changes = append(out.Changes, jc)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
