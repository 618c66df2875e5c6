package secrets

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/deliverhq/deliver/pkg/object"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// encPrefix starts every value SOPS encrypted.
const encPrefix = "ENC[AES256_GCM,"

// DecryptManifest decrypts a YAML file of Kubernetes manifests encrypted in
// place (usually Secrets with data and stringData encrypted and metadata
// plain) and returns its objects. The values of a Secret's data are
// registered with the redactor both as written (base64) and decoded.
func (s *SOPS) DecryptManifest(ctx context.Context, name string, data []byte) ([]*unstructured.Unstructured, error) {
	plain, err := s.Decrypt(ctx, name, data, FormatYAML)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(plain)))
	for doc := 0; ; doc++ {
		b, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s#%d: read decrypted manifest: %s", name, doc, s.redactor.Redact(err.Error()))
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		m := map[string]any{}
		if err := yaml.Unmarshal(b, &m); err != nil {
			// The parser may quote the decrypted text.
			return nil, fmt.Errorf("%s#%d: parse decrypted manifest: %s", name, doc, s.redactor.Redact(err.Error()))
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "Secret" && u.GetAPIVersion() == "v1" {
			data, _, _ := unstructured.NestedMap(m, "data")
			for _, v := range data {
				if str, ok := v.(string); ok {
					if dec, err := base64.StdEncoding.DecodeString(str); err == nil {
						s.redactor.Add(string(dec))
					}
				}
			}
		}
		objs = append(objs, u)
	}
	return objs, nil
}

// CheckDecrypted refuses objects that still carry SOPS metadata (a
// top-level "sops" section) or SOPS-encrypted values, so that an encrypted
// Secret is never applied as is. The error names every such object and wraps
// ErrSOPSMetadata.
func CheckDecrypted(objs ...*unstructured.Unstructured) error {
	var errs []error
	for _, u := range objs {
		if u == nil {
			continue
		}
		if why := stillEncrypted(u.Object); why != "" {
			errs = append(errs, fmt.Errorf("%s: %w (%s)", object.IDOf(u), ErrSOPSMetadata, why))
		}
	}
	return errors.Join(errs...)
}

// stillEncrypted says why an object looks encrypted, or "".
func stillEncrypted(m map[string]any) string {
	if meta, ok := m["sops"].(map[string]any); ok {
		for _, k := range []string{"mac", "lastmodified", "version", "age", "pgp", "hc_vault", "kms"} {
			if _, ok := meta[k]; ok {
				return "top-level sops section"
			}
		}
	}
	var found string
	var walk func(v any, at string)
	walk = func(v any, at string) {
		if found != "" {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(e, strings.TrimPrefix(at+"."+k, "."))
			}
		case []any:
			for _, e := range x {
				walk(e, at)
			}
		case string:
			if strings.HasPrefix(x, encPrefix) {
				found = "encrypted value at " + at
			}
		}
	}
	walk(m, "")
	return found
}
