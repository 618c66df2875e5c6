// Package notify tells people and forges of the reconciler's deliveries: a
// commit status on GitHub or GitLab, a JSON webhook, a Slack-compatible
// message. A Notifier queues each message and sends it from workers in
// the background, retrying with backoff, so that a slow or failing
// endpoint never holds up a delivery; every payload goes through the
// redactor, and a credential, read from a Secret at send time, appears in
// no log, error or metric.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"

	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/secrets"
)

// Result is the outcome of a delivery a notification reports.
type Result string

// The closed set of results.
const (
	// Pending: a run of a new revision started (commit statuses only).
	Pending Result = "pending"
	// Succeeded and Failed are the outcomes of a finished run; their
	// values are those of the reconciler's status.
	Succeeded Result = "succeeded"
	Failed    Result = "failed"
)

// Event is one delivery of one app by the reconciler.
type Event struct {
	// App and Environment ("" for none) name what was delivered.
	App, Environment string
	// Revision is the full commit id delivered.
	Revision string
	Result   Result
	// Duration is the run's; zero for Pending.
	Duration time.Duration
	// Object is the failing object, Kind/namespace/name, when known;
	// Reason is why the run failed. Both empty unless Failed.
	Object, Reason string
	// Time is when the run ended (or started, for Pending).
	Time time.Time
	// RepoURL is the URL of the repository the reconciler follows, from
	// which a GitHub or GitLab provider without a repository takes it. It
	// is never sent.
	RepoURL string
}

// SecretReader returns the value of key in the Secret name, in the
// namespace the caller chose (the reconciler's status namespace).
type SecretReader func(ctx context.Context, name, key string) (string, error)

// Options configure a Notifier. Secrets is required for providers with a
// secretRef; every other field has a default.
type Options struct {
	// Secrets reads credentials at each send, so that a rotated token is
	// used at once and none is kept in memory between sends.
	Secrets SecretReader
	// Redactor masks secret values in every payload, header, log and
	// error; each credential read is registered with it. Default: a new
	// one.
	Redactor *secrets.Redactor
	// Log receives a line per send that failed, was retried or dropped;
	// default: discard.
	Log *slog.Logger
	// Registerer receives the metrics (deliver_notify_*_total); nil: none
	// registered.
	Registerer prometheus.Registerer
	// Client sends the requests. Default: a client of its own.
	Client *http.Client
	// QueueSize bounds the messages waiting, being sent or waiting to be
	// retried; a message beyond it is dropped (logged, counted). Default
	// 256.
	QueueSize int
	// Workers send in parallel. Default 4.
	Workers int
	// Timeout bounds each attempt. Default 10s.
	Timeout time.Duration
	// RetryBase and RetryMax bound the backoff between attempts: client-go
	// workqueue's per-item exponential rate limiter. Defaults 1s and 1m.
	RetryBase, RetryMax time.Duration
	// MaxAttempts bounds the attempts of one message. Default 5.
	MaxAttempts int
}

