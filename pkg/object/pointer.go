package object

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Pointer is a JSON pointer (RFC 6901) into an object, as ignore rules
// write them ("/spec/replicas", "/metadata/annotations/a~1b"), with one
// extension: the token "*" stands for every item of a list
// ("/webhooks/*/clientConfig/caBundle"). On a map, "*" is the key "*", as
// RFC 6901 reads it.
//
// It is written here rather than taken from go-openapi/jsonpointer, which
// resolves one value but has no wildcard, cannot remove or set a value, and
// accepts escapes RFC 6901 does not ("~2").
type Pointer struct {
	raw    string
	tokens []string
}

// ParsePointer parses s: "" or a sequence of "/"-prefixed tokens, with "~"
// only in the escapes "~0" (~) and "~1" (/). The whole object ("") cannot
// be ignored, so it is refused too.
func ParsePointer(s string) (Pointer, error) {
	if s == "" {
		return Pointer{}, errors.New(`empty JSON pointer: it would ignore the whole object; write one like "/spec/replicas"`)
	}
	if !strings.HasPrefix(s, "/") {
		return Pointer{}, fmt.Errorf("JSON pointer %q must start with /", s)
	}
	parts := strings.Split(s[1:], "/")
	for i, p := range parts {
		for j := 0; j < len(p); j++ {
			if p[j] == '~' && (j+1 == len(p) || (p[j+1] != '0' && p[j+1] != '1')) {
				return Pointer{}, fmt.Errorf("JSON pointer %q: ~ must be followed by 0 or 1 (RFC 6901: ~0 is ~, ~1 is /)", s)
			}
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
	}
	return Pointer{raw: s, tokens: parts}, nil
}

// String returns the pointer as written.
func (p Pointer) String() string { return p.raw }

// Path is one concrete location in an object: string keys of maps and int
// indices of lists.
type Path []any

// String returns the path as a JSON pointer.
func (p Path) String() string {
	var b strings.Builder
	for _, e := range p {
		b.WriteByte('/')
		switch t := e.(type) {
		case int:
			b.WriteString(strconv.Itoa(t))
		case string:
			b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
		}
	}
	return b.String()
}

// Through reports whether the path goes through (or ends at) a list item.
func (p Path) Through() bool {
	return slices.ContainsFunc(p, func(e any) bool { _, ok := e.(int); return ok })
}

// Paths returns the locations in obj that the pointer reaches, lists in
// item order; none when the pointer leads nowhere in obj. A token is a
// list index when it is a decimal number without leading zeros (or "*"),
// as RFC 6901 reads it; "-" (past the end) reaches nothing.
func (p Pointer) Paths(obj map[string]any) []Path {
	var out []Path
	var walk func(v any, i int, prefix Path)
	walk = func(v any, i int, prefix Path) {
		if i == len(p.tokens) {
			out = append(out, slices.Clone(prefix))
			return
		}
		tok := p.tokens[i]
		switch t := v.(type) {
		case map[string]any:
			if next, ok := t[tok]; ok {
				walk(next, i+1, append(prefix, tok))
			}
		case []any:
			if tok == "*" {
				for j, item := range t {
					walk(item, i+1, append(prefix, j))
				}
				return
			}
			if j, ok := listIndex(tok); ok && j < len(t) {
				walk(t[j], i+1, append(prefix, j))
			}
		}
	}
	walk(obj, 0, nil)
	return out
}

// listIndex reads an RFC 6901 array index.
func listIndex(tok string) (int, bool) {
	if tok == "" || (len(tok) > 1 && tok[0] == '0') {
		return 0, false
	}
	n, err := strconv.Atoi(tok)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// GetAt returns the value at path in obj.
func GetAt(obj map[string]any, path Path) (any, bool) {
	var v any = obj
	for _, e := range path {
		switch k := e.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[k]; !ok {
				return nil, false
			}
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil, false
			}
			v = l[k]
		}
	}
	return v, true
}

// SetAt sets the value at path in obj, making the maps missing on the way;
// false when the path leads through something else than a map, or through
// a list item that does not exist.
func SetAt(obj map[string]any, path Path, value any) bool {
	if len(path) == 0 {
		return false
	}
	var cur any = obj
	for i, e := range path {
		last := i == len(path)-1
		switch k := e.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				return false
			}
			if last {
				m[k] = value
				return true
			}
			next, ok := m[k]
			if !ok || next == nil {
				next = map[string]any{}
				m[k] = next
			}
			cur = next
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return false
			}
			if last {
				l[k] = value
				return true
			}
			cur = l[k]
		}
	}
	return false
}

// Remove removes every path from obj. A path that ends at a list item
// removes the item; those are removed last, highest index first, so that
// the other paths still point where they did.
func Remove(obj map[string]any, paths []Path) {
	var items []Path
	for _, p := range paths {
		if len(p) == 0 {
			continue
		}
		if _, ok := p[len(p)-1].(int); ok {
			items = append(items, p)
			continue
		}
		parent, ok := GetAt(obj, p[:len(p)-1])
		if m, isMap := parent.(map[string]any); ok && isMap {
			delete(m, p[len(p)-1].(string))
		}
	}
	slices.SortStableFunc(items, func(a, b Path) int { return b[len(b)-1].(int) - a[len(a)-1].(int) })
	for _, p := range items {
		parent, ok := GetAt(obj, p[:len(p)-1])
		l, isList := parent.([]any)
		j := p[len(p)-1].(int)
		if !ok || !isList || j >= len(l) {
			continue
		}
		l = append(l[:j:j], l[j+1:]...)
		SetAt(obj, p[:len(p)-1], l)
	}
}
