package ui_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/ui"
)

// brokenSource is an environment whose cluster does not answer.
type brokenSource struct{}

func (brokenSource) Apps(context.Context) ([]ui.AppRow, error) {
	return nil, errors.New("dial tcp 10.0.0.9:443: connection refused")
}
func (brokenSource) App(context.Context, ui.AppRef, *secrets.Redactor) (*ui.AppDetail, error) {
	return nil, errors.New("dial tcp 10.0.0.9:443: connection refused")
}

// TestSources: the apps of every environment sorted by environment then
// name; an app's page and pin go to its environment's source only; an
// unknown environment is not found; an environment that cannot be read is
// a PartialError naming it, with the others' rows, and the page of all
// apps shows those rows and the problem instead of an error page.
func TestSources(t *testing.T) {
	t.Parallel()
	row := func(env, name string) ui.AppRow {
		return ui.AppRow{AppRef: ui.AppRef{Environment: env, Name: name}, Result: "succeeded"}
	}
	staging := &fakeSource{rows: []ui.AppRow{row("staging", "web"), row("staging", "api")}}
	prod := &fakeSource{rows: []ui.AppRow{row("prod", "web")}}
	if _, err := ui.NewSources(ui.EnvSource{Environment: "a", Source: staging}, ui.EnvSource{Environment: "a", Source: prod}); err == nil {
		t.Error("NewSources took one environment twice")
	}
	src, err := ui.NewSources(
		ui.EnvSource{Environment: "staging", Source: staging, Actions: staging},
		ui.EnvSource{Environment: "prod", Source: prod, Actions: prod},
		ui.EnvSource{Environment: "gone", Source: brokenSource{}},
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rows, err := src.Apps(ctx)
	var partial *ui.PartialError
	if !errors.As(err, &partial) || len(partial.Problems) != 1 || !strings.HasPrefix(partial.Problems[0], "environment gone: ") {
		t.Errorf("Apps error = %v, want a PartialError naming environment gone", err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Environment+"/"+r.Name)
	}
	if want := []string{"prod/web", "staging/api", "staging/web"}; !slices.Equal(got, want) {
		t.Errorf("Apps = %v, want %v", got, want)
	}

	red := secrets.NewRedactor(secrets.RedactorOptions{})
	d, err := src.App(ctx, row("prod", "web").AppRef, red)
	if err != nil || d.Environment != "prod" {
		t.Errorf("App(prod/web) = %+v, %v", d, err)
	}
	if _, err := src.App(ctx, row("qa", "web").AppRef, red); !errors.Is(err, ui.ErrNotFound) {
		t.Errorf("App(qa/web) = %v, want ErrNotFound", err)
	}
	if err := src.Pin(ctx, row("prod", "web").AppRef, "alice", "hold"); err != nil {
		t.Fatal(err)
	}
	if len(prod.pinned) != 1 || len(staging.pinned) != 0 {
		t.Errorf("pin of prod/web: prod pinned %v, staging %v", prod.pinned, staging.pinned)
	}
	if err := src.Pin(ctx, ui.AppRef{Environment: "gone", Name: "web"}, "alice", "hold"); err == nil {
		t.Error("pin in an environment without actions worked")
	}

	srv, err := ui.New(ui.Options{Guard: ui.LocalGuard{}, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	res, err := http.Get(hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, res.Body)
	page := b.String()
	if res.StatusCode != http.StatusOK || !strings.Contains(page, `class="problem">environment gone: dial tcp`) ||
		!strings.Contains(page, `data-name="web" data-env="prod"`) || !strings.Contains(page, `data-name="api" data-env="staging"`) {
		t.Errorf("GET / = %d, want the rows of prod and staging and gone's problem:\n%s", res.StatusCode, page)
	}
}
