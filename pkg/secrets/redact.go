package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Mask replaces a secret value in redacted text. It is the same whatever the
// value, so it shows neither its length nor anything derived from it.
const Mask = "***"

// RedactorOptions configure a Redactor. The zero value is ready to use.
type RedactorOptions struct {
	// MinLength is the length in bytes below which a value is not registered:
	// masking every "1" or "on" in a program's output would make it
	// unreadable and hides nothing worth hiding. Default 4. Negative: every
	// non-empty value is registered.
	MinLength int
}

// Redactor remembers every secret value the program has seen and removes
// them from text: logs, errors, diffs, events and reports. One Redactor is
// shared by the whole program; it is safe for concurrent use.
type Redactor struct {
	minLen int

	mu       sync.RWMutex
	values   map[string]struct{}
	replacer *strings.Replacer
}

// NewRedactor returns an empty Redactor.
func NewRedactor(opts RedactorOptions) *Redactor {
	minLen := opts.MinLength
	switch {
	case minLen == 0:
		minLen = 4
	case minLen < 0:
		minLen = 1
	}
	return &Redactor{minLen: minLen, values: map[string]struct{}{}}
}

// Add registers secret values. Each value is also registered in the forms it
// commonly takes on its way out: its base64 encodings (as in a Secret's data)
// and its JSON and Go-quoted escapes (as in a JSON log line or a %q verb).
// Lines of a multi-line value (a PEM key) are registered one by one as well.
// Add on a nil Redactor does nothing.
func (r *Redactor) Add(values ...string) {
	if r == nil {
		return
	}
	var forms []string
	for _, v := range values {
		forms = r.forms(forms, v)
		if strings.Contains(v, "\n") {
			for line := range strings.SplitSeq(v, "\n") {
				line = strings.TrimSpace(line)
				if len(line) >= 16 {
					forms = r.forms(forms, line)
				}
			}
		}
	}
	if len(forms) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	added := false
	for _, f := range forms {
		if _, ok := r.values[f]; !ok {
			r.values[f] = struct{}{}
			added = true
		}
	}
	if added {
		r.replacer = nil
	}
}

// AddSecret registers the values of u, a Secret: its data, decoded, and
// its stringData. The caller tells a Secret (the items of a list may come
// without their kind).
func (r *Redactor) AddSecret(u *unstructured.Unstructured) {
	if r == nil || u == nil {
		return
	}
	data, _, _ := unstructured.NestedStringMap(u.Object, "data")
	for _, v := range data {
		if b, err := base64.StdEncoding.DecodeString(v); err == nil {
			r.Add(string(b))
		}
	}
	sdata, _, _ := unstructured.NestedStringMap(u.Object, "stringData")
	for _, v := range sdata {
		r.Add(v)
	}
}

// forms appends the forms of v worth looking for to dst.
func (r *Redactor) forms(dst []string, v string) []string {
	if len(v) < r.minLen {
		return dst
	}
	dst = append(dst, v,
		base64.StdEncoding.EncodeToString([]byte(v)),
		base64.RawStdEncoding.EncodeToString([]byte(v)),
		base64.URLEncoding.EncodeToString([]byte(v)),
		base64.RawURLEncoding.EncodeToString([]byte(v)),
	)
	if q := strconv.Quote(v); q[1:len(q)-1] != v {
		dst = append(dst, q[1:len(q)-1])
	}
	if j, err := json.Marshal(v); err == nil && string(j[1:len(j)-1]) != v {
		dst = append(dst, string(j[1:len(j)-1]))
	}
	// As html/template writes it into a page (the web view, pkg/ui),
	// which redacts the page it rendered.
	if h := htmlEscaper.Replace(v); h != v {
		dst = append(dst, h)
	}
	return dst
}

// htmlEscaper escapes text as html/template does in text and quoted
// attribute values. html/template's escaper is not exported, and
// template.HTMLEscapeString (text/template's) leaves '+' alone and writes
// NUL as it is: a copy of the table, which TestHTMLEscaperMatchesTemplate
// compares with html/template itself.
var htmlEscaper = strings.NewReplacer("\x00", "\uFFFD", `"`, "&#34;", "&", "&amp;", "'", "&#39;", "+", "&#43;", "<", "&lt;", ">", "&gt;")

// Len returns how many forms of values are registered.
func (r *Redactor) Len() int {
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.values)
}

// repl returns the replacer for the registered values, longest first so that
// a value containing another is masked whole.
func (r *Redactor) repl() *strings.Replacer {
	r.mu.RLock()
	rp := r.replacer
	n := len(r.values)
	r.mu.RUnlock()
	if rp != nil || n == 0 {
		return rp
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.replacer != nil {
		return r.replacer
	}
	vals := make([]string, 0, len(r.values))
	for v := range r.values {
		vals = append(vals, v)
	}
	slices.SortFunc(vals, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	pairs := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		pairs = append(pairs, v, Mask)
	}
	r.replacer = strings.NewReplacer(pairs...)
	return r.replacer
}

// Redact returns s with every registered value replaced by Mask.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	rp := r.repl()
	if rp == nil {
		return s
	}
	return rp.Replace(s)
}

