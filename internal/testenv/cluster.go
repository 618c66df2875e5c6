// Package testenv runs the real components deliver is tested against: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok (simulated
// nodes, so Deployments roll out and Jobs complete or fail), and a Vault dev
// server. The binaries are built from source by hack/testbin.sh and cached.
//
// On Linux every process is a child started with Pdeathsig: when the test
// binary ends, however it ends, the kernel kills them. Elsewhere (macOS) the
// package compiles and its components are stopped by the test's cleanup,
// but a test binary killed with SIGKILL leaves them running.
package testenv

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
)

//go:embed kwok-stages.yaml
var kwokStages []byte

// NodeName is the name of the simulated node that kwok manages.
const NodeName = "kwok-node-0"

// Labels that the kwok stages of the test cluster react to.
const (
	// FailLabel set to "true" on a Pod makes it end in phase Failed, exit code 1.
	FailLabel = "deliver.test/fail"
	// NeverReadyLabel on a Pod keeps it from ever becoming Ready.
	NeverReadyLabel = "deliver.test/never-ready"
)

// Options configure a Cluster. The zero value is ready to use.
type Options struct {
	// Dir holds data, certificates, kubeconfig and logs. Default: a new
	// temporary folder, removed by Stop.
	Dir string
	// StartTimeout bounds the start of each component. Default 90s: the
	// apiserver takes 5 to 20 s on a loaded 2-core machine.
	StartTimeout time.Duration
	// NoControllers starts only etcd and kube-apiserver, for tests that need
	// no rollouts.
	NoControllers bool
	// ControllerQPS, when above zero, is kube-controller-manager's
	// --kube-api-qps: its client-side limit on requests to the API server.
	// Default: the flag is not set, so Kubernetes' own default applies (20
	// QPS), as on most clusters. Every Deployment a tool creates costs the
	// controllers a ReplicaSet, status updates and an Event, so this limit
	// can bound how fast a rollout of many Deployments is observed.
	ControllerQPS float32
	// ControllerBurst, when above zero, is kube-controller-manager's
	// --kube-api-burst. Default: not set (Kubernetes' default, 30).
	ControllerBurst int
}

// Cluster is a running local control plane.
type Cluster struct {
	// Kubeconfig is the path of an admin kubeconfig for kubectl and deliver.
	Kubeconfig string
	// Config is the admin client configuration.
	Config *rest.Config
	// Dir holds the cluster's data and the log of each component.
	Dir string

	removeDir bool
	procs     []*process
}

// Start starts a control plane and returns once a Node is Ready and
// schedulable. Call Stop when done, also on error paths.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 90 * time.Second
	}
	// A component that lost its port to another process is started again,
	// with all of the control plane on new ports.
	for attempt := 1; ; attempt++ {
		c, err := start(ctx, opts)
		if !addrInUse(err) || attempt == 3 {
			return c, err
		}
	}
}

func start(ctx context.Context, opts Options) (c *Cluster, err error) {
	c = &Cluster{Dir: opts.Dir}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "deliver-testenv-"); err != nil {
			return nil, err
		}
		c.removeDir = true
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	bins := map[string]string{}
	names := []string{"etcd", "kube-apiserver"}
	if !opts.NoControllers {
		names = append(names, "kube-controller-manager", "kube-scheduler", "kwok")
	}
	for _, n := range names {
		if bins[n], err = Binary(n); err != nil {
			return nil, err
		}
	}
	logs := filepath.Join(c.Dir, "logs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		return nil, err
	}
	p, err := writePKI(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("testenv: certificates: %w", err)
	}

	// etcd
	etcdPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	etcdURL := "http://" + hostPort(etcdPort)
	etcd, err := startProcess("etcd", bins["etcd"], logs, []string{
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=http://" + hostPort(peerPort),
		"--initial-advertise-peer-urls=http://" + hostPort(peerPort),
		"--initial-cluster=default=http://" + hostPort(peerPort),
		"--unsafe-no-fsync", // test data; fsync only slows the tests down
		"--log-level=warn",
	}, nil)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, etcd)

	// kube-apiserver
	apiPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	api, err := startProcess("kube-apiserver", bins["kube-apiserver"], logs, []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir=" + c.Dir,
		"--tls-cert-file=" + p.ServingCert,
		"--tls-private-key-file=" + p.ServingKey,
		"--client-ca-file=" + p.CACert,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + p.SAPub,
		"--service-account-signing-key-file=" + p.SAKey,
		"--service-cluster-ip-range=10.96.0.0/12", // room for benchmarks with thousands of Services
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		"--endpoint-reconciler-type=none",
	}, nil)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, api)

	host := "https://" + hostPort(apiPort)
	c.Config = &rest.Config{
		Host: host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   p.caPEM,
			CertData: p.adminCertPEM,
			KeyData:  p.adminKeyPEM,
		},
		QPS:   200,
		Burst: 400,
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, host, p); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	if err := api.waitFor(ctx, opts.StartTimeout, func(ctx context.Context) error {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	if opts.NoControllers {
		return c, nil
	}

	// kube-controller-manager and kube-scheduler: leader election off (one
	// replica), their own ports, the admin kubeconfig for everything.
	cmPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	cmArgs := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		// no node IPAM (no pod CIDRs) and no node lifecycle (kwok's node
		// sends no kubelet heartbeats the way the controller expects)
		"--controllers=*,-nodeipam,-nodelifecycle",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", cmPort),
		"--service-account-private-key-file=" + p.SAKey,
		"--root-ca-file=" + p.CACert,
		"--use-service-account-credentials=false",
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10",
		"--concurrent-job-syncs=10",
	}
	cmArgs = append(cmArgs, controllerLimits(opts)...)
	cm, err := startProcess("kube-controller-manager", bins["kube-controller-manager"], logs, cmArgs, nil)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, cm)
	schedPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	sched, err := startProcess("kube-scheduler", bins["kube-scheduler"], logs, []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", schedPort),
	}, nil)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, sched)

	stages := filepath.Join(c.Dir, "kwok-stages.yaml")
	if err := os.WriteFile(stages, kwokStages, 0o600); err != nil {
		return nil, err
	}
	kwokPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	kwok, err := startProcess("kwok", bins["kwok"], logs, []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--config=" + stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--server-address=" + hostPort(kwokPort),
	}, []string{"HOME=" + c.Dir})
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, kwok)

	if err := registerNode(ctx, cs, kwok, opts.StartTimeout); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	// Pods need the default ServiceAccount, made by the controller manager.
	if err := cm.waitFor(ctx, opts.StartTimeout, func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	return c, nil
}

