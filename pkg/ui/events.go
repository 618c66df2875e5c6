package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// EventKind is what a live update says, a closed enum.
type EventKind int

const (
	// EventRunStarted: the reconciler started a run of the app.
	EventRunStarted EventKind = iota + 1
	// EventRunEnded: the run ended; Result says how.
	EventRunEnded
	// EventChanged: the app's status changed (drift, a pin, a window, a
	// run seen in the status ConfigMap).
	EventChanged
)

// String names the kind as the event stream does.
func (k EventKind) String() string {
	switch k {
	case EventRunStarted:
		return "run-started"
	case EventRunEnded:
		return "run-ended"
	case EventChanged:
		return "changed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a live update of one app, sent to the open pages as a
// server-sent event "app" with a JSON body.
type Event struct {
	Kind     EventKind
	App      AppRef
	Revision string
	Result   string
	Message  string
	Duration time.Duration
	// Drift is the number of drifted objects (EventChanged).
	Drift int
	// Plan is the run's plan (EventRunEnded); kept for the app's page,
	// not streamed.
	Plan *PlanView

	seq uint64 // set by the broker
}

// MarshalJSON is the event's body on the stream: no inventory names, no
// plan.
func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Kind     string `json:"kind"`
		Env      string `json:"env"`
		App      string `json:"app"`
		Path     string `json:"path"`
		Revision string `json:"revision,omitempty"`
		Result   string `json:"result,omitempty"`
		Message  string `json:"message,omitempty"`
		Duration string `json:"duration,omitempty"`
		Drift    int    `json:"drift,omitempty"`
	}{e.Kind.String(), e.App.Environment, e.App.Name, AppPath(e.App), e.Revision, e.Result, e.Message, durationText(e.Duration), e.Drift})
}

func durationText(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.Round(time.Millisecond).String()
}

// Publish sends e to the open pages whose user may read its app, and
// keeps a run's plan for the app's page. It never blocks: a page that
// does not keep up misses events (it reloads on the next one).
func (s *Server) Publish(e Event) {
	if e.Plan != nil {
		s.plans.put(e.App, e.Plan)
	}
	s.broker.publish(e)
}

// ReconcilerHook returns the function for reconcile.Options.OnRun that
// publishes the reconciler's runs, as apps of env, in inventory
// namespace invNS.
func (s *Server) ReconcilerHook(env, invNS string) func(reconcile.RunEvent) {
	return func(re reconcile.RunEvent) {
		ref := AppRef{Environment: env, Name: re.App, InventoryNamespace: invNS, InventoryName: inventoryName(re.App)}
		e := Event{Kind: EventRunStarted, App: ref, Revision: re.Revision, Message: re.Reason}
		if re.Ended {
			e.Kind, e.Result, e.Message, e.Duration = EventRunEnded, re.Result, re.Message, re.Duration
			// A plan that changes nothing leaves the last change's, as
			// the inventory does (apply.StoredPlan).
			// Cut as the stored plan is: a thousand apps' first plans
			// stay a page each in memory.
			if re.Plan != nil {
				if pv := planViewOf(re.Plan.Stored(re.Result, time.Now(), nil), ""); pv != nil {
					pv.Revision, pv.From = re.Revision, PlanFromRun
					e.Plan = pv
				}
			}
		}
		s.Publish(e)
	}
}

