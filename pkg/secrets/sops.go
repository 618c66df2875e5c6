package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"

	"filippo.io/age"
	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/cmd/sops/formats"
	"github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/hcvault"
	"github.com/getsops/sops/v3/keyservice"
	sopspgp "github.com/getsops/sops/v3/pgp"
	"github.com/getsops/sops/v3/stores/dotenv"
	"github.com/getsops/sops/v3/stores/ini"
	sopsjson "github.com/getsops/sops/v3/stores/json"
	sopsyaml "github.com/getsops/sops/v3/stores/yaml"
)

// Format is the format of a SOPS file.
type Format string

// The formats SOPS knows.
const (
	// FormatAuto picks the format from the file's extension.
	FormatAuto Format = ""
	// FormatYAML is YAML, one or more documents.
	FormatYAML Format = "yaml"
	// FormatJSON is a JSON document.
	FormatJSON Format = "json"
	// FormatDotenv is KEY=value lines.
	FormatDotenv Format = "dotenv"
	// FormatINI is an INI file with sections.
	FormatINI Format = "ini"
	// FormatBinary is any file, encrypted whole.
	FormatBinary Format = "binary"
)

// ParseFormat checks a format name given by a user. The empty string is
// FormatAuto.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatAuto, FormatYAML, FormatJSON, FormatDotenv, FormatINI, FormatBinary:
		return f, nil
	}
	return "", fmt.Errorf("sops format %q: %w (want yaml, json, dotenv, ini or binary)", s, ErrUnknownFormat)
}

// FormatForPath returns the format the sops CLI picks for a file name
// (its formats.FormatForPath, whose suffixes are case-sensitive: a
// secret.YAML is a binary file to sops): yaml for .yaml and .yml, json for
// .json, dotenv for .env, ini for .ini, binary otherwise.
func FormatForPath(path string) Format {
	switch formats.FormatForPath(path) {
	case formats.Yaml:
		return FormatYAML
	case formats.Json:
		return FormatJSON
	case formats.Dotenv:
		return FormatDotenv
	case formats.Ini:
		return FormatINI
	}
	return FormatBinary
}

// store returns the SOPS store for a resolved format.
func (f Format) store() (sops.Store, error) {
	// The CLI's defaults (config.NewStoresConfig): JSON is written
	// indented with tabs, as `sops -d` prints it, not on one line per
	// value as a zero JSONStoreConfig writes it.
	c := config.NewStoresConfig()
	switch f {
	case FormatYAML:
		return sopsyaml.NewStore(&c.YAML), nil
	case FormatJSON:
		return sopsjson.NewStore(&c.JSON), nil
	case FormatDotenv:
		return dotenv.NewStore(&c.Dotenv), nil
	case FormatINI:
		return ini.NewStore(&c.INI), nil
	case FormatBinary:
		return sopsjson.NewBinaryStore(&c.JSONBinary), nil
	}
	return nil, fmt.Errorf("sops format %q: %w", string(f), ErrUnknownFormat)
}

// SOPSOptions configure a SOPS decrypter. Keys are given explicitly: the
// process environment is read only through Env, and never written.
type SOPSOptions struct {
	// AgeKeys are age identities (AGE-SECRET-KEY-1…), one or more per
	// string, one per line; lines starting with # are skipped.
	AgeKeys []string
	// AgeKeyFiles are files of age identities in the same format, like
	// the keys.txt age-keygen writes.
	AgeKeyFiles []string
	// PGPKeys are PGP private keys or keyrings, armored or binary, such as
	// the output of gpg --export-secret-keys. Passphrase-protected keys are
	// not supported.
	PGPKeys [][]byte
	// PGPKeyringFiles are files holding PGP private keys or keyrings, such
	// as a secring.gpg.
	PGPKeyringFiles []string
	// Vault decrypts data keys encrypted with a Vault transit key. The
	// transit key is used at this client's address whatever address the
	// file records. Nil: such files fail with ErrNoKey.
	Vault *Vault
	// Env, when set, is how the environment is read: SOPS_AGE_KEY and
	// SOPS_AGE_KEY_FILE add age keys. Pass os.Getenv to honour the
	// process environment. Nil: the environment is not read.
	Env func(string) string
	// NoCloudKMS turns off the other key types (AWS, GCP and Azure KMS,
	// HuaweiCloud KMS). By default they go to SOPS' own key service, which
	// takes credentials from the environment like the sops CLI.
	NoCloudKMS bool
	// Redactor is given every decrypted value. Nil: values are not
	// registered anywhere.
	Redactor *Redactor
}

// SOPS decrypts SOPS files with the keys it was given. It is safe for
// concurrent use.
type SOPS struct {
	ages     []age.Identity
	pgp      openpgp.EntityList
	vault    *Vault
	cloud    bool
	redactor *Redactor
}

