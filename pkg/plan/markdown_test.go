package plan

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/secrets"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The canaries: Secret values of the fixtures, and a value the redactor
// knows that shows in an app's error. None may show in a body.
const (
	canarySecretOld = "canary-plan-secret-old-5b1"
	canarySecretNew = "canary-plan-secret-new-5b1"
	canaryError     = "canary-plan-error-5b1"
)

func obj(kind, ns, name string, fields map[string]any) *unstructured.Unstructured {
	apiVersion := "v1"
	switch kind {
	case "Deployment", "StatefulSet":
		apiVersion = "apps/v1"
	case "Job":
		apiVersion = "batch/v1"
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind}}
	u.SetName(name)
	u.SetNamespace(ns)
	for k, v := range fields {
		u.Object[k] = v
	}
	return u
}

func id(kind, ns, name string) object.ID {
	group := ""
	switch kind {
	case "Deployment", "StatefulSet":
		group = "apps"
	case "Job":
		group = "batch"
	}
	return object.ID{Group: group, Kind: kind, Namespace: ns, Name: name}
}

func create(u *unstructured.Unstructured) *apply.Change {
	return &apply.Change{ID: object.IDOf(u), Type: apply.ChangeCreate, Desired: u}
}

func change(live, merged *unstructured.Unstructured) *apply.Change {
	return &apply.Change{ID: object.IDOf(live), Type: apply.ChangeUpdate, Live: live, Merged: merged, Desired: merged}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// webPlan is an app's plan with one of each kind of change: a create, an
// update, a Secret update, a delete, an unchanged object, a recreate (an
// immutable field), a workload a recreate strategy stops, and hooks.
func webPlan(ns string) *apply.Plan {
	sel := func(app string) map[string]any {
		return map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": app}}, "replicas": int64(2)}
	}
	recreated := &apply.Change{
		ID: id("StatefulSet", ns, "db"), Type: apply.ChangeUpdate, Recreate: true,
		Note:    "an immutable field changed: the object will be deleted and re-created",
		Live:    obj("StatefulSet", ns, "db", map[string]any{"spec": sel("db")}),
		Desired: obj("StatefulSet", ns, "db", map[string]any{"spec": sel("database")}),
	}
	return &apply.Plan{
		App: "web",
		Changes: []*apply.Change{
			create(obj("ConfigMap", ns, "settings", map[string]any{"data": map[string]any{"level": "debug"}})),
			change(obj("Secret", ns, "db", map[string]any{"data": map[string]any{"password": b64(canarySecretOld), "user": b64("app")}}),
				obj("Secret", ns, "db", map[string]any{"data": map[string]any{"password": b64(canarySecretNew), "user": b64("app")}})),
			change(obj("Deployment", ns, "web", map[string]any{"spec": map[string]any{"replicas": int64(2)}}),
				obj("Deployment", ns, "web", map[string]any{"spec": map[string]any{"replicas": int64(3)}})),
			recreated,
			{ID: id("Service", ns, "web"), Type: apply.ChangeUnchanged},
			{ID: id("ConfigMap", ns, "old"), Type: apply.ChangeDelete, Live: obj("ConfigMap", ns, "old", map[string]any{"data": map[string]any{"gone": "yes"}})},
		},
		Hooks: []*apply.HookRun{
			{ID: id("Job", ns, "migrate"), Phases: []apply.HookPhase{apply.PreApply}, Run: true, Reason: "spec changed"},
			{ID: id("Job", ns, "smoke"), Phases: []apply.HookPhase{apply.PostApply}, Run: false, Reason: "unchanged since its last successful run"},
		},
		ScaleDown: []object.ID{id("Deployment", ns, "web"), id("StatefulSet", ns, "db")},
	}
}

func unchangedPlan(app string) *apply.Plan {
	return &apply.Plan{App: app, Changes: []*apply.Change{{ID: id("ConfigMap", app, "settings"), Type: apply.ChangeUnchanged}}}
}

const rev = "0123456789abcdef0123456789abcdef01234567"

func TestMarkdown(t *testing.T) {
	t.Parallel()
	red := secrets.NewRedactor(secrets.RedactorOptions{})
	red.Add(canaryError)
	fence := "a line with ``` in it\nand ```` four"
	tests := []struct {
		name    string
		results []*pipeline.Result
		err     error
	}{
		{
			name: "one-environment",
			results: []*pipeline.Result{{Revision: rev, Environment: "staging", Apps: []*pipeline.AppResult{
				{Name: "web", Namespace: "web", Plan: webPlan("web")},
				{Name: "api", Namespace: "api", Plan: unchangedPlan("api")},
				{Name: "shop", Namespace: "shop", Plan: webPlan("shop"), Held: "deny window windows[0] (0 22 * * 5 for 56h, Europe/Berlin) until 2026-12-07T08:00:00+01:00"},
			}}},
		},
		{
			name: "two-environments",
			results: []*pipeline.Result{
				{Revision: rev, Dirty: true, Environment: "staging", Apps: []*pipeline.AppResult{
					{Name: "web", Namespace: "web-staging", Plan: &apply.Plan{App: "web", Changes: []*apply.Change{
						change(obj("ConfigMap", "web-staging", "settings", map[string]any{"data": map[string]any{"level": "debug"}}),
							obj("ConfigMap", "web-staging", "settings", map[string]any{"data": map[string]any{"level": "info"}})),
					}}},
					{Name: "api", Namespace: "api", Unchanged: true, Plan: unchangedPlan("api")},
				}},
				{Revision: rev, Dirty: true, Environment: "prod", Apps: []*pipeline.AppResult{
					{Name: "web", Namespace: "web-prod", Error: "app web: ownership conflict: ConfigMap/web-prod/settings belongs to app \"other\"; token " + canaryError,
						Plan: &apply.Plan{App: "web", Conflicts: []apply.OtherApp{{ID: id("ConfigMap", "web-prod", "settings"), App: "other"}},
							Changes: []*apply.Change{create(obj("ConfigMap", "web-prod", "settings", map[string]any{"data": map[string]any{"level": "info"}}))}}},
					{Name: "api", Namespace: "api", Skipped: "dependency web failed", Error: "app api: skipped: dependency web failed"},
				}},
			},
		},
		{
			name: "backticks-in-diff",
			results: []*pipeline.Result{{Revision: rev, Environment: "staging", Apps: []*pipeline.AppResult{
				{Name: "docs", Namespace: "docs", Plan: &apply.Plan{App: "docs", Changes: []*apply.Change{
					create(obj("ConfigMap", "docs", "readme", map[string]any{"data": map[string]any{"README.md": fence}})),
				}}},
			}}},
		},
		{
			// prod failed to render: staging's plan, then the error.
			name: "run-error",
			results: []*pipeline.Result{{Revision: rev, Environment: "staging", Apps: []*pipeline.AppResult{
				{Name: "api", Namespace: "api", Plan: unchangedPlan("api")},
			}}},
			err: errors.New("environment prod: app web: render: values.yaml: token " + canaryError + ": ```not a fence```"),
		},
		{
			// pruneApps: an app that left deliver.yaml, its removal
			// planned.
			name: "removed-app",
			results: []*pipeline.Result{{Revision: rev, Environment: "staging", Apps: []*pipeline.AppResult{
				{Name: "api", Namespace: "api", Plan: unchangedPlan("api")},
				{Name: "old", Removed: true, Plan: &apply.Plan{App: "old", Changes: []*apply.Change{
					{ID: id("ConfigMap", "old", "settings"), Type: apply.ChangeDelete, Live: obj("ConfigMap", "old", "settings", map[string]any{"data": map[string]any{"level": "info"}})},
				}}},
			}}},
		},
		{
			// deletionPolicy Orphan, createNamespace, waitFor: said in
			// the app's result.
			name: "removal-notes",
			results: []*pipeline.Result{{Revision: rev, Environment: "staging", Apps: []*pipeline.AppResult{
				{Name: "kept", Removed: true, Plan: &apply.Plan{App: "kept", Orphaned: []object.ID{id("ConfigMap", "kept", "settings")}}},
				{Name: "web", Namespace: "web", Plan: &apply.Plan{App: "web", CreateNamespace: "web", WaitFor: []object.ID{id("Secret", "web", "tls")}, Changes: []*apply.Change{
					{ID: id("ConfigMap", "web", "settings"), Type: apply.ChangeCreate, Desired: obj("ConfigMap", "web", "settings", map[string]any{"data": map[string]any{"level": "info"}})},
				}}},
			}}},
		},
		{
			// suspend: true in deliver.yaml: the app and its dependent
			// are skipped without an error, and the comment says why.
			name: "suspended",
			results: []*pipeline.Result{{Revision: rev, Environment: "staging", Apps: []*pipeline.AppResult{
				{Name: "db", Namespace: "db", Suspended: true, Skipped: "suspended in deliver.yaml"},
				{Name: "api", Namespace: "api", Skipped: "dependency db is suspended"},
				{Name: "web", Namespace: "web", Plan: unchangedPlan("web")},
			}}},
		},
		{
			name: "no-changes",
			results: []*pipeline.Result{{Revision: rev, Apps: []*pipeline.AppResult{
				{Name: "default", Namespace: "default", Plan: unchangedPlan("default")},
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Markdown(tt.results, Options{Redact: red.Redact, Err: tt.err})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, Marker+"\n") {
				t.Errorf("the body does not open with the marker:\n%s", got)
			}
			for _, c := range []string{canarySecretOld, canarySecretNew, canaryError, b64(canarySecretOld), b64(canarySecretNew)} {
				if strings.Contains(got, c) {
					t.Errorf("the body shows the secret value %q:\n%s", c, got)
				}
			}
			again, _ := Markdown(tt.results, Options{Redact: red.Redact, Err: tt.err})
			if again != got {
				t.Errorf("two bodies of the same results differ")
			}
			golden := filepath.Join("testdata", tt.name+".md")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if got != string(want) {
				t.Errorf("body differs from %s (go test -update rewrites it):\n%s", golden, got)
			}
		})
	}
}

// TestMarkdownFences: a diff holding a run of backticks is fenced with a
// longer run, so that no line of it closes the block early.
func TestMarkdownFences(t *testing.T) {
	t.Parallel()
	for _, text := range []string{"plain", "one ``` fence", "```` four\n`````` six"} {
		got := fenced("diff", text)
		lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		open, closing := lines[0], lines[len(lines)-1]
		fence := strings.TrimSuffix(open, "diff")
		if closing != fence || strings.Count(got, fence) != 2 {
			t.Errorf("fenced(%q) = %q: the text holds the fence %q", text, got, fence)
		}
	}
}

// TestMarkdownTruncation: over the limit, object diffs are left out from
// the end until the body fits; the note above the diffs says how many;
// the summary tables stay whole.
func TestMarkdownTruncation(t *testing.T) {
	t.Parallel()
	const objects = 200
	var changes []*apply.Change
	for i := range objects {
		data := map[string]any{}
		for j := range 20 {
			data[fmt.Sprintf("key-%02d", j)] = strings.Repeat("x", 40)
		}
		changes = append(changes, create(obj("ConfigMap", "big", fmt.Sprintf("cm-%03d", i), map[string]any{"data": data})))
	}
	results := []*pipeline.Result{{Revision: rev, Environment: "prod", Apps: []*pipeline.AppResult{
		{Name: "big", Namespace: "big", Plan: &apply.Plan{App: "big", Changes: changes}},
		{Name: "small", Namespace: "small", Plan: unchangedPlan("small")},
	}}}
	whole, err := Markdown(results, Options{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(whole, "<details>") != objects || strings.Contains(whole, "left out") {
		t.Fatalf("without a limit the body holds every diff and no note")
	}
	for _, limit := range []int{DefaultMaxBytes, 20000, 3000, 100} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			t.Parallel()
			got, err := Markdown(results, Options{MaxBytes: limit})
			if err != nil {
				t.Fatal(err)
			}
			kept := strings.Count(got, "<details>")
			table := "| `small` | `small` | 0 | 0 | 0 | 1 | – | 0 | 0 | no changes |"
			if limit >= 3000 && (!strings.Contains(got, "| `big` | `big` | 200 | 0 | 0 | 0 |") || !strings.Contains(got, table)) {
				t.Errorf("the summary table is not whole:\n%s", got[:min(len(got), 2000)])
			}
			note := fmt.Sprintf("%d of %d object diffs are left out", objects-kept, objects)
			idx := strings.Index(got, note)
			if idx < 0 {
				t.Fatalf("no note %q", note)
			}
			if first := strings.Index(got, "<details>"); first >= 0 && first < idx {
				t.Errorf("the note is below the first diff")
			}
			if limit >= 3000 {
				if len(got) > limit {
					t.Errorf("body of %d bytes over the limit %d", len(got), limit)
				}
				if kept == 0 {
					t.Errorf("no diff kept under %d bytes", limit)
				}
			} else if kept != 0 || strings.Contains(got, "### Diffs") || strings.Contains(got, "| `big`") || strings.Contains(got, "| `small`") ||
				!strings.Contains(got, "1 app with no changes is not listed, and 1 of the 1 apps with changes, failures or holds is left out") {
				// Not even a row fits: the rows are counted in the note, no
				// diff is kept, nor the heading of the diffs.
				t.Errorf("limit %d: want no row, no diff and the rows' note, got %d diffs:\n%s", limit, kept, got)
			}
			// The diffs kept are the first ones, in order.
			for i := range kept {
				if !strings.Contains(got, fmt.Sprintf("<code>ConfigMap/big/cm-%03d</code>", i)) {
					t.Errorf("diff %d of the first %d is missing", i, kept)
				}
			}
			// One more diff would not have fitted.
			if kept < objects && limit >= 3000 {
				next := strings.Index(whole, fmt.Sprintf("\n<details><summary><code>ConfigMap/big/cm-%03d</code>", kept))
				end := strings.Index(whole[next+1:], "</details>\n") + next + 1 + len("</details>\n")
				if len(got)+(end-next) <= limit {
					t.Errorf("diff %d (%d bytes) would have fitted in %d bytes (body %d)", kept, end-next, limit, len(got))
				}
			}
		})
	}
}

// TestMarkdownManyApps: however many apps, the body stays within the
// limit: the apps that change nothing are counted instead of listed, and
// when the other rows are still too many, the first ones that fit are
// listed and a note says how many were left out and how to see them all.
func TestMarkdownManyApps(t *testing.T) {
	t.Parallel()
	red := secrets.NewRedactor(secrets.RedactorOptions{})
	red.Add(canaryError)
	changed := func(app string) *pipeline.AppResult {
		return &pipeline.AppResult{Name: app, Namespace: app, Plan: &apply.Plan{App: app, Changes: []*apply.Change{
			create(obj("ConfigMap", app, "settings", map[string]any{"data": map[string]any{"level": "info"}})),
		}}}
	}
	quiet := func(app string) *pipeline.AppResult {
		return &pipeline.AppResult{Name: app, Namespace: app, Plan: unchangedPlan(app)}
	}
	// env builds an environment of n apps; loud says which change.
	env := func(name string, n int, loud func(i int) bool, mk func(app string) *pipeline.AppResult) *pipeline.Result {
		res := &pipeline.Result{Revision: rev, Environment: name}
		for i := range n {
			app := fmt.Sprintf("%s-app-%05d", name, i)
			if loud(i) {
				res.Apps = append(res.Apps, mk(app))
			} else {
				res.Apps = append(res.Apps, quiet(app))
			}
		}
		return res
	}
	every := func(int) bool { return true }
	failed := func(app string) *pipeline.AppResult {
		// A long error holding a secret value the redactor knows: cut
		// after redaction, so no part of the value shows.
		return &pipeline.AppResult{Name: app, Namespace: app, Error: strings.Repeat("render failed: values.yaml line 3 ", 300) + canaryError}
	}
	tests := []struct {
		name    string
		results []*pipeline.Result
		limit   int
		err     error
		// quiet and left are the counts the note must state (0: the
		// note must not mention them); listed the rows listed.
		quiet, left, listed int
	}{
		{name: "few-apps-fit-whole", results: []*pipeline.Result{env("prod", 20, func(i int) bool { return i%2 == 0 }, changed)},
			limit: DefaultMaxBytes, listed: 20},
		{name: "thousands-unchanged-collapse", results: []*pipeline.Result{env("prod", 5000, func(i int) bool { return i%100 == 0 }, changed)},
			limit: DefaultMaxBytes, quiet: 4950, listed: 50},
		{name: "thousands-changed-cut", results: []*pipeline.Result{env("prod", 5000, every, changed)},
			limit: DefaultMaxBytes, left: -1},
		{name: "two-environments-cut", results: []*pipeline.Result{
			env("staging", 3000, func(i int) bool { return i%3 == 0 }, changed),
			env("prod", 3000, func(i int) bool { return i%3 != 0 }, changed)},
			limit: DefaultMaxBytes, quiet: 3000, left: -1},
		{name: "long-errors-and-run-error", results: []*pipeline.Result{env("prod", 2000, func(i int) bool { return i%10 == 0 }, failed)},
			limit: 20000, quiet: 1800, left: -1, err: errors.New(strings.Repeat("environment qa: render: ", 1000) + canaryError)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Markdown(tt.results, Options{MaxBytes: tt.limit, Redact: red.Redact, Err: tt.err})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > tt.limit {
				t.Errorf("body of %d bytes over the limit %d", len(got), tt.limit)
			}
			if strings.Contains(got, canaryError) || strings.Contains(got, canaryError[:10]) {
				t.Errorf("the body shows (part of) a secret value")
			}
			if !strings.HasPrefix(got, Marker+"\n**deliver diff** ") {
				t.Errorf("the body does not open with the marker and the totals")
			}
			var apps, loud int
			for _, res := range tt.results {
				for _, a := range res.Apps {
					apps++
					if a.Error != "" || a.Plan.HasChanges() {
						loud++
					}
				}
			}
			listed := 0
			for _, line := range strings.Split(got, "\n") {
				if strings.HasPrefix(line, "| `") {
					listed++
				}
			}
			quietNote := fmt.Sprintf("%d apps with no changes are not listed", tt.quiet)
			if (tt.quiet > 0) != strings.Contains(got, quietNote) || (tt.quiet == 0) == strings.Contains(got, "with no changes not listed") {
				t.Errorf("want the note on %d apps with no changes (%q): %v", tt.quiet, quietNote, strings.Contains(got, quietNote))
			}
			switch {
			case tt.left == 0:
				if listed != tt.listed || strings.Contains(got, "left out (the first ones are listed)") {
					t.Errorf("listed %d rows, want %d, none left out", listed, tt.listed)
				}
			default:
				// Rows are cut: the note states how many of how many, and
				// the rows listed are the first apps with changes.
				left := loud - listed
				note := fmt.Sprintf("%d of the %d apps with changes, failures or holds are left out", left, loud)
				if left <= 0 || !strings.Contains(got, note) || !strings.Contains(got, "`deliver diff` run locally lists every app") {
					t.Errorf("listed %d of %d rows: want the note %q", listed, loud, note)
				}
				// The room left is less than a row with its error and
				// the note on diffs left out.
				if listed == 0 || tt.limit-len(got) > maxErrBytes+1024 {
					t.Errorf("listed %d rows in %d bytes of %d: the rows that fit were not kept", listed, len(got), tt.limit)
				}
				n := 0
				for _, res := range tt.results {
					for _, a := range res.Apps {
						if a.Error == "" && !a.Plan.HasChanges() {
							continue
						}
						if in := strings.Contains(got, "| `"+a.Name+"` |"); in != (n < listed) {
							t.Fatalf("app %s (loud row %d) listed %v with %d rows listed: not the first ones", a.Name, n, in, listed)
						}
						n++
					}
				}
				if strings.Index(got, "[!NOTE]") > strings.Index(got, "### deliver diff:") {
					t.Errorf("the note is not above the tables")
				}
			}
			if tt.err != nil && (!strings.Contains(got, "### deliver diff failed") || !strings.Contains(got, "more bytes cut: deliver diff prints the whole error")) {
				t.Errorf("the run error is not shown, cut")
			}
		})
	}
}
