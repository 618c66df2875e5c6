package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
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
	ch, cancel := s.broker.subscribe()
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// A comment first, so that the client sees the stream open.
	_, _ = w.Write([]byte(": deliver\n\n"))
	fl.Flush()
	// What the user may read is asked once per app per stream.
	allowed := map[AppRef]bool{}
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
			may, seen := allowed[e.App]
			if !seen {
				var err error
				may, err = s.guard.MayRead(r.Context(), u, e.App)
				may = may && err == nil
				allowed[e.App] = may
			}
			if !may {
				continue
			}
			body, err := json.Marshal(e)
			if err != nil {
				continue
			}
			msg := "event: app\ndata: " + s.redactor.Redact(string(body)) + "\n\n"
			if _, err := w.Write([]byte(msg)); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// broker fans events out to the open streams.
type broker struct {
	mu   sync.Mutex
	subs []chan Event
}

func newBroker() *broker { return &broker{} }

// subscribe returns a channel of events and the function that ends the
// subscription.
func (b *broker) subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 64)
	b.mu.Lock()
	b.subs = append(b.subs, ch)
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.subs = slices.DeleteFunc(b.subs, func(c chan Event) bool { return c == ch })
	}
}

func (b *broker) publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range b.subs {
		select {
		case ch <- e:
		default: // a slow page misses it
		}
	}
}
