// Package restart makes a workload roll when the configuration it reads
// changes: it finds the ConfigMaps and Secrets a pod template references
// and stamps a keyed digest of their data into the template, as kapp's
// versioned resources do by other means. A change of the data changes the
// template, and the workload's controller rolls it out; nothing else does.
package restart

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Kind is the kind of object a pod template references.
type Kind string

// The kinds a reference can name.
const (
	ConfigMap Kind = "ConfigMap"
	Secret    Kind = "Secret"
)

// Ref is one ConfigMap or Secret a pod template reads.
type Ref struct {
	Kind Kind
	Name string
	// Keys are the keys it reads, sorted; nil means every key (envFrom,
	// a volume without items).
	Keys []string
}

// References returns what spec reads from ConfigMaps and Secrets, one Ref
// per object, sorted by kind and name: env valueFrom key refs, envFrom,
// configMap and secret volumes, and the configMap and secret sources of
// projected volumes, in containers, init containers and ephemeral
// containers. Optional references count like the others: when the object
// is there, its data is what the Pod sees. imagePullSecrets are left out:
// a changed pull secret does not change the running Pods.
func References(spec *corev1.PodSpec) []Ref {
	type key struct {
		kind Kind
		name string
	}
	// keys of each object; a nil entry with whole set reads every key.
	keys := map[key]map[string]bool{}
	whole := map[key]bool{}
	add := func(kind Kind, name string, ks ...string) {
		if name == "" {
			return
		}
		k := key{kind, name}
		if keys[k] == nil {
			keys[k] = map[string]bool{}
		}
		if len(ks) == 0 {
			whole[k] = true
		}
		for _, s := range ks {
			keys[k][s] = true
		}
	}
	itemKeys := func(items []corev1.KeyToPath) []string {
		out := make([]string, 0, len(items))
		for _, it := range items {
			out = append(out, it.Key)
		}
		return out
	}
	addItems := func(kind Kind, name string, items []corev1.KeyToPath) {
		if len(items) == 0 {
			add(kind, name)
			return
		}
		add(kind, name, itemKeys(items)...)
	}
	env := func(envs []corev1.EnvVar, from []corev1.EnvFromSource) {
		for _, e := range envs {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				add(ConfigMap, r.Name, r.Key)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				add(Secret, r.Name, r.Key)
			}
		}
		for _, f := range from {
			if f.ConfigMapRef != nil {
				add(ConfigMap, f.ConfigMapRef.Name)
			}
			if f.SecretRef != nil {
				add(Secret, f.SecretRef.Name)
			}
		}
	}
	for _, c := range spec.InitContainers {
		env(c.Env, c.EnvFrom)
	}
	for _, c := range spec.Containers {
		env(c.Env, c.EnvFrom)
	}
	for _, c := range spec.EphemeralContainers {
		env(c.Env, c.EnvFrom)
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			addItems(ConfigMap, v.ConfigMap.Name, v.ConfigMap.Items)
		}
		if v.Secret != nil {
			addItems(Secret, v.Secret.SecretName, v.Secret.Items)
		}
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ConfigMap != nil {
				addItems(ConfigMap, s.ConfigMap.Name, s.ConfigMap.Items)
			}
			if s.Secret != nil {
				addItems(Secret, s.Secret.Name, s.Secret.Items)
			}
		}
	}
	out := make([]Ref, 0, len(keys))
	for k, ks := range keys {
		r := Ref{Kind: k.kind, Name: k.name}
		if !whole[k] {
			for s := range ks {
				r.Keys = append(r.Keys, s)
			}
			slices.Sort(r.Keys)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Ref) int {
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}
