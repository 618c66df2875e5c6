package render

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// fastYAML parses the plain subset of YAML that most manifests are written
// in, as go.yaml.in/yaml/v2 followed by jsonMap would, 6-8 times faster: a
// document that is a block mapping of block mappings, block sequences,
// one-line flow collections, one-line plain and quoted scalars and literal
// block scalars (| and |-), in printable ASCII. ok is false for anything
// else (tabs, anchors, tags, folded or multi-line scalars, keys that are
// not strings, duplicate keys, timestamps, ...) and for anything it is not
// sure about; the caller then parses with yaml.v2, whose parser was half
// of rendering a folder of plain manifests. decode_test.go checks that the
// two agree, on its cases and under go test -fuzz.
func fastYAML(data []byte) (map[string]any, bool) {
	p, ok := newFastParser(data)
	if !ok {
		return nil, false
	}
	p.skipBlank()
	if p.eof() || p.cur().indent != 0 {
		return nil, false
	}
	m, ok := p.mapping(0)
	if !ok {
		return nil, false
	}
	p.skipBlank()
	return m, p.eof()
}

// tryFastYAML is fastYAML where a panic, a bug of its own, leaves the
// document to yaml.v2: it runs in decodeAll's goroutines, where a panic
// would end the process. The tests call fastYAML itself, so that a panic
// fails them.
func tryFastYAML(data []byte) (m map[string]any, ok bool) {
	defer func() {
		if recover() != nil {
			m, ok = nil, false
		}
	}()
	return fastYAML(data)
}

// maxSimpleKey is how long, up to its colon, a key may be for the fast
// path. libyaml refuses an implicit key longer than 1,024 characters.
const maxSimpleKey = 1000

// fastLine is one line of the document.
type fastLine struct {
	raw    string // the whole line, without its newline
	text   string // raw after the indentation
	indent int    // leading spaces
	blank  bool   // empty, spaces only, or a comment
}

type fastParser struct {
	lines []fastLine
	i     int  // the current line
	open  bool // the last line has no newline
	depth int  // mappings and sequences open: bounded like jsonMap's
}

// enter opens a mapping or sequence; false when that is too deep (libyaml
// and encoding/json have limits of their own further down).
func (p *fastParser) enter() bool {
	p.depth++
	return p.depth <= maxFastDepth
}

func (p *fastParser) leave() { p.depth-- }

func newFastParser(data []byte) (*fastParser, bool) {
	if len(data) == 0 {
		return nil, false
	}
	for _, c := range data {
		if (c < 0x20 && c != '\n') || c >= 0x7f {
			return nil, false // tabs, CR, control characters, non-ASCII
		}
	}
	s := string(data)
	// A document without its last newline (a trimmed one) ends a block
	// scalar on its last line differently: that is left to yaml.v2.
	p := &fastParser{open: !strings.HasSuffix(s, "\n")}
	s = strings.TrimSuffix(s, "\n")
	p.lines = make([]fastLine, 0, strings.Count(s, "\n")+1)
	for raw := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(raw, "---") || strings.HasPrefix(raw, "...") || strings.HasPrefix(raw, "%") {
			return nil, false // document markers, directives
		}
		text := strings.TrimLeft(raw, " ")
		p.lines = append(p.lines, fastLine{
			raw: raw, text: text, indent: len(raw) - len(text),
			blank: text == "" || text[0] == '#',
		})
	}
	return p, true
}

func (p *fastParser) eof() bool      { return p.i >= len(p.lines) }
func (p *fastParser) cur() *fastLine { return &p.lines[p.i] }
func (p *fastParser) skipBlank()     { p.i = p.nextContent(p.i) }

func isSeqEntry(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }
func trimSpaces(s string) string  { return strings.TrimLeft(s, " ") }
func isIndicator(c byte) bool     { return strings.IndexByte("-?:,[]{}#&*!|>'\"%@`", c) >= 0 }
func isFlowIndicator(c byte) bool { return strings.IndexByte(",[]{}", c) >= 0 }

// endsLine reports whether nothing but spaces and a comment is left.
func endsLine(rest string) bool {
	rest = trimSpaces(rest)
	return rest == "" || rest[0] == '#'
}

// spaceThenComment reports whether rest, after a scalar, is empty or
// spaces and a comment: a comment needs a space before its "#".
func spaceThenComment(rest string) bool { return rest == "" || (rest[0] == ' ' && endsLine(rest)) }

// nextContent returns the first line from i on that is not blank.
func (p *fastParser) nextContent(i int) int {
	for i < len(p.lines) && p.lines[i].blank {
		i++
	}
	return i
}

