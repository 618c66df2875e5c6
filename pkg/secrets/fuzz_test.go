package secrets

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseRef: the ref parser never panics, and a ref it accepts keeps
// the text it was given.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"ref+vault://secret/data/app#/db/password",
		"ref+vault://secret/app#/key",
		"ref+sops://secrets/db.enc.yaml#/a/b",
		"prefix-ref+vault://secret/x#/k+-suffix",
		"ref+vault://", "ref+unknown://x#/y", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err == nil && !strings.Contains(s, r.Raw) {
			t.Errorf("ParseRef(%q).Raw = %q", s, r.Raw)
		}
		refs, err := FindRefs(s)
		if err == nil {
			for _, r := range refs {
				if !strings.Contains(s, r.Raw) {
					t.Errorf("FindRefs(%q) found %q, not in the input", s, r.Raw)
				}
			}
		}
	})
}

// FuzzRedact: a registered secret never survives redaction, whether it
// appears plain, base64-encoded or JSON-escaped, anywhere in the text.
func FuzzRedact(f *testing.F) {
	f.Add("hunter2-secret", "password: %s\n")
	f.Add("multi\nline\nsecret", "value=%s;")
	f.Add(`quo"te\back`, `{"v": "%s"}`)
	f.Fuzz(func(t *testing.T, secret, format string) {
		if len(secret) < 8 || strings.TrimSpace(secret) != secret || strings.Count(format, "%s") != 1 {
			return // short values are not masked by design (MinLength)
		}
		r := NewRedactor(RedactorOptions{})
		r.Add(secret)
		quoted, _ := json.Marshal(secret)
		for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), string(quoted[1 : len(quoted)-1])} {
			text := strings.Replace(format, "%s", form, 1)
			if got := r.Redact(text); strings.Contains(got, form) && !strings.Contains(strings.Replace(format, "%s", "", 1), form) {
				t.Errorf("Redact(%q) = %q still contains %q", text, got, form)
			}
		}
	})
}
