package config

import (
	"fmt"
	"regexp"
)

// dnsSubdomain is a Kubernetes object name: a Secret's name or a
// namespace's must match it to be found at all.
var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// secretKey is what a Secret's data key may be.
var secretKey = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// checkKubeconfigSecret checks environment env's kubeconfigSecret at parse
// time, so that a typo fails deliver diff on a laptop rather than the
// reconciler's first delivery to that cluster.
func checkKubeconfigSecret(env string, ref *KubeconfigSecretRef) []error {
	if ref == nil {
		return nil
	}
	where := "environments." + env + ".kubeconfigSecret"
	var errs []error
	// The reconciler names the environment's status ConfigMap after it
	// (deliver-status.<env>), so the name must fit in an object name.
	if !dnsLabel.MatchString(env) || len(env) > 48 {
		errs = append(errs, fmt.Errorf("environments.%s: a name must be a DNS label of at most 48 characters to have a kubeconfigSecret", env))
	}
	switch {
	case ref.Name == "":
		errs = append(errs, fmt.Errorf("%s.name is required", where))
	case len(ref.Name) > 253 || !dnsSubdomain.MatchString(ref.Name):
		errs = append(errs, fmt.Errorf("%s.name %q is not a valid Secret name", where, ref.Name))
	}
	if ref.Key != "" && (len(ref.Key) > 253 || !secretKey.MatchString(ref.Key)) {
		errs = append(errs, fmt.Errorf("%s.key %q is not a valid Secret key", where, ref.Key))
	}
	if ref.Namespace != "" && (len(ref.Namespace) > 63 || !dnsLabel.MatchString(ref.Namespace)) {
		errs = append(errs, fmt.Errorf("%s.namespace %q is not a valid namespace", where, ref.Namespace))
	}
	return errs
}

// SecretKey returns the key of the kubeconfig in the Secret, defaulted.
func (r *KubeconfigSecretRef) SecretKey() string {
	if r.Key == "" {
		return DefaultKubeconfigKey
	}
	return r.Key
}

// String names the Secret and key, never their content: namespace/name
// (key), the namespace left out when it defaults.
func (r *KubeconfigSecretRef) String() string {
	if r.Namespace == "" {
		return fmt.Sprintf("Secret %s (key %s)", r.Name, r.SecretKey())
	}
	return fmt.Sprintf("Secret %s/%s (key %s)", r.Namespace, r.Name, r.SecretKey())
}
