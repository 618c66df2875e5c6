// Package ui serves deliver's read-only web view: every app at a glance,
// one app's objects by stage with their health, its last plan, hook runs
// and history, and live updates over server-sent events. The pages are
// rendered on the server from templates embedded in the binary, with a
// little JavaScript and no external resource, so the view works offline.
//
// Every request is identified by a Guard, and every app shown, streamed
// or acted on is checked with it. Every byte served passes through the
// Redactor. Actions (reconcile now, pin, unpin) exist only when
// Options.Actions is set; they never edit an app's objects.
package ui

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/deliverhq/deliver/pkg/secrets"
)

// ErrNoGuard is returned by New when Options.Guard is nil: a view without a
// guard would show every app to whoever reaches the port.
var ErrNoGuard = errors.New("the web view needs a guard")

// NoEnvironment stands for the empty environment in paths, where a
// segment cannot be empty.
const NoEnvironment = "_"

//go:embed templates/*.html static/*
var assets embed.FS

// Options configure a Server.
type Options struct {
	// Guard authenticates requests and decides what each user may see and
	// do. Required.
	Guard Guard
	// Source is where apps are read from. Required.
	Source Source
	// Actions, when set, adds the guarded buttons "reconcile now", "pin"
	// and "unpin". Default nil: the view is read-only.
	Actions Actions
	// Redactor masks secret values in every byte served. Default: an
	// empty Redactor, which still learns the values of each app's
	// Secrets as its page reads them.
	Redactor *secrets.Redactor
	// LocalUser is recorded as who pinned for the local user (User with
	// an empty Name, LocalGuard's). Default "deliver ui".
	LocalUser string
	// PollInterval is how often Watch reads the apps to tell open pages
	// what changed (drift, a run's end). Default 2s.
	PollInterval time.Duration
	// Log receives errors the pages do not show. Default: discard.
	Log *slog.Logger
}

// Server is the web view as an http.Handler. Create it with New; run
// Watch (or Serve, which runs it) for live updates.
type Server struct {
	opts     Options
	guard    Guard
	redactor *secrets.Redactor
	mux      *http.ServeMux
	pages    map[string]*template.Template
	static   fs.FS
	csrfKey  []byte
	broker   *broker
	plans    planStore
	login    bool // the guard is a LoginGuard: 401 pages link to LoginPath
}

// New returns a Server. It refuses a nil Guard or Source.
func New(opts Options) (*Server, error) {
	if opts.Guard == nil {
		return nil, ErrNoGuard
	}
	if opts.Source == nil {
		return nil, errors.New("the web view needs a source of apps")
	}
	if opts.Redactor == nil {
		opts.Redactor = secrets.NewRedactor(secrets.RedactorOptions{})
	}
	if opts.LocalUser == "" {
		opts.LocalUser = "deliver ui"
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts: opts, guard: opts.Guard, redactor: opts.Redactor, mux: http.NewServeMux(),
		pages: map[string]*template.Template{}, broker: newBroker(), plans: planStore{m: map[AppRef]*PlanView{}},
	}
	s.csrfKey = make([]byte, 32)
	if _, err := rand.Read(s.csrfKey); err != nil {
		return nil, fmt.Errorf("ui: csrf key: %w", err)
	}
	for _, p := range []string{"index", "app"} {
		t, err := template.New(p).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", p, err)
		}
		s.pages[p] = t
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, fmt.Errorf("ui: static: %w", err)
	}
	s.static = static
	s.mux.HandleFunc("GET /{$}", s.index)
	s.mux.HandleFunc("GET /apps/{env}/{app}", s.app)
	s.mux.HandleFunc("GET /events", s.events)
	s.mux.HandleFunc("GET /static/{file}", s.staticFile)
	s.mux.HandleFunc("POST /apps/{env}/{app}/{action}", s.act)
	// A guard whose users sign in in the browser serves its own pages; a
	// caller that mounted them in front of the Server keeps its own.
	if lg, ok := opts.Guard.(LoginGuard); ok {
		s.mux.Handle(LoginPath, lg.LoginHandler())
		s.mux.Handle(LogoutPath, lg.LogoutHandler())
		s.login = true
	}
	return s, nil
}

// ServeHTTP serves the view.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "same-origin")
	// Nothing from elsewhere: the view works offline and a script
	// injected through some app's message could not load anything.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	s.mux.ServeHTTP(w, r)
}

// Serve serves the view on ln and runs Watch until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { s.Watch(gctx); return nil })
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("ui: serve: %w", err)
		}
		return nil
	})
	return g.Wait()
}

// writeRedacted writes body, redacted, with content type ct.
func (s *Server) writeRedacted(w http.ResponseWriter, code int, ct string, body []byte) {
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(s.redactor.RedactBytes(body))
}

// fail answers an error page, redacted; the message is the error's.
func (s *Server) fail(w http.ResponseWriter, code int, msg string) {
	s.writeRedacted(w, code, "text/plain; charset=utf-8", []byte(msg+"\n"))
}

