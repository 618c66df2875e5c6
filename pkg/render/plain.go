package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/object"
)

// DefaultMaxFileSize bounds one manifest file; a larger file is refused
// rather than read into memory.
const DefaultMaxFileSize = 8 << 20

// PlainOptions configure Plain.
type PlainOptions struct {
	// Root is the repository snapshot; every path is resolved inside it.
	Root string
	// Path is a file or folder relative to Root. Folders are read
	// recursively, files ending in .yaml, .yml or .json, in lexical order.
	Path string
	// App is recorded in each object's origin.
	App string
	// MaxFileSize bounds each file. Default DefaultMaxFileSize.
	MaxFileSize int64
	// Reads, when set, records the paths read.
	Reads *Reads
}

// Plain reads plain Kubernetes manifests into a set. Multi-document YAML and
// `kind: List` are expanded. Errors name the file and the document index.
func Plain(opts PlainOptions) (*object.Set, error) {
	if opts.MaxFileSize == 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	root, err := os.OpenRoot(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("render: open repository root: %w", err)
	}
	defer root.Close()
	rel, err := cleanRel(opts.Path)
	if err != nil {
		return nil, err
	}
	fsys := recording(root.FS(), opts.Reads)
	var files []string
	info, err := fs.Stat(fsys, rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no such file or folder in the repository", opts.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Path, err)
	}
	if info.IsDir() {
		err = fs.WalkDir(fsys, rel, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != rel {
				return fs.SkipDir
			}
			if !d.IsDir() && isManifest(p) {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", opts.Path, err)
		}
		sort.Strings(files)
	} else {
		files = []string{rel}
	}
	// Files are read and parsed in parallel, then checked in order: the
	// error is the one a file by file loop would stop at.
	decoded, errs := decodeAll(len(files), func(i int) ([]*object.Object, error) {
		return readFile(fsys, files[i], opts.MaxFileSize)
	})
	set := &object.Set{}
	seen := map[object.ID]object.Origin{}
	for i, objs := range decoded {
		if errs[i] != nil {
			return nil, errs[i]
		}
		for _, o := range objs {
			o.Origin.App = opts.App
			id := object.HookID(o.Unstructured)
			if prev, dup := seen[id]; dup {
				return nil, fmt.Errorf("%s#%d: %s: duplicate object, first defined in %s#%d", o.Origin.File, o.Origin.Doc, id, prev.File, prev.Doc)
			}
			seen[id] = o.Origin
			add(set, o) // hooks (object.IsHook) go to set.Hooks
		}
	}
	return set, nil
}

// cleanRel refuses absolute paths and paths that climb out of the root; the
// os.Root would refuse them too, but with a less helpful message.
func cleanRel(p string) (string, error) {
	if p == "" {
		return ".", nil
	}
	if filepath.IsAbs(p) {
		return "", fmt.Errorf("%s: path must be relative to the repository root", p)
	}
	c := path.Clean(filepath.ToSlash(p))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%s: path escapes the repository root", p)
	}
	return c, nil
}

func isManifest(p string) bool {
	switch strings.ToLower(path.Ext(p)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func readFile(fsys fs.FS, name string, max int64) ([]*object.Object, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", name, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: file larger than the limit of %d bytes", name, max)
	}
	return Decode(name, data)
}

// Decode splits a YAML or JSON stream into objects. file names the origin
// in errors and in each object's Origin.
func Decode(file string, data []byte) ([]*object.Object, error) {
	raws, readErr := readDocuments(data)
	var out []*object.Object
	for doc, raw := range raws {
		objs, err := decodeDocument(object.Origin{File: file, Doc: doc}, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	if readErr != nil {
		return nil, fmt.Errorf("%s#%d: read document: %w", file, len(raws), readErr)
	}
	return out, nil
}

// blankDocument reports whether raw holds nothing but spaces and comments.
func blankDocument(raw []byte) bool {
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}

func validate(u *unstructured.Unstructured) error {
	switch {
	case u.GetAPIVersion() == "":
		return errors.New("object has no apiVersion")
	case u.GetKind() == "":
		return errors.New("object has no kind")
	case u.GetName() == "" && u.GetGenerateName() == "":
		return fmt.Errorf("%s has no metadata.name", u.GetKind())
	case u.GetName() == "" && !object.IsHook(u):
		// A hook is tracked by its hook record, which HookID names after
		// the prefix; any other object by its name.
		return fmt.Errorf("%s: metadata.generateName is not supported (an object needs a stable name to be tracked; only hooks may use generateName)", u.GetKind())
	}
	return nil
}
