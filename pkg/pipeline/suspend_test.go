package pipeline

import (
	"context"
	"strings"
	"testing"
)

// TestSuspend: suspend: true in deliver.yaml, as Flux's spec.suspend. A
// commit that suspends app db and changes every app applies web only: db
// is neither rendered (its broken file fails nothing) nor applied nor
// removed by pruneApps, api, which depends on it, waits; neither is an
// error, and diff says why. Render still renders db. The commit that resumes db delivers both.
func TestSuspend(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	config := func(dbExtra string) string {
		return "apiVersion: deliver.dev/v1alpha1\nkind: Config\npruneApps: true\ndefaults: {wait: false}\napps:\n" +
			"- {name: db, namespace: " + ns + ", manifests: {path: db}" + dbExtra + "}\n" +
			"- {name: api, namespace: " + ns + ", manifests: {path: api}, dependsOn: [db]}\n" +
			"- {name: web, namespace: " + ns + ", manifests: {path: web}}\n"
	}
	cm := func(name, v string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\ndata: {v: " + v + "}\n"
	}
	files := map[string]string{"deliver.yaml": config("")}
	for _, app := range []string{"db", "api", "web"} {
		files[app+"/cm.yaml"] = cm(app, "one")
	}
	repo, opts := servedRepo(t, ns, files)
	mustRun(t, "first apply", Apply, opts)

	repo.WriteFile("deliver.yaml", config(", suspend: true"))
	for _, app := range []string{"db", "api", "web"} {
		repo.WriteFile(app+"/cm.yaml", cm(app, "two"))
	}
	repo.WriteFile("db/broken.yaml", "kind: [not, an, object\n")
	repo.CommitAll("suspend db, change everything")

	wantSkipped := map[string]string{"db": "suspended in deliver.yaml", "api": "dependency db is suspended"}
	for _, tt := range []struct {
		name string
		do   func() *Result
	}{
		{"diff", func() *Result { return mustRun(t, "diff", Diff, opts) }},
		{"apply", func() *Result { return mustRun(t, "apply", Apply, opts) }},
	} {
		res := tt.do()
		for _, a := range res.Apps {
			delivered := a.Plan != nil || a.Report != nil
			if a.Skipped != wantSkipped[a.Name] || a.Suspended != (a.Name == "db") || a.Removed || delivered != (a.Name == "web") {
				t.Errorf("%s: app %s: skipped %q suspended %v removed %v delivered %v, want skipped %q", tt.name, a.Name,
					a.Skipped, a.Suspended, a.Removed, delivered, wantSkipped[a.Name])
			}
		}
		if tt.name == "diff" {
			if text := writtenDiff(t, res); !strings.Contains(text, "ConfigMap/"+ns+"/web") || strings.Contains(text, "ConfigMap/"+ns+"/db") {
				t.Errorf("diff: want web's change only:\n%s", text)
			}
		}
	}
	// Render writes nothing: it renders the suspended app, and finds its
	// broken file.
	if res, err := Render(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "db/broken.yaml") {
		t.Errorf("render with db suspended: %v (%v), want db/broken.yaml's error", err, res)
	}
	for app, want := range map[string]string{"db": "one", "api": "one", "web": "two"} {
		if got := cmData(t, ns, app)["v"]; got != want {
			t.Errorf("after the apply with db suspended: %s v = %q, want %q", app, got, want)
		}
	}

	repo.WriteFile("deliver.yaml", config(""))
	repo.Git("rm", "-q", "db/broken.yaml")
	repo.CommitAll("resume db")
	res := mustRun(t, "apply after resume", Apply, opts)
	for _, a := range res.Apps {
		if a.Skipped != "" || a.Suspended {
			t.Errorf("after resume: app %s skipped %q", a.Name, a.Skipped)
		}
	}
	for _, app := range []string{"db", "api", "web"} {
		if got := cmData(t, ns, app)["v"]; got != "two" {
			t.Errorf("after resume: %s v = %q, want two", app, got)
		}
	}
}
