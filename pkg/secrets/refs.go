package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/deliverhq/deliver/pkg/object"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Backends of refs.
const (
	// BackendVault reads a Vault secret: ref+vault://PATH#/KEY.
	BackendVault = "vault"
	// BackendSOPS reads a SOPS file: ref+sops://FILE#/KEY.
	BackendSOPS = "sops"
)

// refPattern finds refs in the syntax of vals and helmfile:
// ref+BACKEND://PATH#FRAGMENT, ended by a "+", a blank, a quote or the end
// of the string.
var refPattern = regexp.MustCompile(`ref\+([a-z0-9]+)://([^#\s+"']*)(#[^\s+"']*)?\+?`)

// Ref is a reference to a secret value.
type Ref struct {
	// Raw is the ref as written, without a closing "+".
	Raw string
	// Backend is BackendVault or BackendSOPS.
	Backend string
	// Path is the Vault path, or the SOPS file relative to the Resolver's
	// root.
	Path string
	// Keys is the fragment split into keys: "#/db/password" is
	// ["db", "password"]. Empty: the whole secret.
	Keys []string
}

// String returns the ref as written.
func (r Ref) String() string { return r.Raw }

// ParseRef parses one ref, the whole of s (a closing "+" is allowed).
func ParseRef(s string) (Ref, error) {
	m := refPattern.FindStringSubmatchIndex(s)
	if m == nil || m[0] != 0 || m[1] != len(s) {
		return Ref{}, fmt.Errorf("%q: %w", s, ErrBadRef)
	}
	return refAt(s, m)
}

// refAt builds the Ref of a match of refPattern.
func refAt(s string, m []int) (Ref, error) {
	raw := strings.TrimSuffix(s[m[0]:m[1]], "+")
	r := Ref{Raw: raw, Backend: s[m[2]:m[3]], Path: s[m[4]:m[5]]}
	if r.Backend != BackendVault && r.Backend != BackendSOPS {
		return r, fmt.Errorf("%s: %w: unknown backend %q (want vault or sops)", raw, ErrBadRef, r.Backend)
	}
	if strings.Contains(r.Path, "?") {
		return r, fmt.Errorf("%s: %w: query parameters are not supported", raw, ErrBadRef)
	}
	if strings.Trim(r.Path, "/") == "" {
		return r, fmt.Errorf("%s: %w: empty path", raw, ErrBadRef)
	}
	if m[6] >= 0 {
		frag := strings.TrimPrefix(strings.TrimPrefix(s[m[6]:m[7]], "#"), "/")
		if frag != "" {
			for k := range strings.SplitSeq(frag, "/") {
				r.Keys = append(r.Keys, strings.ReplaceAll(strings.ReplaceAll(k, "~1", "/"), "~0", "~"))
			}
		}
	}
	return r, nil
}