// ends checks that nothing continues the value that ended the line before
// the current one: a more indented line would make it a multi-line scalar
// (or an error).
func (p *fastParser) ends(parent int) bool {
	j := p.nextContent(p.i)
	return j == len(p.lines) || p.lines[j].indent <= parent
}

func (p *fastParser) mapping(ind int) (map[string]any, bool) {
	defer p.leave()
	if !p.enter() {
		return nil, false
	}
	m := map[string]any{}
	for {
		p.skipBlank()
		if p.eof() {
			return m, true
		}
		l := p.cur()
		if l.indent < ind {
			return m, true
		}
		if l.indent > ind || isSeqEntry(l.text) {
			return nil, false
		}
		key, rest, ok := splitKey(l.text)
		if !ok {
			return nil, false
		}
		if _, dup := m[key]; dup {
			return nil, false
		}
		p.i++
		v, ok := p.value(ind, rest)
		if !ok {
			return nil, false
		}
		m[key] = v
	}
}

// value parses what follows "key:" on the key's line and after it; rest
// is what splitKey left: empty or starting with a space.
func (p *fastParser) value(ind int, rest string) (any, bool) {
	if !endsLine(rest) {
		if rest[0] != ' ' {
			return nil, false
		}
		return p.inline(ind, trimSpaces(rest))
	}
	p.skipBlank()
	if p.eof() {
		return nil, true
	}
	l := p.cur()
	switch {
	case l.indent > ind:
		return p.block(l.indent)
	case l.indent == ind && isSeqEntry(l.text):
		return p.sequence(ind)
	}
	return nil, true
}

// block parses the mapping or sequence that starts on the current line.
func (p *fastParser) block(ind int) (any, bool) {
	if isSeqEntry(p.cur().text) {
		return p.sequence(ind)
	}
	return p.mapping(ind)
}

func (p *fastParser) sequence(ind int) (any, bool) {
	defer p.leave()
	if !p.enter() {
		return nil, false
	}
	var out []any
	for {
		p.skipBlank()
		if p.eof() {
			return out, true
		}
		l := p.cur()
		if l.indent < ind || (l.indent == ind && !isSeqEntry(l.text)) {
			return out, true
		}
		if l.indent > ind {
			return nil, false
		}
		after := l.text[1:]
		rest := trimSpaces(after)
		col := ind + 1 + len(after) - len(rest)
		var (
			v  any
			ok bool
		)
		switch {
		case rest == "" || rest[0] == '#':
			p.i++
			p.skipBlank()
			if p.eof() || p.cur().indent <= ind {
				v, ok = nil, true
			} else {
				v, ok = p.block(p.cur().indent)
			}
		case isSeqEntry(rest):
			return nil, false // "- - x"
		case isKeyLine(rest):
			// A compact mapping: its keys are aligned with the first one.
			*l = fastLine{raw: l.raw, text: rest, indent: col}
			v, ok = p.mapping(col)
		default:
			p.i++
			v, ok = p.inline(ind, rest)
		}
		if !ok {
			return nil, false
		}
		out = append(out, v)
	}
}

// isKeyLine reports whether text starts a "key: value" entry.
func isKeyLine(text string) bool {
	_, _, ok := splitKey(text)
	return ok
}

// splitKey splits "key: rest" (or "key:") into the key, which must be a
// string, and what follows the colon.
func splitKey(text string) (key, rest string, ok bool) {
	if text == "" {
		return "", "", false
	}
	if text[0] == '"' || text[0] == '\'' {
		key, rest, ok = quoted(text)
		if !ok || !strings.HasPrefix(rest, ":") || len(text)-len(rest) > maxSimpleKey {
			return "", "", false
		}
		rest = rest[1:]
		return key, rest, rest == "" || rest[0] == ' '
	}
	if isIndicator(text[0]) {
		return "", "", false
	}
	for j := 0; j < len(text); j++ {
		switch text[j] {
		case ':':
			if j+1 < len(text) && text[j+1] != ' ' {
				continue
			}
			if j > maxSimpleKey {
				return "", "", false
			}
			k := strings.TrimRight(text[:j], " ")
			v, ok := resolvePlain(k)
			s, isString := v.(string)
			if !ok || !isString { // resolvePlain refuses the merge key "<<" too
				return "", "", false
			}
			return s, text[j+1:], true
		case '#':
			if text[j-1] == ' ' {
				return "", "", false // a comment before any colon
			}
		}
	}
	return "", "", false
}

