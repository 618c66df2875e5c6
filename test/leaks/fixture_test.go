package leaks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	sopsyaml "github.com/getsops/sops/v3/stores/yaml"
	vault "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/sopstest"
	"github.com/deliverhq/deliver/internal/testenv"
)

// The canaries, one per way a secret enters deliver, and the credentials
// deliver is given. None may show anywhere but in the data of the app's
// own Secrets.
type canaries struct {
	sopsManifest  canary // a Secret manifest encrypted in place (data)
	sopsValues    canary // a Helm secretValuesFiles entry
	vaultValues   canary // ref+vault in the Helm values of deliver.yaml
	vaultRotated  canary // the same Vault key after a rotation
	vaultManifest canary // ref+vault in a plain Secret manifest
	sopsEnv       canary // a kustomize secretGenerator env file
	vaultLabel    canary // ref+vault in a label: invalid, the apiserver quotes it
	vaultHook     canary // ref+vault in the Secret a failing hook reads
	vaultWorkload canary // ref+vault in a Deployment's env value
	gitPassword   canary // the git server's basic-auth password
	webhookSecret canary // the reconciler's webhook secret
	webhookWrong  canary // a wrong GitLab webhook token an attacker sends
	vaultToken    canary // Vault's root token
	ageKey        canary // the age identity that decrypts the SOPS files
	helmLookup    canary // a live Secret's value a chart's lookup reads and copies into a ConfigMap (and a post-build substitution into another)
	lookupRotated canary // that Secret's value after a rotation
	valuesFrom    canary // a live Secret's values document that app web's helm.valuesFrom reads
}

func newCanaries() *canaries {
	return &canaries{
		sopsManifest:  newCanary("sops-manifest"),
		sopsValues:    newCanary("sops-helm-values"),
		vaultValues:   newCanary("vault-helm-values"),
		vaultRotated:  newCanary("vault-helm-values-rotated"),
		vaultManifest: newCanary("vault-manifest"),
		sopsEnv:       newCanary("sops-kustomize-env"),
		// A label value may not hold spaces: the server's error quotes it.
		vaultLabel:    canary{Name: "vault-label", Value: marker + " vault label " + randomHex(6)},
		vaultHook:     newCanary("vault-hook"),
		vaultWorkload: newCanary("vault-workload-env"),
		gitPassword:   newCanary("git-password"),
		webhookSecret: newCanary("webhook-secret"),
		webhookWrong:  newCanary("webhook-wrong-token"),
		helmLookup:    newCanary(helmLookupCanary),
		lookupRotated: newCanary(lookupRotatedCanary),
		valuesFrom:    newCanary("helm-values-from"),
	}
}

func (c *canaries) all() []canary {
	return []canary{c.sopsManifest, c.sopsValues, c.vaultValues, c.vaultRotated, c.vaultManifest, c.sopsEnv,
		c.vaultLabel, c.vaultHook, c.vaultWorkload, c.gitPassword, c.webhookSecret, c.webhookWrong, c.vaultToken, c.ageKey, c.helmLookup, c.lookupRotated, c.valuesFrom}
}

// The helmLookup canary's way in: a Secret of the apps' namespace that
// deliver does not deliver (the test creates it, as another tool or a
// person would), which app web's chart reads with lookup and copies into
// its ConfigMap web-upstream, and app worker's post-build substitution
// (substituteFrom) into its ConfigMap worker-upstream. The cluster holds
// the value there, where the user put it; everything else may show it
// masked only, also after the Secret is rotated (lookupRotated), when the
// live ConfigMaps hold a value this run's redactor never saw.
const (
	helmLookupCanary    = "helm-lookup"
	lookupRotatedCanary = "helm-lookup-rotated"
	lookupSecret        = "upstream-token"
	valuesSecret        = "web-values"
	lookupConfigMap     = "web-upstream"
	postBuildConfigMap  = "worker-upstream"
)