// NewSOPS parses the keys in opts. Errors name the key or file that is
// malformed, never its content.
func NewSOPS(opts SOPSOptions) (*SOPS, error) {
	ageKeys := append([]string(nil), opts.AgeKeys...)
	for _, f := range opts.AgeKeyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: read age keys: %w", f, err)
		}
		ageKeys = append(ageKeys, string(b))
	}
	if opts.Env != nil {
		env, err := AgeKeysFromEnv(opts.Env)
		if err != nil {
			return nil, err
		}
		ageKeys = append(ageKeys, env...)
	}
	ids, err := parseAgeKeys("age key", ageKeys)
	if err != nil {
		return nil, err
	}
	rings := append([][]byte(nil), opts.PGPKeys...)
	for _, f := range opts.PGPKeyringFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: read pgp keyring: %w", f, err)
		}
		rings = append(rings, b)
	}
	ring, err := parsePGPKeys("pgp key", rings)
	if err != nil {
		return nil, err
	}
	return &SOPS{ages: ids, pgp: ring, vault: opts.Vault, cloud: !opts.NoCloudKMS, redactor: opts.Redactor}, nil
}

// Decrypt decrypts a SOPS document in memory and returns its cleartext in
// the same format. name, usually the file's path, names the document in
// errors and picks the format when format is FormatAuto.
func (s *SOPS) Decrypt(ctx context.Context, name string, data []byte, format Format) ([]byte, error) {
	var out []byte
	err := s.run(ctx, name, data, format, func(st sops.Store, t *sops.Tree) error {
		var err error
		out, err = st.EmitPlainFile(t.Branches)
		return err
	})
	return out, err
}

// DecryptFile reads and decrypts a SOPS file.
func (s *SOPS) DecryptFile(ctx context.Context, path string, format Format) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s.Decrypt(ctx, path, data, format)
}

// DecryptData decrypts a SOPS document into plain Go values: for YAML and
// JSON the first document as a map, for dotenv a flat map, for INI a map of
// sections, for binary a map with the single key "data".
func (s *SOPS) DecryptData(ctx context.Context, name string, data []byte, format Format) (map[string]any, error) {
	var out map[string]any
	err := s.run(ctx, name, data, format, func(_ sops.Store, t *sops.Tree) error {
		if len(t.Branches) == 0 {
			out = map[string]any{}
			return nil
		}
		out, _ = plainValue(t.Branches[0]).(map[string]any)
		return nil
	})
	return out, err
}

// IsEncrypted reports whether data is a SOPS document: it parses and carries
// sops metadata. format FormatAuto picks the format from name.
func IsEncrypted(name string, data []byte, format Format) bool {
	if format == FormatAuto {
		format = FormatForPath(name)
	}
	st, err := format.store()
	if err != nil {
		return false
	}
	ok := false
	_ = guard(func() error {
		_, err := st.LoadEncryptedFile(data)
		ok = err == nil
		return nil
	})
	return ok
}

// run is the one way into the SOPS engine: it loads, decrypts and
// verifies a document, registers its secret values, and hands the decrypted
// tree to emit. A panic anywhere in the engine becomes an error. Errors name
// the document and never carry its values, MACs or keys.
func (s *SOPS) run(ctx context.Context, name string, data []byte, format Format, emit func(sops.Store, *sops.Tree) error) error {
	if format == FormatAuto {
		format = FormatForPath(name)
	}
	st, err := format.store()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: decrypt: %w", name, err)
	}
	var values []string
	err = guard(func() error {
		tree, err := st.LoadEncryptedFile(data)
		if err != nil {
			if errors.Is(err, sops.MetadataNotFound) {
				return ErrNotEncrypted
			}
			return fmt.Errorf("parse %s: %s", format, s.redactor.Redact(err.Error()))
		}
		encrypted := leaves(tree.Branches, func(v any) bool {
			str, ok := v.(string)
			return ok && strings.HasPrefix(str, "ENC[")
		})
		kc := &keyClient{ctx: ctx, s: s}
		key, err := tree.Metadata.GetDataKeyWithKeyServices(
			[]keyservice.KeyServiceClient{kc},
			[]string{sopsage.KeyTypeIdentifier, sopspgp.KeyTypeIdentifier, hcvault.KeyTypeIdentifier})
		if err != nil {
			return kc.err(len(tree.Metadata.KeyGroups))
		}
		cipher := aes.NewCipher()
		mac, err := tree.Decrypt(key, cipher)
		if err != nil {
			return fmt.Errorf("%w: a value fails authentication", ErrMACMismatch)
		}
		fileMAC, err := cipher.Decrypt(tree.Metadata.MessageAuthenticationCode, key, tree.Metadata.LastModified.Format(time.RFC3339))
		if err != nil || fileMAC != mac {
			return ErrMACMismatch
		}
		i := 0
		leaves(tree.Branches, func(v any) bool {
			if i < len(encrypted) && encrypted[i] {
				values = append(values, secretForms(v)...)
			}
			i++
			return false
		})
		s.redactor.Add(values...)
		return emit(st, &tree)
	})
	if err != nil {
		return fmt.Errorf("%s: decrypt: %w", name, err)
	}
	return nil
}

// guard runs fn and turns a panic into an error. A panic's message may quote
// the document, so only runtime errors (which carry no data) are kept.
func guard(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if re, ok := p.(runtime.Error); ok {
				err = fmt.Errorf("sops engine panicked: %v", re)
				return
			}
			err = fmt.Errorf("sops engine panicked (%T)", p)
		}
	}()
	return fn()
}

