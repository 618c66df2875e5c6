package restart

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/deliverhq/deliver/pkg/object"
)

// Annotation is the pod template annotation that holds the digest.
const Annotation = "deliver.dev/config-digest"

// Pending is the annotation's value when there is no key to digest with:
// `deliver render`, which has no cluster, and a diff against a cluster
// where no apply has created the key yet. The data is not digested at all
// then, so that nothing about it shows.
const Pending = "pending"

// digestPrefix names the digest's algorithm in the annotation's value.
const digestPrefix = "hmac-sha256:"

// isWorkload reports the kinds whose pod template a controller rolls out
// when it changes. Jobs and CronJobs are left out: a Job's template is
// immutable and its Pods are not restarted, and a CronJob's next Job reads
// the config as it then is.
func isWorkload(id object.ID) bool {
	if id.Group != "apps" {
		return false
	}
	switch id.Kind {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
		return true
	}
	return false
}

// Stamp writes, into the pod template of every workload of set (apps/v1
// Deployment, StatefulSet, DaemonSet, ReplicaSet), the annotation
// Annotation: an HMAC-SHA256 under key of the data of the ConfigMaps and
// Secrets of set that the template references (see References). Objects
// without a namespace are in namespace. References to objects that are not
// in set (another app's, or made by a controller) are left out: deliver
// does not know when they change. A workload that references none of set
// is left as it is. With a nil key the annotation is Pending.
//
// The data must be the final one (secrets resolved): the digest is of what
// the Pods will read. A stamped workload is a copy, so that a set shared
// with a cache is not changed under it.
func Stamp(set *object.Set, namespace string, key []byte) error {
	type objKey struct {
		kind      Kind
		namespace string
		name      string
	}
	config := map[objKey]*unstructured.Unstructured{}
	for _, o := range set.Objects {
		id := o.ID()
		if id.Group != "" || (id.Kind != string(ConfigMap) && id.Kind != string(Secret)) {
			continue
		}
		config[objKey{Kind(id.Kind), cmp.Or(id.Namespace, namespace), id.Name}] = o.Unstructured
	}
	for _, o := range set.Objects {
		id := o.ID()
		if !isWorkload(id) {
			continue
		}
		raw, found, err := unstructured.NestedMap(o.Object, "spec", "template")
		if err != nil || !found {
			continue // the server will say what is wrong with it
		}
		var tmpl corev1.PodTemplateSpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &tmpl); err != nil {
			return fmt.Errorf("%s (%s): read pod template: %w", id, o.Origin, err)
		}
		ns := cmp.Or(id.Namespace, namespace)
		var refs []entry
		for _, r := range References(&tmpl.Spec) {
			if u, ok := config[objKey{r.Kind, ns, r.Name}]; ok {
				refs = append(refs, entryOf(r, u))
			}
		}
		if len(refs) == 0 {
			continue
		}
		value := Pending
		if key != nil {
			if value, err = digest(key, refs); err != nil {
				return fmt.Errorf("%s (%s): config digest: %w", id, o.Origin, err)
			}
		}
		u := o.DeepCopy()
		if md, found, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "template", "metadata"); found && md == nil {
			// A template's `metadata:` left empty by a chart.
			unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata")
		}
		ann, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "metadata", "annotations")
		if ann == nil {
			ann = map[string]string{}
		}
		ann[Annotation] = value
		if err := unstructured.SetNestedStringMap(u.Object, ann, "spec", "template", "metadata", "annotations"); err != nil {
			return fmt.Errorf("%s (%s): stamp pod template: %w", id, o.Origin, err)
		}
		o.Unstructured = u
	}
	return nil
}

// entry is what the digest covers of one referenced object: its kind and
// name, the bytes of the keys the template reads, and the keys it reads
// that the object lacks (so that adding one changes the digest).
type entry struct {
	Kind    Kind              `json:"kind"`
	Name    string            `json:"name"`
	Data    map[string][]byte `json:"data"`
	Missing []string          `json:"missing,omitempty"`
}

// entryOf reads the data r names from u as the Pod will see it: a
// ConfigMap's data and binaryData, a Secret's data with its stringData
// over it (as the API server merges them), base64 decoded, so that one
// value written either way digests the same.
func entryOf(r Ref, u *unstructured.Unstructured) entry {
	all := map[string][]byte{}
	decoded := func(field string) {
		m, _, _ := unstructured.NestedMap(u.Object, field)
		for k, v := range m {
			s, _ := v.(string)
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				b = []byte(s) // the server will refuse it; still digest it
			}
			all[k] = b
		}
	}
	plain := func(field string) {
		m, _, _ := unstructured.NestedMap(u.Object, field)
		for k, v := range m {
			s, _ := v.(string)
			all[k] = []byte(s)
		}
	}
	switch r.Kind {
	case ConfigMap:
		plain("data")
		decoded("binaryData")
	case Secret:
		decoded("data")
		plain("stringData")
	}
	e := entry{Kind: r.Kind, Name: r.Name, Data: all}
	if r.Keys != nil {
		e.Data = map[string][]byte{}
		for _, k := range r.Keys {
			if v, ok := all[k]; ok {
				e.Data[k] = v
			} else {
				e.Missing = append(e.Missing, k)
			}
		}
	}
	return e
}

// digest is the HMAC-SHA256 under key of the entries' canonical JSON
// (encoding/json sorts map keys; the entries come sorted). Keyed, so that
// the annotation, which anyone who may read the workload sees, cannot be
// checked against guesses of a Secret's value as a plain hash could.
func digest(key []byte, refs []entry) (string, error) {
	data, err := json.Marshal(refs)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(data)
	return digestPrefix + hex.EncodeToString(mac.Sum(nil)), nil
}
