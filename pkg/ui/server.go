// Package ui serves deliver's read-only web view: every app at a glance, one
// app's objects, last plan, hook runs and history, and live updates, as
// server-rendered pages with a little JavaScript embedded in the binary.
package ui

import (
	"errors"
	"net/http"

	"github.com/deliverhq/deliver/pkg/secrets"
)

// ErrNoGuard is returned by New when Options.Guard is nil: a view without a
// guard would show every app to whoever reaches the port.
var ErrNoGuard = errors.New("the web view needs a guard")

// Options configure a Server.
type Options struct {
	// Guard authenticates requests and decides what each user may see and
	// do. Required.
	Guard Guard
	// Redactor masks secret values in every byte served. Default: an empty
	// Redactor (still masks nothing until values are added).
	Redactor *secrets.Redactor
}

// Server is the web view as an http.Handler.
type Server struct {
	guard    Guard
	redactor *secrets.Redactor
	mux      *http.ServeMux
}

// New returns a Server. It refuses a nil Guard.
func New(opts Options) (*Server, error) {
	if opts.Guard == nil {
		return nil, ErrNoGuard
	}
	red := opts.Redactor
	if red == nil {
		red = secrets.NewRedactor(secrets.RedactorOptions{})
	}
	s := &Server{guard: opts.Guard, redactor: red, mux: http.NewServeMux()}
	return s, nil
}

// ServeHTTP serves the view.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}
