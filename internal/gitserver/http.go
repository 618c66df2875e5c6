package gitserver

import (
	"crypto/subtle"
	"encoding/pem"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

// HTTPBackend is where Debian and most distributions install git's CGI
// program for smart HTTP.
const HTTPBackend = "/usr/lib/git-core/git-http-backend"

// HTTPOptions configures an HTTP git server.
type HTTPOptions struct {
	// Username and Password, when Username is set, are the only basic-auth
	// credentials accepted; any other request gets 401 like a private
	// repository on a forge.
	Username string
	Password string
	// TLS serves HTTPS with a self-signed certificate; CAPEM returns it.
	TLS bool
	// OnRequest, when set, runs before each request is served, so a test
	// can change a repository between a client's requests (a ref that
	// moves mid-fetch).
	OnRequest func(r *http.Request)
}

// Request records one request the server answered, so tests can tell
// whether a client only listed refs or also downloaded a pack.
type Request struct {
	Method string
	// Service is "git-upload-pack" or "git-receive-pack" for the pack
	// exchange (POST) and for ref discovery (GET .../info/refs?service=).
	Service string
	// Status is the HTTP status code written.
	Status int
	// Bytes is the size of the response body.
	Bytes int64
}

// HTTPServer serves every repository under Root over smart HTTP.
type HTTPServer struct {
	// URL is the base URL; a repository at Root/name is at URL/name.
	URL string
	// Root is the directory exported as GIT_PROJECT_ROOT.
	Root string

	srv      *httptest.Server
	mu       sync.Mutex
	requests []Request
}

// NewHTTP starts a smart-HTTP git server for the repositories under root
// and stops it when the test ends.
func NewHTTP(tb testing.TB, root string, opts HTTPOptions) *HTTPServer {
	tb.Helper()
	RequireGit(tb)
	if _, err := os.Stat(HTTPBackend); err != nil {
		tb.Skipf("git-http-backend not available: %v", err)
	}
	s := &HTTPServer{Root: root}
	backend := &cgi.Handler{
		Path: HTTPBackend,
		Root: "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			// Export every repository without a git-daemon-export-ok file.
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
		},
		InheritEnv: []string{"PATH"},
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		defer s.record(r, rec)
		if opts.Username != "" && !s.authorized(r, opts) {
			rec.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(rec, "authentication required", http.StatusUnauthorized)
			return
		}
		if opts.OnRequest != nil {
			opts.OnRequest(r)
		}
		backend.ServeHTTP(rec, r)
	})
	s.srv = httptest.NewUnstartedServer(handler)
	if opts.TLS {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	tb.Cleanup(s.srv.Close)
	s.URL = s.srv.URL
	return s
}

func (s *HTTPServer) authorized(r *http.Request, opts HTTPOptions) bool {
	user, pass, ok := r.BasicAuth()
	// Constant-time comparison is not needed in a test, but costs nothing
	// and keeps the example copyable.
	return ok &&
		subtle.ConstantTimeCompare([]byte(user), []byte(opts.Username)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(opts.Password)) == 1
}

func (s *HTTPServer) record(r *http.Request, rec *recorder) {
	service := r.URL.Query().Get("service")
	if service == "" {
		service = r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Method: r.Method, Service: service, Status: rec.status, Bytes: rec.bytes})
}

// RepoURL returns the clone URL of the repository at Root/name.
func (s *HTTPServer) RepoURL(name string) string { return s.URL + "/" + name }

// CAPEM returns the PEM-encoded certificate of a TLS server, to be used as
// the client's CA bundle.
func (s *HTTPServer) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// Requests returns the requests answered so far.
func (s *HTTPServer) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ResetRequests forgets the recorded requests.
func (s *HTTPServer) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// PackRequests returns the POST git-upload-pack requests recorded, i.e. the
// fetches that went past ref discovery and downloaded a pack. That holds
// for protocol v0/v1, which go-git speaks; a git CLI speaking protocol v2
// also POSTs its ref listing (ls-refs), so count those clones' requests
// accordingly.
func (s *HTTPServer) PackRequests() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Method == http.MethodPost && r.Service == "git-upload-pack" {
			out = append(out, r)
		}
	}
	return out
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Flush lets git-http-backend stream packs instead of buffering them.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
