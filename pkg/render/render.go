package render

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/deliverhq/deliver/pkg/object"
)

// DecryptFunc returns the plaintext of a SOPS-encrypted file. path is the
// file's path relative to the repository root (for messages and for picking
// the format), data its encrypted content. The plaintext must only be kept
// in memory. pkg/secrets provides the real implementation.
type DecryptFunc func(ctx context.Context, path string, data []byte) ([]byte, error)

// Source is one part of an app: exactly one of its fields is set.
type Source struct {
	// Plain reads a folder or file of manifests.
	Plain *PlainOptions
	// Helm renders a chart.
	Helm *HelmOptions
	// Kustomize builds an overlay.
	Kustomize *KustomizeOptions
}

// Options configure Renderer.Render. Root, App and Decrypt are copied into
// every source that leaves them empty.
type Options struct {
	// Root is the repository snapshot every source reads from.
	Root string
	// App names the app in origins and messages.
	App string
	// Namespace is the app's namespace; it is the default release namespace
	// of Helm sources. Objects without a namespace get it at apply time.
	Namespace string
	// AllowedNamespaces, when not empty, lists the namespaces the app may
	// write. An object whose metadata.namespace is set to another one is an
	// error. An empty list allows every namespace.
	AllowedNamespaces []string
	// Decrypt decrypts SOPS files (Helm secret values files, files of
	// kustomize secretGenerators). Nil refuses encrypted input.
	Decrypt DecryptFunc
	// Sources are rendered in order and concatenated.
	Sources []Source
	// Reads, when set, records every path the sources read from Root
	// (see Reads); copied into every source that has none.
	Reads *Reads
	// DecryptObject, when set, decrypts an object the sources produced
	// encrypted in place with SOPS (a top-level sops key): it returns
	// the object in clear, which replaces it. Without it such objects are
	// left as they are (secrets.CheckDecrypted refuses them later).
	DecryptObject func(ctx context.Context, o *object.Object) (*unstructured.Unstructured, error)
	// PostBuild, when set, substitutes variables in the objects after
	// they are decrypted, as Flux does after its build and decryption.
	PostBuild *PostBuild
	// CommonLabels and CommonAnnotations are set on every object and
	// hook after the post-build, replacing those of the same key (Flux's
	// commonMetadata: metadata only, no selector or template).
	CommonLabels, CommonAnnotations map[string]string
}

// Renderer renders apps. The zero value is ready to use and must not be
// copied after first use. kustomize keeps process-wide state (the OpenAPI
// schema of the build in progress), so a Renderer runs one kustomize build
// at a time: a process should share one Renderer between its goroutines.
// Helm and plain sources render concurrently.
type Renderer struct {
	kustomizeMu sync.Mutex
}

// Render renders every source of an app into one set and validates the
// result: no two objects (or two hooks) with the same group, kind,
// namespace and name, and no namespace outside AllowedNamespaces. Errors
// name the source file and document, or the chart template.
func (r *Renderer) Render(ctx context.Context, opts Options) (*object.Set, error) {
	out := &object.Set{}
	for i, src := range opts.Sources {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("render: %w", err)
		}
		var (
			set *object.Set
			err error
		)
		switch {
		case src.Plain != nil && src.Helm == nil && src.Kustomize == nil:
			o := *src.Plain
			o.Root = cmp.Or(o.Root, opts.Root)
			o.App = cmp.Or(o.App, opts.App)
			o.Reads = cmp.Or(o.Reads, opts.Reads)
			set, err = Plain(o)
		case src.Helm != nil && src.Plain == nil && src.Kustomize == nil:
			o := *src.Helm
			o.Root = cmp.Or(o.Root, opts.Root)
			o.App = cmp.Or(o.App, opts.App)
			o.Namespace = cmp.Or(o.Namespace, opts.Namespace)
			o.Reads = cmp.Or(o.Reads, opts.Reads)
			if o.Decrypt == nil {
				o.Decrypt = opts.Decrypt
			}
			set, err = r.helm(ctx, o)
		case src.Kustomize != nil && src.Plain == nil && src.Helm == nil:
			o := *src.Kustomize
			o.Root = cmp.Or(o.Root, opts.Root)
			o.App = cmp.Or(o.App, opts.App)
			o.Reads = cmp.Or(o.Reads, opts.Reads)
			if o.Decrypt == nil {
				o.Decrypt = opts.Decrypt
			}
			set, err = r.Kustomize(ctx, o)
		default:
			return nil, fmt.Errorf("render: source %d: set exactly one of plain, helm or kustomize", i)
		}
		if err != nil {
			return nil, err
		}
		out.Objects = append(out.Objects, set.Objects...)
		out.Hooks = append(out.Hooks, set.Hooks...)
	}
	if err := decryptObjects(ctx, out, opts.DecryptObject); err != nil {
		return nil, err
	}
	if opts.PostBuild != nil {
		if err := opts.PostBuild.substitute(out); err != nil {
			return nil, fmt.Errorf("render: %w", err)
		}
	}
	setCommonMetadata(out, opts.CommonLabels, opts.CommonAnnotations)
	if err := Validate(out, opts.Namespace, opts.AllowedNamespaces); err != nil {
		return nil, err
	}
	return out, nil
}

