package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/deliverhq/deliver/pkg/config"
)

// SignatureHeader carries the HMAC-SHA256 of a webhook's body, keyed with
// the Secret's value, as "sha256=" and the hex digest (the shape of
// GitHub's X-Hub-Signature-256).
const SignatureHeader = "X-Deliver-Signature-256"

// Payload is the JSON document a webhook provider POSTs.
type Payload struct {
	App         string `json:"app"`
	Environment string `json:"environment,omitempty"`
	Revision    string `json:"revision"`
	// Result is succeeded or failed.
	Result Result `json:"result"`
	// Duration is the run's, as a Go duration ("1.5s"), and in seconds.
	Duration        string  `json:"duration"`
	DurationSeconds float64 `json:"durationSeconds"`
	// Object (Kind/namespace/name) and Reason say what failed.
	Object string `json:"object,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Summary is the one line a commit status would show.
	Summary string `json:"summary"`
	// Message is the notification's template rendered; absent without
	// one.
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// webhook builds the JSON POST to p's address, signed when p's Secret
// holds a key.
func (n *Notifier) webhook(ctx context.Context, p config.Notification, e Event, key string) (*http.Request, error) {
	r := n.opts.Redactor
	message, _, err := n.message(p, e, maxMessage)
	if err != nil {
		return nil, err
	}
	req, body, err := n.newJSONRequest(ctx, p.Address, Payload{
		App:             e.App,
		Environment:     e.Environment,
		Revision:        e.Revision,
		Result:          e.Result,
		Duration:        e.Duration.String(),
		DurationSeconds: e.Duration.Seconds(),
		Object:          r.Redact(e.Object),
		Reason:          r.Redact(e.Reason),
		Summary:         n.describe(e),
		Message:         message,
		Time:            e.Time.UTC(),
	})
	if err != nil {
		return nil, err
	}
	if key != "" {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write(body)
		req.Header.Set(SignatureHeader, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	return req, nil
}