// inline parses a value that starts on the current line, which has been
// consumed. parent is the indentation of its mapping or sequence.
func (p *fastParser) inline(parent int, text string) (any, bool) {
	var (
		v    any
		rest string
		ok   bool
	)
	switch text[0] {
	case '|':
		return p.literal(parent, text)
	case '{', '[':
		v, rest, ok = flow(text, p.depth)
	case '"', '\'':
		v, rest, ok = quoted(text)
	default:
		if isIndicator(text[0]) && !(text[0] == '-' && len(text) > 1 && text[1] != ' ') {
			return nil, false
		}
		s := text
		if j := strings.Index(text, " #"); j >= 0 {
			s = text[:j]
		}
		s = strings.TrimRight(s, " ")
		if strings.Contains(s, ": ") || strings.HasSuffix(s, ":") {
			return nil, false
		}
		v, ok = resolvePlain(s)
	}
	if !ok || !spaceThenComment(rest) || !p.ends(parent) {
		return nil, false
	}
	return v, true
}

// literal parses a literal block scalar ("|" or "|-") whose content starts
// on the current line.
func (p *fastParser) literal(parent int, header string) (any, bool) {
	h := header[1:]
	strip := strings.HasPrefix(h, "-")
	if strip {
		h = h[1:]
	}
	if !spaceThenComment(h) {
		return nil, false // keep (+), an indentation digit, or "|#"
	}
	// The first line with more than spaces sets the indentation, comment
	// or not; an empty scalar is left to yaml.v2.
	indent := -1
	for j := p.i; j < len(p.lines); j++ {
		if strings.TrimLeft(p.lines[j].raw, " ") != "" {
			indent = p.lines[j].indent
			break
		}
	}
	if indent <= parent {
		return nil, false
	}
	var content []string
	j := p.i
	for ; j < len(p.lines); j++ {
		raw := p.lines[j].raw
		if strings.TrimLeft(raw, " ") == "" {
			if len(raw) > indent {
				return nil, false // spaces that are content
			}
			content = append(content, "")
			continue
		}
		if p.lines[j].indent < indent {
			break
		}
		content = append(content, raw[indent:])
	}
	for len(content) > 0 && content[len(content)-1] == "" {
		content = content[:len(content)-1]
	}
	if j == len(p.lines) && p.open {
		return nil, false // how the scalar ends depends on the missing newline
	}
	p.i = j
	if len(content) == 0 || !p.ends(parent) {
		return nil, false
	}
	s := strings.Join(content, "\n")
	if !strip {
		s += "\n"
	}
	return s, true
}

// flow parses a flow mapping or sequence that ends on the same line.
func flow(s string, depth int) (any, string, bool) {
	if depth > maxFastDepth {
		return nil, "", false
	}
	closing := byte(']')
	var (
		m   map[string]any
		seq []any
	)
	if s[0] == '{' {
		closing, m = '}', map[string]any{}
	} else {
		seq = []any{}
	}
	s = trimSpaces(s[1:])
	if strings.HasPrefix(s, string(closing)) {
		if m != nil {
			return m, s[1:], true
		}
		return seq, s[1:], true
	}
	for {
		var key string
		if m != nil {
			var k any
			var ok bool
			start := s
			k, s, ok = flowScalar(s, depth)
			if len(start)-len(s) > maxSimpleKey {
				return nil, "", false
			}
			ks, isString := k.(string)
			if !ok || !isString || !strings.HasPrefix(s, ": ") {
				return nil, "", false
			}
			if _, dup := m[ks]; dup || ks == "<<" {
				return nil, "", false
			}
			key, s = ks, trimSpaces(s[2:])
		}
		v, rest, ok := flowScalar(s, depth)
		if !ok {
			return nil, "", false
		}
		if m != nil {
			m[key] = v
		} else {
			seq = append(seq, v)
		}
		s = trimSpaces(rest)
		switch {
		case strings.HasPrefix(s, ","):
			s = trimSpaces(s[1:])
			if s == "" || s[0] == ',' || s[0] == closing {
				return nil, "", false // an empty entry
			}
		case strings.HasPrefix(s, string(closing)):
			if m != nil {
				return m, s[1:], true
			}
			return seq, s[1:], true
		default:
			return nil, "", false
		}
	}
}

