package badinput

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// config returns a deliver.yaml with the given apps (YAML list items).
func config(apps ...string) string {
	return "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n" + strings.Join(apps, "\n") + "\n"
}

// The apps most cases use: plain manifests under m/, the chart with its
// password from SOPS or from Vault, an overlay under k/.
const (
	manifestsApp = "- {name: app, namespace: $NS, manifests: {path: m}}"
	sopsApp      = "- {name: app, namespace: $NS, helm: {chart: charts/app, secretValuesFiles: [secrets/app.enc.yaml]}}"
	vaultApp     = `- {name: app, namespace: $NS, helm: {chart: charts/app, values: {password: "ref+vault://secret/data/badinput/app#/password"}}}`
	kustomizeApp = "- {name: app, namespace: $NS, kustomize: {path: k}}"
	// postBuildApp is the overlay under k/ with a post-build variable.
	postBuildApp = "- {name: app, namespace: $NS, kustomize: {path: k}, postBuild: {substitute: {region: eu}}}"
)

// cm is a ConfigMap manifest.
func cm(name string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\ndata: {k: v}\n"
}

var (
	sopsEnv  = []string{"SOPS_AGE_KEY_FILE=$AGEKEY"}
	vaultEnv = []string{"VAULT_ADDR=$VAULT", "VAULT_TOKEN=$VAULT_TOKEN"}
	gitEnv   = []string{"DELIVER_GIT_USERNAME=deliver", "DELIVER_GIT_PASSWORD=" + gitPassword}
	sshEnv   = []string{"DELIVER_GIT_SSH_KEY_FILE=$SSHKEY", "DELIVER_GIT_KNOWN_HOSTS=$KNOWN_HOSTS"}
)

// billionLaughs is the classic YAML bomb: nine levels of nine aliases,
// 9^9 strings once expanded.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	for c := 'b'; c <= 'i'; c++ {
		p := string(c - 1)
		b.WriteString(string(c) + ": &" + string(c) + " [*" + p + ",*" + p + ",*" + p + ",*" + p + ",*" + p + ",*" + p + ",*" + p + ",*" + p + ",*" + p + "]\n")
	}
	return b.String()
}

// hookJob is a pre-apply hook Job whose Pod carries the given labels.
func hookJob(annotations, podLabels string) string {
	return `apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations: {"deliver.dev/hook": pre-apply` + annotations + `}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {` + podLabels + `}
    spec:
      restartPolicy: Never
      containers: [{name: m, image: registry.example/migrate:1}]
`
}

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.example/web:1}]
`

// plainJob is a Job delivered as a normal object (not a hook).
func plainJob(image string) string {
	return `apiVersion: batch/v1