// Validate checks a rendered set: duplicate objects among the ordinary
// objects or among the hooks, where an object without a namespace counts as
// being in namespace (the app's), and objects in a namespace not in allowed
// (when allowed is not empty). The error names both origins of a duplicate.
func Validate(set *object.Set, namespace string, allowed []string) error {
	for _, list := range [][]*object.Object{set.Objects, set.Hooks} {
		seen := map[object.ID]object.Origin{}
		for _, o := range list {
			id := object.HookID(o.Unstructured) // o.ID() for all but generateName hooks
			if len(allowed) > 0 && id.Namespace != "" && !slices.Contains(allowed, id.Namespace) {
				return fmt.Errorf("%s: %s: namespace %q is not allowed for this app (allowed: %s)", originString(o.Origin), id, id.Namespace, strings.Join(allowed, ", "))
			}
			if id.Namespace == "" {
				id.Namespace = namespace
			}
			if prev, dup := seen[id]; dup {
				return fmt.Errorf("%s: %s: duplicate object, first defined in %s", originString(o.Origin), object.HookID(o.Unstructured), originString(prev))
			}
			seen[id] = o.Origin
		}
	}
	return nil
}

// decryptObjects replaces the objects of set that are encrypted in place
// with SOPS by what decrypt returns; with a nil decrypt it does nothing.
func decryptObjects(ctx context.Context, set *object.Set, decrypt func(context.Context, *object.Object) (*unstructured.Unstructured, error)) error {
	if decrypt == nil {
		return nil
	}
	for _, list := range [][]*object.Object{set.Objects, set.Hooks} {
		for i, o := range list {
			if _, ok := o.Object["sops"]; !ok {
				continue
			}
			u, err := decrypt(ctx, o)
			if err != nil {
				return err
			}
			list[i] = &object.Object{Unstructured: u, Origin: o.Origin}
		}
	}
	return nil
}

// setCommonMetadata sets labels and annotations on every object and hook
// of set, as Flux's ssa SetCommonMetadata does.
func setCommonMetadata(set *object.Set, labels, annotations map[string]string) {
	if len(labels) == 0 && len(annotations) == 0 {
		return
	}
	merged := func(cur, add map[string]string) map[string]string {
		if cur == nil {
			cur = map[string]string{}
		}
		maps.Copy(cur, add)
		return cur
	}
	for _, list := range [][]*object.Object{set.Objects, set.Hooks} {
		for _, o := range list {
			if len(labels) > 0 {
				o.SetLabels(merged(o.GetLabels(), labels))
			}
			if len(annotations) > 0 {
				o.SetAnnotations(merged(o.GetAnnotations(), annotations))
			}
		}
	}
}

// add puts o in the set's hooks or objects.
func add(set *object.Set, o *object.Object) {
	if object.IsHook(o.Unstructured) {
		set.Hooks = append(set.Hooks, o)
		return
	}
	set.Objects = append(set.Objects, o)
}

// decodeStream splits a rendered YAML stream (the output of helm template or
// kustomize build) into a set. source returns the origin of a document from
// its text and index; it may carry state from one document to the next.
// The documents are parsed in parallel; errors are those a document by
// document loop would stop at.
func decodeStream(data []byte, origin func(raw []byte, doc int) object.Origin) (*object.Set, error) {
	raws, readErr := readDocuments(data)
	if readErr != nil {
		readErr = fmt.Errorf("document %d: read: %w", len(raws), readErr)
	}
	origins := make([]object.Origin, len(raws))
	for doc, raw := range raws {
		origins[doc] = origin(raw, doc)
	}
	set, err := collect(decodeAll(len(raws), func(i int) ([]*object.Object, error) {
		return decodeDocument(origins[i], raws[i])
	}))
	if err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, readErr
	}
	return set, nil
}

