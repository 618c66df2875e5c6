// Package bootstrap installs deliver reconcile in a cluster, as flux
// bootstrap does for Flux: the manifests of deploy/ (Namespace,
// ServiceAccount, least-privilege RBAC, the Deployment, a
// PodDisruptionBudget and a Service), set to follow one repository, plus the
// Secrets the reconciler reads (git credentials, the SOPS age key, the
// webhook secret), taken from local files. They are applied as one app with
// deliver's own apply, so a second bootstrap changes only what differs and
// `deliver status` shows the reconciler like any app.
package bootstrap

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/deploy"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/render"
	"github.com/deliverhq/deliver/pkg/secrets"
)

// Namespace is where deploy/ installs the reconciler.
const Namespace = "deliver-system"

// App is the app name of the reconciler's own objects in their inventory.
const App = "deliver-reconciler"

// Names of the Secrets the Deployment reads.
const (
	SecretGit     = "deliver-git-credentials"
	SecretAgeKey  = "deliver-age-key"
	SecretWebhook = "deliver-webhook"
)

// Options say what the reconciler follows and with which credentials.
type Options struct {
	// Repo and Ref are the repository and ref to follow; Repo is required.
	Repo, Ref string
	// Env is the deliver.yaml environment to deliver.
	Env string
	// Interval is the poll interval. Default 1m.
	Interval time.Duration
	// Image is the reconciler's image. Default
	// ghcr.io/deliverhq/deliver:<Version>.
	Image string
	// Version tags the default image; "dev" or empty gives v0.1.0.
	Version string

	// GitTokenFile holds an HTTPS token for Repo (optional).
	GitTokenFile string
	// AgeKeyFile holds the SOPS age identities (optional).
	AgeKeyFile string
	// WebhookSecretFile holds the push webhook's secret; empty generates
	// one (read it back from the Secret to configure the forge).
	WebhookSecretFile string
	// VaultAddr, when set, keeps the Vault Agent sidecar (kubernetes auth
	// method, role "deliver") and points both containers at it; empty
	// removes Vault from the Deployment.
	VaultAddr string

	// Redactor learns every secret value read here, so that no output
	// shows one; one is made if nil.
	Redactor *secrets.Redactor
}

func (o *Options) defaults() error {
	if o.Repo == "" {
		return errors.New("bootstrap: a repository to follow is required")
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.Image == "" {
		v := o.Version
		if v == "" || v == "dev" {
			v = "v0.1.0"
		}
		o.Image = "ghcr.io/deliverhq/deliver:" + v
	}
	if o.Redactor == nil {
		o.Redactor = secrets.NewRedactor(secrets.RedactorOptions{})
	}
	return nil
}

// Objects returns the reconciler's objects for opts: deploy/ with the
// Deployment set to follow Repo, and the Secrets from the files named.
func Objects(opts Options) (*object.Set, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	set := &object.Set{}
	files, err := fs.Glob(deploy.Manifests, "*.yaml")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		data, err := fs.ReadFile(deploy.Manifests, f)
		if err != nil {
			return nil, err
		}
		objs, err := render.Decode("deploy/"+f, data)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		for _, o := range objs {
			o.Origin.App = App
			if o.GetKind() == "ConfigMap" && o.GetName() == "deliver-vault-agent" && opts.VaultAddr == "" {
				continue // the Vault Agent's configuration goes with it
			}
			if o.GetKind() == "Deployment" {
				if err := configure(o, opts); err != nil {
					return nil, fmt.Errorf("bootstrap: %s: %w", o.ID(), err)
				}
			}
			set.Objects = append(set.Objects, o)
		}
	}
	sec, err := secretObjects(opts)
	if err != nil {
		return nil, err
	}
	set.Objects = append(set.Objects, sec...)
	return set, nil
}

// configure points the reconciler Deployment at opts.
func configure(o *object.Object, opts Options) error {
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
		return err
	}
	spec := &d.Spec.Template.Spec
	i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == "deliver" })
	if i < 0 {
		return errors.New("no container named deliver")
	}
	c := &spec.Containers[i]
	c.Image = opts.Image
	args := []string{"reconcile", "--repo=" + opts.Repo, "--interval=" + opts.Interval.String(),
		"--listen=:8080", "--leader-elect", "--inventory-namespace=" + Namespace,
		"--webhook-secret-file=/etc/deliver/webhook/secret", "--cache-dir=/tmp/cache"}
	if opts.Ref != "" {
		args = append(args, "--ref="+opts.Ref)
	}
	if opts.Env != "" {
		args = append(args, "--env="+opts.Env)
	}
	if opts.AgeKeyFile != "" {
		args = append(args, "--age-key-file=/etc/deliver/age/keys.txt")
	}
	c.Args = args

	dropEnv := map[string]bool{}
	if opts.GitTokenFile == "" {
		dropEnv["DELIVER_GIT_TOKEN"] = true
	}
	if opts.VaultAddr == "" {
		dropEnv["VAULT_ADDR"], dropEnv["HOME"] = true, true
	}
	c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return dropEnv[e.Name] })
	dropVolume := map[string]bool{}
	if opts.AgeKeyFile == "" {
		dropVolume["age-key"] = true
	}
	if opts.VaultAddr == "" {
		dropVolume["vault-home"], dropVolume["vault-agent-config"] = true, true
		spec.Containers = slices.DeleteFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == "vault-agent" })
	} else {
		// Both the deliver container and the Vault Agent talk to Vault.
		for j := range spec.Containers {
			for k := range spec.Containers[j].Env {
				if spec.Containers[j].Env[k].Name == "VAULT_ADDR" {
					spec.Containers[j].Env[k].Value = opts.VaultAddr
				}
			}
		}
	}
	for j := range spec.Containers {
		spec.Containers[j].VolumeMounts = slices.DeleteFunc(spec.Containers[j].VolumeMounts, func(m corev1.VolumeMount) bool { return dropVolume[m.Name] })
	}
	spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v corev1.Volume) bool { return dropVolume[v.Name] })

	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&d)
	if err != nil {
		return err
	}
	// The typed round trip adds fields nobody set; they are not ours to own.
	delete(u, "status")
	unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u, "spec", "template", "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u, "spec", "strategy")
	o.Object = u
	return nil
}

