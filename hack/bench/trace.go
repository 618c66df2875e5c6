package main

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// requestLog records every API request of a profiled step: when it
// started (since the step began), how long it took, and what it was. The
// profile shows deliver's CPU; this shows what the wall time waited for.
type requestLog struct {
	mu    sync.Mutex
	start time.Time
	reqs  []tracedRequest
}

type tracedRequest struct {
	At, Took time.Duration
	What     string
}

func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.start, l.reqs = time.Now(), nil
}

// wrap is a rest.Config WrapTransport.
func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		t := time.Now()
		resp, err := rt.RoundTrip(req)
		took := time.Since(t)
		what := req.Method + " " + req.URL.Path
		if q := req.URL.Query(); q.Get("dryRun") != "" {
			what += " (dry run)"
		} else if q.Get("watch") != "" {
			what += " (watch)"
		}
		l.mu.Lock()
		l.reqs = append(l.reqs, tracedRequest{At: t.Sub(l.start), Took: took, What: what})
		l.mu.Unlock()
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// summary lists the requests in order when there are few, and counts them
// by method and resource in any case.
func (l *requestLog) summary(maxListed int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	reqs := append([]tracedRequest(nil), l.reqs...)
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].At < reqs[j].At })
	var b strings.Builder
	fmt.Fprintf(&b, "%d API requests\n", len(reqs))
	if len(reqs) <= maxListed {
		for _, r := range reqs {
			fmt.Fprintf(&b, "  %7.1f ms  %6.1f ms  %s\n", ms(r.At), ms(r.Took), r.What)
		}
	}
	type agg struct {
		n    int
		took time.Duration
	}
	groups := map[string]*agg{}
	for _, r := range reqs {
		k := resourceOf(r.What)
		if groups[k] == nil {
			groups[k] = &agg{}
		}
		groups[k].n++
		groups[k].took += r.Took
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return groups[keys[i]].took > groups[keys[j]].took })
	for _, k := range keys {
		fmt.Fprintf(&b, "  %5d x %-70s %8.1f ms in all\n", groups[k].n, k, ms(groups[k].took))
	}
	return b.String()
}

// resourceOf drops the namespace and object names from a request, keeping
// the method, API group and version, resource, subresource and modifiers:
// GET /api/v1/namespaces/ns/configmaps/a becomes GET /api/v1/configmaps.
func resourceOf(what string) string {
	method, rest, _ := strings.Cut(what, " ")
	path, mod, _ := strings.Cut(rest, " ")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	prefix := 2 // api/v1
	if len(parts) > 0 && parts[0] == "apis" {
		prefix = 3 // apis/group/version
	}
	if len(parts) <= prefix {
		return strings.TrimSpace(method + " " + path + " " + mod)
	}
	keep := append([]string(nil), parts[:prefix]...)
	tail := parts[prefix:]
	if len(tail) >= 3 && tail[0] == "namespaces" {
		tail = tail[2:] // a namespaced resource: drop the namespace
	}
	keep = append(keep, tail[0]) // the resource
	if len(tail) > 2 {
		keep = append(keep, tail[2:]...) // a subresource, after the name
	}
	return strings.TrimSpace(method + " /" + strings.Join(keep, "/") + " " + mod)
}