// collect makes a set of what decodeAll returned, in order, or returns the
// first error.
func collect(docs [][]*object.Object, errs []error) (*object.Set, error) {
	set := &object.Set{}
	for i, objs := range docs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		for _, obj := range objs {
			add(set, obj)
		}
	}
	return set, nil
}

// readDocuments splits a YAML stream into its documents. On an error it
// returns the documents read before it, so that a caller can report errors
// in the order a document by document loop would meet them.
func readDocuments(data []byte) ([][]byte, error) {
	// Most files hold one document: without a separator line or a CR, the
	// reader would return data as it is, after copying it line by line.
	if len(data) > 0 && data[len(data)-1] == '\n' && !bytes.HasPrefix(data, []byte("---")) &&
		!bytes.Contains(data, []byte("\n---")) && bytes.IndexByte(data, '\r') < 0 {
		return [][]byte{data}, nil
	}
	return splitDocuments(data)
}

// splitDocuments reads the documents of data with apimachinery's
// YAMLReader, as kubectl does.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var raws [][]byte
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return raws, nil
		}
		if err != nil {
			return raws, err
		}
		raws = append(raws, raw)
	}
}

// originString formats an origin for messages: like Origin.String, with
// the document index after a template too.
func originString(o object.Origin) string {
	if o.Template == "" {
		return o.String()
	}
	s := fmt.Sprintf("%s#%d", o.Template, o.Doc)
	if o.App != "" {
		s = o.App + ": " + s
	}
	return s
}

// decodeDocument parses one YAML document into objects (a List expands) and
// validates each; errors are prefixed with origin.
func decodeDocument(origin object.Origin, raw []byte) ([]*object.Object, error) {
	if blankDocument(raw) {
		return nil, nil
	}
	m, err := unmarshalObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: parse: %w", originString(origin), err)
	}
	return objectsOf(origin, m)
}

// objectsOf makes the objects of one parsed document: none for an empty
// one, the items of a List.
func objectsOf(origin object.Origin, m map[string]any) ([]*object.Object, error) {
	if m == nil {
		return nil, nil
	}
	// The origin is formatted for errors only: a Helm template's name goes
	// through Sprintf, once per document of the chart otherwise.
	u := &unstructured.Unstructured{Object: m}
	if !u.IsList() {
		if err := validate(u); err != nil {
			return nil, fmt.Errorf("%s: %w", originString(origin), err)
		}
		return []*object.Object{{Unstructured: u, Origin: origin}}, nil
	}
	items, _ := m["items"].([]any)
	out := make([]*object.Object, 0, len(items))
	for i, it := range items {
		im, ok := it.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: item %d: not an object", originString(origin), i)
		}
		item := &unstructured.Unstructured{Object: im}
		if err := validate(item); err != nil {
			return nil, fmt.Errorf("%s: item %d: %w", originString(origin), i, err)
		}
		out = append(out, &object.Object{Unstructured: item, Origin: origin})
	}
	return out, nil
}

// readRootFile reads name from fsys, refusing files larger than max.
func readRootFile(fsys fs.FS, name string, max int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: file larger than the limit of %d bytes", name, max)
	}
	return data, nil
}

// IsSOPS reports whether data looks like a SOPS-encrypted file, in any of
// the formats sops writes: YAML with a top-level sops: key, JSON (also
// binary files, which sops writes as JSON) with a top-level "sops" object,
// however indented, dotenv with sops_ metadata lines, INI with a [sops]
// section. It decides from the metadata's shape without loading the file
// in sops' stores (secrets.IsEncrypted does): the render does not link the
// SOPS engine, which comes in through KustomizeOptions.Decrypt.
// TestIsSOPSMatchesSOPS compares the two on files sops encrypted.
func IsSOPS(data []byte) bool {
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		var doc map[string]json.RawMessage
		if json.Unmarshal(trimmed, &doc) == nil {
			var meta map[string]json.RawMessage
			return json.Unmarshal(doc["sops"], &meta) == nil && meta["mac"] != nil
		}
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		switch {
		case bytes.HasPrefix(line, []byte("sops:")),
			dotenvMeta.Match(line),
			bytes.Equal(bytes.TrimSpace(line), []byte("[sops]")):
			return true
		}
	}
	return false
}

// dotenvMeta matches a line of the metadata sops writes into a dotenv
// file (sops_mac=..., sops_age__list_0__map_recipient=...), not a YAML key
// that happens to start with sops_.
var dotenvMeta = regexp.MustCompile(`^sops_[A-Za-z0-9_]+=`)
