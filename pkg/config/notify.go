package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/util/validation"
)

// NotificationType is the kind of endpoint a notification goes to.
type NotificationType string

// The closed set of notification types.
const (
	// GitHub sets a commit status through GitHub's REST API.
	GitHub NotificationType = "github"
	// GitLab sets a commit status through GitLab's REST API.
	GitLab NotificationType = "gitlab"
	// Webhook POSTs a JSON document, HMAC-signed when the Secret holds a
	// key.
	Webhook NotificationType = "webhook"
	// Slack POSTs a message to a Slack-compatible incoming webhook.
	Slack NotificationType = "slack"
)

// NotificationEvent is an outcome of a delivery a provider is told of.
type NotificationEvent string

// The closed set of notification events.
const (
	EventSuccess NotificationEvent = "success"
	EventFailure NotificationEvent = "failure"
)

// Default addresses and Secret keys of the providers.
const (
	DefaultGitHubAddress = "https://api.github.com"
	DefaultGitLabAddress = "https://gitlab.com"
	// DefaultTokenKey is the Secret key of a GitHub or GitLab token or of
	// a webhook's HMAC key; DefaultAddressKey that of a Slack webhook URL.
	DefaultTokenKey   = "token"
	DefaultAddressKey = "address"
)

// Notification is one provider the reconciler tells of its deliveries
// (docs/notify.md). Notifications never change what an app delivers, so
// they are no part of an app's inputs.
type Notification struct {
	// Name identifies the provider in logs, metrics and errors; unique.
	Name string `yaml:"name" json:"name"`
	// Type is github, gitlab, webhook or slack.
	Type NotificationType `yaml:"type" json:"type" jsonschema:"enum=github,enum=gitlab,enum=webhook,enum=slack"`
	// Address is the API base URL (github: default https://api.github.com,
	// or https://HOST/api/v3 for GitHub Enterprise; gitlab: default
	// https://gitlab.com) or, for webhook, the URL to POST to (required).
	// Not for slack: its webhook URL is a credential and comes from the
	// Secret.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Repository is owner/name on GitHub, the project path or numeric id on
	// GitLab. Default: derived from the URL of the repository the
	// reconciler follows.
	Repository string `yaml:"repository,omitempty" json:"repository,omitempty"`
	// SecretRef is a Secret in the reconciler's status namespace, read at
	// each send: the token (github, gitlab; key default "token"), the
	// webhook URL (slack; key default "address"), or the HMAC key that
	// signs a webhook's body (optional; key default "token").
	SecretRef *SecretKeyRef `yaml:"secretRef,omitempty" json:"secretRef,omitempty"`
	// Apps limits the provider to these apps; default all.
	Apps []string `yaml:"apps,omitempty" json:"apps,omitempty"`
	// Environments limits the provider to these environments; default
	// all.
	Environments []string `yaml:"environments,omitempty" json:"environments,omitempty"`
	// Events are the outcomes sent: success, failure; default both. A
	// commit status is also set pending when a run of a new revision
	// starts, unless the events leave out both.
	Events []NotificationEvent `yaml:"events,omitempty" json:"events,omitempty" jsonschema:"enum=success,enum=failure"`
	// Template is a Go text/template giving the message's text: the
	// Slack message, the webhook's "message" field, the commit status's
	// description. Its data is MessageFields ({{.App}}, {{.Environment}},
	// {{.Revision}}, {{.ShortRevision}}, {{.Result}}, {{.Duration}},
	// {{.Object}}, {{.Reason}}); only text/template's builtin functions,
	// none of which reads a file or the environment. The text is redacted.
	// Default: deliver's own text.
	Template string `yaml:"template,omitempty" json:"template,omitempty"`
}

// MessageFields are the data of a notification's Template: a closed set,
// checked when deliver.yaml is read.
type MessageFields struct {
	// App and Environment ("" for none) name what was delivered.
	App, Environment string
	// Revision is the full commit id; ShortRevision its first 12
	// characters.
	Revision, ShortRevision string
	// Result is pending, succeeded or failed.
	Result string
	// Duration is the run's, rounded to 100 ms ("1.5s"); "0s" for
	// pending.
	Duration string
	// Object is the failing object, Kind/namespace/name, when known, and
	// Reason why the run failed; both empty unless failed.
	Object, Reason string
}

// MaxTemplate bounds a notification's template, in bytes.
const MaxTemplate = 4096

// ParseTemplate parses a notification's template: text/template with its
// builtins only, an unknown field an error. It executes the template once
// on sample fields, so that a field MessageFields lacks ({{.Commit}}) is
// refused when deliver.yaml is read rather than at the first send.
func ParseTemplate(name, text string) (*template.Template, error) {
	if len(text) > MaxTemplate {
		return nil, fmt.Errorf("%d bytes, more than %d", len(text), MaxTemplate)
	}
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	sample := MessageFields{App: "web", Environment: "prod", Revision: strings.Repeat("0", 40), ShortRevision: strings.Repeat("0", 12),
		Result: "failed", Duration: "1.5s", Object: "ConfigMap/web/web", Reason: "reason"}
	if _, err := RenderTemplate(t, sample); err != nil {
		return nil, err
	}
	return t, nil
}

