package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/internal/testenv"
	applypkg "github.com/deliverhq/deliver/pkg/apply"
)

// helmHookEvents are the hooks of the hooks chart: a Job per combination
// of Helm's install and upgrade events that public charts use.
var helmHookEvents = map[string]string{
	"setup":   "pre-install",
	"migrate": "pre-upgrade",
	"both":    "pre-install,pre-upgrade",
	"welcome": "post-install",
	"notify":  "post-upgrade",
	"mixed":   "pre-install,post-upgrade",
}

// hooksChart is a chart of one ConfigMap and, for each of helmHookEvents,
// a Job whose spec carries the chart's version value (so that every hook
// changes between two releases), plus a pre-install Secret of a generated
// token (a one-time setup that must not run again).
func hooksChart() map[string]string {
	files := map[string]string{
		"charts/hooks/Chart.yaml":  "apiVersion: v2\nname: hooks\nversion: 0.1.0\n",
		"charts/hooks/values.yaml": "version: \"1\"\n",
		"charts/hooks/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: main}\n" +
			"data: {version: {{ .Values.version | quote }}, release: \"{{ .Release.IsInstall }}/{{ .Release.IsUpgrade }}/{{ .Release.Revision }}\"}\n",
		"charts/hooks/templates/token.yaml": `apiVersion: v1
kind: Secret
metadata:
  name: token
  annotations: {helm.sh/hook: pre-install}
stringData:
  token: {{ randAlphaNum 24 | quote }}
`,
	}
	for name, events := range helmHookEvents {
		files["charts/hooks/templates/"+name+".yaml"] = fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: %s
  annotations: {helm.sh/hook: %q}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: busybox
        args: [%s, {{ .Values.version | quote }}]
`, name, events, name)
	}
	return files
}

// TestHelmHooksAsHelmInstallUpgrade: a chart's Helm hooks run in the
// deliveries Helm runs them in, compared with the helm CLI on the same
// control plane: pre-install and post-install hooks in the app's first
// delivery only (Helm's install), pre-upgrade and post-upgrade hooks in
// the later ones only (Helm's upgrade), hooks that name both in each (and
// deliver's own rule on top: only when changed). A pre-install Secret of
// a generated token keeps its token through the next delivery, as through
// helm upgrade; the plan says why a hook does not run. Templates render
// as on install in every delivery (.Release.IsInstall), as helm template.
func TestHelmHooksAsHelmInstallUpgrade(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	// Hooks are Jobs: a control plane with controllers and kwok's nodes,
	// which this package's has not.
	c := testenv.StartSecond(t, true)
	ctx := context.Background()
	ns := c.Namespace(t)
	files := hooksChart()
	files["deliver.yaml"] = "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: hooks, namespace: " + ns + ", helm: {chart: charts/hooks}}\n"
	repo, opts := servedRepo(t, ns, files)
	opts.Kube = func(string) (*rest.Config, error) { return c.Config, nil }
	chartDir := t.TempDir()
	testenv.WriteFiles(t, chartDir, files)

	// deliver: the hooks each delivery ran.
	ran := func(res *Result) []string {
		var out []string
		for _, r := range res.Apps[0].Report.Results {
			if r.Action == applypkg.HookRan {
				out = append(out, r.ID.Name)
			}
		}
		slices.Sort(out)
		return out
	}
	token := func(ns string) string {
		t.Helper()
		s, err := c.Client().CoreV1().Secrets(ns).Get(ctx, "token", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data["token"])
	}
	deliverInstall := ran(mustRun(t, "first apply", Apply, opts))
	firstToken := token(ns)
	repo.WriteFile("charts/hooks/values.yaml", "version: \"2\"\n")
	repo.CommitAll("version 2")
	next := opts
	res := mustRun(t, "diff of the next delivery", Diff, next)
	reasons := map[string]string{}
	for _, h := range res.Apps[0].Plan.Hooks {
		reasons[h.ID.Name] = h.Reason
	}
	deliverUpgrade := ran(mustRun(t, "second apply", Apply, next))
	// deliver keeps no Helm release: templates render as on install.
	main, err := c.Client().CoreV1().ConfigMaps(ns).Get(ctx, "main", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := main.Data["release"]; got != "true/false/1" {
		t.Errorf("second delivery: .Release IsInstall/IsUpgrade/Revision = %s, want true/false/1 (as helm template)", got)
	}
	if got := token(ns); got != firstToken {
		t.Errorf("the second delivery replaced the pre-install token (%d characters): a one-time setup ran again", len(got))
	}

	// helm: the hooks install and upgrade ran, told by the Jobs' UIDs
	// (each run replaces the Job: before-hook-creation).
	helmNS := c.Namespace(t)
	uids := func() map[string]string {
		t.Helper()
		jobs, err := c.Client().BatchV1().Jobs(helmNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, j := range jobs.Items {
			out[j.Name] = string(j.UID)
		}
		return out
	}
	chart := chartDir + "/charts/hooks"
	helmObjects(t, c.Kubeconfig, helmNS, "install", "hooks", chart, "--wait", "--timeout", "2m")
	installed := uids()
	helmTokenBefore := token(helmNS)
	helmObjects(t, c.Kubeconfig, helmNS, "upgrade", "hooks", chart, "--set", "version=2", "--wait", "--timeout", "2m")
	upgraded := uids()
	var helmInstall, helmUpgrade []string
	for name := range installed {
		helmInstall = append(helmInstall, name)
	}
	for name, uid := range upgraded {
		if installed[name] != uid {
			helmUpgrade = append(helmUpgrade, name)
		}
	}
	helmInstall = append(helmInstall, "token") // a Secret: no UID change to tell, see below
	slices.Sort(helmInstall)
	slices.Sort(helmUpgrade)
	if token(helmNS) != helmTokenBefore {
		t.Errorf("helm upgrade replaced the pre-install token: the oracle does not do what this test assumes")
	}

	if !slices.Equal(deliverInstall, helmInstall) {
		t.Errorf("first delivery ran hooks %v, helm install %v", deliverInstall, helmInstall)
	}
	if !slices.Equal(deliverUpgrade, helmUpgrade) {
		t.Errorf("second delivery ran hooks %v, helm upgrade %v", deliverUpgrade, helmUpgrade)
	}
	for _, name := range []string{"setup", "welcome", "token"} {
		if !strings.Contains(reasons[name], "first delivery") || !strings.Contains(reasons[name], "install") {
			t.Errorf("plan of the second delivery: hook %s: reason %q, want one that says it runs only in the first delivery", name, reasons[name])
		}
	}
}