// flowScalar parses one node inside a flow collection: a nested one, a
// quoted scalar, or a plain scalar (up to ",", a closing bracket or ": ").
func flowScalar(s string, depth int) (any, string, bool) {
	if s == "" {
		return nil, "", false
	}
	switch s[0] {
	case '{', '[':
		return flow(s, depth+1)
	case '"', '\'':
		return quoted(s)
	}
	if isIndicator(s[0]) && !(s[0] == '-' && len(s) > 1 && s[1] != ' ' && !isFlowIndicator(s[1])) {
		return nil, "", false
	}
	j := 0
	for ; j < len(s); j++ {
		c := s[j]
		if c == ',' || c == ']' || c == '}' {
			break
		}
		// libyaml ends a plain scalar at any of these inside a flow
		// collection, which leaves the rest an error or another node.
		if c == '[' || c == '{' || c == '?' || (c == '#' && s[j-1] == ' ') {
			return nil, "", false
		}
		if c == ':' && (j+1 == len(s) || s[j+1] == ' ' || isFlowIndicator(s[j+1])) {
			break
		}
	}
	v, ok := resolvePlain(strings.TrimRight(s[:j], " "))
	return v, s[j:], ok
}

// quoted parses a single- or double-quoted scalar that ends on the same
// line, and returns what follows it.
func quoted(s string) (string, string, bool) {
	q := s[0]
	var b strings.Builder
	for j := 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == q && q == '\'':
			if j+1 < len(s) && s[j+1] == '\'' {
				b.WriteByte('\'')
				j++
				continue
			}
			return b.String(), s[j+1:], true
		case c == q:
			return b.String(), s[j+1:], true
		case c == '\\' && q == '"':
			if j+1 == len(s) {
				return "", "", false
			}
			j++
			if r, n, ok := escape(s[j:]); ok {
				b.WriteString(r)
				j += n - 1
				continue
			}
			return "", "", false
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false // the scalar goes on to the next line
}

// escape decodes the escape sequence at the start of s (after the
// backslash) as yaml.v2's scanner does (no "\/": that came with YAML 1.2),
// and returns how many bytes it took.
func escape(s string) (string, int, bool) {
	if r, ok := simpleEscapes[s[0]]; ok {
		return r, 1, true
	}
	var n int
	switch s[0] {
	case 'x':
		n = 2
	case 'u':
		n = 4
	case 'U':
		n = 8
	}
	if n == 0 || len(s) < 1+n {
		return "", 0, false
	}
	v, err := strconv.ParseUint(s[1:1+n], 16, 32)
	if err != nil || !utf8.ValidRune(rune(v)) {
		return "", 0, false
	}
	return string(rune(v)), 1 + n, true
}

var simpleEscapes = map[byte]string{
	'0': "\x00", 'a': "\a", 'b': "\b", 't': "\t", 'n': "\n", 'v': "\v", 'f': "\f",
	'r': "\r", 'e': "\x1b", ' ': " ", '"': "\"", '\'': "'", '\\': "\\",
	'N': "\u0085", '_': "\u00a0", 'L': "\u2028", 'P': "\u2029",
}

// yamlStyleFloat is yaml.v2's, for the same answers.
var yamlStyleFloat = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

// resolvePlain gives a plain scalar the value yaml.v2's resolve gives it,
// converted as jsonValue converts it. ok is false for what the fast path
// leaves to yaml.v2: timestamps, infinities, NaN and the merge key.
func resolvePlain(s string) (any, bool) {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return nil, true
	case "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON":
		return true, true
	case "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF":
		return false, true
	case "<<", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF":
		return nil, false // the merge key; infinities and NaN, which JSON cannot hold
	}
	switch c := s[0]; {
	case c == '.':
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return jsonValue(f, 0)
		}
		return s, true
	case c == '+' || c == '-' || (c >= '0' && c <= '9'):
		if len(s) > 4 && s[4] == '-' && strings.Trim(s[:4], "0123456789") == "" {
			return nil, false // maybe a timestamp
		}
		if lower := strings.ToLower(s); strings.Contains(lower, "inf") || strings.Contains(lower, "nan") {
			return nil, false
		}
		plain := strings.ReplaceAll(s, "_", "")
		if i, err := strconv.ParseInt(plain, 0, 64); err == nil {
			return float64(i), true
		}
		if u, err := strconv.ParseUint(plain, 0, 64); err == nil {
			return float64(u), true
		}
		if yamlStyleFloat.MatchString(plain) {
			if f, err := strconv.ParseFloat(plain, 64); err == nil {
				return jsonValue(f, 0)
			}
		}
		if strings.HasPrefix(plain, "0b") || strings.HasPrefix(plain, "-0b") {
			return nil, false
		}
		return s, true
	}
	return s, true
}
