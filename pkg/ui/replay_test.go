package ui_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/pkg/ui"
)

// frame is one message of the event stream: "open" (the opening
// comment), "stale", or an app event with its result and id.
type frame struct{ kind, result, id string }

// TestEventsReplay: a page carries the stream's cursor of the moment it
// began to read its data, and the stream it opens with that cursor (or
// reopens with the browser's Last-Event-ID) starts with the events sent
// since, each with its id and only of apps the user may read, so that an
// event sent between the render and the subscription still refreshes the
// page. A cursor the server cannot serve (older than the events it keeps,
// another process's, a future one, garbage) gets one "stale" event; no
// cursor gets live events only.
func TestEventsReplay(t *testing.T) {
	t.Parallel()
	src := &fakeSource{rows: []ui.AppRow{
		{AppRef: ui.AppRef{Name: "web"}, Result: "succeeded"},
		{AppRef: ui.AppRef{Name: "secret-app"}, Result: "failed"},
	}}
	srv, err := ui.New(ui.Options{Guard: userGuard{}, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()

	// cursor reads a page's cursor, as app.js does.
	cursor := func() string {
		t.Helper()
		code, page := getAs(t, hs.URL+"/apps/_/web", "alice")
		c := between(page, `<body data-events="`, `"`)
		if code != http.StatusOK || c == "" {
			t.Fatalf("GET /apps/_/web = %d, carries no cursor:\n%s", code, page)
		}
		return c
	}
	publish := func(app, result string) {
		srv.Publish(ui.Event{Kind: ui.EventRunEnded, App: ui.AppRef{Name: app}, Result: result})
	}
	// stream opens the stream as alice and returns its first n frames
	// after the opening comment; onOpen runs once the stream is open.
	stream := func(t *testing.T, after, lastEventID string, n int, onOpen func()) []frame {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		u := hs.URL + "/events"
		if after != "" {
			u += "?after=" + after
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		req.Header.Set("X-User", "alice")
		if lastEventID != "" {
			req.Header.Set("Last-Event-ID", lastEventID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got []frame
		var cur frame
		sc := bufio.NewScanner(resp.Body)
		for len(got) < n && sc.Scan() {
			line := sc.Text()
			switch {
			case line == ": deliver":
				if onOpen != nil {
					onOpen()
				}
			case strings.HasPrefix(line, "id: "):
				cur.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				cur.kind = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				cur.result = between(line, `"result":"`, `"`)
				got = append(got, cur)
				cur = frame{}
			}
		}
		if len(got) < n {
			t.Fatalf("the stream ended after %v, want %d frames (%v)", got, n, sc.Err())
		}
		return got
	}
	results := func(fs []frame) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.kind+":"+f.result)
		}
		return out
	}

	before := cursor()
	publish("web", "failed")
	publish("secret-app", "failed") // alice may not read it
	publish("web", "succeeded")

	got := stream(t, before, "", 2, nil)
	if want := []string{"app:failed", "app:succeeded"}; !slices.Equal(results(got), want) {
		t.Fatalf("after the page's cursor: %v, want %v", results(got), want)
	}
	if got[0].id == "" || got[0].id == got[1].id {
		t.Errorf("event ids %q and %q, want two distinct ids", got[0].id, got[1].id)
	}
	// The browser reconnects with the last id it received: what came
	// after it, whatever the URL's cursor says.
	if again := stream(t, "garbage", got[0].id, 1, nil); !slices.Equal(results(again), []string{"app:succeeded"}) {
		t.Errorf("reconnect after %s: %v, want web's success only", got[0].id, results(again))
	}

	// More events than the server keeps: the first cursor is now too old.
	for range 600 {
		publish("secret-app", "running")
	}
	kept := cursor()
	publish("web", "waiting")
	epoch, _, _ := strings.Cut(kept, ".")
	for _, tc := range []struct {
		name, after string
		want        []string
	}{
		{"a kept cursor", kept, []string{"app:waiting"}},
		{"older than the events kept", before, []string{"stale:"}},
		{"another process's", "x" + epoch + ".1", []string{"stale:"}},
		{"from the future", epoch + ".999999", []string{"stale:"}},
		{"garbage", "not-a-cursor", []string{"stale:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := results(stream(t, tc.after, "", len(tc.want), nil)); !slices.Equal(got, tc.want) {
				t.Errorf("after %q: %v, want %v", tc.after, got, tc.want)
			}
		})
	}
	t.Run("no cursor: live events only", func(t *testing.T) {
		got := stream(t, "", "", 1, func() { publish("web", "live") })
		if !slices.Equal(results(got), []string{"app:live"}) {
			t.Errorf("without a cursor: %v, want the live event only", results(got))
		}
	})
}