// FindRefs returns the refs in s, in order.
func FindRefs(s string) ([]Ref, error) {
	var refs []Ref
	for _, m := range refPattern.FindAllStringSubmatchIndex(s, -1) {
		r, err := refAt(s, m)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// ResolverOptions configure a Resolver.
type ResolverOptions struct {
	// Vault reads ref+vault refs. Nil: they fail.
	Vault *Vault
	// SOPS decrypts the files of ref+sops refs. Nil: they fail.
	SOPS *SOPS
	// Root is the folder ref+sops paths are relative to, usually the
	// repository snapshot; a ref cannot reach outside it. Required for
	// ref+sops.
	Root string
	// Redactor is given every resolved value. Nil: values are not
	// registered here (Vault and SOPS may still register them).
	Redactor *Redactor
	// Concurrency bounds how many objects ResolveObjects works on at
	// once. Default 8.
	Concurrency int
}

// Resolver replaces refs with the values they point to. One Resolver is one
// run: each Vault path and each SOPS file is read once, however many refs
// and goroutines ask for it, and nothing is kept after the Resolver is
// dropped. It is safe for concurrent use.
type Resolver struct {
	opts  ResolverOptions
	group singleflight.Group
	mu    sync.Mutex
	got   map[string]fetched
	cur   map[string]fetched // current versions read by CurrentVaultVersion
}

type fetched struct {
	data    map[string]any
	version int // of a KV v2 secret; 0 otherwise
	err     error
}

// NewResolver returns a Resolver for one run.
func NewResolver(opts ResolverOptions) *Resolver {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	return &Resolver{opts: opts, got: map[string]fetched{}, cur: map[string]fetched{}}
}

// Resolve resolves the refs in one string. A string that is one whole ref
// becomes the value it points to, of any type (a map when the ref names no
// key); refs embedded in a longer string are replaced by their text, and
// must point to scalars. A string without refs is returned as is.
func (r *Resolver) Resolve(ctx context.Context, s string) (any, error) {
	if !strings.Contains(s, "ref+") {
		return s, nil
	}
	ms := refPattern.FindAllStringSubmatchIndex(s, -1)
	if len(ms) == 0 {
		return s, nil
	}
	if len(ms) == 1 && ms[0][0] == 0 && ms[0][1] == len(s) {
		ref, err := refAt(s, ms[0])
		if err != nil {
			return nil, err
		}
		return r.value(ctx, ref)
	}
	var b strings.Builder
	last := 0
	for _, m := range ms {
		ref, err := refAt(s, m)
		if err != nil {
			return nil, err
		}
		v, err := r.value(ctx, ref)
		if err != nil {
			return nil, err
		}
		text, ok := scalarText(v)
		if !ok {
			return nil, fmt.Errorf("%s: value is a %s, cannot be embedded in a string", ref.Raw, kindOf(v))
		}
		b.WriteString(s[last:m[0]])
		b.WriteString(text)
		last = m[1]
	}
	b.WriteString(s[last:])
	return b.String(), nil
}

// ResolveValues returns a copy of a values tree (a Helm values file) with
// every ref resolved. name, usually the file, names it in errors, with the
// key path of the failing value.
func (r *Resolver) ResolveValues(ctx context.Context, name string, values map[string]any) (map[string]any, error) {
	out, err := r.walk(ctx, values, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m, _ := out.(map[string]any)
	return m, nil
}

// ResolveObject resolves every ref in an object, in place. Errors name the
// object and the field.
func (r *Resolver) ResolveObject(ctx context.Context, u *unstructured.Unstructured) error {
	out, err := r.walk(ctx, u.Object, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", object.IDOf(u), err)
	}
	u.Object = out.(map[string]any)
	return nil
}

// ResolveObjects resolves the refs of many objects concurrently, in place.
// It returns the errors of all the objects that failed, joined.
func (r *Resolver) ResolveObjects(ctx context.Context, objs []*unstructured.Unstructured) error {
	var g errgroup.Group
	g.SetLimit(r.opts.Concurrency)
	errs := make([]error, len(objs))
	for i, u := range objs {
		g.Go(func() error {
			errs[i] = r.ResolveObject(ctx, u)
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// walk returns a copy of v with the refs in its strings resolved.
func (r *Resolver) walk(ctx context.Context, v any, at []string) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			e, err := r.walk(ctx, x[k], append(at, k))
			if err != nil {
				return nil, err
			}
			out[k] = e
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			e, err := r.walk(ctx, e, append(at, "["+strconv.Itoa(i)+"]"))
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case string:
		res, err := r.Resolve(ctx, x)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fieldPath(at), err)
		}
		return res, nil
	}
	return v, nil
}

// fieldPath formats a key path: spec.template.env[0].value.
func fieldPath(at []string) string {
	var b strings.Builder
	for i, k := range at {
		if i > 0 && !strings.HasPrefix(k, "[") {
			b.WriteByte('.')
		}
		b.WriteString(k)
	}
	if b.Len() == 0 {
		return "."
	}
	return b.String()
}

// value returns the value a ref points to.
func (r *Resolver) value(ctx context.Context, ref Ref) (any, error) {
	data, err := r.fetch(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Raw, err)
	}
	var v any = data
	for i, k := range ref.Keys {
		switch x := v.(type) {
		case map[string]any:
			e, ok := x[k]
			if !ok {
				return nil, fmt.Errorf("%s: key %s: %w", ref.Raw, strings.Join(ref.Keys[:i+1], "/"), ErrNotFound)
			}
			v = e
		case []any:
			n, err := strconv.Atoi(k)
			if err != nil || n < 0 || n >= len(x) {
				return nil, fmt.Errorf("%s: key %s: %w", ref.Raw, strings.Join(ref.Keys[:i+1], "/"), ErrNotFound)
			}
			v = x[n]
		default:
			return nil, fmt.Errorf("%s: key %s: %w (%s is a %s)", ref.Raw, strings.Join(ref.Keys[:i+1], "/"),
				ErrNotFound, strings.Join(ref.Keys[:i], "/"), kindOf(v))
		}
	}
	v = normalize(v)
	if r.opts.Redactor != nil {
		registerAll(r.opts.Redactor, v)
	}
	return v, nil
}

// fetch reads the secret or file of a ref, once per Resolver.
func (r *Resolver) fetch(ctx context.Context, ref Ref) (map[string]any, error) {
	key := ref.Backend + "\x00" + strings.Trim(ref.Path, "/")
	r.mu.Lock()
	f, ok := r.got[key]
	r.mu.Unlock()
	if ok {
		return f.data, f.err
	}
	res, _, _ := r.group.Do(key, func() (any, error) {
		r.mu.Lock()
		f, ok := r.got[key]
		r.mu.Unlock()
		if ok {
			return f, nil
		}
		switch ref.Backend {
		case BackendVault:
			f.data, f.version, f.err = r.readVault(ctx, ref.Path)
		case BackendSOPS:
			f.data, f.err = r.readSOPS(ctx, ref.Path)
		}
		// A cancelled read is not the answer for the rest of the run.
		if !errors.Is(f.err, context.Canceled) && !errors.Is(f.err, context.DeadlineExceeded) {
			r.mu.Lock()
			r.got[key] = f
			r.mu.Unlock()
		}
		return f, nil
	})
	f = res.(fetched)
	return f.data, f.err
}

func (r *Resolver) readVault(ctx context.Context, p string) (map[string]any, int, error) {
	if r.opts.Vault == nil {
		return nil, 0, errors.New("no vault configured")
	}
	return r.opts.Vault.ReadKVVersion(ctx, p)
}

// VaultVersion returns the version of the KV v2 secret at Vault path p
// whose values this Resolver resolved refs with; false when it read none
// there, the read failed, or the secret has no versions (KV v1).
func (r *Resolver) VaultVersion(p string) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.got[BackendVault+"\x00"+strings.Trim(p, "/")]
	if !ok || f.err != nil || f.version <= 0 {
		return 0, false
	}
	return f.version, true
}

// CurrentVaultVersion returns the current version of the KV v2 secret at
// Vault path p, read from its metadata (Vault.KVVersion), never its
// values. Like the values, it is read once per Resolver however many
// goroutines ask, and kept for the Resolver's life (a run): every app of
// the run compares with the same answer.
func (r *Resolver) CurrentVaultVersion(ctx context.Context, p string) (int, error) {
	if r.opts.Vault == nil {
		return 0, errors.New("no vault configured")
	}
	p = strings.Trim(p, "/")
	r.mu.Lock()
	f, ok := r.cur[p]
	r.mu.Unlock()
	if !ok {
		res, _, _ := r.group.Do("version\x00"+p, func() (any, error) {
			r.mu.Lock()
			f, ok := r.cur[p]
			r.mu.Unlock()
			if ok {
				return f, nil
			}
			f.version, f.err = r.opts.Vault.KVVersion(ctx, p)
			if !errors.Is(f.err, context.Canceled) && !errors.Is(f.err, context.DeadlineExceeded) {
				r.mu.Lock()
				r.cur[p] = f
				r.mu.Unlock()
			}
			return f, nil
		})
		f = res.(fetched)
	}
	if f.err != nil {
		return 0, fmt.Errorf("vault %s: version: %w", p, f.err)
	}
	return f.version, nil
}

func (r *Resolver) readSOPS(ctx context.Context, p string) (map[string]any, error) {
	if r.opts.SOPS == nil {
		return nil, errors.New("no sops keys configured")
	}
	if r.opts.Root == "" {
		return nil, errors.New("no root folder for sops files")
	}
	root, err := os.OpenRoot(r.opts.Root)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	rel := filepath.FromSlash(strings.TrimPrefix(p, "/"))
	data, err := root.ReadFile(rel)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("file %s: %w", p, ErrNotFound)
		}
		return nil, fmt.Errorf("file %s: %w", p, err)
	}
	m, err := r.opts.SOPS.DecryptData(ctx, p, data, FormatAuto)
	if err != nil {
		// DecryptData names the file already.
		return nil, unwrapName(err, p)
	}
	return m, nil
}

