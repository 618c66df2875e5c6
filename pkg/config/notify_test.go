package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const withNotifications = `apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
- {name: web, namespace: web, manifests: {path: web}}
- {name: db, namespace: db, manifests: {path: db}}
environments:
  prod: {}
notifications:
- {name: gh, type: github, secretRef: {name: notify-github}}
- {name: lab, type: gitlab, address: "https://gitlab.example.com", repository: group/sub/deploy, secretRef: {name: notify-gitlab, key: pat}}
- {name: hook, type: webhook, address: "https://hooks.example.com/deliver", apps: [web], events: [failure]}
- {name: chat, type: slack, secretRef: {name: notify-slack}, environments: [prod]}
`

// TestNotifications: the providers reach the resolved config of every
// environment, with the Secret keys defaulted per type and the filters of
// apps, environments and events applied by Wants.
func TestNotifications(t *testing.T) {
	c, err := Parse("deliver.yaml", []byte(withNotifications))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.ForEnvironment("prod")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c.Notifications, r.Notifications); diff != "" {
		t.Errorf("resolved notifications (-parsed +resolved):\n%s", diff)
	}
	keys := map[string]string{}
	for _, n := range r.Notifications {
		keys[n.Name] = n.SecretKey()
	}
	if diff := cmp.Diff(map[string]string{"gh": "token", "lab": "pat", "hook": "token", "chat": "address"}, keys); diff != "" {
		t.Errorf("secret keys (-want +got):\n%s", diff)
	}
	tests := []struct {
		provider, app, env string
		ev                 NotificationEvent
		want               bool
	}{
		{"gh", "db", "", EventSuccess, true},
		{"hook", "web", "prod", EventFailure, true},
		{"hook", "web", "prod", EventSuccess, false},
		{"hook", "db", "prod", EventFailure, false},
		{"chat", "db", "prod", EventSuccess, true},
		{"chat", "db", "", EventSuccess, false},
	}
	byName := map[string]Notification{}
	for _, n := range r.Notifications {
		byName[n.Name] = n
	}
	for _, tt := range tests {
		if got := byName[tt.provider].Wants(tt.app, tt.env, tt.ev); got != tt.want {
			t.Errorf("%s.Wants(%s, %q, %s) = %v, want %v", tt.provider, tt.app, tt.env, tt.ev, got, tt.want)
		}
	}
}

// TestNotificationErrors: a bad provider fails Parse with an error naming
// the provider and the field; a Slack URL or credentials in an address are
// refused without being quoted.
func TestNotificationErrors(t *testing.T) {
	tests := []struct{ name, from, to, want string }{
		{"unknown type", "type: github", "type: teams", `notifications[0] (gh): type: unknown type "teams"`},
		{"no type", "type: github, ", "", `notifications[0] (gh): type: is required`},
		{"no secretRef", "type: github, secretRef: {name: notify-github}", "type: github", `notifications[0] (gh): secretRef: is required for type github`},
		{"slack without secretRef", "type: slack, secretRef: {name: notify-slack}", "type: slack", `notifications[3] (chat): secretRef: is required for type slack`},
		{"duplicate name", "name: lab,", "name: gh,", `notifications[1] (gh): name: duplicate provider name`},
		{"no name", "name: hook, ", "", `notifications[2] (): name: is required`},
		{"webhook without address", `address: "https://hooks.example.com/deliver", `, "", `notifications[2] (hook): address: is required for type webhook`},
		{"slack address", "type: slack,", `type: slack, address: "https://hooks.slack.com/services/T0/B0/sekrit",`, `notifications[3] (chat): address: a Slack webhook URL is a credential`},
		{"credentials in address", "https://hooks.example.com", "https://user:sekrit@hooks.example.com", `notifications[2] (hook): address: credentials in the URL`},
		{"relative address", "https://gitlab.example.com", "gitlab.example.com", `notifications[1] (lab): address: not an absolute http or https URL`},
		{"unknown app", "apps: [web]", "apps: [api]", `notifications[2] (hook): apps: unknown app "api"`},
		{"unknown environment", "environments: [prod]", "environments: [qa]", `notifications[3] (chat): environments: unknown environment "qa"`},
		{"unknown event", "events: [failure]", "events: [failed]", `notifications[2] (hook): events: unknown event "failed"`},
		{"bad secret name", "name: notify-github", "name: Notify_GitHub", `notifications[0] (gh): secretRef.name: "Notify_GitHub"`},
		{"repository on webhook", "apps: [web]", "repository: a/b, apps: [web]", `notifications[2] (hook): repository: only for github and gitlab`},
		{"template syntax", "apps: [web]", `template: "{{.App", apps: [web]`, `notifications[2] (hook): template: template: hook:1: unclosed action`},
		{"template unknown field", "apps: [web]", `template: "{{.Commit}} failed", apps: [web]`, `notifications[2] (hook): template: template: hook:1:2: executing "hook" at <.Commit>: can't evaluate field Commit`},
		{"template unknown function", "apps: [web]", `template: "{{env \"HOME\"}}", apps: [web]`, `notifications[2] (hook): template: template: hook:1: function "env" not defined`},
		{"template renders too much", "apps: [web]", `template: "{{range 70000}}x{{end}}", apps: [web]`, `notifications[2] (hook): template: renders more than 65536 bytes`},
		{"template too long", "apps: [web]", `template: "` + strings.Repeat("x", 4097) + `", apps: [web]`, `notifications[2] (hook): template: 4097 bytes, more than 4096`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(withNotifications, tt.from, tt.to, 1)
			if in == withNotifications {
				t.Fatalf("%q is not in the fixture", tt.from)
			}
			_, err := Parse("deliver.yaml", []byte(in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "sekrit") {
				t.Errorf("error quotes the credential: %v", err)
			}
		})
	}
}

// TestNotificationTemplate: a template over every field of MessageFields
// parses, and renders those fields.
func TestNotificationTemplate(t *testing.T) {
	in := strings.Replace(withNotifications, "apps: [web]",
		`template: "{{.Result}} {{.App}}/{{.Environment}} {{.ShortRevision}} {{.Revision}} {{.Duration}}{{if .Object}} {{.Object}}: {{.Reason}}{{end}}", apps: [web]`, 1)
	c, err := Parse("deliver.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseTemplate("hook", c.Notifications[2].Template)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, MessageFields{App: "web", Environment: "prod", Revision: "0123456789abcdef", ShortRevision: "0123456789ab",
		Result: "failed", Duration: "2s", Object: "ConfigMap/web/web", Reason: "denied"}); err != nil {
		t.Fatal(err)
	}
	if want := "failed web/prod 0123456789ab 0123456789abcdef 2s ConfigMap/web/web: denied"; b.String() != want {
		t.Errorf("rendered %q, want %q", b.String(), want)
	}
}
