package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/deliverhq/deliver/pkg/ui"
)

// servePprof serves the process's runtime profiles on the loopback
// address addr until ctx is done, as Flux's controllers serve them on
// their metrics port: for a reconciler that lives for months, a heap
// profile is how a question about its memory gets answered. Loopback
// only: profiles carry no secret values but have no auth, and a CPU
// profile costs CPU. It returns once it listens.
//
// Written with runtime/pprof rather than net/http/pprof, whose import
// registers its handlers on http.DefaultServeMux for any server that
// uses it.
func servePprof(ctx context.Context, addr string, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pprof-addr %q: %w", addr, err)
	}
	if !ui.IsLoopback(host) {
		return fmt.Errorf("--pprof-addr %q: profiles have no auth: bind them to loopback (127.0.0.1:6060) and reach them with kubectl port-forward", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof-addr: %w", err)
	}
	mux := http.NewServeMux()
	// The named profiles: heap, allocs, goroutine, threadcreate, block,
	// mutex; ?debug=1 for text, as net/http/pprof.
	mux.HandleFunc("GET /debug/pprof/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if name == "profile" {
			cpuProfile(w, r)
			return
		}
		p := pprof.Lookup(name)
		if p == nil {
			http.Error(w, "no profile "+strconv.Quote(name), http.StatusNotFound)
			return
		}
		debug, _ := strconv.Atoi(r.URL.Query().Get("debug"))
		if debug > 0 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		} else {
			w.Header().Set("Content-Type", "application/octet-stream")
		}
		if err := p.WriteTo(w, debug); err != nil {
			log.Warn("pprof", "profile", name, "err", err)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof server", "err", err)
		}
	}()
	log.Info("serving runtime profiles", "addr", "http://"+ln.Addr().String()+"/debug/pprof/heap")
	return nil
}

// cpuProfile writes a CPU profile of ?seconds= (default 30, at most 300).
func cpuProfile(w http.ResponseWriter, r *http.Request) {
	secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
	if err != nil || secs <= 0 {
		secs = 30
	}
	secs = min(secs, 300)
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := pprof.StartCPUProfile(w); err != nil {
		// Another profile is running: the runtime has one at a time.
		http.Error(w, "cpu profile: "+err.Error(), http.StatusConflict)
		return
	}
	defer pprof.StopCPUProfile()
	select {
	case <-r.Context().Done():
	case <-time.After(time.Duration(secs) * time.Second):
	}
}
