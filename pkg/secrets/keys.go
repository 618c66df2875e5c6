package secrets

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"filippo.io/age"
	agearmor "filippo.io/age/armor"
	"github.com/ProtonMail/go-crypto/openpgp"
	pgparmor "github.com/ProtonMail/go-crypto/openpgp/armor"
	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Environment variables SOPS itself reads for age keys.
const (
	// EnvAgeKey holds age identities, one per line.
	EnvAgeKey = "SOPS_AGE_KEY"
	// EnvAgeKeyFile names a file of age identities.
	EnvAgeKeyFile = "SOPS_AGE_KEY_FILE"
)

// AgeKeysFromEnv returns the age identities SOPS would take from its
// environment: the content of SOPS_AGE_KEY and of the file SOPS_AGE_KEY_FILE
// names, read through getenv (os.Getenv in a program, a map in a test).
// It returns nothing when neither is set.
func AgeKeysFromEnv(getenv func(string) string) ([]string, error) {
	var keys []string
	if k := getenv(EnvAgeKey); strings.TrimSpace(k) != "" {
		keys = append(keys, k)
	}
	if f := getenv(EnvAgeKeyFile); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: read age keys: %w", EnvAgeKeyFile, err)
		}
		keys = append(keys, string(b))
	}
	return keys, nil
}

// AgeKeysFromSecret returns the age identities stored in a Kubernetes
// Secret, for the in-cluster mode: every data entry whose name ends in
// ".agekey" (the convention Flux uses), or, when there is none, every entry
// holding an AGE-SECRET-KEY line.
func AgeKeysFromSecret(ctx context.Context, cs kubernetes.Interface, namespace, name string) ([]string, error) {
	what := "secret " + namespace + "/" + name
	s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: read age keys: %w", what, err)
	}
	names := make([]string, 0, len(s.Data))
	for k := range s.Data {
		names = append(names, k)
	}
	slices.Sort(names)
	var keys, loose []string
	for _, k := range names {
		v := string(s.Data[k])
		switch {
		case strings.HasSuffix(k, ".agekey"):
			keys = append(keys, v)
		case strings.Contains(v, "AGE-SECRET-KEY-"):
			loose = append(loose, v)
		}
	}
	if len(keys) == 0 {
		keys = loose
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no age key (no *.agekey entry, no AGE-SECRET-KEY value)", what)
	}
	return keys, nil
}

// parseAgeKeys parses age identities, one or more per string, one per line;
// empty lines and lines starting with # are skipped. Errors name the string
// and the line, never their content.
func parseAgeKeys(what string, keys []string) ([]age.Identity, error) {
	var ids []age.Identity
	for i, k := range keys {
		sc := bufio.NewScanner(strings.NewReader(k))
		sc.Buffer(nil, 1<<20)
		n := 0
		for sc.Scan() {
			n++
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			var id age.Identity
			var err error
			switch {
			case strings.HasPrefix(line, "AGE-SECRET-KEY-PQ-1"):
				id, err = age.ParseHybridIdentity(line)
			case strings.HasPrefix(line, "AGE-SECRET-KEY-1"):
				id, err = age.ParseX25519Identity(line)
			default:
				err = fmt.Errorf("not an age identity")
			}
			if err != nil {
				// The parser's own message may quote the key: leave it out.
				return nil, fmt.Errorf("%s %d, line %d: malformed age identity", what, i+1, n)
			}
			ids = append(ids, id)
		}
		if sc.Err() != nil {
			return nil, fmt.Errorf("%s %d: unreadable", what, i+1)
		}
	}
	return ids, nil
}

// parsePGPKeys reads PGP keyrings, armored or binary, into one list.
func parsePGPKeys(what string, rings [][]byte) (openpgp.EntityList, error) {
	var all openpgp.EntityList
	for i, r := range rings {
		var el openpgp.EntityList
		var err error
		if bytes.HasPrefix(bytes.TrimSpace(r), []byte("-----BEGIN PGP")) {
			el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(r))
		} else {
			el, err = openpgp.ReadKeyRing(bytes.NewReader(r))
		}
		if err != nil {
			return nil, fmt.Errorf("%s %d: malformed PGP keyring", what, i+1)
		}
		all = append(all, el...)
	}
	return all, nil
}

// grpcCallOption is the option type of SOPS' key service interface.
type grpcCallOption = grpc.CallOption

// ageArmor returns a reader of an age ciphertext, armored (as SOPS writes
// it) or not.
func ageArmor(ct []byte) io.Reader {
	t := bytes.TrimSpace(ct)
	if bytes.HasPrefix(t, []byte(agearmor.Header)) {
		return agearmor.NewReader(bytes.NewReader(t))
	}
	return bytes.NewReader(ct)
}

// pgpDecrypt decrypts an armored PGP message with a keyring.
func pgpDecrypt(what string, ring openpgp.EntityList, ct []byte) ([]byte, error) {
	block, err := pgparmor.Decode(bytes.NewReader(ct))
	if err != nil {
		return nil, fmt.Errorf("%s: malformed encrypted key", what)
	}
	md, err := openpgp.ReadMessage(block.Body, ring, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: none of the %d pgp keys can decrypt it: %v", what, len(ring), err)
	}
	b, err := io.ReadAll(md.UnverifiedBody)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	return b, nil
}