// RedactBytes is Redact for a byte slice.
func (r *Redactor) RedactBytes(b []byte) []byte {
	if r == nil || r.Len() == 0 {
		return b
	}
	return []byte(r.Redact(string(b)))
}

// Changed returns the mask a diff shows for a secret value that went from old
// to new: "*** (changed)" or "*** (unchanged)". It tells only whether the
// value changed.
func Changed(old, new string) string {
	if old == new {
		return Mask + " (unchanged)"
	}
	return Mask + " (changed)"
}

// Error returns err with its message redacted, or nil for a nil err. The
// message is redacted each time it is read, so values registered after the
// error was made are masked too. errors.Is and errors.As still see the
// wrapped chain; the messages of the wrapped errors are not redacted, so code
// that prints them must go through the Redactor again.
func (r *Redactor) Error(err error) error {
	if err == nil || r == nil {
		return err
	}
	var re *redactedError
	if errors.As(err, &re) && re.r == r && re.err == err {
		return err
	}
	return &redactedError{r: r, err: err}
}

type redactedError struct {
	r   *Redactor
	err error
}

func (e *redactedError) Error() string { return e.r.Redact(e.err.Error()) }
func (e *redactedError) Unwrap() error { return e.err }

// Panic turns a recovered panic value into an error whose message is
// redacted, for a deferred recover at the top of a goroutine or command.
func (r *Redactor) Panic(v any) error {
	if v == nil {
		return nil
	}
	if err, ok := v.(error); ok {
		return r.Error(fmt.Errorf("panic: %w", err))
	}
	s := "unprintable panic value"
	if st, ok := v.(interface{ String() string }); ok {
		s = st.String()
	} else if str, ok := v.(string); ok {
		s = str
	}
	return r.Error(errors.New("panic: " + s))
}

// Writer returns a writer that redacts what goes through it to w. Output is
// held back until a newline so that a value split over two writes is still
// masked; call Flush (or Close) to write the rest.
func (r *Redactor) Writer(w io.Writer) *Writer {
	return &Writer{r: r, w: w}
}

// Writer is an io.WriteCloser that redacts lines on their way to another
// writer. It is safe for concurrent use.
type Writer struct {
	r   *Redactor
	w   io.Writer
	mu  sync.Mutex
	buf []byte
}

// Write buffers p and writes every complete line, redacted.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	i := bytes.LastIndexByte(w.buf, '\n')
	if i < 0 {
		return len(p), nil
	}
	out := w.r.RedactBytes(w.buf[:i+1])
	rest := copy(w.buf, w.buf[i+1:])
	w.buf = w.buf[:rest]
	if _, err := w.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what is buffered, redacted, even without a final newline.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 {
		return nil
	}
	out := w.r.RedactBytes(w.buf)
	w.buf = w.buf[:0]
	_, err := w.w.Write(out)
	return err
}

// Close flushes the writer. It does not close the underlying writer.
func (w *Writer) Close() error { return w.Flush() }

// Handler returns a slog.Handler that redacts the message and every
// attribute (strings, errors, anything printed with fmt, and groups) before
// passing the record to next.
func (r *Redactor) Handler(next slog.Handler) slog.Handler {
	return &redactHandler{r: r, next: next}
}

type redactHandler struct {
	r    *Redactor
	next slog.Handler
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.attr(a)
	}
	// Attributes given here are fixed now; values registered later are
	// masked again by Handle only for the record's own attributes, so redact
	// lazily through a LogValuer.
	for i := range red {
		red[i].Value = slog.AnyValue(lazyRedact{h: h, v: red[i].Value})
	}
	return &redactHandler{r: h.r, next: h.next.WithAttrs(red)}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{r: h.r, next: h.next.WithGroup(name)}
}

// attr redacts one attribute, its key included.
func (h *redactHandler) attr(a slog.Attr) slog.Attr {
	a.Key = h.r.Redact(a.Key)
	a.Value = h.value(a.Value)
	return a
}

func (h *redactHandler) value(v slog.Value) slog.Value {
	v = v.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(h.r.Redact(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, a := range g {
			out[i] = h.attr(a)
		}
		return slog.GroupValue(out...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.StringValue(h.r.Redact(x.Error()))
		case []byte:
			return slog.StringValue(h.r.Redact(string(x)))
		default:
			// Print it once, redact the text: the next handler must not
			// format the original a different way.
			return slog.StringValue(h.r.Redact(fmt.Sprintf("%+v", x)))
		}
	default:
		// Numbers, booleans, durations and times: redact their text form
		// only if it is a registered value.
		s := v.String()
		if r := h.r.Redact(s); r != s {
			return slog.StringValue(r)
		}
		return v
	}
}

// lazyRedact redacts a handler-level attribute each time it is logged.
type lazyRedact struct {
	h *redactHandler
	v slog.Value
}

func (l lazyRedact) LogValue() slog.Value { return l.h.value(l.v) }
