package testenv

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// StartSecond starts another control plane, next to the package's, for
// one test that needs two clusters at once, and stops it when the test
// ends. Only that test pays for it: on a 2-core machine a second
// apiserver for every test would slow them all. Unless withControllers
// it is etcd and kube-apiserver only, which is enough for objects that
// are ready once written (ConfigMaps, Secrets, Services). With -short
// the test is skipped.
func StartSecond(t testing.TB, withControllers bool) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("testenv: no control plane (-short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := Start(ctx, Options{NoControllers: !withControllers})
	if err != nil {
		t.Fatalf("testenv: start a second control plane: %v", err)
	}
	t.Cleanup(c.Stop)
	t.Logf("testenv: second control plane ready in %s (%s)", time.Since(start).Round(time.Millisecond), c.Dir)
	return c
}

// KubeconfigFor returns a kubeconfig whose context name (also its
// current context) reaches c with c's admin credentials: what a
// kubeconfig Secret of a remote cluster holds.
func (c *Cluster) KubeconfigFor(name string) ([]byte, error) {
	return clientcmd.Write(*kubeconfigOf(map[string]*rest.Config{name: c.Config}, name))
}

// WriteKubeconfigs writes one kubeconfig file with one context per
// cluster, named by the map's keys; current is the current context.
func WriteKubeconfigs(path string, clusters map[string]*Cluster, current string) error {
	cfgs := map[string]*rest.Config{}
	for name, c := range clusters {
		cfgs[name] = c.Config
	}
	return clientcmd.WriteToFile(*kubeconfigOf(cfgs, current), path)
}

// UnreachableKubeconfig returns a kubeconfig with c's credentials (CA,
// client certificate and key) for a server on a local port nobody
// listens on: an unreachable cluster whose connections are refused at
// once.
func (c *Cluster) UnreachableKubeconfig(name string) ([]byte, error) {
	port, err := closedPort()
	if err != nil {
		return nil, err
	}
	return c.KubeconfigAt(name, net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
}

// KubeconfigAt returns a kubeconfig with c's credentials for the server
// at hostPort instead of c's: a server that stalls, or is gone.
func (c *Cluster) KubeconfigAt(name, hostPort string) ([]byte, error) {
	cfg := rest.CopyConfig(c.Config)
	cfg.Host = "https://" + hostPort
	return clientcmd.Write(*kubeconfigOf(map[string]*rest.Config{name: cfg}, name))
}

// closedPort returns a port that was free a moment ago and is now closed
// again; nothing of the test process listens on it.
func closedPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

func kubeconfigOf(cfgs map[string]*rest.Config, current string) *clientcmdapi.Config {
	out := clientcmdapi.NewConfig()
	for name, cfg := range cfgs {
		out.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
		out.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
		out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	out.CurrentContext = current
	return out
}