// createLookupSecret creates, in ns, the Secret app web's chart looks up,
// and the one its helm.valuesFrom reads (valuesSecret).
func createLookupSecret(t *testing.T, ns string, c *canaries) {
	t.Helper()
	for _, sec := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: lookupSecret, Namespace: ns}, Data: map[string][]byte{"token": []byte(c.helmLookup.Value)}},
		{ObjectMeta: metav1.ObjectMeta{Name: valuesSecret, Namespace: ns}, Data: map[string][]byte{"values.yaml": []byte("fromSecret: " + c.valuesFrom.Value + "\n")}},
	} {
		if _, err := env.Client().CoreV1().Secrets(ns).Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// rotateLookupSecret gives the Secret createLookupSecret made the
// lookupRotated canary.
func rotateLookupSecret(t *testing.T, ns string, c *canaries) {
	t.Helper()
	patch := []byte(`{"data":{"token":"` + base64.StdEncoding.EncodeToString([]byte(c.lookupRotated.Value)) + `"}}`)
	if _, err := env.Client().CoreV1().Secrets(ns).Patch(context.Background(), lookupSecret, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// encryptManifest encrypts a Secret manifest in place the way
// `sops -e --encrypted-regex '^(data|stringData)$'` does: metadata stays
// readable, the values do not.
func encryptManifest(t *testing.T, plain, recipient string) string {
	t.Helper()
	st := &sopsyaml.Store{}
	branches, err := st.LoadPlainFile([]byte(plain))
	if err != nil {
		t.Fatal(err)
	}
	dataKey := make([]byte, 32)
	_, _ = rand.Read(dataKey)
	k, err := sopsage.MasterKeyFromRecipient(recipient)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Encrypt(dataKey); err != nil {
		t.Fatal(err)
	}
	tree := sops.Tree{Branches: branches, Metadata: sops.Metadata{
		KeyGroups: []sops.KeyGroup{{k}}, Version: "3.13.3", EncryptedRegex: "^(data|stringData)$",
	}}
	cipher := aes.NewCipher()
	mac, err := tree.Encrypt(dataKey, cipher)
	if err != nil {
		t.Fatal(err)
	}
	tree.Metadata.LastModified = time.Now().UTC()
	if tree.Metadata.MessageAuthenticationCode, err = cipher.Encrypt(mac, dataKey, tree.Metadata.LastModified.Format(time.RFC3339)); err != nil {
		t.Fatal(err)
	}
	out, err := st.EmitEncryptedFile(tree)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func encrypt(t *testing.T, name, plain, recipient string) string {
	t.Helper()
	out, err := sopstest.Encrypt(name, []byte(plain), recipient)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// config returns a deliver.yaml of apps (YAML list items). A health
// check reads every value of every Secret while waiting: its verdicts
// show in diff, apply and the reconciler's output, never a value.
func config(apps ...string) string {
	return "apiVersion: deliver.dev/v1alpha1\nkind: Config\ndefaults: {waitTimeout: 60s, hookTimeout: 30s, restartOnConfigChange: true, healthChecks: [" + secretHealthCheck + "]}\napps:\n" +
		strings.Join(apps, "\n") + "\n"
}

// secretHealthCheck judges Secrets by a CEL expression over their values.
const secretHealthCheck = `{apiVersion: v1, kind: Secret, current: "self.?data.orValue({}).all(k, size(self.data[k]) >= 0)"}`

// The apps. $NS is the apps' namespace.
const (
	plainApp  = `- {name: plain, namespace: $NS, manifests: {path: plain}}`
	webApp    = `- {name: web, namespace: $NS, helm: {chart: charts/web, secretValuesFiles: [secrets/web.enc.yaml], valuesFrom: [{kind: Secret, name: web-values}], values: {image: "$IMAGE", apiKey: "ref+vault://secret/data/leaks/web#/apiKey"}}}`
	workerApp = `- {name: worker, namespace: $NS, kustomize: {path: worker}, postBuild: {substituteFrom: [{kind: Secret, name: ` + lookupSecret + `}]}}`
	rejectApp = `- {name: reject, namespace: $NS, manifests: {path: reject}}`
	hookApp   = `- {name: hookfail, namespace: $NS, manifests: {path: hookfail}}`
	// webPostRender* are app web with helm.postRenderers (issue 19):
	// one that changes the Secret holding the canaries, and one whose
	// second patch fails on it (kustomize quotes the node it fails on).
	webPostRenderOK   = `- {name: web, namespace: $NS, helm: {chart: charts/web, secretValuesFiles: [secrets/web.enc.yaml], values: {image: "$IMAGE", apiKey: "ref+vault://secret/data/leaks/web#/apiKey"}, postRenderers: [{kustomize: {commonLabels: {team: leaks}, patches: [{target: {kind: Secret}, patch: "{kind: Secret, metadata: {name: x, annotations: {postrendered: \"yes\"}}}"}]}}]}}`
	webPostRenderFail = `- {name: web, namespace: $NS, helm: {chart: charts/web, secretValuesFiles: [secrets/web.enc.yaml], values: {image: "$IMAGE", apiKey: "ref+vault://secret/data/leaks/web#/apiKey"}, postRenderers: [{kustomize: {patches: [{target: {kind: Secret}, patch: "{kind: Secret, metadata: {name: x, labels: {a: b}}}"}, {target: {kind: Secret}, patch: '[{"op": "add", "path": "/stringData/API_KEY/x", "value": 1}]'}, {target: {kind: Secret}, patch: "{kind: Secret, metadata: {name: x}, stringData: {API_KEY: [1]}}"}]}}]}}`
	// failhook: the web migration's Pod fails.
	failhookEnv = "environments:\n  failhook:\n    apps:\n      web:\n        values: {migrationLabels: {\"" + testenv.FailLabel + "\": \"true\"}}\n"
)

// writeRepo writes the first commit's files: three apps that deliver
// (plain manifests, a Helm chart, a kustomize overlay), and reject.yaml,
// a deliver.yaml whose one app the apiserver rejects; and creates in ns
// the Secret the Helm chart looks up (createLookupSecret).
func writeRepo(t *testing.T, repo *gitserver.Repo, ns, recipient string, c *canaries) {
	t.Helper()
	createLookupSecret(t, ns, c)
	files := map[string]string{
		"deliver.yaml": config(plainApp, webApp, workerApp) + failhookEnv,
		"reject.yaml":  config(rejectApp),
		// Rendered only: app web through post-renderers.
		"postrender.yaml":      config(webPostRenderOK),
		"postrender-fail.yaml": config(webPostRenderFail),

		// plain: a SOPS-encrypted Secret, a Secret with a Vault ref, a
		// ConfigMap.
		// Keys in the order `kubectl create secret -o yaml` writes them.
		"plain/secret.enc.yaml": encryptManifest(t, "apiVersion: v1\ndata:\n  password: "+
			base64.StdEncoding.EncodeToString([]byte(c.sopsManifest.Value))+"\nkind: Secret\nmetadata:\n  name: plain-sops\n", recipient),
		"plain/vault-secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: plain-vault}\nstringData:\n  token: ref+vault://secret/data/leaks/plain#/token\n",
		"plain/config.yaml":       "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain-settings}\ndata: {mode: production}\n",

		// web: a chart with a Secret from SOPS values and Vault, a
		// Deployment and a pre-install migration Job reading the Secret,
		// and a ConfigMap copying a value of a live Secret it looks up
		// (none in deliver render, as in helm template).
		"charts/web/Chart.yaml":  "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"charts/web/values.yaml": "image: registry.example/web:1.0.0\ndbPassword: \"\"\napiKey: none\nfromSecret: none\nmigrationLabels: {}\n",
		"charts/web/templates/secret.yaml": `apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-credentials
stringData:
  DATABASE_PASSWORD: {{ required "dbPassword" .Values.dbPassword | quote }}
  API_KEY: {{ .Values.apiKey | quote }}
  VALUES_FROM: {{ .Values.fromSecret | quote }}
`,
		"charts/web/templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec:
      containers:
        - name: web
          image: {{ .Values.image }}
          envFrom: [{secretRef: {name: {{ .Release.Name }}-credentials}}, {configMapRef: {name: {{ .Release.Name }}-upstream}}]
`,
		"charts/web/templates/upstream.yaml": `{{- $upstream := lookup "v1" "Secret" .Release.Namespace "` + lookupSecret + `" }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-upstream
data:
  UPSTREAM_TOKEN: {{ if $upstream }}{{ index $upstream.data "token" | b64dec | quote }}{{ else }}""{{ end }}
`,
		"charts/web/templates/migrate.yaml": `apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-migrate
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
spec:
  backoffLimit: 0
  template:
    metadata:
      labels:
        app: {{ .Release.Name }}-migrate
        {{- with .Values.migrationLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: {{ .Values.image }}
          envFrom: [{secretRef: {name: {{ .Release.Name }}-credentials}}]
`,
		"secrets/web.enc.yaml": encrypt(t, "web.enc.yaml", "dbPassword: "+c.sopsValues.Value+"\n", recipient),

		// worker: a kustomize secretGenerator fed by a SOPS env file, and
		// a value from Vault written in the Deployment itself.
		"worker/kustomization.yaml": `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [deployment.yaml, upstream.yaml]
secretGenerator:
  - name: worker-env
    envs: [worker.enc.env]
`,
		"worker/upstream.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + postBuildConfigMap + "}\ndata:\n  UPSTREAM_TOKEN: ${token}\n",
		"worker/worker.enc.env": encrypt(t, "worker.enc.env", "QUEUE_PASSWORD="+c.sopsEnv.Value+"\n", recipient),
		"worker/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: worker}
spec:
  replicas: 1
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      containers:
        - name: worker
          image: registry.example/worker:1.0.0
          envFrom: [{secretRef: {name: worker-env}}]
          env: [{name: API_TOKEN, value: "ref+vault://secret/data/leaks/worker#/token"}]
`,

		// reject: a ConfigMap whose label comes from Vault and is not a
		// valid label value.
		"reject/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: reject\n  labels: {tier: \"ref+vault://secret/data/leaks/reject#/label\"}\ndata: {k: v}\n",

		// hookfail: a pre-apply hook that fails, reading a Secret from
		// Vault.
		"hookfail/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: hookfail-creds}\nstringData:\n  token: ref+vault://secret/data/leaks/hook#/token\n",
		"hookfail/job.yaml": `apiVersion: batch/v1
kind: Job
metadata:
  name: hookfail
  annotations: {deliver.dev/hook: pre-apply}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {"` + testenv.FailLabel + `": "true"}
    spec:
      restartPolicy: Never
      containers:
        - name: m
          image: registry.example/migrate:1
          envFrom: [{secretRef: {name: hookfail-creds}}]
`,
	}
	for name, content := range files {
		content = strings.ReplaceAll(content, "$NS", ns)
		content = strings.ReplaceAll(content, "$IMAGE", "registry.example/web:1.0.0")
		repo.WriteFile(name, content)
	}
}

// output is one stream deliver wrote, kept for the scan.
type output struct {
	where string
	data  []byte
	// except names canaries that may be here: the user put them there.
	except []string
}

// allowed drops the hits of the canaries the output may hold.
func (o output) allowed(hits []hit) []hit {
	var out []hit
	for _, h := range hits {
		if !slices.Contains(o.except, h.Canary) {
			out = append(out, h)
		}
	}
	return out
}

// runner runs the deliver binary with an environment of its own and
// keeps every output.
type runner struct {
	t       *testing.T
	environ []string
	// common are the flags of render, diff and apply: the repository.
	common []string
	// cluster are the flags of commands that talk to the cluster.
	cluster []string
	outputs []output
}

// run runs deliver and checks the exit code; want are substrings the
// output must hold, proof that the path under test was taken.
func (r *runner) run(step string, wantCode int, want []string, args ...string) string {
	r.t.Helper()
	full := append([]string(nil), args...)
	switch args[0] {
	case "render":
		full = append(full, r.common...)
	case "diff", "apply", "delete":
		full = append(append(full, r.common...), r.cluster...)
		if args[0] == "apply" {
			full = append(full, "--timeout", "30s")
		}
	case "status":
		full = append(full, r.cluster...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, deliverBin, full...)
	cmd.Env = r.environ
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	code, err := testenv.ExitCode(cmd)
	if err != nil {
		r.t.Fatalf("%s: %v", step, err)
	}
	r.outputs = append(r.outputs,
		output{where: "deliver " + step + " (stdout)", data: stdout.Bytes()},
		output{where: "deliver " + step + " (stderr)", data: stderr.Bytes()})
	all := stdout.String() + stderr.String()
	r.t.Logf("%s: exit %d in %s", step, code, time.Since(start).Round(time.Millisecond))
	if code != wantCode {
		// The output may hold a leak: the scan reports it, masked.
		r.t.Errorf("%s: exit %d, want %d; output with canaries masked:\n%s", step, code, wantCode, mask.Replace(all))
	}
	for _, w := range want {
		if !strings.Contains(all, w) {
			r.t.Errorf("%s: output lacks %q; output with canaries masked:\n%s", step, w, mask.Replace(all))
		}
	}
	return stdout.String()
}

// mask hides every canary in text the test prints; set once the canaries
// exist.
var mask = strings.NewReplacer()

// writeFile writes a file of the test's own (keys, secrets), outside the
// folders deliver may write.
func writeFile(t *testing.T, p, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// leakRun is what every canary scan of the package starts from.
type leakRun struct {
	c  *canaries
	sc *scanner
	// recipient is the age recipient the fixture's SOPS files are
	// encrypted to; ageFile holds its identity, in base/keys, outside out.
	recipient, ageFile string
	// base is the test's folder; out (in it) holds everything deliver may
	// write, with home, tmp, cache and config made.
	base, out string
	vc        *vault.Client
}

// newLeakRun makes the canaries (a fresh age identity, the Vault dev
// server's token, and extra), the scanner of them, set as the package's
// mask (the package's tests never run in parallel), the age key file, the
// out folders and a Vault client.
func newLeakRun(t *testing.T, extra ...canary) *leakRun {
	t.Helper()
	c := newCanaries()
	identity, recipient, err := sopstest.Generate()
	if err != nil {
		t.Fatal(err)
	}
	c.ageKey = canary{Name: "age-identity", Value: identity}
	c.vaultToken = canary{Name: "vault-token", Value: vlt.Token}
	sc := newScanner(append(c.all(), extra...)...)
	mask = sc.mask

	base := t.TempDir()
	ageFile := writeFile(t, filepath.Join(base, "keys", "age.key"), identity+"\n")
	out := filepath.Join(base, "out")
	for _, d := range []string{"home", "tmp", "cache", "config"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	vc, err := vault.NewClient(&vault.Config{Address: vlt.Addr})
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(vlt.Token)
	return &leakRun{c: c, sc: sc, recipient: recipient, ageFile: ageFile, base: base, out: out, vc: vc}
}

// putVault writes the fixture's Vault secrets: path to {key, value}.
func (l *leakRun) putVault(ctx context.Context, t *testing.T, kvs map[string][2]string) {
	t.Helper()
	for path, kv := range kvs {
		if _, err := l.vc.KVv2("secret").Put(ctx, path, map[string]any{kv[0]: kv[1]}); err != nil {
			t.Fatal(err)
		}
	}
}

// leakFixture is the fixture's repository, committed and served over
// smart HTTP behind the git password canary, with a runner of deliver in
// the fixture's environment.
type leakFixture struct {
	r    *runner
	repo *gitserver.Repo
	// url is the repository's; first the commit served first.
	url, first string
	// ns holds the apps' objects, inv their inventories.
	ns, inv string
}

// serveFixture writes the fixture's apps (writeRepo) in fresh namespaces,
// lets edit change them, commits with message and serves the repository.
func (l *leakRun) serveFixture(t *testing.T, message string, edit func(repo *gitserver.Repo, ns string)) *leakFixture {
	t.Helper()
	f := &leakFixture{ns: env.Namespace(t), inv: env.Namespace(t)}
	gitRoot := filepath.Join(l.base, "git")
	f.repo = gitserver.NewRepo(t, filepath.Join(gitRoot, "deploy"))
	writeRepo(t, f.repo, f.ns, l.recipient, l.c)
	if edit != nil {
		edit(f.repo, f.ns)
	}
	f.first = f.repo.CommitAll(message)
	f.url = gitserver.NewHTTP(t, gitRoot, gitserver.HTTPOptions{Username: "deliver", Password: l.c.gitPassword.Value}).RepoURL("deploy")
	f.r = &runner{
		t: t,
		environ: []string{
			"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(l.out, "home"), "TMPDIR=" + filepath.Join(l.out, "tmp"),
			"XDG_CACHE_HOME=" + filepath.Join(l.out, "cache"), "XDG_CONFIG_HOME=" + filepath.Join(l.out, "config"),
			"SOPS_AGE_KEY_FILE=" + l.ageFile, "VAULT_ADDR=" + vlt.Addr, "VAULT_TOKEN=" + vlt.Token,
			"DELIVER_GIT_USERNAME=deliver", "DELIVER_GIT_PASSWORD=" + l.c.gitPassword.Value,
		},
		common:  []string{"--repo", f.url, "--ref", "main", "--cache-dir", filepath.Join(l.out, "git-cache")},
		cluster: []string{"--kubeconfig", env.Kubeconfig, "--inventory-namespace", f.inv},
	}
	return f
}
