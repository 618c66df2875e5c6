package secrets

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRedact(t *testing.T) {
	r := NewRedactor(RedactorOptions{})
	r.Add("s3cr3t-value", "s3cr3t", "on", "", "line \"quoted\"\nsecond-line-of-the-key-material", `p&ss<w>'rd"+1`)
	tests := []struct {
		name, in, want string
	}{
		{"plain", "password is s3cr3t-value.", "password is ***."},
		{"longest first", "s3cr3t-value and s3cr3t", "*** and ***"},
		{"base64", "data: " + base64.StdEncoding.EncodeToString([]byte("s3cr3t-value")), "data: ***"},
		{"base64 url raw", base64.RawURLEncoding.EncodeToString([]byte("s3cr3t")), "***"},
		{"short values are not masked", "turn it on", "turn it on"},
		{"go quoted", fmt.Sprintf("%q", "line \"quoted\"\nsecond-line-of-the-key-material"), `"***"`},
		{"one line of a multi-line value", "second-line-of-the-key-material", "***"},
		{"as html/template escapes it", `<pre>p&amp;ss&lt;w&gt;&#39;rd&#34;&#43;1</pre>`, "<pre>***</pre>"},
		{"nothing to mask", "hello", "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, r.Redact(tt.in)); diff != "" {
				t.Errorf("Redact(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
	// The mask does not depend on the value's length.
	if r.Redact("s3cr3t") != r.Redact("s3cr3t-value") {
		t.Error("mask depends on the value")
	}
	var nilR *Redactor
	if nilR.Redact("x") != "x" {
		t.Error("nil redactor changed text")
	}
	nilR.Add("x")
}

func TestChanged(t *testing.T) {
	if got := Changed("a", "b"); got != "*** (changed)" {
		t.Errorf("Changed = %q", got)
	}
	if got := Changed("a", "a"); got != "*** (unchanged)" {
		t.Errorf("Changed = %q", got)
	}
}

func TestRedactError(t *testing.T) {
	r := NewRedactor(RedactorOptions{})
	base := errors.New("connect: password hunter2-late rejected")
	err := r.Error(fmt.Errorf("db: %w", base))
	r.Add("hunter2-late") // registered after the error was made
	if got := err.Error(); got != "db: connect: password *** rejected" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(err, base) {
		t.Error("errors.Is lost the chain")
	}
	if r.Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
	p := r.Panic("boom hunter2-late")
	if p.Error() != "panic: boom ***" {
		t.Errorf("Panic = %q", p)
	}
}

func TestRedactHandler(t *testing.T) {
	r := NewRedactor(RedactorOptions{})
	r.Add("hunter2-log")
	for _, h := range []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
	} {
		t.Run(h.name, func(t *testing.T) {
			var b bytes.Buffer
			log := slog.New(r.Handler(h.new(&b))).With("pre", "hunter2-log")
			log.WithGroup("g").Info("msg hunter2-log",
				"s", "x hunter2-log",
				"err", errors.New("e hunter2-log"),
				"bytes", []byte("hunter2-log"),
				"map", map[string]string{"k": "hunter2-log"},
				slog.Group("grp", "inner", "hunter2-log"),
				"b64", base64.StdEncoding.EncodeToString([]byte("hunter2-log")),
			)
			out := b.String()
			if strings.Contains(out, "hunter2") || strings.Contains(out, base64.StdEncoding.EncodeToString([]byte("hunter2-log"))) {
				t.Errorf("log leaks:\n%s", out)
			}
			if strings.Count(out, Mask) < 8 {
				t.Errorf("expected 8 masks:\n%s", out)
			}
		})
	}
}

func TestRedactWriter(t *testing.T) {
	r := NewRedactor(RedactorOptions{})
	r.Add("hunter2-split")
	var b bytes.Buffer
	w := r.Writer(&b)
	fmt.Fprint(w, "a hunt")
	fmt.Fprint(w, "er2-split b\nc hunter2")
	fmt.Fprint(w, "-split")
	w.Close()
	if diff := cmp.Diff("a *** b\nc ***", b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func BenchmarkRedact(b *testing.B) {
	r := NewRedactor(RedactorOptions{})
	for i := range 200 {
		r.Add(fmt.Sprintf("secret-value-%04d", i))
	}
	line := strings.Repeat("a log line with nothing secret in it, ", 10) + "secret-value-0100"
	b.ResetTimer()
	for range b.N {
		_ = r.Redact(line)
	}
}

// TestHTMLEscaperMatchesTemplate: htmlEscaper writes a value as
// html/template does in a page's text and in a quoted attribute, for
// every ASCII character and some beyond, so that the view's pages are
// redacted whatever a secret holds.
func TestHTMLEscaperMatchesTemplate(t *testing.T) {
	t.Parallel()
	var values []string
	for c := range 128 {
		values = append(values, "a"+string(rune(c))+"b")
	}
	values = append(values, "pässwörd+1", "<script>x</script>", `"q"&'s'`, "\u2028\u2029", "日本")
	tmpl := htmltemplate.Must(htmltemplate.New("").Parse(`<p>{{.}}</p><p title="{{.}}"></p>`))
	for _, v := range values {
		var b strings.Builder
		if err := tmpl.Execute(&b, v); err != nil {
			t.Fatal(err)
		}
		want := b.String()
		got := "<p>" + htmlEscaper.Replace(v) + "</p><p title=\"" + htmlEscaper.Replace(v) + "\"></p>"
		if got != want {
			t.Errorf("%q: htmlEscaper gives %q, html/template %q", v, got, want)
		}
	}
}