// unwrapName drops a leading "name: " the ref already says.
func unwrapName(err error, name string) error {
	if msg := err.Error(); strings.HasPrefix(msg, name+": ") {
		return &renamed{msg: strings.TrimPrefix(msg, name+": "), err: err}
	}
	return err
}

type renamed struct {
	msg string
	err error
}

func (e *renamed) Error() string { return e.msg }
func (e *renamed) Unwrap() error { return e.err }

// normalize turns decoded values into the types unstructured objects and
// JSON use: int64, float64, string, bool, nil, maps and slices.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case uint64:
		return int64(x)
	case float32:
		return float64(x)
	case string, bool, int64, float64, nil:
		return x
	}
	return fmt.Sprint(v)
}

// scalarText returns the text of a scalar for embedding in a string.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case map[string]any, []any:
		return "", false
	case nil:
		return "", true
	}
	return fmt.Sprint(v), true
}

// kindOf names the kind of a value for messages, never its content.
func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "map"
	case []any:
		return "list"
	case nil:
		return "null"
	case string:
		return "string"
	}
	return "scalar"
}

// registerAll gives every scalar inside v to the redactor.
func registerAll(r *Redactor, v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			registerAll(r, e)
		}
	case []any:
		for _, e := range x {
			registerAll(r, e)
		}
	case nil:
	default:
		r.Add(secretForms(x)...)
	}
}
