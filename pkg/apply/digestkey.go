package apply

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DigestKeyName is the Secret, in the inventory namespace, that holds the
// key of the config digests (see pkg/restart): random, made by the first
// apply that needs it, and the same for every later run and process, so
// that a digest changes only when the data does. It is in no repository,
// so a digest cannot be checked against guesses of a Secret's value by
// anyone who lacks read access to deliver's namespace.
const DigestKeyName = "deliver-config-digest-key"

const (
	digestKeyField = "key"
	digestKeyBytes = 32
)

// DigestKey returns the key of the config digests. When the Secret is
// missing, create makes it (and deliver's namespace); without create
// (a diff, which never writes) the key is nil.
func (m *Manager) DigestKey(ctx context.Context, create bool) ([]byte, error) {
	ns := m.opts.InventoryNamespace
	secrets := m.kube.CoreV1().Secrets(ns)
	s, err := secrets.Get(ctx, DigestKeyName, metav1.GetOptions{})
	switch {
	case err == nil:
		return keyOf(s)
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("Secret/%s/%s: read: %w", ns, DigestKeyName, err)
	case !create:
		return nil, nil
	}
	key := make([]byte, digestKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("Secret/%s/%s: %w", ns, DigestKeyName, err)
	}
	s = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: DigestKeyName, Namespace: ns},
		Type:       "deliver.dev/digest-key",
		Data:       map[string][]byte{digestKeyField: key},
	}
	_, err = createInNamespace(ctx, m, func() (*corev1.Secret, error) {
		return secrets.Create(ctx, s, metav1.CreateOptions{FieldManager: m.opts.FieldManager})
	})
	if apierrors.IsAlreadyExists(err) {
		// Another run made it first: its key is the one.
		return m.DigestKey(ctx, false)
	}
	if err != nil {
		return nil, fmt.Errorf("Secret/%s/%s: create: %w", ns, DigestKeyName, err)
	}
	return key, nil
}

// keyOf reads the key of the digest key Secret.
func keyOf(s *corev1.Secret) ([]byte, error) {
	key := s.Data[digestKeyField]
	if len(key) < digestKeyBytes {
		return nil, fmt.Errorf("Secret/%s/%s: key %q holds %d bytes, want at least %d: delete the Secret and deliver makes a new key (every workload with restartOnConfigChange rolls once)",
			s.Namespace, s.Name, digestKeyField, len(key), digestKeyBytes)
	}
	return key, nil
}
