package testenv

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Request is one request a Recorder received.
type Request struct {
	Method string
	// Path is the escaped path (a GitLab project path stays %2F-encoded);
	// URL is the whole request URI, query included.
	Path, URL string
	Header    http.Header
	Body      []byte
}

// Recorder is a local HTTP server standing for GitHub, GitLab, Slack or a
// webhook receiver: it records every request and answers Codes[i] to the
// i-th (the last code to the rest; 200 without codes) with Body. With
// Hang it answers nothing until the client gives up. Set the fields
// before the first request.
type Recorder struct {
	*httptest.Server
	Codes []int
	Body  string
	Hang  bool
	// Got receives a value per request (buffered, 100), to wait for one
	// without sleeping.
	Got chan struct{}

	mu   sync.Mutex
	reqs []Request
}

// NewRecorder starts a Recorder answering codes, closed when the test
// ends.
func NewRecorder(tb testing.TB, codes ...int) *Recorder {
	rec := &Recorder{Codes: codes, Got: make(chan struct{}, 100)}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		n := len(rec.reqs)
		rec.reqs = append(rec.reqs, Request{Method: r.Method, Path: r.URL.EscapedPath(), URL: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body})
		code := http.StatusOK
		if len(rec.Codes) > 0 {
			code = rec.Codes[min(n, len(rec.Codes)-1)]
		}
		rec.mu.Unlock()
		select {
		case rec.Got <- struct{}{}:
		default:
		}
		if rec.Hang {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(code)
		fmt.Fprint(w, rec.Body)
	}))
	tb.Cleanup(rec.Close)
	return rec
}

// Requests returns the requests received so far.
func (rec *Recorder) Requests() []Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]Request(nil), rec.reqs...)
}