// Watch reads the apps every PollInterval and publishes EventChanged for
// each app whose status changed, until ctx is done: what the reconciler
// does not publish itself (drift, a pin set with the CLI, the runs of a
// reconciler elsewhere, for `deliver ui`).
func (s *Server) Watch(ctx context.Context) {
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	var last map[AppRef]string
	for {
		rows, err := s.opts.Source.Apps(ctx)
		if err != nil {
			s.opts.Log.Warn("watch apps", "err", err)
		}
		if _, err := partialOf(err); err == nil {
			// An environment that could not be read this time is
			// compared again when it can.
			cur := make(map[AppRef]string, len(rows))
			for _, r := range rows {
				fp := fingerprint(r)
				cur[r.AppRef] = fp
				if last != nil && last[r.AppRef] != fp {
					s.Publish(Event{Kind: EventChanged, App: r.AppRef, Revision: r.Revision, Result: r.Result, Message: r.Message, Drift: len(r.Drift)})
				}
			}
			last = cur
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fingerprint is what of a row a page shows that may change.
func fingerprint(r AppRow) string {
	b, _ := json.Marshal([]any{r.Revision, r.Result, r.Message, r.Drift, r.Pin, r.Held, r.Suspended, r.LastRun, r.Requested, r.Served})
	return string(b)
}

// events streams the live updates of the apps the user may read.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	u, ok := s.identify(w, r)
	if !ok {
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		s.fail(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	// The cursor of the page (its first request) or of the last event
	// received (the browser's reconnect).
	after := r.Header.Get("Last-Event-ID")
	if after == "" {
		after = r.URL.Query().Get("after")
	}
	replay, stale, ch, cancel := s.broker.subscribe(after)
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// A comment first, so that the client sees the stream open.
	_, _ = w.Write([]byte(": deliver\n\n"))
	if stale {
		_, _ = w.Write([]byte("event: stale\ndata: {}\n\n"))
	}
	fl.Flush()
	// What the user may read is asked once per app per stream.
	allowed := map[AppRef]bool{}
	send := func(e Event) bool {
		may, seen := allowed[e.App]
		if !seen {
			var err error
			may, err = s.guard.MayRead(r.Context(), u, e.App)
			may = may && err == nil
			allowed[e.App] = may
		}
		if !may {
			return true
		}
		body, err := json.Marshal(e)
		if err != nil {
			return true
		}
		msg := "id: " + s.broker.cursorOf(e.seq) + "\nevent: app\ndata: " + s.redactor.Redact(string(body)) + "\n\n"
		_, err = w.Write([]byte(msg))
		return err == nil
	}
	for _, e := range replay {
		if !send(e) {
			return
		}
	}
	fl.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ping.C:
			_, _ = w.Write([]byte(": ping\n\n"))
			fl.Flush()
		case e := <-ch:
			if !send(e) {
				return
			}
			fl.Flush()
		}
	}
}

// replayLen is how many of the last events the broker keeps for pages
// that subscribe after they were rendered: at a few hundred bytes each, a
// bound far above what a page misses in the second it takes to load.
const replayLen = 512

// broker fans events out to the open streams, and keeps the last
// replayLen of them, each with a cursor ("epoch.seq"): a page is stamped
// with the cursor of the moment it began to read its data, and asks for
// what came after it when it subscribes (or reconnects, with the SSE
// Last-Event-ID), so an event sent between the render and the
// subscription is not lost. A cursor the broker cannot serve (another
// process's, or older than what it keeps) gets one "stale" event: the page
// reloads its content.
type broker struct {
	// epoch tells this process's cursors from those of a process before
	// a restart, whose sequence numbers mean nothing here.
	epoch string
	mu    sync.Mutex
	seq   uint64
	ring  []Event // the last replayLen events, oldest first
	subs  []chan Event
}

func newBroker() *broker {
	return &broker{epoch: strconv.FormatInt(time.Now().UnixNano(), 36)}
}

// cursor is the cursor of the last event sent.
func (b *broker) cursor() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cursorOf(b.seq)
}

func (b *broker) cursorOf(seq uint64) string { return b.epoch + "." + strconv.FormatUint(seq, 10) }

// subscribe returns the events after cursor after ("" for none: live
// events only), whether after could not be served (the page must reload),
// a channel of the events to come, and the function that ends the
// subscription.
func (b *broker) subscribe(after string) (replay []Event, stale bool, _ <-chan Event, _ func()) {
	ch := make(chan Event, 64)
	b.mu.Lock()
	if after != "" {
		replay, stale = b.after(after)
	}
	b.subs = append(b.subs, ch)
	b.mu.Unlock()
	return replay, stale, ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.subs = slices.DeleteFunc(b.subs, func(c chan Event) bool { return c == ch })
	}
}

// after is what subscribe replays; b.mu is held.
func (b *broker) after(cursor string) ([]Event, bool) {
	epoch, n, ok := strings.Cut(cursor, ".")
	seq, err := strconv.ParseUint(n, 10, 64)
	if !ok || err != nil || epoch != b.epoch || seq > b.seq {
		return nil, true
	}
	if seq == b.seq {
		return nil, false
	}
	// The ring holds seq b.seq-len(ring)+1 .. b.seq.
	first := b.seq - uint64(len(b.ring)) + 1
	if seq+1 < first {
		return nil, true
	}
	return slices.Clone(b.ring[seq+1-first:]), false
}

func (b *broker) publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.seq = b.seq
	// The plan stays out of the ring: pages read it from the plan store.
	kept := e
	kept.Plan = nil
	if len(b.ring) == replayLen {
		b.ring = slices.Delete(b.ring, 0, 1)
	}
	b.ring = append(b.ring, kept)
	for _, ch := range b.subs {
		select {
		case ch <- e:
		default: // a slow page misses it
		}
	}
}
