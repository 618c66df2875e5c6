package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDeployManifests renders deploy/ and applies it with deliver itself
// to the real control plane (kwok runs the Pods, the restricted Pod
// Security Standard of the namespace checks them), then checks the
// security settings of the Deployment and what its ServiceAccount may do.
func TestDeployManifests(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	out, code := run(t, "render", "--path", "../..", "-f", "deploy")
	if code != 0 {
		t.Fatalf("render: exit %d:\n%s", code, out)
	}
	for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "PodDisruptionBudget", "Service", "ConfigMap"} {
		if !strings.Contains(out, "\nkind: "+kind+"\n") {
			t.Errorf("render: no %s", kind)
		}
	}
	inv := env.Namespace(t)
	out, code = run(t, "apply", "--kubeconfig", env.Kubeconfig, "--path", "../..", "-f", "deploy",
		"--app", "deliver-reconciler", "--inventory-namespace", inv, "--timeout", "2m")
	if code != 0 {
		t.Fatalf("apply: exit %d:\n%s", code, out)
	}
	cs := env.Client()
	d, err := cs.AppsV1().Deployments("deliver-system").Get(ctx, "deliver", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.AvailableReplicas != 2 {
		t.Errorf("available replicas = %d, want 2", d.Status.AvailableReplicas)
	}
	pod := d.Spec.Template.Spec
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("pod securityContext.runAsNonRoot not set: %+v", sc)
	}
	if pod.ServiceAccountName != "deliver" {
		t.Errorf("serviceAccountName = %q, want deliver", pod.ServiceAccountName)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !cmp.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s: securityContext %+v, want a read-only root, no privilege escalation, capabilities dropped", c.Name, sc)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: no resource requests or limits: %+v", c.Name, c.Resources)
		}
		tmp := false
		for _, m := range c.VolumeMounts {
			if m.MountPath == "/tmp" && volumes[m.Name].EmptyDir != nil {
				tmp = true
			}
		}
		if !tmp {
			t.Errorf("container %s: no emptyDir on /tmp", c.Name)
		}
	}
	main := pod.Containers[0]
	if main.LivenessProbe == nil || main.LivenessProbe.HTTPGet == nil || main.LivenessProbe.HTTPGet.Path != "/healthz" ||
		main.ReadinessProbe == nil || main.ReadinessProbe.HTTPGet == nil || main.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes: liveness %+v, readiness %+v; want /healthz and /readyz", main.LivenessProbe, main.ReadinessProbe)
	}
	for _, ref := range []string{"deliver-git-credentials", "deliver-age-key"} {
		if !strings.Contains(mustJSON(t, pod), ref) {
			t.Errorf("the pod does not read the Secret %s", ref)
		}
	}
	if _, err := cs.PolicyV1().PodDisruptionBudgets("deliver-system").Get(ctx, "deliver", metav1.GetOptions{}); err != nil {
		t.Errorf("PodDisruptionBudget: %v", err)
	}

	// Least privilege, as the API server's RBAC authorizer sees it.
	sa := "system:serviceaccount:deliver-system:deliver"
	for _, c := range []struct {
		verb, group, resource, ns string
		want                      bool
	}{
		{"patch", "apps", "deployments", "shop", true},
		{"delete", "", "configmaps", "shop", true},
		{"create", "batch", "jobs", "shop", true},
		{"watch", "", "secrets", "shop", true},
		{"update", "coordination.k8s.io", "leases", "deliver-system", true},
		{"create", "", "events", "deliver-system", true},
		// The web view's token guard (docs/ui-auth.md) and the restart
		// digest key's Secret (docs/restart.md).
		{"create", "authentication.k8s.io", "tokenreviews", "", true},
		{"create", "authorization.k8s.io", "subjectaccessreviews", "", true},
		{"get", "", "secrets", "deliver-system", true},
		{"create", "", "secrets", "deliver-system", true},
		{"update", "coordination.k8s.io", "leases", "shop", false},
		{"create", "rbac.authorization.k8s.io", "clusterroles", "", false},
		{"delete", "", "nodes", "", false},
		{"create", "", "pods", "shop", false},
		{"create", "apiextensions.k8s.io", "customresourcedefinitions", "", false},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               sa,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:deliver-system", "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: c.verb, Group: c.group, Resource: c.resource, Namespace: c.ns},
		}}
		res, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status.Allowed != c.want {
			t.Errorf("%s %s.%s in %q: allowed %v, want %v", c.verb, c.resource, c.group, c.ns, res.Status.Allowed, c.want)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDockerfile: the image is distroless and static (no shell, no git,
// helm or kubectl), runs as non-root, and keeps its cache and temporary
// files under /tmp, the one writable mount of deploy/deployment.yaml.
// Docker is not on the test machines: this reads the Dockerfile's final
// stage.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	final := text[strings.LastIndex(text, "\nFROM "):]
	for _, want := range []string{
		"\nFROM gcr.io/distroless/static-debian12:nonroot\n",
		"\nUSER nonroot:nonroot\n",
		"XDG_CACHE_HOME=/tmp/cache",
		"TMPDIR=/tmp",
	} {
		if !strings.Contains(final, want) {
			t.Errorf("the final stage lacks %q:\n%s", strings.TrimSpace(want), final)
		}
	}
	if !strings.Contains(text, "CGO_ENABLED=0 go build") {
		t.Error("the binary is not built static (CGO_ENABLED=0): distroless/static has no libc")
	}
}