// identify authenticates r, answering 401 when it cannot.
func (s *Server) identify(w http.ResponseWriter, r *http.Request) (User, bool) {
	u, err := s.guard.Identify(r)
	if err != nil {
		s.opts.Log.Info("unauthenticated request", "path", r.URL.Path, "err", err)
		w.Header().Set("WWW-Authenticate", `Bearer realm="deliver"`)
		if s.login {
			s.writeRedacted(w, http.StatusUnauthorized, "text/html; charset=utf-8",
				[]byte(`<!doctype html><title>deliver: sign in</title><p>unauthorized: <a href="`+LoginPath+`">sign in with a token</a></p>`+"\n"))
			return User{}, false
		}
		s.fail(w, http.StatusUnauthorized, "unauthorized")
		return User{}, false
	}
	return u, true
}

// readable returns the rows u may read, asking the guard for each app
// (a few at a time: a token guard asks the API server).
func (s *Server) readable(ctx context.Context, u User, rows []AppRow) []AppRow {
	ok := make([]bool, len(rows))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range rows {
		g.Go(func() error {
			may, err := s.guard.MayRead(gctx, u, rows[i].AppRef)
			if err != nil {
				s.opts.Log.Warn("may read", "app", rows[i].Name, "err", err)
			}
			ok[i] = may && err == nil
			return nil
		})
	}
	_ = g.Wait()
	out := make([]AppRow, 0, len(rows))
	for i, r := range rows {
		if ok[i] {
			out = append(out, r)
		}
	}
	return out
}

// render executes page with data and writes it, redacted.
func (s *Server) render(w http.ResponseWriter, page string, data any) {
	var b bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&b, "layout", data); err != nil {
		s.opts.Log.Error("render", "page", page, "err", err)
		s.fail(w, http.StatusInternalServerError, "render failed")
		return
	}
	s.writeRedacted(w, http.StatusOK, "text/html; charset=utf-8", b.Bytes())
}

// indexData is the page of all apps.
type indexData struct {
	Title   string
	Filter  Filter
	Apps    []AppRow
	Total   int
	Envs    []string
	Results []string
	Healths []string
	// Problems name the environments whose apps could not be read
	// (PartialError); their rows are missing, the others' are shown.
	Problems []string
	Now      time.Time
	// Events is the event stream's cursor when the page began to read
	// its data: the page asks for the events after it (broker).
	Events string
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	u, ok := s.identify(w, r)
	if !ok {
		return
	}
	events := s.broker.cursor()
	rows, err := s.opts.Source.Apps(r.Context())
	problems, err := partialOf(err)
	if err != nil {
		s.fail(w, http.StatusBadGateway, "read apps: "+err.Error())
		return
	}
	rows = s.readable(r.Context(), u, rows)
	f := ParseFilter(r.URL.Query())
	d := indexData{Title: "deliver: apps", Filter: f, Apps: f.Apply(rows), Total: len(rows), Problems: problems, Now: time.Now(), Events: events}
	for _, row := range rows {
		if !slices.Contains(d.Envs, row.Environment) {
			d.Envs = append(d.Envs, row.Environment)
		}
	}
	d.Results = []string{"succeeded", "failed", "running", "waiting", "pending"}
	for h := HealthUnknown; h <= HealthDegraded; h++ {
		d.Healths = append(d.Healths, h.String())
	}
	s.render(w, "index", d)
}

// appData is the page of one app.
type appData struct {
	Title   string
	App     *AppDetail
	Plan    *PlanView
	Actions bool
	CSRF    string
	Notice  string
	Now     time.Time
	Events  string // as indexData's
}

// refOf resolves the path's environment and app to the AppRef the source
// knows, among the apps u may read; ok false after answering 404 (an app
// u may not read is not found either: its existence is not told).
func (s *Server) refOf(w http.ResponseWriter, r *http.Request, u User) (AppRef, bool) {
	env, name := r.PathValue("env"), r.PathValue("app")
	if env == NoEnvironment {
		env = ""
	}
	rows, err := s.opts.Source.Apps(r.Context())
	if _, err = partialOf(err); err != nil { // another environment's problem is not this app's
		s.fail(w, http.StatusBadGateway, "read apps: "+err.Error())
		return AppRef{}, false
	}
	i := slices.IndexFunc(rows, func(a AppRow) bool { return a.Environment == env && a.Name == name })
	if i >= 0 {
		ref := rows[i].AppRef
		may, err := s.guard.MayRead(r.Context(), u, ref)
		if err == nil && may {
			return ref, true
		}
		if err != nil {
			s.opts.Log.Warn("may read", "app", name, "err", err)
		}
	}
	s.fail(w, http.StatusNotFound, "no such app")
	return AppRef{}, false
}

