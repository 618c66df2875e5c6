package leaks

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// marker starts every canary the test makes, so that even a truncated or
// otherwise mangled canary (an Event message cut at 1 KiB, a value
// embedded in a longer string and then cut) is still found.
const marker = "LEAKCANARY"

// canary is a secret value planted by the test. Name says where it was
// planted; it is what a report shows, never Value.
type canary struct {
	Name  string
	Value string
}

// newCanary returns a canary with a random part, unique to this run.
func newCanary(name string) canary {
	return canary{Name: name, Value: marker + "-" + name + "-" + randomHex(8)}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// form is one way a value may be written out.
type form struct {
	name, text string
}

// forms returns the ways a secret may show up: as is, base64 (a Secret's
// data; standard and URL alphabets, with or without padding), JSON- and
// Go-escaped, hex. The base64 forms cover only the whole 3-byte groups of
// the value, so that they match whatever follows the value in the encoded
// text.
func forms(v string) []form {
	out := []form{{"plain", v}}
	add := func(name, s string) {
		if len(s) < 8 {
			return
		}
		for _, f := range out {
			if f.text == s {
				return
			}
		}
		out = append(out, form{name, s})
	}
	whole := []byte(v[:len(v)/3*3])
	add("base64", base64.RawStdEncoding.EncodeToString(whole))
	add("base64url", base64.RawURLEncoding.EncodeToString(whole))
	j, _ := json.Marshal(v)
	add("json-escaped", strings.Trim(string(j), `"`))
	add("go-quoted", strings.Trim(strconv.Quote(v), `"`))
	add("hex", hex.EncodeToString([]byte(v)))
	// A plain hash of a low-entropy value can be brute-forced: a config
	// digest (restartOnConfigChange) must be keyed.
	sum := sha256.Sum256([]byte(v))
	add("sha256", hex.EncodeToString(sum[:]))
	return out
}

// hit is one canary found in one output.
type hit struct {
	// Where names the output: a command and stream, an object, a file.
	Where string
	// Canary is the canary's name and Form how it was written.
	Canary, Form string
	// Context is the text around the hit with every canary masked.
	Context string
}

func (h hit) String() string {
	return fmt.Sprintf("%s: canary %q (%s form) near %q", h.Where, h.Canary, h.Form, h.Context)
}

// scanner looks for every form of every canary in outputs, and inside
// the base64, gzip and zlib data those outputs hold.
type scanner struct {
	canaries []canary
	forms    [][]form
	// mask replaces every form of every canary by its name.
	mask *strings.Replacer
}

func newScanner(canaries ...canary) *scanner {
	s := &scanner{canaries: canaries}
	var pairs []string
	type masked struct{ text, repl string }
	var all []masked
	for _, c := range canaries {
		fs := forms(c.Value)
		s.forms = append(s.forms, fs)
		for _, f := range fs {
			all = append(all, masked{f.text, "<canary " + c.Name + ">"})
		}
	}
	// Longest first, so a value is masked whole before any shorter form
	// inside it.
	sort.SliceStable(all, func(i, j int) bool { return len(all[i].text) > len(all[j].text) })
	for _, m := range all {
		pairs = append(pairs, m.text, m.repl)
	}
	s.mask = strings.NewReplacer(pairs...)
	return s
}

// markerForms are the marker as is and base64-encoded at the start of a
// value.
var markerForms = []form{
	{"partial", marker},
	{"partial, base64", base64.RawStdEncoding.EncodeToString([]byte(marker))[:12]},
}

// partialRun matches what is left of a mangled canary, to mask it in a
// report.
var partialRun = regexp.MustCompile(marker + `[^\s"'\\]*`)

// encoded matches runs that may be base64 (either alphabet) or hex.
var encoded = regexp.MustCompile(`[A-Za-z0-9+/_-]{16,}={0,2}`)

// maxDepth bounds how many encodings deep scan looks (a Helm release is
// base64 of gzip of JSON inside a Secret's base64 data: three).
const maxDepth = 4

// scan returns the canaries found in data, an output named where.
func (s *scanner) scan(where string, data []byte) []hit {
	var hits []hit
	s.scanDepth(where, data, 0, &hits)
	return hits
}

func (s *scanner) scanDepth(where string, data []byte, depth int, hits *[]hit) {
	text := string(data)
	found := false
	for i, c := range s.canaries {
		for _, f := range s.forms[i] {
			if k := strings.Index(text, f.text); k >= 0 {
				*hits = append(*hits, hit{Where: where, Canary: c.Name, Form: f.name, Context: s.context(text, k, len(f.text))})
				found = true
				break // one form per canary and output is enough
			}
		}
	}
	// What is left of a canary once the whole ones are masked.
	rest := text
	if found {
		rest = s.mask.Replace(text)
	}
	for _, f := range markerForms {
		if k := strings.Index(rest, f.text); k >= 0 {
			*hits = append(*hits, hit{Where: where, Canary: "unknown (a mangled canary)", Form: f.name, Context: s.context(rest, k, len(f.text))})
			break
		}
	}
	if depth >= maxDepth {
		return
	}
	if inner, ok := decompress(data); ok {
		s.scanDepth(where+" (decompressed)", inner, depth+1, hits)
		return
	}
	seen := map[string]bool{}
	for _, tok := range encoded.FindAll(data, -1) {
		if seen[string(tok)] {
			continue
		}
		seen[string(tok)] = true
		for _, dec := range decodings(tok) {
			s.scanDepth(where+" (decoded)", dec, depth+1, hits)
		}
	}
}

// context returns up to 40 bytes either side of text[k:k+n], with every
// canary, whole or mangled, masked.
func (s *scanner) context(text string, k, n int) string {
	lo, hi := max(k-40, 0), min(k+n+40, len(text))
	c := s.mask.Replace(text[lo:hi])
	c = partialRun.ReplaceAllString(c, "<mangled canary>")
	return strings.ToValidUTF8(c, "?")
}

// decodings returns what tok decodes to as base64 or hex, when it looks
// like data rather than noise: printable text, or compressed data.
func decodings(tok []byte) [][]byte {
	var out [][]byte
	s := strings.TrimRight(string(tok), "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && useful(b) {
			out = append(out, b)
			break
		}
	}
	if len(s)%2 == 0 {
		if b, err := hex.DecodeString(s); err == nil && useful(b) {
			out = append(out, b)
		}
	}
	return out
}