// maxRendered bounds what a template may write: a {{range}} over a large
// number stops there with an error rather than filling the memory.
const maxRendered = 64 << 10

// RenderTemplate executes t, parsed by ParseTemplate, over f.
func RenderTemplate(t *template.Template, f MessageFields) (string, error) {
	w := &boundedWriter{max: maxRendered}
	if err := t.Execute(w, f); err != nil {
		return "", err
	}
	return w.b.String(), nil
}

// boundedWriter keeps what is written up to max bytes, and fails the
// write that goes beyond.
type boundedWriter struct {
	b   strings.Builder
	max int
}

func (w *boundedWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > w.max {
		return 0, fmt.Errorf("renders more than %d bytes", w.max)
	}
	return w.b.Write(p)
}

// SecretKeyRef names one key of a Secret.
type SecretKeyRef struct {
	// Name of the Secret. Required.
	Name string `yaml:"name" json:"name"`
	// Key in the Secret's data; the default depends on the type.
	Key string `yaml:"key,omitempty" json:"key,omitempty"`
}

// SecretKey returns the Secret key n reads: SecretRef.Key or the type's
// default.
func (n Notification) SecretKey() string {
	switch {
	case n.SecretRef != nil && n.SecretRef.Key != "":
		return n.SecretRef.Key
	case n.Type == Slack:
		return DefaultAddressKey
	}
	return DefaultTokenKey
}

// Wants reports whether n is told of ev for app in env.
func (n Notification) Wants(app, env string, ev NotificationEvent) bool {
	if len(n.Apps) > 0 && !slices.Contains(n.Apps, app) {
		return false
	}
	if len(n.Environments) > 0 && !slices.Contains(n.Environments, env) {
		return false
	}
	return len(n.Events) == 0 || slices.Contains(n.Events, ev)
}

// validateNotifications checks the providers against the app and
// environment names: each error names the provider and the field.
func validateNotifications(ns []Notification, apps map[string]bool, envs map[string]Environment) []error {
	var errs []error
	seen := map[string]bool{}
	for i, n := range ns {
		where := fmt.Sprintf("notifications[%d] (%s)", i, n.Name)
		bad := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s: %s", where, field, fmt.Sprintf(format, args...)))
		}
		switch {
		case n.Name == "":
			bad("name", "is required")
		case seen[n.Name]:
			bad("name", "duplicate provider name")
		}
		seen[n.Name] = true
		switch n.Type {
		case GitHub, GitLab, Webhook, Slack:
		case "":
			bad("type", "is required (github, gitlab, webhook or slack)")
		default:
			bad("type", "unknown type %q (want github, gitlab, webhook or slack)", n.Type)
		}
		if n.SecretRef == nil && n.Type != Webhook && n.Type != "" {
			bad("secretRef", "is required for type %s", n.Type)
		}
		if n.SecretRef != nil {
			if msgs := validation.IsDNS1123Subdomain(n.SecretRef.Name); len(msgs) > 0 {
				bad("secretRef.name", "%q: %s", n.SecretRef.Name, msgs[0])
			}
			if k := n.SecretRef.Key; k != "" {
				if msgs := validation.IsConfigMapKey(k); len(msgs) > 0 {
					bad("secretRef.key", "%q: %s", k, msgs[0])
				}
			}
		}
		switch {
		case n.Type == Slack && n.Address != "":
			// A Slack webhook URL is the credential itself: it must not
			// be committed to git.
			bad("address", "a Slack webhook URL is a credential: put it in the Secret of secretRef (key %q)", n.SecretKey())
		case n.Type == Webhook && n.Address == "":
			bad("address", "is required for type webhook")
		case n.Address != "":
			if err := checkHTTPURL(n.Address); err != nil {
				bad("address", "%v", err)
			}
		}
		if n.Repository != "" && n.Type != GitHub && n.Type != GitLab {
			bad("repository", "only for github and gitlab")
		}
		for _, a := range n.Apps {
			if !apps[a] {
				bad("apps", "unknown app %q", a)
			}
		}
		for _, e := range n.Environments {
			if _, ok := envs[e]; !ok {
				bad("environments", "unknown environment %q", e)
			}
		}
		for _, e := range n.Events {
			if e != EventSuccess && e != EventFailure {
				bad("events", "unknown event %q (want success or failure)", e)
			}
		}
		if n.Template != "" {
			if _, err := ParseTemplate(n.Name, n.Template); err != nil {
				bad("template", "%v", err)
			}
		}
	}
	return errs
}

// checkHTTPURL checks an absolute http(s) URL without the URL itself in
// the error, which may carry a credential in its user info.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return errors.New("not an absolute http or https URL")
	}
	if u.User != nil {
		return errors.New("credentials in the URL: put them in the Secret of secretRef")
	}
	return nil
}