// controllerLimits are the kube-controller-manager flags of the options'
// client limits; none when they are left at zero.
func controllerLimits(opts Options) []string {
	var args []string
	if opts.ControllerQPS > 0 {
		args = append(args, "--kube-api-qps="+strconv.FormatFloat(float64(opts.ControllerQPS), 'f', -1, 32))
	}
	if opts.ControllerBurst > 0 {
		args = append(args, "--kube-api-burst="+strconv.Itoa(opts.ControllerBurst))
	}
	return args
}

// registerNode creates the simulated node and makes it schedulable. The
// apiserver taints a new Node not-ready; kwok then reports it Ready, but only
// the node lifecycle controller (not run here) would lift the taint.
func registerNode(ctx context.Context, cs kubernetes.Interface, kwok *process, timeout time.Duration) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        NodeName,
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
		Labels:      map[string]string{"kubernetes.io/hostname": NodeName, "kubernetes.io/os": "linux", "type": "kwok"},
	}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node: %w", err)
	}
	return kwok.waitFor(ctx, timeout, func(ctx context.Context) error {
		n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			return errors.New("node not ready")
		}
		if len(n.Spec.Taints) == 0 {
			return nil
		}
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			n.Spec.Taints = nil
			_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			return err
		})
	})
}

func writeKubeconfig(path, host string, p *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["deliver-test"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: p.caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM}
	cfg.Contexts["deliver-test"] = &clientcmdapi.Context{Cluster: "deliver-test", AuthInfo: "admin"}
	cfg.CurrentContext = "deliver-test"
	return clientcmd.WriteToFile(*cfg, path)
}

// Stop stops every component, newest first, and removes a temporary Dir.
func (c *Cluster) Stop() {
	if c == nil {
		return
	}
	_ = c.ResumeAPIServer() // a paused one would not see the SIGTERM
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(10 * time.Second)
	}
	c.procs = nil
	if c.removeDir {
		_ = os.RemoveAll(c.Dir)
	}
}

// Client returns a typed clientset for the cluster.
func (c *Cluster) Client() kubernetes.Interface {
	return kubernetes.NewForConfigOrDie(c.Config)
}

// PIDs returns the process IDs of the running components.
func (c *Cluster) PIDs() []int {
	var pids []int
	for _, p := range c.procs {
		if done, _ := p.exited(); !done {
			pids = append(pids, p.cmd.Process.Pid)
		}
	}
	return pids
}

// StopAPIServer kills kube-apiserver (SIGKILL, like a crashed control-plane
// node), for fault tests. Clients then get connection errors.
func (c *Cluster) StopAPIServer() {
	for _, p := range c.procs {
		if p.name == "kube-apiserver" {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
}

// PauseAPIServer stops kube-apiserver with SIGSTOP, like a server that
// stalls (a long garbage collection, a frozen VM): its connections stay
// open and requests hang rather than fail. ResumeAPIServer lets it go on.
// Stop resumes a paused server before it stops it.
func (c *Cluster) PauseAPIServer() error { return c.signalAPIServer(syscall.SIGSTOP) }

// ResumeAPIServer continues a kube-apiserver paused by PauseAPIServer.
func (c *Cluster) ResumeAPIServer() error { return c.signalAPIServer(syscall.SIGCONT) }

func (c *Cluster) signalAPIServer(sig syscall.Signal) error {
	for _, p := range c.procs {
		if p.name != "kube-apiserver" {
			continue
		}
		if done, err := p.exited(); done {
			return fmt.Errorf("testenv: kube-apiserver exited: %v", err)
		}
		if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
			return fmt.Errorf("testenv: signal kube-apiserver: %w", err)
		}
		return nil
	}
	return errors.New("testenv: no kube-apiserver in this cluster")
}

// StartAPIServer starts kube-apiserver again, on the same port and data,
// and waits until it is ready; the other components reconnect by
// themselves.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	for i, p := range c.procs {
		if p.name != "kube-apiserver" {
			continue
		}
		np, err := p.restart()
		if err != nil {
			return err
		}
		c.procs[i] = np
		cs, err := kubernetes.NewForConfig(c.Config)
		if err != nil {
			return err
		}
		return np.waitFor(ctx, 90*time.Second, func(ctx context.Context) error {
			_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			return err
		})
	}
	return errors.New("testenv: no kube-apiserver in this cluster")
}