// useful reports whether decoded bytes are worth scanning: compressed
// data, or mostly printable text.
func useful(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	if _, ok := decompress(b); ok {
		return true
	}
	printable := 0
	for _, c := range b {
		if c >= 0x20 && c < 0x7f || c == '\n' || c == '\t' || c == '\r' {
			printable++
		}
	}
	return printable*10 >= len(b)*9
}

// decompress returns the content of gzip or zlib data (a Helm release, a
// git loose object), up to 64 MiB.
func decompress(b []byte) ([]byte, bool) {
	var r io.Reader
	switch {
	case len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, false
		}
		r = zr
	case len(b) > 2 && b[0] == 0x78 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0:
		zr, err := zlib.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, false
		}
		r = zr
	default:
		return nil, false
	}
	out, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil && len(out) == 0 {
		return nil, false
	}
	return out, true
}

// TestScannerFindsCanaries proves the scan can fail: a canary written out
// in each way a leak could take is found, under the right name, and the
// report never carries the value.
func TestScannerFindsCanaries(t *testing.T) {
	c := newCanary("sample")
	other := newCanary("other")
	token := canary{Name: "vault-token", Value: "hvs." + randomHex(12)}
	// JSON escapes <, > and & (and Go's %q the quote).
	weird := canary{Name: "weird", Value: marker + "-a<b&c>\"d-" + randomHex(6)}
	sc := newScanner(c, other, token, weird)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.String()
	}
	zl := func(s string) string {
		var b bytes.Buffer
		w := zlib.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.String()
	}
	tests := []struct {
		name string
		data string
		// want are the canary names to find, in order; none for a clean
		// sample.
		want []string
	}{
		{"clean", `{"msg":"applied","digest":"sha256:` + strings.Repeat("ab", 32) + `"}`, nil},
		{"masked", "API_KEY: '***'\n", nil},
		{"plain in a log line", "level=ERROR msg=\"apply failed\" err=\"invalid value " + c.Value + "\"", []string{"sample"}},
		{"a credential", "Authorization: Bearer " + token.Value, []string{"vault-token"}},
		{"two canaries", c.Value + " and " + other.Value, []string{"sample", "other"}},
		{"base64 as in a Secret", `{"data":{"password":"` + b64(c.Value) + `"}}`, []string{"sample"}},
		{"base64 inside a longer value", `{"data":{"dsn":"` + b64("postgres://app:"+c.Value+"@db/app") + `"}}`, []string{"sample"}},
		{"base64 of JSON in base64 (an inventory)", `{"data":{"inventory.json":"` + b64(`{"message":"`+b64("x"+c.Value)+`"}`) + `"}}`, []string{"sample"}},
		{"base64 of gzip in base64 (a Helm release)", `{"data":{"release":"` + b64(b64(gz(`{"config":{"password":"`+c.Value+`"}}`))) + `"}}`, []string{"sample"}},
		{"zlib (a git loose object)", zl("blob 40\x00password: " + c.Value), []string{"sample"}},
		{"JSON-escaped", jsonString(weird.Value), []string{"weird"}},
		{"Go-quoted", fmt.Sprintf("err=%q", "x"+weird.Value), []string{"weird"}},
		{"hex", "digest " + hex.EncodeToString([]byte(c.Value)), []string{"sample"}},
		{"plain sha256", "deliver.dev/config-digest: " + func() string { s := sha256.Sum256([]byte(c.Value)); return hex.EncodeToString(s[:]) }(), []string{"sample"}},
		{"truncated", "message: apply failed: " + c.Value[:len(marker)+5] + "...", []string{"unknown (a mangled canary)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits := sc.scan("sample "+tt.name, []byte(tt.data))
			var got []string
			for _, h := range hits {
				if !slices.Contains(got, h.Canary) {
					got = append(got, h.Canary)
				}
				for _, v := range []string{c.Value, other.Value, token.Value, weird.Value} {
					if strings.Contains(h.String(), v) || strings.Contains(h.String(), v[len(marker):]) {
						t.Errorf("the report carries the value: %s", h)
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("found %v, want %v; hits:\n%v", got, tt.want, hits)
			}
		})
	}
}

func jsonString(v string) string {
	b, _ := json.Marshal(map[string]string{"v": v})
	return string(b)
}
