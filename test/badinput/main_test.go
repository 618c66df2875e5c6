// Package badinput runs the real deliver binary over bad input, end to end:
// broken manifests and configs, hostile charts and overlays, bad secrets,
// unreachable or refusing servers. Every case checks the exit code, that the
// message names the culprit, that the cluster was left alone, and that no
// secret value shows anywhere (output and the files deliver wrote).
//
// One control plane, one Vault and one git server serve every case; each
// case gets its own namespace.
package badinput

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	vault "github.com/hashicorp/vault/api"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/testenv"
)

var (
	env        *testenv.Cluster
	deliverBin string
	// vlt is the shared Vault dev server, started in TestMain.
	vlt *testenv.Vault
)

// TestMain builds the real binary once, starts one Vault and one control
// plane for every case.
func TestMain(m *testing.M) {
	// -short: no cluster, no binary; every case skips.
	os.Exit(testenv.RunE2E(m, &env, testenv.E2EOptions{Deliver: &deliverBin, Vault: &vlt}))
}

// result is what one deliver run left behind.
type result struct {
	out  string // stdout and stderr, interleaved as a user sees them
	code int
}

// runDeliver runs the binary with exactly the environment given (plus
// PATH), so nothing from the developer's shell (VAULT_TOKEN, KUBECONFIG,
// SOPS_AGE_KEY_FILE) leaks into a case.
func runDeliver(t *testing.T, environ []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, deliverBin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, environ...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	code, err := testenv.ExitCode(cmd)
	if err != nil {
		t.Fatalf("run deliver: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("deliver %s did not end within 90s:\n%s", strings.Join(args, " "), out.String())
	}
	return result{out: out.String(), code: code}
}

// leakForms returns a secret as it may show up: plain, base64 (a Secret's
// data) and JSON-escaped.
func leakForms(secret string) []string {
	j, _ := json.Marshal(secret)
	forms := []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawURLEncoding.EncodeToString([]byte(secret))}
	if s := strings.Trim(string(j), `"`); s != secret {
		forms = append(forms, s)
	}
	return forms
}

// checkNoLeak fails when any form of any secret appears in the output or in
// any file under the folders deliver was allowed to write.
func checkNoLeak(t *testing.T, out string, secretList []string, dirs ...string) {
	t.Helper()
	for _, s := range secretList {
		for _, f := range leakForms(s) {
			if strings.Contains(out, f) {
				t.Errorf("output leaks a secret (%q):\n%s", f, out)
			}
		}
	}
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !e.Type().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			for _, s := range secretList {
				for _, f := range leakForms(s) {
					if bytes.Contains(data, []byte(f)) {
						t.Errorf("file %s written by deliver leaks a secret (%q)", p, f)
					}
				}
			}
			return nil
		})
	}
}

// snapshot records what matters of every object deliver could have written
// in a namespace: the desired fields (data, spec, labels, annotations), not
// status or resourceVersion, which controllers move on their own.
func snapshot(t *testing.T, ns string) map[string]string {
	t.Helper()
	ctx := context.Background()
	cs := env.Client()
	snap := map[string]string{}
	put := func(kind, name string, v ...any) {
		b, _ := json.Marshal(v)
		snap[kind+"/"+name] = string(b)
	}
	cms, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range cms.Items {
		if o.Name == "kube-root-ca.crt" {
			continue
		}
		put("ConfigMap", o.Name, o.Labels, o.Annotations, o.Data, o.BinaryData)
	}
	secs, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range secs.Items {
		put("Secret", o.Name, o.Labels, o.Annotations, o.Data)
	}
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range deps.Items {
		put("Deployment", o.Name, o.Labels, o.Spec)
	}
	jobs, err := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range jobs.Items {
		put("Job", o.Name, o.Labels, o.Spec.Template)
	}
	svcs, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range svcs.Items {
		put("Service", o.Name, o.Labels, o.Spec.Ports, o.Spec.Selector)
	}
	sas, err := cs.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range sas.Items {
		if o.Name == "default" {
			continue
		}
		put("ServiceAccount", o.Name, o.Labels)
	}
	return snap
}

// compareSnapshots reports objects that appeared, disappeared or changed,
// except those a case allows to change (a hook Job, the inventory).
func compareSnapshots(t *testing.T, before, after map[string]string, mayChange []string) {
	t.Helper()
	allowed := map[string]bool{}
	for _, k := range mayChange {
		allowed[k] = true
	}
	strip := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if !allowed[k] {
				out[k] = v
			}
		}
		return out
	}
	if d := cmp.Diff(strip(before), strip(after)); d != "" {
		keys := make([]string, 0, len(after))
		for k := range after {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Errorf("the cluster changed (-before +after):\n%s\nobjects now: %v", d, keys)
	}
}

// mustBeAbsentConfigMap fails when a ConfigMap exists in a namespace the
// case's app may not write (kube-system): cases that try to write there use
// names no other test uses.
func mustBeAbsentConfigMap(t *testing.T, ns, name string) {
	t.Helper()
	_, err := env.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap/%s/%s exists (err %v): deliver wrote outside the app's namespace", ns, name, err)
	}
}

// vaultClient returns a client of v logged in with token.
func vaultClient(t *testing.T, addr, token string) *vault.Client {
	t.Helper()
	c, err := vault.NewClient(&vault.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}