// newSecret is one Secret the Deployment reads; its value is taught to the
// redactor first.
func newSecret(red *secrets.Redactor, name, key, value string) *object.Object {
	red.Add(value)
	s := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{"app.kubernetes.io/name": "deliver"}},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{key: value},
	}
	u, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
	unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
	return &object.Object{Unstructured: &unstructured.Unstructured{Object: u}, Origin: object.Origin{App: App, File: "bootstrap"}}
}

// secretObjects makes the Secrets the Deployment reads from local files.
func secretObjects(opts Options) ([]*object.Object, error) {
	var out []*object.Object
	add := func(name, key, value string) { out = append(out, newSecret(opts.Redactor, name, key, value)) }
	read := func(flag, path string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("bootstrap: %s: %w", flag, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("bootstrap: %s: %s is empty", flag, path)
		}
		return v, nil
	}
	if opts.GitTokenFile != "" {
		v, err := read("git token", opts.GitTokenFile)
		if err != nil {
			return nil, err
		}
		add(SecretGit, "token", v)
	}
	if opts.AgeKeyFile != "" {
		v, err := read("age key", opts.AgeKeyFile)
		if err != nil {
			return nil, err
		}
		add(SecretAgeKey, "keys.txt", v+"\n")
	}
	if opts.WebhookSecretFile != "" {
		v, err := read("webhook secret", opts.WebhookSecretFile)
		if err != nil {
			return nil, err
		}
		add(SecretWebhook, "secret", v)
	}
	return out, nil
}

// Install applies the reconciler's objects and waits until it runs. The
// webhook secret, when none is given, is generated once and kept: a
// second bootstrap leaves the one the forge knows in place.
func Install(ctx context.Context, cfg *rest.Config, opts Options, ao apply.Options) (*apply.Report, error) {
	m, set, err := prepare(ctx, cfg, &opts, ao)
	if err != nil {
		return nil, err
	}
	rep, err := m.Apply(ctx, set, planOptions(opts))
	if err != nil {
		return rep, fmt.Errorf("bootstrap: %w", opts.Redactor.Error(err))
	}
	return rep, nil
}

// Plan is Install's server-side dry run: what a bootstrap would change.
func Plan(ctx context.Context, cfg *rest.Config, opts Options, ao apply.Options) (*apply.Plan, error) {
	m, set, err := prepare(ctx, cfg, &opts, ao)
	if err != nil {
		return nil, err
	}
	p, err := m.Plan(ctx, set, planOptions(opts))
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", opts.Redactor.Error(err))
	}
	return p, nil
}

func planOptions(opts Options) apply.PlanOptions {
	return apply.PlanOptions{App: App, Wait: true, Revision: "bootstrap " + opts.Image}
}

func prepare(ctx context.Context, cfg *rest.Config, opts *Options, ao apply.Options) (*apply.Manager, *object.Set, error) {
	if err := opts.defaults(); err != nil {
		return nil, nil, err
	}
	set, err := Objects(*opts)
	if err != nil {
		return nil, nil, err
	}
	if opts.WebhookSecretFile == "" {
		s, err := webhookSecret(ctx, cfg, *opts)
		if err != nil {
			return nil, nil, err
		}
		set.Objects = append(set.Objects, s)
	}
	ao.InventoryNamespace = cmp.Or(ao.InventoryNamespace, Namespace)
	ao.DefaultNamespace = Namespace
	ao.Redact = opts.Redactor.Redact
	m, err := apply.New(cfg, ao)
	if err != nil {
		return nil, nil, fmt.Errorf("bootstrap: %w", err)
	}
	return m, set, nil
}

// webhookSecret returns the webhook Secret: the one in the cluster, or a
// new random one.
func webhookSecret(ctx context.Context, cfg *rest.Config, opts Options) (*object.Object, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var value string
	s, err := kc.CoreV1().Secrets(Namespace).Get(ctx, SecretWebhook, metav1.GetOptions{})
	if err == nil && len(s.Data["secret"]) > 0 { // keep the one the forge knows
		value = string(s.Data["secret"])
	} else {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		value = hex.EncodeToString(b[:])
	}
	return newSecret(opts.Redactor, SecretWebhook, "secret", value), nil
}