func (o *Options) defaults() {
	if o.Redactor == nil {
		o.Redactor = secrets.NewRedactor(secrets.RedactorOptions{})
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 256
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.RetryBase <= 0 {
		o.RetryBase = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Minute
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
}

// message is one event for one provider.
type message struct {
	p config.Notification
	e Event
}

// key is the queue's item for m. A commit status is keyed by provider,
// status name and commit, so that a later status of the same line (the
// outcome after pending) replaces one not sent yet, and the workqueue,
// which never hands one key to two workers at once, keeps them in order;
// any other message has a key of its own (seq).
func (m *message) key(seq uint64) string {
	if m.p.Type == config.GitHub || m.p.Type == config.GitLab {
		return m.p.Name + "\x00" + statusContext(m.e) + "\x00" + m.e.Revision
	}
	return fmt.Sprintf("%s\x00#%d", m.p.Name, seq)
}

// Notifier sends notifications in the background. Create it with New,
// feed it with Notify, stop it with Close.
type Notifier struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	queue   workqueue.TypedRateLimitingInterface[string]
	// ctx is cancelled by Close, aborting the requests under way.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards messages, seq and closed, and orders Notify against Close:
	// no message is counted in after Close began.
	mu sync.Mutex
	// messages holds the message of each key queued, being sent or
	// waiting for a retry: its number is bounded by QueueSize.
	messages map[string]*message
	seq      uint64
	closed   bool
	// idle is signalled when messages becomes empty.
	idle chan struct{}
}

// New starts a Notifier's workers.
func New(opts Options) *Notifier {
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{
		opts:    opts,
		log:     opts.Log,
		metrics: newMetrics(opts.Registerer),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](opts.RetryBase, opts.RetryMax),
			workqueue.TypedRateLimitingQueueConfig[string]{}),
		ctx:      ctx,
		cancel:   cancel,
		messages: map[string]*message{},
		idle:     make(chan struct{}, 1),
	}
	for range opts.Workers {
		n.wg.Go(n.work)
	}
	return n
}

// Notify queues e for each provider that wants it, and returns at once:
// it never waits for a send, nor for room in the queue.
func (n *Notifier) Notify(providers []config.Notification, e Event) {
	for _, p := range providers {
		if !wants(p, e) {
			continue
		}
		n.enqueue(&message{p: p, e: e})
	}
}

// wants reports whether p is told of e: a pending status goes only to
// the commit-status providers, which replace it with the outcome.
func wants(p config.Notification, e Event) bool {
	switch e.Result {
	case Succeeded:
		return p.Wants(e.App, e.Environment, config.EventSuccess)
	case Failed:
		return p.Wants(e.App, e.Environment, config.EventFailure)
	case Pending:
		return (p.Type == config.GitHub || p.Type == config.GitLab) &&
			(p.Wants(e.App, e.Environment, config.EventSuccess) || p.Wants(e.App, e.Environment, config.EventFailure))
	}
	return false
}

func (n *Notifier) enqueue(m *message) {
	n.mu.Lock()
	n.seq++
	key := m.key(n.seq)
	_, replaces := n.messages[key]
	full := n.closed || !replaces && len(n.messages) >= n.opts.QueueSize
	if !full {
		n.messages[key] = m
	}
	n.mu.Unlock()
	if full {
		n.metrics.dropped.WithLabelValues(string(m.p.Type)).Inc()
		n.log.Warn("notification dropped: queue full", "provider", m.p.Name, "type", m.p.Type, "app", m.e.App, "result", m.e.Result)
		return
	}
	if replaces {
		// The new message gets its own attempts, not the backoff of the
		// one it replaces.
		n.queue.Forget(key)
	}
	// A key being sent is queued again once its worker is done with it.
	n.queue.Add(key)
}

// Close stops taking messages and waits until those queued are sent or
// given up, or until ctx is done; what is left then is dropped and
// counted so. Requests under way are cancelled.
func (n *Notifier) Close(ctx context.Context) {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
wait:
	for n.backlog() > 0 {
		select {
		case <-n.idle:
		case <-ctx.Done():
			break wait
		}
	}
	n.cancel()
	n.queue.ShutDown()
	n.wg.Wait()
	// Messages waiting for a retry when the queue shut down.
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.messages {
		n.metrics.dropped.WithLabelValues(string(m.p.Type)).Inc()
		n.log.Warn("notification dropped: the notifier stopped", "provider", m.p.Name, "type", m.p.Type, "app", m.e.App, "result", m.e.Result)
	}
	clear(n.messages)
}

func (n *Notifier) backlog() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.messages)
}

// work sends messages until the queue shuts down.
func (n *Notifier) work() {
	for {
		key, shutdown := n.queue.Get()
		if shutdown {
			return
		}
		n.mu.Lock()
		m := n.messages[key]
		n.mu.Unlock()
		if m != nil {
			n.process(key, m)
		}
		n.queue.Done(key)
	}
}

