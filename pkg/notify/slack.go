package notify

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/deliverhq/deliver/pkg/config"
)

// maxSlackReason bounds the reason quoted in a message: a section's text
// may not exceed 3000 characters.
const maxSlackReason = 2000

// slackMessage is what a Slack-compatible incoming webhook takes: text
// for notifications and clients without blocks, blocks for the rest.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks,omitempty"`
}

type slackBlock struct {
	Type string     `json:"type"`
	Text *slackText `json:"text,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// slack builds the message POSTed to the incoming-webhook URL read from
// p's Secret.
func (n *Notifier) slack(ctx context.Context, p config.Notification, e Event, webhookURL string) (*http.Request, error) {
	r := n.opts.Redactor
	where := ""
	if e.Environment != "" {
		where = " to " + e.Environment
	}
	var text, detail string
	switch e.Result {
	case Succeeded:
		text = fmt.Sprintf(":white_check_mark: %s delivered%s at %s in %s", e.App, where, short(e.Revision), roundDuration(e))
	default:
		text = fmt.Sprintf(":x: %s failed%s at %s after %s", e.App, where, short(e.Revision), roundDuration(e))
		var b strings.Builder
		if e.Object != "" {
			fmt.Fprintf(&b, "*Object:* `%s`\n", r.Redact(e.Object))
		}
		if e.Reason != "" {
			fmt.Fprintf(&b, "*Reason:* %s", truncate(r.Redact(e.Reason), maxSlackReason))
		}
		detail = b.String()
	}
	text = r.Redact(text)
	// A template gives the whole message: its text is the one section.
	if custom, ok, err := n.message(p, e, maxMessage); err != nil {
		return nil, err
	} else if ok {
		text, detail = custom, ""
	}
	msg := slackMessage{Text: text, Blocks: []slackBlock{{Type: "section", Text: &slackText{Type: "mrkdwn", Text: text}}}}
	if detail != "" {
		msg.Blocks = append(msg.Blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: detail}})
	}
	req, _, err := n.newJSONRequest(ctx, webhookURL, msg)
	return req, err
}