kind: Job
metadata: {name: seed}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: s, image: ` + image + `}]
`
}

// plainJobEnv is plainJob with an environment variable from Vault.
func plainJobEnv(image string) string {
	return strings.Replace(plainJob(image), "image: "+image+"}", "image: "+image+`, env: [{name: TOKEN, value: "ref+vault://secret/data/badinput/app#/password"}]}`, 1)
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix) + "\n"
}

// settingsConfigMap has data.mode, which editSettings takes from git.
const settingsConfigMap = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: git}\n"

// editSettings owns settings' data.mode as another field manager
// (kubectl-edit) would.
func editSettings(t *testing.T, c *caseEnv) {
	t.Helper()
	ac := applycorev1.ConfigMap("settings", c.ns).WithData(map[string]string{"mode": "manual"})
	if _, err := env.Client().CoreV1().ConfigMaps(c.ns).Apply(context.Background(), ac, metav1.ApplyOptions{FieldManager: "kubectl-edit", Force: true}); err != nil {
		t.Fatal(err)
	}
}

// mustApply runs a good first apply, the state a bad one must not disturb.
func mustApply(t *testing.T, c *caseEnv) {
	t.Helper()
	if r := c.deliver(t, "apply", c.sourceFlags()); r.code != 0 {
		t.Fatalf("first apply: exit %d:\n%s", r.code, r.out)
	}
}

// outsideRepo writes a file next to the repository (outside its root)
// that holds a canary, for escape attempts to aim at.
func outsideRepo(t *testing.T, c *caseEnv) {
	t.Helper()
	writeFile(t, filepath.Join(c.vars["ROOT"], "outside", "secret.yaml"), []byte(
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\ndata: {token: "+outsideCanary+"}\n"), 0o644)
	writeFile(t, filepath.Join(c.vars["ROOT"], "outside", "kustomization.yaml"), []byte("resources: [secret.yaml]\n"), 0o644)
	writeFile(t, filepath.Join(c.vars["ROOT"], "outside", "templates", "secret.yaml"), []byte(
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\ndata: {token: "+outsideCanary+"}\n"), 0o644)
	writeFile(t, filepath.Join(c.vars["ROOT"], "outside", "Chart.yaml"), []byte("apiVersion: v2\nname: outside\nversion: 0.1.0\n"), 0o644)
}

func symlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

// TestBadInput runs every bad input case against the shared world.
func TestBadInput(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	s := newShared(t)
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) { runCase(t, s, tc) })
	}
}

func cases() []badCase {
	inventory := "Secret/deliver-inventory-app"
	return []badCase{
		// ---- Manifests ----
		{
			name:  "malformed yaml names file and document",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/bad.yaml": cm("ok") + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: [\n"},
			want:  []string{"m/bad.yaml#1"},
		},
		{
			name:  "malformed json manifest",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/bad.json": `{"apiVersion": "v1", "kind": "ConfigMap",`},
			want:  []string{"m/bad.json"},
		},
		{
			// The expansion must be refused, not attempted: 9^9 strings
			// would take gigabytes.
			name:  "billion laughs in a manifest",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/bomb.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\n" + billionLaughs()},
			want:  []string{"m/bomb.yaml#0"},
		},
		{
			name:  "deeply nested manifest",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/deep.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata: {k: " + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + "}\n"},
			want:  []string{"m/deep.yaml#0"},
		},
		{
			name:  "huge manifest over the limit",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/huge.yaml": cm("huge") + "# " + strings.Repeat("x", 9<<20) + "\n"},
			want:  []string{"m/huge.yaml: file larger than the limit of 8388608 bytes"},
		},
		{
			// Discovery does not know the kind: nothing of the app is
			// applied, not even the valid ConfigMap.
			// (Without the kind in discovery deliver cannot tell whether the
			// object is namespaced: the message names it Widget/w.)
			name:  "unknown kind",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/widget.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"},
			want:  []string{"Widget/w", "m/widget.yaml#0", "unknown kind Widget in example.com/v1"},
		},
		{
			name:  "unknown api version of a known kind (diff)",
			cmd:   "diff",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/d.yaml": strings.Replace(deployment, "apps/v1", "apps/v9", 1)},
			want:  []string{"Deployment/web", "m/d.yaml#0", "apps/v9"},
		},
		{
			name:  "object without a name",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/noname.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {x: y}}\n"},
			want:  []string{"m/noname.yaml#0", "name"},
		},
		{
			name:  "object without a kind",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/nokind.yaml": "apiVersion: v1\nmetadata: {name: x}\n"},
			want:  []string{"m/nokind.yaml#0", "kind"},
		},
		{
			name:  "duplicate objects",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/b.yaml": cm("x") + "---\n" + cm("a")},
			want:  []string{"m/b.yaml#1", "ConfigMap/", "/a", "duplicate", "m/a.yaml#0"},
		},
		{
			name:  "manifest path escapes the repository",
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, manifests: {path: ../outside}}")},
			setup: outsideRepo,
			want:  []string{"../outside", "escapes the repository"},
		},
		{
			// A symlink pointing out of the repository must not be
			// followed: the file it points to holds a canary.
			name:  "manifest symlink escapes the repository",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			setup: func(t *testing.T, c *caseEnv) {
				outsideRepo(t, c)
				symlink(t, filepath.Join(c.vars["ROOT"], "outside", "secret.yaml"), filepath.Join(c.dir, "m", "link.yaml"))
			},
			want: []string{"m/link.yaml"},
		},
		{
			name:  "object in a namespace the app may not write",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/sys.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: badinput-$NS, namespace: kube-system}\n"},
			want:  []string{"ConfigMap/kube-system/badinput-$NS", "kube-system", "m/sys.yaml#0"},
			check: func(t *testing.T, c *caseEnv) { mustBeAbsentConfigMap(t, "kube-system", "badinput-"+c.ns) },
		},
		{
			// The server rejects a key with a space: exit 1, the object
			// named, and it does not exist. A first apply does not dry-run
			// its objects before writing them (nothing of the app runs
			// yet), so the valid ConfigMap next to it may be created; the
			// inventory must then list both, for the next run to prune or
			// fix them.
			name:      "server rejects an object",
			files:     map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a"), "m/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {\"bad key\": x}\n"},
			want:      []string{"ConfigMap/$NS/bad", "data[bad key]"},
			mayChange: []string{inventory, "ConfigMap/a"},
			check: func(t *testing.T, c *caseEnv) {
				if _, err := env.Client().CoreV1().ConfigMaps(c.ns).Get(context.Background(), "bad", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("ConfigMap bad exists: %v", err)
				}
				inventoryLists(t, c, apply.ResultFailed, "ConfigMap/a", "ConfigMap/bad")
			},
		},
		{
			// The same, stricter, in an app that runs: new objects are
			// dry-run in the plan, so deliver knows before writing
			// anything that the run will fail; neither the valid new
			// ConfigMap nor the change to the running one is applied (as
			// with an immutable field, which fails in the plan).
			name:  "server rejection applies nothing else",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			setup: func(t *testing.T, c *caseEnv) {
				mustApply(t, c)
				c.write(t, map[string]string{
					"m/a.yaml":   strings.Replace(cm("a"), "k: v", "k: v2", 1),
					"m/b.yaml":   cm("b"),
					"m/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {\"bad key\": x}\n",
				})
			},
			want:      []string{"ConfigMap/$NS/bad", "data[bad key]"},
			mayChange: []string{inventory},
			check:     func(t *testing.T, c *caseEnv) { inventoryLists(t, c, apply.ResultSucceeded, "ConfigMap/a") },
		},
		{
			// The server's validation message quotes the invalid value,
			// a secret from Vault: the redactor must mask it.
			name:  "server rejects an object holding a vault secret",
			chart: true,
			files: map[string]string{"deliver.yaml": config(`- {name: app, namespace: $NS, helm: {chart: charts/app, values: {password: "ref+vault://secret/data/badinput/app#/password", label: "ref+vault://secret/data/badinput/app#/label"}}}`)},
			env:   vaultEnv,
			want:  []string{"Secret/$NS/app-credentials", "metadata.labels"},
			// A first apply: the ConfigMap of the same stage may be
			// applied before the Secret fails (see "server rejects an
			// object"); the Secret itself must not exist.
			mayChange: []string{inventory, "ConfigMap/app-settings"},
			check: func(t *testing.T, c *caseEnv) {
				if _, err := env.Client().CoreV1().Secrets(c.ns).Get(context.Background(), "app-credentials", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("Secret app-credentials exists: %v", err)
				}
			},
		},

		// ---- Helm ----
		{
			name:  "invalid chart template",
			chart: true,
			files: map[string]string{"deliver.yaml": config(sopsApp), "secrets/app.enc.yaml": "$ENCVALUES", "charts/app/templates/broken.yaml": "kind: ConfigMap\n{{ if .Values.password }}\n"},
			env:   sopsEnv,
			want:  []string{"app/templates/broken.yaml"},
		},
		{
			name:  "chart template calls an unknown function",
			chart: true,
			files: map[string]string{"deliver.yaml": config(sopsApp), "secrets/app.enc.yaml": "$ENCVALUES", "charts/app/templates/broken.yaml": "kind: ConfigMap\ndata: {x: {{ .Values.password | nosuchfunc }}}\n"},
			env:   sopsEnv,
			want:  []string{"app/templates/broken.yaml", "nosuchfunc"},
		},
		{
			name:  "missing required value",
			chart: true,
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, helm: {chart: charts/app}}")},
			want:  []string{"password is required", "app/templates/secret.yaml"},
		},
		{
			name:  "chart path escapes the repository",
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, helm: {chart: ../outside}}")},
			setup: outsideRepo,
			want:  []string{"../outside", "escapes the repository"},
		},
		{
			name:  "chart template symlink escapes the repository",
			chart: true,
			files: map[string]string{"deliver.yaml": config(sopsApp), "secrets/app.enc.yaml": "$ENCVALUES"},
			env:   sopsEnv,
			setup: func(t *testing.T, c *caseEnv) {
				outsideRepo(t, c)
				symlink(t, filepath.Join(c.vars["ROOT"], "outside", "secret.yaml"), filepath.Join(c.dir, "charts", "app", "templates", "stolen.yaml"))
			},
			want: []string{"charts/app/templates/stolen.yaml"},
		},
		{
			name:  "huge values file",
			chart: true,
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, helm: {chart: charts/app, valuesFiles: [values/huge.yaml]}}"), "values/huge.yaml": "password: x\n# " + strings.Repeat("x", 9<<20) + "\n"},
			want:  []string{"values/huge.yaml", "larger than the limit"},
		},
		{
			name:  "values file is a yaml bomb",
			chart: true,
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, helm: {chart: charts/app, valuesFiles: [values/bomb.yaml]}}"), "values/bomb.yaml": "password: x\n" + billionLaughs()},
			want:  []string{"values/bomb.yaml"},
		},
		{
			// deliver has no post-renderer: the field is refused, never run.
			name:  "helm post-renderer attempt",
			chart: true,
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, helm: {chart: charts/app, postRenderer: ./evil.sh}}"), "evil.sh": "#!/bin/sh\ntouch $OUT/pwned\ncat\n"},
			want:  []string{"deliver.yaml: line 4", "postRenderer"},
			check: func(t *testing.T, c *caseEnv) { mustNotExist(t, filepath.Join(c.out, "pwned")) },
		},

		// ---- Kustomize ----
		{
			name:  "kustomize resource escapes the repository",
			files: map[string]string{"deliver.yaml": config(kustomizeApp), "k/kustomization.yaml": "resources: [cm.yaml, ../../outside]\n", "k/cm.yaml": cm("a")},
			setup: outsideRepo,
			want:  []string{"k/kustomization.yaml", "../../outside", "escapes the repository"},
		},
		{
			name:  "kustomize symlink escapes the repository",
			files: map[string]string{"deliver.yaml": config(kustomizeApp), "k/kustomization.yaml": "resources: [cm.yaml, link.yaml]\n", "k/cm.yaml": cm("a")},
			setup: func(t *testing.T, c *caseEnv) {
				outsideRepo(t, c)
				symlink(t, filepath.Join(c.vars["ROOT"], "outside", "secret.yaml"), filepath.Join(c.dir, "k", "link.yaml"))
			},
			want: []string{"k/link.yaml"},
		},
		{
			// An exec KRM function would run any program from the
			// repository: refused, and the program never runs.
			name: "kustomize exec function",
			files: map[string]string{"deliver.yaml": config(kustomizeApp), "k/kustomization.yaml": "resources: [cm.yaml]\ntransformers: [fn.yaml]\n", "k/cm.yaml": cm("a"),
				"k/fn.yaml": "apiVersion: example.com/v1\nkind: Evil\nmetadata:\n  name: evil\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: ./evil.sh\n",
				"k/evil.sh": "#!/bin/sh\ntouch $OUT/pwned\ncat\n"},
			setup: func(t *testing.T, c *caseEnv) {
				if err := os.Chmod(filepath.Join(c.dir, "k", "evil.sh"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			want:  []string{"k"},
			check: func(t *testing.T, c *caseEnv) { mustNotExist(t, filepath.Join(c.out, "pwned")) },
		},
		{
			// helmCharts of a chart not in the repository, from a
			// repository that cannot be reached.
			name:  "kustomize helmCharts repository unreachable",
			files: map[string]string{"deliver.yaml": config(kustomizeApp), "k/kustomization.yaml": "resources: [cm.yaml]\nhelmCharts:\n- {name: app, releaseName: app, repo: \"https://charts.example\", version: 1.0.0}\n", "k/cm.yaml": cm("a")},
			want:  []string{"k/kustomization.yaml: helmCharts[0] (app)", "https://charts.example"},
		},
		{
			name:  "kustomize remote base",
			files: map[string]string{"deliver.yaml": config(kustomizeApp), "k/kustomization.yaml": "resources: [cm.yaml, \"https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0\"]\n", "k/cm.yaml": cm("a")},
			want:  []string{"k/kustomization.yaml", "https://github.com/kubernetes-sigs/kustomize"},
		},

		// ---- post-build variables (docs/postbuild.md) ----
		{
			name:  "post-build variable not set",
			files: map[string]string{"deliver.yaml": config(postBuildApp), "k/kustomization.yaml": "resources: [cm.yaml]\n", "k/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: \"${region}-${zone}\"}\n"},
			want:  []string{"k#0", "ConfigMap/a", `variable not set (strict mode): "zone"`},
		},
		{
			name:  "post-build expression not closed",
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, manifests: {path: m}, postBuild: {substitute: {region: eu}}}"), "m/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: \"${region\"}\n"},
			want:  []string{"m/cm.yaml#0", "ConfigMap/a", "missing closing brace"},
		},
		{
			name:  "post-build variable name",
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, manifests: {path: m}, postBuild: {substitute: {my-region: eu}}}"), "m/cm.yaml": cm("a")},
			want:  []string{"deliver.yaml", `variable name "my-region" is invalid`},
		},
		{
			name:  "post-build value breaks the YAML",
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, manifests: {path: m}, postBuild: {substitute: {region: \"a: b\"}}}"), "m/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  k: ${region}\n"},
			want:  []string{"m/cm.yaml#0", "ConfigMap/a", "not valid YAML"},
		},
		{
			name:  "post-build reference missing",
			cmd:   "diff",
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, manifests: {path: m}, postBuild: {substituteFrom: [{kind: ConfigMap, name: absent}]}}"), "m/cm.yaml": cm("a")},
			want:  []string{"apps.app.postBuild.substituteFrom[0]", "ConfigMap/$NS/absent", "not found"},
		},

		// ---- Helm valuesFrom ----
		{
			name:  "helm valuesFrom reference missing",
			cmd:   "diff",
			chart: true,
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, helm: {chart: charts/app, valuesFrom: [{kind: Secret, name: absent}]}}")},
			want:  []string{"apps.app.helm.valuesFrom[0]", "Secret/$NS/absent", "not found"},
		},
		{
			// The Secret's key is no YAML document: named, its content not.
			name:  "helm valuesFrom key not YAML",
			chart: true,
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, helm: {chart: charts/app, valuesFrom: [{kind: Secret, name: vf}]}}")},
			setup: func(t *testing.T, c *caseEnv) {
				s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vf", Namespace: c.ns},
					StringData: map[string]string{"values.yaml": "password: [unclosed-vf-7e21"}}
				if _, err := env.Client().CoreV1().Secrets(c.ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			want:    []string{"apps.app.helm.valuesFrom[0]", "Secret/$NS/vf", `key "values.yaml"`},
			notWant: []string{"unclosed-vf-7e21"},
		},

		// ---- SOPS ----
		{
			// A key added in clear after encryption changes the MAC.
			name:  "sops MAC mismatch",
			chart: true,
			files: map[string]string{"deliver.yaml": config(sopsApp), "secrets/app.enc.yaml": "role_unencrypted: admin\n$ENCVALUES"},
			env:   sopsEnv,
			want:  []string{"secrets/app.enc.yaml", "MAC mismatch"},
		},
		{
			name:  "sops tampered ciphertext",
			chart: true,
			files: map[string]string{"deliver.yaml": config(sopsApp), "secrets/app.enc.yaml": "$ENCVALUES"},
			env:   sopsEnv,
			setup: func(t *testing.T, c *caseEnv) {
				p := filepath.Join(c.dir, "secrets", "app.enc.yaml")
				data, _ := os.ReadFile(p)
				i := strings.Index(string(data), "password: ENC[AES256_GCM,data:") + len("password: ENC[AES256_GCM,data:")
				b := []byte(string(data))
				if b[i] == 'A' {
					b[i] = 'B'
				} else {
					b[i] = 'A'
				}
				writeFile(t, p, b, 0o644)
			},
			want: []string{"secrets/app.enc.yaml"},
		},
		{
			name:  "sops wrong age key",
			chart: true,
			files: map[string]string{"deliver.yaml": config(sopsApp), "secrets/app.enc.yaml": "$ENCVALUES"},
			env:   []string{"SOPS_AGE_KEY_FILE=$WRONGAGEKEY"},
			want:  []string{"secrets/app.enc.yaml", "no key could decrypt"},
		},
		{
			name:  "sops without any key",
			chart: true,
			files: map[string]string{"deliver.yaml": config(sopsApp), "secrets/app.enc.yaml": "$ENCVALUES"},
			want:  []string{"secrets/app.enc.yaml", "no key could decrypt"},
		},
		{
			// A file SOPS has no store for (.toml) is read as binary,
			// which a values file cannot be.
			name:  "sops unknown format",
			chart: true,
			files: map[string]string{"deliver.yaml": config(strings.Replace(sopsApp, "app.enc.yaml", "app.enc.toml", 1)), "secrets/app.enc.toml": "$ENCVALUES"},
			env:   sopsEnv,
			want:  []string{"secrets/app.enc.toml"},
		},
		{
			name:  "sops values file not encrypted",
			chart: true,
			files: map[string]string{"deliver.yaml": config(sopsApp), "secrets/app.enc.yaml": "password: plain\n"},
			env:   sopsEnv,
			want:  []string{"secrets/app.enc.yaml", "not a SOPS file"},
		},
		{
			name:  "sops ref to a missing key",
			chart: true,
			files: map[string]string{"deliver.yaml": config(`- {name: app, namespace: $NS, helm: {chart: charts/app, values: {password: "ref+sops://secrets/app.enc.yaml#/nokey"}}}`), "secrets/app.enc.yaml": "$ENCVALUES"},
			env:   sopsEnv,
			want:  []string{"ref+sops://secrets/app.enc.yaml#/nokey", "not found"},
		},

		// ---- Vault ----
		{
			name:  "vault ref to a missing key",
			chart: true,
			files: map[string]string{"deliver.yaml": config(strings.Replace(vaultApp, "#/password", "#/nokey", 1))},
			env:   vaultEnv,
			want:  []string{"ref+vault://secret/data/badinput/app#/nokey", "not found"},
		},
		{
			name:  "vault ref to a missing path",
			chart: true,
			files: map[string]string{"deliver.yaml": config(strings.Replace(vaultApp, "badinput/app", "badinput/nothere", 1))},
			env:   vaultEnv,
			want:  []string{"secret/data/badinput/nothere", "not found"},
		},
		{
			name:  "vault permission denied",
			chart: true,
			files: map[string]string{"deliver.yaml": config(vaultApp)},
			env:   []string{"VAULT_ADDR=$VAULT", "VAULT_TOKEN=$LIMITED_TOKEN"},
			want:  []string{"secret/data/badinput/app", "permission denied"},
		},
		{
			name:  "vault token expired",
			chart: true,
			files: map[string]string{"deliver.yaml": config(vaultApp)},
			env:   []string{"VAULT_ADDR=$VAULT", "VAULT_TOKEN=$EXPIRED_TOKEN"},
			setup: func(t *testing.T, c *caseEnv) { time.Sleep(time.Until(c.s.expiredAt)) },
			want:  []string{"$VAULT"},
		},
		{
			name:  "vault token never issued",
			chart: true,
			files: map[string]string{"deliver.yaml": config(vaultApp)},
			env:   []string{"VAULT_ADDR=$VAULT", "VAULT_TOKEN=$BOGUS_TOKEN"},
			want:  []string{"$VAULT"},
		},
		{
			name:  "vault sealed",
			chart: true,
			files: map[string]string{"deliver.yaml": config(vaultApp)},
			setup: func(t *testing.T, c *caseEnv) {
				// A Vault of its own: sealing the shared one would break
				// the other cases.
				v, err := testenv.StartVault(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(v.Stop)
				vc := vaultClient(t, v.Addr, v.Token)
				if _, err := vc.KVv2("secret").Put(context.Background(), "badinput/app", map[string]any{"password": vaultCanary}); err != nil {
					t.Fatal(err)
				}
				if err := vc.Sys().Seal(); err != nil {
					t.Fatal(err)
				}
				c.secrets = append(c.secrets, v.Token)
				c.vars["SEALED"] = v.Addr
				c.environ = append(c.environ, "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.Token)
			},
			want: []string{"sealed"},
		},
		{
			name:  "vault unreachable",
			chart: true,
			files: map[string]string{"deliver.yaml": config(vaultApp)},
			env:   []string{"VAULT_ADDR=http://127.0.0.1:1", "VAULT_TOKEN=$VAULT_TOKEN"},
			want:  []string{"127.0.0.1:1"},
		},
		{
			name:  "vault ref without vault configured",
			chart: true,
			files: map[string]string{"deliver.yaml": config(vaultApp)},
			want:  []string{"ref+vault://secret/data/badinput/app#/password"},
		},

		// ---- Git ----
		{
			name:   "git unknown ref",
			source: "http",
			files:  map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			env:    gitEnv,
			flags:  []string{"--ref", "no-such-branch"},
			want:   []string{"$URL", "no-such-branch"},
		},
		{
			name:   "git wrong password",
			source: "http",
			files:  map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			env:    []string{"DELIVER_GIT_USERNAME=deliver", "DELIVER_GIT_PASSWORD=" + wrongPassword},
			want:   []string{"$URL", "authentication"},
		},
		{
			name:   "git no credentials",
			source: "http",
			files:  map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			want:   []string{"$URL", "authentication"},
		},
		{
			// Credentials in the URL are used, but never shown.
			name:   "git credentials in the url",
			source: "http",
			files:  map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			setup: func(t *testing.T, c *caseEnv) {
				c.vars["CREDURL"] = strings.Replace(c.url, "http://", "http://deliver:"+wrongPassword+"@", 1)
			},
			flags:   []string{"--repo", "$CREDURL"},
			want:    []string{"$URL", "authentication"},
			notWant: []string{"deliver@", "deliver:"},
		},
		{
			name:   "git repository not found",
			source: "http",
			files:  map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			env:    gitEnv,
			flags:  []string{"--repo", "$HTTP/no-such-repo"},
			want:   []string{"$HTTP/no-such-repo"},
		},
		{
			name:   "git server unreachable",
			source: "http",
			files:  map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			env:    gitEnv,
			flags:  []string{"--repo", "http://127.0.0.1:1/repo"},
			want:   []string{"http://127.0.0.1:1/repo"},
		},
		{
			name:   "ssh unknown host key",
			source: "ssh",
			files:  map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			env:    []string{"DELIVER_GIT_SSH_KEY_FILE=$SSHKEY", "DELIVER_GIT_KNOWN_HOSTS=$EMPTY_KNOWN_HOSTS"},
			want:   []string{"$SSH_ADDR", "knownhosts: key is unknown"},
		},
		{
			name:   "ssh changed host key",
			source: "ssh",
			files:  map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			env:    []string{"DELIVER_GIT_SSH_KEY_FILE=$SSHKEY", "DELIVER_GIT_KNOWN_HOSTS=$CHANGED_KNOWN_HOSTS"},
			want:   []string{"$SSH_ADDR"},
		},
		{
			name:   "ssh key not authorized",
			source: "ssh",
			files:  map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			env:    []string{"DELIVER_GIT_SSH_KEY_FILE=$OTHER_SSHKEY", "DELIVER_GIT_KNOWN_HOSTS=$KNOWN_HOSTS"},
			want:   []string{"$SSH_ADDR"},
		},

		// ---- deliver.yaml ----
		{
			name:  "deliver.yaml unknown field",
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, manifests: {path: m}}", "- name: b", "  namespace: $NS", "  dependson: [app]", "  manifests: {path: m2}"), "m/a.yaml": cm("a"), "m2/b.yaml": cm("b")},
			want:  []string{"deliver.yaml: line 7: field dependson not found"},
		},
		{
			name:  "deliver.yaml dependency cycle",
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, dependsOn: [b], manifests: {path: m}}", "- {name: b, namespace: $NS, dependsOn: [app], manifests: {path: m2}}"), "m/a.yaml": cm("a"), "m2/b.yaml": cm("b")},
			want:  []string{"dependency cycle", "app -> b -> app"},
		},
		{
			name:  "deliver.yaml malformed",
			files: map[string]string{"deliver.yaml": config(manifestsApp) + "environments: {prod: [\n", "m/a.yaml": cm("a")},
			want:  []string{"deliver.yaml", "line"},
		},
		{
			name:  "deliver.yaml wrong apiVersion",
			files: map[string]string{"deliver.yaml": strings.Replace(config(manifestsApp), "v1alpha1", "v9", 1), "m/a.yaml": cm("a")},
			want:  []string{"deliver.yaml", "deliver.dev/v9"},
		},
		{
			name:  "app with two sources",
			files: map[string]string{"deliver.yaml": config("- {name: app, namespace: $NS, manifests: {path: m}, kustomize: {path: k}}"), "m/a.yaml": cm("a")},
			want:  []string{"deliver.yaml", "app"},
		},
		{
			// The bomb sits in helm values (free-form, so decoded in
			// full): the parser must refuse the aliasing.
			name:  "deliver.yaml is a yaml bomb",
			chart: true,
			files: map[string]string{"deliver.yaml": config("- name: app\n  namespace: $NS\n  helm:\n    chart: charts/app\n    values:\n" + indent(billionLaughs(), "      ") + "      password: *i\n")},
			want:  []string{"deliver.yaml", "excessive aliasing"},
		},
		{
			// Over the 1 MiB limit of deliver.yaml: a clear refusal, not a
			// silently truncated config.
			name:  "deliver.yaml too large",
			files: map[string]string{"deliver.yaml": config(manifestsApp) + "# " + strings.Repeat("x", 2<<20) + "\n", "m/a.yaml": cm("a")},
			want:  []string{"deliver.yaml", "larger than the limit"},
			// deliver reads only the first MiB and parses that: here the
			// cut falls in a comment and the apply goes ahead (exit 0); a
			// cut elsewhere silently drops apps or breaks the YAML.
		},
		{
			name:  "unknown environment",
			files: map[string]string{"deliver.yaml": config(manifestsApp) + "environments: {prod: {}}\n", "m/a.yaml": cm("a")},
			flags: []string{"--env", "staging"},
			want:  []string{`unknown environment "staging"`},
		},

		// ---- The cluster ----
		{
			name:    "kubeconfig pointing nowhere",
			files:   map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			flags:   []string{"--kubeconfig", "$NOWHERE_KUBECONFIG"},
			want:    []string{"127.0.0.1:1"},
			notWant: []string{"no kubeconfig"},
		},
		{
			name:  "kubeconfig file missing",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			flags: []string{"--kubeconfig", "$ROOT/missing.kubeconfig"},
			want:  []string{"$ROOT/missing.kubeconfig"},
		},
		{
			name:  "kube context missing",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			flags: []string{"--context", "no-such-context"},
			want:  []string{`context "no-such-context" not found`},
		},
		{
			// A failing migration stops the run before the workloads:
			// the Deployment is never created.
			name:      "hook job failing",
			files:     map[string]string{"deliver.yaml": config(manifestsApp), "m/hook.yaml": hookJob("", `"`+testenv.FailLabel+`": "true"`), "m/web.yaml": deployment},
			want:      []string{"Job/$NS/migrate", "failed"},
			mayChange: []string{inventory, "Job/migrate"},
			check:     deploymentAbsent,
		},
		{
			name:      "hook timeout",
			files:     map[string]string{"deliver.yaml": config(manifestsApp), "m/hook.yaml": hookJob(`, "deliver.dev/hook-timeout": 2s`, `"`+testenv.NeverReadyLabel+`": "true"`), "m/web.yaml": deployment},
			want:      []string{"Job/$NS/migrate", "2s"},
			mayChange: []string{inventory, "Job/migrate"},
			check:     deploymentAbsent,
		},
		{
			// A Job's template is immutable: without --recreate the
			// change fails with a hint, and the Job stays as it was.
			name:  "immutable field without recreate",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/job.yaml": plainJob("registry.example/seed:1")},
			setup: func(t *testing.T, c *caseEnv) {
				mustApply(t, c)
				c.write(t, map[string]string{"m/job.yaml": plainJob("registry.example/seed:2")})
			},
			want:      []string{"Job/$NS/seed", "immutable", "recreate"},
			mayChange: []string{inventory},
		},
		{
			// Another field manager owns data.mode: --fail-on-conflict
			// refuses to take it over, and the value stays.
			name:      "field conflict with fail-on-conflict",
			files:     map[string]string{"deliver.yaml": config(manifestsApp), "m/settings.yaml": settingsConfigMap},
			setup:     editSettings,
			flags:     []string{"--fail-on-conflict"},
			want:      []string{"ConfigMap/$NS/settings", "conflict", "kubectl-edit", ".data.mode"},
			mayChange: []string{inventory},
		},
		{
			// The same: the report must not claim a takeover that
			// --fail-on-conflict refused.
			name:      "fail-on-conflict reports no takeover",
			files:     map[string]string{"deliver.yaml": config(manifestsApp), "m/settings.yaml": settingsConfigMap},
			setup:     editSettings,
			flags:     []string{"--fail-on-conflict"},
			want:      []string{"ConfigMap/$NS/settings", "kubectl-edit"},
			notWant:   []string{"took over"},
			mayChange: []string{inventory},
		},
		{
			// The server's immutable-field error echoes the whole Pod
			// template, here with an env value from Vault: the redactor
			// must mask it.
			name:  "immutable field error echoing a vault secret",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/job.yaml": plainJobEnv("registry.example/seed:1")},
			env:   vaultEnv,
			setup: func(t *testing.T, c *caseEnv) {
				mustApply(t, c)
				c.write(t, map[string]string{"m/job.yaml": plainJobEnv("registry.example/seed:2")})
			},
			want:      []string{"Job/$NS/seed", "immutable", "--recreate"},
			mayChange: []string{inventory},
		},

		// ---- Flags ----
		{
			name:  "unknown output format",
			files: map[string]string{"deliver.yaml": config(manifestsApp), "m/a.yaml": cm("a")},
			flags: []string{"-o", "yaml"},
			want:  []string{`unknown output format "yaml"`},
		},
		{
			// --show-secrets into a pipe would put the SOPS canary in a CI
			// log: refused before anything is decrypted.
			name:  "show-secrets to a pipe",
			cmd:   "render",
			chart: true,
			files: map[string]string{"deliver.yaml": config(sopsApp), "secrets/app.enc.yaml": "$ENCVALUES"},
			env:   sopsEnv,
			flags: []string{"--show-secrets"},
			want:  []string{"--show-secrets", "refused"},
		},
	}
}

func mustNotExist(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Stat(p); err == nil {
		t.Errorf("%s exists: deliver ran a program from the repository", p)
	}
}

func deploymentAbsent(t *testing.T, c *caseEnv) {
	t.Helper()
	_, err := env.Client().AppsV1().Deployments(c.ns).Get(context.Background(), "web", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("Deployment/%s/web exists after a failed hook (err %v)", c.ns, err)
	}
}

// inventoryLists checks the app's inventory: its result and the objects
// ("Kind/name") it lists.
func inventoryLists(t *testing.T, c *caseEnv, result string, want ...string) {
	t.Helper()
	m, err := apply.New(env.Config, apply.Options{InventoryNamespace: c.ns})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := m.ReadInventory(context.Background(), "app")
	if err != nil {
		t.Fatalf("inventory: %v", err)
	}
	var got []string
	for _, e := range inv.Entries {
		got = append(got, e.Kind+"/"+e.Name)
	}
	if d := cmp.Diff(want, got); d != "" || inv.Result != result {
		t.Errorf("inventory: result %s, want %s; entries (-want +got):\n%s", inv.Result, result, d)
	}
}
