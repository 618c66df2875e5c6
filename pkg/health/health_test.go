package health_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/pkg/health"
)

// widgetCheck is a rule in the style of Flux's cheatsheet: a phase that
// says Failed, a Ready condition, and an explicit in-progress state.
var widgetCheck = health.Check{
	APIVersion: "example.com/v1",
	Kind:       "Widget",
	InProgress: "has(self.status) && has(self.status.phase) && self.status.phase == 'Provisioning'",
	Failed:     "has(self.status) && has(self.status.phase) && self.status.phase == 'Failed'",
	Current:    "has(self.status) && has(self.status.conditions) && self.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')",
}

func widget(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	// As the API server's JSON decodes: integers are int64.
	j, err := yaml.YAMLToJSON([]byte("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: ns, generation: 2}\n" + doc))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	rules, err := health.Compile("", []health.Check{widgetCheck, {
		APIVersion: "example.com/v1", Kind: "Gadget",
		// Flux's names: status without self.
		Current: "status.ready == true",
	}, {
		APIVersion: "example.com/v1", Kind: "Gizmo",
		Current: "true",
		Failed:  "self.status.replicas", // dyn: not a bool only at run time
	}, {
		APIVersion: "example.com/v1", Kind: "Gauge",
		Current: "self.status.replicas >= 2.0", // an int64 in the object
	}, {
		APIVersion: "example.com/v1", Kind: "Optional",
		// Optional field syntax: no has() needed.
		Current: "self.?status.?phase.orValue('') == 'Ready'",
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		kind, doc  string
		want       status.Status
		wantField  health.Field
		wantErr    string // in Verdict.Err
		wantMsg    string // in Verdict.Message
		noRuleKind bool
	}{
		{name: "no status yet", doc: "", want: status.InProgressStatus, wantMsg: "no expression is true"},
		{name: "progressing", doc: "status: {phase: Provisioning}", want: status.InProgressStatus, wantField: health.FieldInProgress,
			wantMsg: "inProgress `" + widgetCheck.InProgress + "` is true"},
		{name: "inProgress before current", doc: "status: {phase: Provisioning, conditions: [{type: Ready, status: 'True'}]}",
			want: status.InProgressStatus, wantField: health.FieldInProgress},
		{name: "failed before current", doc: "status: {phase: Failed, conditions: [{type: Ready, status: 'True'}]}",
			want: status.FailedStatus, wantField: health.FieldFailed, wantMsg: "failed `" + widgetCheck.Failed + "` is true"},
		{name: "ready", doc: "status: {phase: Running, conditions: [{type: Ready, status: 'True'}]}",
			want: status.CurrentStatus, wantField: health.FieldCurrent},
		{name: "ready but for an older generation", doc: "status: {observedGeneration: 1, conditions: [{type: Ready, status: 'True'}]}",
			want: status.InProgressStatus, wantMsg: "status.observedGeneration 1 is not metadata.generation 2"},
		{name: "ready for this generation", doc: "status: {observedGeneration: 2, conditions: [{type: Ready, status: 'True'}]}",
			want: status.CurrentStatus, wantField: health.FieldCurrent},
		{name: "not ready", doc: "status: {conditions: [{type: Ready, status: 'False'}]}", want: status.InProgressStatus},
		{name: "flux variable names", kind: "Gadget", doc: "status: {ready: true}", want: status.CurrentStatus, wantField: health.FieldCurrent},
		{name: "missing field without has()", kind: "Gadget", doc: "spec: {}", want: status.InProgressStatus, wantField: health.FieldCurrent,
			wantErr: "no such attribute", wantMsg: "current `status.ready == true` did not evaluate"},
		{name: "non-bool result", kind: "Gizmo", doc: "status: {replicas: 31337}", want: status.InProgressStatus, wantField: health.FieldFailed,
			wantErr: "result is of type int, want bool"},
		{name: "int compared with double", kind: "Gauge", doc: "status: {replicas: 3}", want: status.CurrentStatus, wantField: health.FieldCurrent},
		{name: "optional fields absent", kind: "Optional", doc: "spec: {}", want: status.InProgressStatus, wantMsg: "no expression is true"},
		{name: "optional fields present", kind: "Optional", doc: "status: {phase: Ready}", want: status.CurrentStatus, wantField: health.FieldCurrent},
		{name: "kind without a rule", kind: "Other", doc: "status: {}", noRuleKind: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := widget(t, tc.doc)
			if tc.kind != "" {
				u.SetKind(tc.kind)
			}
			v, ok := rules.Evaluate(context.Background(), u)
			if ok == tc.noRuleKind {
				t.Fatalf("Evaluate ok = %v, want %v", ok, !tc.noRuleKind)
			}
			if !ok {
				return
			}
			if v.Status != tc.want || v.Field != tc.wantField {
				t.Errorf("verdict = %s by %q (%s), want %s by %q", v.Status, v.Field, v.Message, tc.want, tc.wantField)
			}
			if tc.wantErr == "" && v.Err != nil {
				t.Errorf("unexpected evaluation error: %v", v.Err)
			}
			if tc.wantErr != "" && (v.Err == nil || !strings.Contains(v.Err.Error(), tc.wantErr)) {
				t.Errorf("evaluation error = %v, want %q", v.Err, tc.wantErr)
			}
			if strings.Contains(v.Message, "31337") {
				t.Errorf("message %q shows the object's value", v.Message)
			}
			if !strings.Contains(v.Message, tc.wantMsg) {
				t.Errorf("message = %q, want %q in it", v.Message, tc.wantMsg)
			}
			if v.Field != "" && !strings.Contains(v.Message, v.Expr) {
				t.Errorf("message %q does not name the expression %q", v.Message, v.Expr)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	ok := health.Check{APIVersion: "example.com/v1", Kind: "Widget", Current: "true"}
	for _, tc := range []struct {
		name   string
		checks []health.Check
		want   []string
	}{
		{name: "syntax error", checks: []health.Check{ok, {APIVersion: "example.com/v1", Kind: "Gadget", Current: "true", Failed: "self.status.phase == "}},
			want: []string{"healthChecks[1].failed: ", "Syntax error"}},
		{name: "unknown variable", checks: []health.Check{{APIVersion: "v1", Kind: "ConfigMap", Current: "slef.data.x == 'y'"}},
			want: []string{"healthChecks[0].current: ", "undeclared reference to 'slef'"}},
		{name: "not a bool", checks: []health.Check{{APIVersion: "v1", Kind: "ConfigMap", Current: "1 + 2"}},
			want: []string{"healthChecks[0].current: ", "want bool"}},
		{name: "current missing", checks: []health.Check{{APIVersion: "v1", Kind: "ConfigMap", Failed: "true"}},
			want: []string{"healthChecks[0].current is required"}},
		{name: "kind missing", checks: []health.Check{{APIVersion: "v1", Current: "true"}},
			want: []string{"healthChecks[0].kind is required"}},
		{name: "bad apiVersion", checks: []health.Check{{APIVersion: "a/b/c", Kind: "X", Current: "true"}},
			want: []string{`healthChecks[0].apiVersion: "a/b/c" is not an apiVersion`}},
		{name: "two rules for one kind", checks: []health.Check{ok, ok},
			want: []string{"healthChecks[1]: a second rule for example.com/v1 Widget"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := health.Compile("healthChecks", tc.checks)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error = %v, want %q in it", err, w)
				}
			}
		})
	}
}

// TestCostLimit: an expression whose work explodes stops with an error
// instead of holding up the wait.
func TestCostLimit(t *testing.T) {
	t.Parallel()
	rules, err := health.Compile("", []health.Check{{APIVersion: "example.com/v1", Kind: "Widget",
		Current: "self.spec.items.all(a, self.spec.items.all(b, self.spec.items.all(c, a + b + c >= 0)))"}})
	if err != nil {
		t.Fatal(err)
	}
	items := make([]any, 300)
	for i := range items {
		items[i] = int64(i)
	}
	u := widget(t, "")
	u.Object["spec"] = map[string]any{"items": items}
	start := time.Now()
	v, _ := rules.Evaluate(context.Background(), u)
	if v.Err == nil || !strings.Contains(v.Err.Error(), "cost limit") {
		t.Errorf("verdict %s (%v), want the cost limit exceeded", v.Status, v.Err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("evaluation took %s", d)
	}
}

func TestCheckAndLen(t *testing.T) {
	t.Parallel()
	rules, err := health.Compile("", []health.Check{widgetCheck})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := rules.Check(schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}); rules.Len() != 1 || !ok || c != widgetCheck {
		t.Errorf("rule for example.com/v1 Widget = %+v, %v; want %+v", c, ok, widgetCheck)
	}
	if _, ok := rules.Check(schema.GroupVersionKind{Group: "example.com", Version: "v2", Kind: "Widget"}); ok {
		t.Errorf("a rule for example.com/v1 covers v2")
	}
	var none *health.Rules
	if _, ok := none.Evaluate(context.Background(), widget(t, "")); ok || none.Len() != 0 {
		t.Errorf("nil rules decided")
	}
}

// TestCancelledEvaluation: a cancelled run interrupts a CEL evaluation
// (cel-go checks the context every 100 comprehension steps); the same
// check with a live context succeeds.
func TestCancelledEvaluation(t *testing.T) {
	t.Parallel()
	rules, err := health.Compile("", []health.Check{{APIVersion: "example.com/v1", Kind: "Widget",
		Current: "self.spec.items.all(a, a >= 0)"}})
	if err != nil {
		t.Fatal(err)
	}
	items := make([]any, 1000)
	for i := range items {
		items[i] = int64(i)
	}
	u := widget(t, "")
	u.Object["spec"] = map[string]any{"items": items}
	if v, ok := rules.Evaluate(context.Background(), u); !ok || v.Err != nil {
		t.Fatalf("live context: verdict %s (%v), want no error", v.Status, v.Err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if v, _ := rules.Evaluate(ctx, u); v.Err == nil || !strings.Contains(v.Err.Error(), "interrupted") {
		t.Errorf("cancelled context: verdict %s (%v), want the evaluation interrupted", v.Status, v.Err)
	}
}
