package testenv

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

func TestClusterRunsPods(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	ctx := context.Background()
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	cs := c.Client()
	node, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(node.Spec.Taints) != 0 {
		t.Errorf("node still tainted: %v", node.Spec.Taints)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Major != "1" || v.Minor != "37" {
		t.Errorf("server version %s.%s (%s), want 1.37", v.Major, v.Minor, v.GitVersion)
	}
	ns := c.Namespace(t)
	if !strings.HasPrefix(ns, "testclusterrunspods-") {
		t.Errorf("namespace %q does not start with the test name", ns)
	}
}

func TestVault(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Vault")
	}
	v, err := StartVault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	cmd := exec.Command(mustBinary(t, "vault"), "kv", "put", "-mount=secret", "app", "password=hunter2")
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.Token, "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vault kv put: %v\n%s", err, out)
	}
	cmd = exec.Command(mustBinary(t, "vault"), "kv", "get", "-mount=secret", "-field=password", "app")
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.Token, "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hunter2" {
		t.Fatalf("vault kv get = %q, %v", out, err)
	}
}

func mustBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := Binary(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestControllerLimits(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"default: Kubernetes' own", Options{}, nil},
		{"qps and burst", Options{ControllerQPS: 300, ControllerBurst: 500}, []string{"--kube-api-qps=300", "--kube-api-burst=500"}},
		{"fractional qps only", Options{ControllerQPS: 2.5}, []string{"--kube-api-qps=2.5"}},
		{"burst only", Options{ControllerBurst: 60}, []string{"--kube-api-burst=60"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := controllerLimits(tt.opts); !slices.Equal(got, tt.want) {
				t.Errorf("controllerLimits = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestClusterControllerLimits starts a control plane whose controller
// manager has raised client limits: it must accept the flags (Start waits
// for the default ServiceAccount it makes) and roll out a Deployment.
func TestClusterControllerLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	ctx := context.Background()
	c, err := Start(ctx, Options{ControllerQPS: 300, ControllerBurst: 500})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	var args []string
	for _, p := range c.procs {
		if p.name == "kube-controller-manager" {
			args = p.args
		}
	}
	for _, want := range []string{"--kube-api-qps=300", "--kube-api-burst=500"} {
		if !slices.Contains(args, want) {
			t.Errorf("kube-controller-manager started without %s: %q", want, args)
		}
	}
	ns := c.Namespace(t)
	cs := c.Client()
	zero := int32(0)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "app"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "app"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := cs.AppsV1().Deployments(ns).Get(ctx, "app", metav1.GetOptions{})
		return err == nil && got.Status.ObservedGeneration == got.Generation, err
	}); err != nil {
		t.Fatalf("Deployment %s/app not observed by the controller manager: %v", ns, err)
	}
}