// leaves walks the values of a tree in a fixed order and returns f of each.
func leaves(branches sops.TreeBranches, f func(any) bool) []bool {
	var out []bool
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case sops.TreeBranch:
			for _, it := range x {
				if _, ok := it.Key.(sops.Comment); ok {
					continue
				}
				walk(it.Value)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case sops.Comment:
		default:
			out = append(out, f(x))
		}
	}
	for _, b := range branches {
		walk(b)
	}
	return out
}

// secretForms returns the text of a decrypted value to register, and, when
// the value is base64 of readable text (a Secret's data), the decoded text.
func secretForms(v any) []string {
	if v == nil {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		s = fmt.Sprint(v)
	}
	out := []string{s}
	if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s)); err == nil && len(dec) > 0 && utf8.Valid(dec) {
		out = append(out, string(dec))
	}
	return out
}

// plainValue turns a decrypted tree into plain Go values.
func plainValue(v any) any {
	switch x := v.(type) {
	case sops.TreeBranch:
		m := make(map[string]any, len(x))
		for _, it := range x {
			k, ok := it.Key.(string)
			if !ok {
				continue
			}
			if _, ok := it.Value.(sops.Comment); ok {
				continue
			}
			m[k] = plainValue(it.Value)
		}
		return m
	case []any:
		l := make([]any, 0, len(x))
		for _, e := range x {
			if _, ok := e.(sops.Comment); ok {
				continue
			}
			l = append(l, plainValue(e))
		}
		return l
	}
	return v
}

// keyClient is the key service SOPS asks for a file's data key: it tries
// the keys given in SOPSOptions, and remembers why each one failed so the
// final error can say so without SOPS' own (long, unredacted) wording.
type keyClient struct {
	ctx   context.Context
	s     *SOPS
	fails []error
}

// Encrypt is not supported: this package only decrypts.
func (c *keyClient) Encrypt(context.Context, *keyservice.EncryptRequest, ...grpcCallOption) (*keyservice.EncryptResponse, error) {
	return nil, errors.New("encrypt: not supported")
}

// Decrypt decrypts one data key (or Shamir part) with one master key.
func (c *keyClient) Decrypt(_ context.Context, req *keyservice.DecryptRequest, _ ...grpcCallOption) (*keyservice.DecryptResponse, error) {
	pt, err := c.decrypt(req)
	if err != nil {
		c.fails = append(c.fails, err)
		return nil, err
	}
	return &keyservice.DecryptResponse{Plaintext: pt}, nil
}

func (c *keyClient) decrypt(req *keyservice.DecryptRequest) ([]byte, error) {
	switch k := req.GetKey().GetKeyType().(type) {
	case *keyservice.Key_AgeKey:
		what := "age " + k.AgeKey.GetRecipient()
		if len(c.s.ages) == 0 {
			return nil, fmt.Errorf("%s: no age identity configured", what)
		}
		r, err := age.Decrypt(ageArmor(req.Ciphertext), c.s.ages...)
		if err != nil {
			var nm *age.NoIdentityMatchError
			if errors.As(err, &nm) {
				return nil, fmt.Errorf("%s: none of the %d age identities matches", what, len(c.s.ages))
			}
			return nil, fmt.Errorf("%s: %v", what, err)
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(r); err != nil {
			return nil, fmt.Errorf("%s: %v", what, err)
		}
		return b.Bytes(), nil
	case *keyservice.Key_PgpKey:
		what := "pgp " + k.PgpKey.GetFingerprint()
		if len(c.s.pgp) == 0 {
			return nil, fmt.Errorf("%s: no pgp key configured", what)
		}
		return pgpDecrypt(what, c.s.pgp, req.Ciphertext)
	case *keyservice.Key_VaultKey:
		vk := k.VaultKey
		what := "vault transit " + vk.GetEnginePath() + "/keys/" + vk.GetKeyName()
		if c.s.vault == nil {
			return nil, fmt.Errorf("%s: no vault client configured", what)
		}
		pt, err := c.s.vault.transitDecrypt(c.ctx, vk.GetEnginePath(), vk.GetKeyName(), string(req.Ciphertext))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return pt, nil
	case nil:
		return nil, errors.New("empty key")
	default:
		what := strings.TrimPrefix(fmt.Sprintf("%T", k), "*keyservice.Key_")
		if !c.s.cloud {
			return nil, fmt.Errorf("%s: cloud KMS keys are turned off", what)
		}
		rsp, err := keyservice.NewLocalClient().Decrypt(c.ctx, req)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", what, err)
		}
		return rsp.Plaintext, nil
	}
}

// err is the error for a data key no key could decrypt.
func (c *keyClient) err(groups int) error {
	if len(c.fails) == 0 {
		return fmt.Errorf("%w: the file lists no key (%d key groups)", ErrNoKey, groups)
	}
	return fmt.Errorf("%w: %w", ErrNoKey, errList(c.fails))
}

// errList is a list of errors printed on one line.
type errList []error

func (e errList) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e errList) Unwrap() []error { return e }
