package notify_test

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/notify"
)

// TestExampleNotify: examples/notify/deliver.yaml parses, and a success
// and a failure of app web in prod, sent through its providers (their
// addresses replaced by local servers), reach each provider as its
// filters say: the webhook gets both, Slack only the failure, and each
// commit status at least the last one (the failure replaces the success
// of the same commit and context when that is not sent yet); oncall's
// message is its template's.
func TestExampleNotify(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../examples/notify/deliver.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("examples/notify/deliver.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.ForEnvironment("prod")
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]*testenv.Recorder{}
	creds := map[string]string{}
	providers := res.Notifications
	for i, p := range providers {
		rec := testenv.NewRecorder(t, http.StatusCreated)
		recs[p.Name] = rec
		switch p.Type {
		case config.Slack:
			creds[p.SecretRef.Name+"/"+p.SecretKey()] = rec.URL + "/services/T0/B0/x"
		case config.Webhook:
			providers[i].Address = rec.URL + "/deliver"
			creds[p.SecretRef.Name+"/"+p.SecretKey()] = "hmac-key"
		default:
			providers[i].Address = rec.URL
			creds[p.SecretRef.Name+"/"+p.SecretKey()] = p.Name + "-token"
		}
	}
	n := notify.New(notify.Options{Secrets: secretMap(creds)})
	for _, r := range []notify.Result{notify.Succeeded, notify.Failed} {
		e := success
		e.Result = r
		n.Notify(providers, e)
	}
	closeNotifier(t, n)
	want := map[string][2]int{"github": {1, 2}, "gitlab": {1, 2}, "oncall": {1, 1}, "audit": {2, 2}}
	for name, rec := range recs {
		reqs := rec.Requests()
		if got := len(reqs); got < want[name][0] || got > want[name][1] {
			t.Errorf("provider %s: %d requests, want %v", name, got, want[name])
			continue
		}
		if last := string(reqs[len(reqs)-1].Body); name != "audit" && !strings.Contains(last, `"failed"`) && !strings.Contains(last, `"failure"`) && !strings.Contains(last, ":x:") {
			t.Errorf("provider %s: last request %s, want the failure", name, last)
		}
	}
	// oncall's template gives its message.
	if reqs := recs["oncall"].Requests(); len(reqs) > 0 {
		wantText := ":x: *web* failed in prod at " + rev[:12] + " after 1.5s (runbook: https://wiki.example.com/deliver)"
		if !strings.Contains(string(reqs[0].Body), `"text":"`+wantText+`"`) {
			t.Errorf("oncall: %s, want the text %q", reqs[0].Body, wantText)
		}
	}
	if len(recs) != len(want) {
		t.Errorf("providers %d, want %d", len(recs), len(want))
	}
}