// process makes one attempt at m and decides: done, retry later, or
// given up.
func (n *Notifier) process(key string, m *message) {
	typ := string(m.p.Type)
	log := n.log.With("provider", m.p.Name, "type", typ, "app", m.e.App, "revision", short(m.e.Revision), "result", m.e.Result)
	if n.ctx.Err() != nil {
		// Close gave up waiting: what the queue still holds goes unsent.
		n.metrics.dropped.WithLabelValues(typ).Inc()
		log.Warn("notification dropped: the notifier stopped")
		n.settle(key, m)
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.Timeout)
	err := n.send(ctx, m)
	cancel()
	attempt := n.queue.NumRequeues(key) + 1
	switch {
	case err == nil:
		n.metrics.sent.WithLabelValues(typ).Inc()
		log.Debug("notification sent", "attempt", attempt)
	case retryable(err) && attempt < n.opts.MaxAttempts && n.ctx.Err() == nil:
		log.Info("notification failed, will retry", "attempt", attempt, "err", n.opts.Redactor.Redact(err.Error()))
		n.queue.AddRateLimited(key)
		return
	default:
		n.metrics.failed.WithLabelValues(typ).Inc()
		log.Warn("notification failed", "attempt", attempt, "err", n.opts.Redactor.Redact(err.Error()))
	}
	n.settle(key, m)
}

// settle ends m's life in the queue, unless a later message took its key
// meanwhile: that one is queued already.
func (n *Notifier) settle(key string, m *message) {
	n.queue.Forget(key)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.messages[key] != m {
		return
	}
	delete(n.messages, key)
	if len(n.messages) == 0 {
		select {
		case n.idle <- struct{}{}:
		default:
		}
	}
}

// send makes one attempt: reads the provider's credential, builds the
// request for its type and posts it.
func (n *Notifier) send(ctx context.Context, m *message) error {
	cred, err := n.credential(ctx, m.p)
	if err != nil {
		return err
	}
	var req *http.Request
	switch m.p.Type {
	case config.GitHub:
		req, err = n.github(ctx, m.p, m.e, cred)
	case config.GitLab:
		req, err = n.gitlab(ctx, m.p, m.e, cred)
	case config.Webhook:
		req, err = n.webhook(ctx, m.p, m.e, cred)
	case config.Slack:
		req, err = n.slack(ctx, m.p, m.e, cred)
	default:
		err = permanent(fmt.Errorf("unknown type %q", m.p.Type))
	}
	if err != nil {
		return fmt.Errorf("notification %s: %w", m.p.Name, err)
	}
	if err := n.post(req); err != nil {
		return fmt.Errorf("notification %s: %w", m.p.Name, err)
	}
	return nil
}

// credential reads p's Secret key, if it has a secretRef, and registers
// the value with the redactor before anything can print it.
func (n *Notifier) credential(ctx context.Context, p config.Notification) (string, error) {
	if p.SecretRef == nil {
		return "", nil
	}
	if n.opts.Secrets == nil {
		return "", permanent(fmt.Errorf("notification %s: no Secret reader configured", p.Name))
	}
	v, err := n.opts.Secrets(ctx, p.SecretRef.Name, p.SecretKey())
	if err != nil {
		return "", fmt.Errorf("notification %s: secretRef %s, key %s: %w", p.Name, p.SecretRef.Name, p.SecretKey(), err)
	}
	if v == "" {
		return "", permanent(fmt.Errorf("notification %s: secretRef %s, key %s: empty", p.Name, p.SecretRef.Name, p.SecretKey()))
	}
	n.opts.Redactor.Add(v)
	return v, nil
}

// permanentError is an error that another attempt would not fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// retryable reports whether another attempt may succeed: an answer 5xx or
// 429, or no answer at all (network error, timeout), or a Secret not
// readable yet; not a refused request (another 4xx) or a bad
// configuration.
func retryable(err error) bool {
	var pe *permanentError
	return !errors.As(err, &pe)
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
