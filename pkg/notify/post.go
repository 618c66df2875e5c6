package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/deliverhq/deliver/internal/version"
	"github.com/deliverhq/deliver/pkg/config"
)

// metrics count the messages per provider type.
type metrics struct {
	sent, failed, dropped *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deliver_notify_sent_total", Help: "Notifications accepted by their endpoint, per provider type.",
		}, []string{"type"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deliver_notify_failed_total", Help: "Notifications given up after their attempts or refused (4xx), per provider type.",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deliver_notify_dropped_total", Help: "Notifications dropped unsent because the queue was full or the reconciler stopped, per provider type.",
		}, []string{"type"}),
	}
	if reg != nil {
		// A second Notifier on the same registry (a Reconciler run
		// again) counts on in the first one's counters.
		for _, c := range []**prometheus.CounterVec{&m.sent, &m.failed, &m.dropped} {
			if err := reg.Register(*c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					panic(err) // a programming error, as MustRegister's
				}
				*c = are.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	return m
}

// maxErrorBody bounds the part of an endpoint's answer quoted in an
// error.
const maxErrorBody = 200

// post sends req and judges the answer: 2xx is done; 429 and 5xx may be
// retried; any other status is permanent.
func (n *Notifier) post(req *http.Request) error {
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		// A *url.Error quotes the URL, which for Slack is the credential
		// itself: keep only the method and the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s: %w", req.Method, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = &StatusError{Code: resp.StatusCode, Body: n.opts.Redactor.Redact(snippet(body))}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return err
	}
	return permanent(err)
}

// StatusError is an endpoint's answer other than 2xx.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// Body is the start of the answer's body, redacted, on one line.
	Body string
}

// Error implements error.
func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("answer %d", e.Code)
	}
	return fmt.Sprintf("answer %d: %s", e.Code, e.Body)
}

// snippet returns the start of b on one line.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	return truncate(s, maxErrorBody)
}

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// newJSONRequest builds a POST of v as JSON, redacted: the text fields
// were redacted one by one already, and the whole document is again, for
// a value in a form only the encoding produced.
func (n *Notifier) newJSONRequest(ctx context.Context, address string, v any) (*http.Request, []byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, nil, permanent(fmt.Errorf("encode: %w", err))
	}
	body = n.opts.Redactor.RedactBytes(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, address, bytes.NewReader(body))
	if err != nil {
		// NewRequest's error quotes the URL: say only that it is bad.
		return nil, nil, permanent(errors.New("invalid address"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "deliver/"+version.Version)
	return req, body, nil
}

// describe is the one-line summary of e shared by the commit statuses and
// the message title, redacted.
func (n *Notifier) describe(e Event) string {
	var s string
	switch e.Result {
	case Pending:
		s = fmt.Sprintf("delivering %s at %s", e.App, short(e.Revision))
	case Succeeded:
		s = fmt.Sprintf("%s delivered at %s in %s", e.App, short(e.Revision), roundDuration(e))
	default:
		s = fmt.Sprintf("%s failed at %s", e.App, short(e.Revision))
		if e.Object != "" {
			s += ": " + e.Object
		}
		if e.Reason != "" {
			s += ": " + e.Reason
		}
	}
	return n.opts.Redactor.Redact(s)
}

func roundDuration(e Event) string {
	return e.Duration.Round(100 * time.Millisecond).String()
}

// statusContext is the name of a commit status: one per environment and
// app, so that each keeps its own line on the commit.
func statusContext(e Event) string {
	if e.Environment == "" {
		return "deliver/" + e.App
	}
	return "deliver/" + e.Environment + "/" + e.App
}

// repoPath is the path of a repository URL, without .git: owner/name on
// GitHub, group/subgroup/name on GitLab. It handles https://, ssh:// and
// scp-like (git@host:path) URLs. The URL is never quoted in the error: it
// may hold a password.
func repoPath(repoURL string) (string, error) {
	// go-git's endpoint parser, as the fetch reads the URL: scp-like
	// (git@host:path) and URLs alike.
	ep, err := transport.NewEndpoint(repoURL)
	if err != nil || ep.Protocol == "file" || ep.Host == "" {
		return "", errors.New("repository: cannot derive it from the followed repository's URL; set it")
	}
	s := strings.TrimSuffix(strings.Trim(ep.Path, "/"), ".git")
	if s == "" {
		return "", errors.New("repository: the followed repository's URL has no path; set it")
	}
	return s, nil
}

// maxMessage bounds a message rendered from a template: a Slack
// section's text may not exceed 3000 characters.
const maxMessage = 3000

// message renders p's Template over e, redacted and cut to limit runes;
// ok is false when p has none, and deliver's own text is sent. The
// fields are redacted one by one before, the text again after, for a
// secret value only the concatenation of fields forms.
func (n *Notifier) message(p config.Notification, e Event, limit int) (text string, ok bool, err error) {
	if p.Template == "" {
		return "", false, nil
	}
	r := n.opts.Redactor
	t, err := config.ParseTemplate(p.Name, p.Template)
	if err != nil {
		return "", false, permanent(fmt.Errorf("template: %w", err))
	}
	f := config.MessageFields{
		App: e.App, Environment: e.Environment, Revision: e.Revision, ShortRevision: short(e.Revision),
		Result: string(e.Result), Duration: roundDuration(e), Object: r.Redact(e.Object), Reason: r.Redact(e.Reason),
	}
	text, err = config.RenderTemplate(t, f)
	if err != nil {
		return "", false, permanent(fmt.Errorf("template: %w", r.Error(err)))
	}
	return truncate(r.Redact(text), limit), true, nil
}
