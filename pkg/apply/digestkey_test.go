package apply_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestDigestKey: against the real control plane, a diff (no create) finds
// no key and writes nothing; applies racing to make it, in a namespace that
// does not exist yet, all get the one key written first; later reads, by
// another session too, get it again; a damaged key is an error that names
// the Secret and says how to recover, without its content.
func TestDigestKey(t *testing.T) {
	if env == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	invNS := env.Namespace(t) + "-key" // created by DigestKey
	t.Cleanup(func() {
		_ = env.Client().CoreV1().Namespaces().Delete(context.Background(), invNS, metav1.DeleteOptions{})
	})
	m := newManager(t, apply.Options{InventoryNamespace: invNS})

	key, err := m.DigestKey(ctx, false)
	if err != nil || key != nil {
		t.Fatalf("DigestKey without create, none there: %x, %v; want nil, nil", key, err)
	}
	if _, err := env.Client().CoreV1().Namespaces().Get(ctx, invNS, metav1.GetOptions{}); err == nil {
		t.Fatal("DigestKey without create made the namespace")
	}

	const racers = 4
	keys := make([][]byte, racers)
	var wg sync.WaitGroup
	for i := range racers {
		mi := newManager(t, apply.Options{InventoryNamespace: invNS}) // a session each
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := mi.DigestKey(ctx, true)
			if err != nil {
				t.Errorf("racer %d: %v", i, err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	if len(keys[0]) != 32 {
		t.Fatalf("key of %d bytes, want 32", len(keys[0]))
	}
	for i, k := range keys {
		if !bytes.Equal(k, keys[0]) {
			t.Errorf("racer %d got another key than racer 0", i)
		}
	}
	for _, c := range []bool{false, true} {
		if k, err := m.DigestKey(ctx, c); err != nil || !bytes.Equal(k, keys[0]) {
			t.Errorf("DigestKey(create=%v) after it was made: another key, or %v", c, err)
		}
	}

	s, err := env.Client().CoreV1().Secrets(invNS).Get(ctx, apply.DigestKeyName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["key"] = []byte("short-CANARY")
	if _, err := env.Client().CoreV1().Secrets(invNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = m.DigestKey(ctx, true)
	if err == nil || !strings.Contains(err.Error(), "Secret/"+invNS+"/"+apply.DigestKeyName) || !strings.Contains(err.Error(), "delete the Secret") {
		t.Fatalf("damaged key: %v, want an error naming the Secret and the way out", err)
	}
	if strings.Contains(err.Error(), "CANARY") {
		t.Errorf("the error shows the key: %v", err)
	}
}