func (s *Server) app(w http.ResponseWriter, r *http.Request) {
	u, ok := s.identify(w, r)
	if !ok {
		return
	}
	events := s.broker.cursor()
	ref, ok := s.refOf(w, r, u)
	if !ok {
		return
	}
	d, err := s.opts.Source.App(r.Context(), ref, s.redactor)
	if errors.Is(err, ErrNotFound) {
		s.fail(w, http.StatusNotFound, "no such app")
		return
	}
	if err != nil {
		s.fail(w, http.StatusBadGateway, "read app: "+err.Error())
		return
	}
	s.render(w, "app", appData{
		// The plan of this process's own run when it is the newer (the
		// reconciler's view), else the one the inventory keeps.
		Title: "deliver: " + ref.Name, App: d, Plan: newerPlan(s.plans.get(ref), d.Plan),
		Actions: s.opts.Actions != nil, CSRF: s.csrf(u), Notice: r.URL.Query().Get("done"), Now: time.Now(), Events: events,
	})
}

func (s *Server) staticFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	b, err := fs.ReadFile(s.static, name)
	if err != nil {
		s.fail(w, http.StatusNotFound, "not found")
		return
	}
	ct := "text/plain; charset=utf-8"
	switch {
	case strings.HasSuffix(name, ".js"):
		ct = "text/javascript; charset=utf-8"
	case strings.HasSuffix(name, ".css"):
		ct = "text/css; charset=utf-8"
	}
	s.writeRedacted(w, http.StatusOK, ct, b)
}

// csrf is u's token for the action forms: only a page this server
// rendered for u has it.
func (s *Server) csrf(u User) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte("csrf\x00" + u.Name))
	return hex.EncodeToString(m.Sum(nil))
}

// sameOrigin reports whether r comes from a page of this server, as
// net/http's CrossOriginProtection decides: Sec-Fetch-Site same-origin (or
// none: typed by the user), else an Origin whose host is the request's; a
// request with neither header is not from a browser's cross-site form. The
// sign-in form (TokenGuard) is checked the same way.
func sameOrigin(r *http.Request) bool {
	return http.NewCrossOriginProtection().Check(r) == nil
}

// act performs a guarded action and sends the browser back to the app's
// page.
func (s *Server) act(w http.ResponseWriter, r *http.Request) {
	if s.opts.Actions == nil {
		s.fail(w, http.StatusNotFound, "actions are off (--ui-actions)")
		return
	}
	u, ok := s.identify(w, r)
	if !ok {
		return
	}
	if !sameOrigin(r) || !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(s.csrf(u))) {
		s.fail(w, http.StatusForbidden, "refused: not sent from this view's page")
		return
	}
	var a Action
	switch r.PathValue("action") {
	case "reconcile":
		a = ActionReconcile
	case "pin":
		a = ActionPin
	case "unpin":
		a = ActionUnpin
	case "suspend":
		a = ActionSuspend
	case "resume":
		a = ActionResume
	default:
		s.fail(w, http.StatusNotFound, "no such action")
		return
	}
	ref, ok := s.refOf(w, r, u)
	if !ok {
		return
	}
	may, err := s.guard.MayAct(r.Context(), u, ref, a)
	if err != nil || !may {
		if err != nil {
			s.opts.Log.Warn("may act", "app", ref.Name, "action", a, "err", err)
		}
		s.fail(w, http.StatusForbidden, fmt.Sprintf("forbidden: %s of app %s", a, ref.Name))
		return
	}
	by := u.Name
	if by == "" {
		by = s.opts.LocalUser
	}
	switch a {
	case ActionReconcile:
		err = s.opts.Actions.RequestReconcile(r.Context(), ref)
	case ActionPin:
		err = s.opts.Actions.Pin(r.Context(), ref, by, r.PostFormValue("reason"))
	case ActionUnpin:
		err = s.opts.Actions.Unpin(r.Context(), ref)
	case ActionSuspend, ActionResume:
		err = s.opts.Actions.Suspend(r.Context(), ref, a == ActionSuspend)
	}
	if err != nil {
		s.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	s.opts.Log.Info("action", "app", ref.Name, "action", a, "by", by)
	http.Redirect(w, r, AppPath(ref)+"?done="+url.QueryEscape(a.String()), http.StatusSeeOther)
}

// AppPath is the path of app's page.
func AppPath(ref AppRef) string {
	env := ref.Environment
	if env == "" {
		env = NoEnvironment
	}
	return "/apps/" + url.PathEscape(env) + "/" + url.PathEscape(ref.Name)
}

// planStore keeps the last plan that changed each app the reconciler
// ran, in memory: the inventory Secret keeps it too, but a page of the
// reconciler's view shows its own run's at once, cut as the stored one
// is (apply.Plan.Stored).
type planStore struct {
	mu sync.Mutex
	m  map[AppRef]*PlanView
}

func (p *planStore) get(ref AppRef) *PlanView {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[ref]
}

func (p *planStore) put(ref AppRef, v *PlanView) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[ref] = v
}
