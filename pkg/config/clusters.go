package config

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation"
)

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
	if len(validation.IsDNS1123Label(env)) > 0 || len(env) > 48 {
		errs = append(errs, fmt.Errorf("environments.%s: a name must be a DNS label of at most 48 characters to have a kubeconfigSecret", env))
	}
	switch {
	case ref.Name == "":
		errs = append(errs, fmt.Errorf("%s.name is required", where))
	case len(validation.IsDNS1123Subdomain(ref.Name)) > 0:
		errs = append(errs, fmt.Errorf("%s.name %q is not a valid Secret name", where, ref.Name))
	}
	if ref.Key != "" && len(validation.IsConfigMapKey(ref.Key)) > 0 {
		errs = append(errs, fmt.Errorf("%s.key %q is not a valid Secret key", where, ref.Key))
	}
	if ref.Namespace != "" && len(validation.IsDNS1123Label(ref.Namespace)) > 0 {
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
