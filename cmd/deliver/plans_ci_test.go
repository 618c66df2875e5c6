package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/deliverhq/deliver/pkg/plan"
)

// fakeGitHub is the part of GitHub's REST API post-plan.sh uses: a pull
// request's comments, listed a page at a time, created and updated. It
// records every request.
type fakeGitHub struct {
	mu       sync.Mutex
	comments []fakeComment
	requests []fakeRequest
	nextID   int
}

type fakeComment struct {
	ID   int    `json:"id"`
	Body string `json:"body"`
}

type fakeRequest struct {
	method, path, auth, body string
}

func (g *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	g.requests = append(g.requests, fakeRequest{r.Method, r.URL.Path, r.Header.Get("Authorization"), string(body)})
	if r.Header.Get("Authorization") != "Bearer "+ciToken {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		// As GitHub: < and > are not escaped.
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
	}
	var in struct{ Body string }
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/repos/shop/web/issues/7/comments":
		per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		from := min(len(g.comments), (page-1)*per)
		reply(append([]fakeComment{}, g.comments[from:min(len(g.comments), from+per)]...)) // [] when none, as GitHub
	case r.Method == http.MethodPost && r.URL.Path == "/repos/shop/web/issues/7/comments":
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.nextID++
		c := fakeComment{ID: g.nextID, Body: in.Body}
		g.comments = append(g.comments, c)
		w.WriteHeader(http.StatusCreated)
		reply(map[string]any{"id": c.ID, "html_url": fmt.Sprintf("https://github.example/shop/web/pull/7#issuecomment-%d", c.ID)})
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/repos/shop/web/issues/comments/"):
		id, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/repos/shop/web/issues/comments/"))
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for i := range g.comments {
			if g.comments[i].ID == id {
				g.comments[i].Body = in.Body
				reply(map[string]any{"id": id, "html_url": fmt.Sprintf("https://github.example/shop/web/pull/7#issuecomment-%d", id)})
				return
			}
		}
		http.NotFound(w, r)
	default:
		http.NotFound(w, r)
	}
}

const ciToken = "ghp_canary-plans-token-2e9d"

// runPostPlan runs examples/app/ci/post-plan.sh on body against api.
func runPostPlan(t *testing.T, api, token, body string) (string, error) {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("post-plan.sh needs %s: %v", tool, err)
		}
	}
	file := filepath.Join(t.TempDir(), "plan.md")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "../../examples/app/ci/post-plan.sh", file)
	cmd.Env = append(os.Environ(), "GITHUB_TOKEN="+token, "GITHUB_REPOSITORY=shop/web", "PR_NUMBER=7", "GITHUB_API_URL="+api)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPostPlanScript: the CI script creates the plan comment on the
// first run and updates that same comment on the next, found by its
// marker among other comments (over several pages); the body is the
// Markdown as is, the token is sent as the Authorization header and
// never printed, also when the API refuses it.
func TestPostPlanScript(t *testing.T) {
	t.Parallel()
	gh := &fakeGitHub{nextID: 1000}
	// 150 comments of people first: the plan's is found on page 2.
	for i := range 150 {
		gh.comments = append(gh.comments, fakeComment{ID: i + 1, Body: fmt.Sprintf("review comment %d", i)})
	}
	srv := httptest.NewServer(gh)
	defer srv.Close()

	first := plan.Marker + "\n**deliver diff** (1 environment): 1 to create\n\n```diff\n+  level: \"debug\" \\ `x`\n```\n"
	out, err := runPostPlan(t, srv.URL, ciToken, first)
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "created comment 1001") {
		t.Errorf("first run: %s", out)
	}
	second := plan.Marker + "\n**deliver diff** (1 environment): 0 to create, 1 to change\n"
	out2, err := runPostPlan(t, srv.URL+"/", ciToken, second)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out2)
	}
	if !strings.Contains(out2, "updated comment 1001") {
		t.Errorf("second run: %s", out2)
	}

	gh.mu.Lock()
	var plans []fakeComment
	for _, c := range gh.comments {
		if strings.Contains(c.Body, plan.Marker) {
			plans = append(plans, c)
		}
	}
	var posts, patches []fakeRequest
	for _, r := range gh.requests {
		if r.auth != "Bearer "+ciToken {
			t.Errorf("%s %s: Authorization %q, want the token", r.method, r.path, r.auth)
		}
		switch r.method {
		case http.MethodPost:
			posts = append(posts, r)
		case http.MethodPatch:
			patches = append(patches, r)
		}
	}
	gh.mu.Unlock()
	if len(plans) != 1 || plans[0].ID != 1001 || plans[0].Body != second {
		t.Errorf("want one plan comment, 1001, with the second body; got %+v", plans)
	}
	if len(posts) != 1 || len(patches) != 1 || patches[0].path != "/repos/shop/web/issues/comments/1001" {
		t.Errorf("want one POST then one PATCH of comment 1001; got %d POST, %+v", len(posts), patches)
	}
	var sent struct{ Body string }
	if len(posts) == 1 {
		if err := json.Unmarshal([]byte(posts[0].body), &sent); err != nil || sent.Body != first {
			t.Errorf("POST body %q (%v), want the Markdown %q", posts[0].body, err, first)
		}
	}

	// Refused: the script fails, and says so without the token.
	out3, err := runPostPlan(t, srv.URL, ciToken+"-wrong", second)
	if err == nil || !strings.Contains(out3, "401") {
		t.Errorf("wrong token: %v, want a failure naming the status:\n%s", err, out3)
	}
	// A body without the marker would never be found again.
	out4, err := runPostPlan(t, srv.URL, ciToken, "no marker\n")
	if err == nil || !strings.Contains(out4, "does not hold the marker") {
		t.Errorf("body without the marker: %v\n%s", err, out4)
	}
	for i, o := range []string{out, out2, out3, out4} {
		if strings.Contains(o, "canary-plans-token") {
			t.Errorf("run %d printed the token:\n%s", i+1, o)
		}
	}
}

// TestPlanCIFiles: the GitHub Actions workflow and the Cloud Build file
// of examples/app are YAML, run diff -o markdown and post it with
// post-plan.sh, giving it what it needs.
func TestPlanCIFiles(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		file string
		want []string
	}{
		{"github-actions.yaml", []string{"pull_request:", "-o markdown", "bash ci/post-plan.sh", "GITHUB_TOKEN: ${{ github.token }}",
			"PR_NUMBER: ${{ github.event.pull_request.number }}", "pull-requests: write"}},
		{"cloudbuild.yaml", []string{"-o markdown", "bash ci/post-plan.sh", "\nGITHUB_TOKEN\n", "env: GITHUB_TOKEN", "PR_NUMBER=${_PR_NUMBER}", "GITHUB_REPOSITORY=$REPO_FULL_NAME"}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("../../examples/app/ci", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := yaml.Unmarshal(data, &doc); err != nil {
				t.Fatalf("%s: %v", tt.file, err)
			}
			// The commands are in the steps: look for them in the parsed
			// document, not in its comments.
			var flat strings.Builder
			var walk func(v any)
			walk = func(v any) {
				switch v := v.(type) {
				case map[string]any:
					for k, e := range v {
						if s, ok := e.(string); ok {
							fmt.Fprintf(&flat, "%s: %s\n", k, s)
							continue
						}
						fmt.Fprintf(&flat, "%s:\n", k)
						walk(e)
					}
				case []any:
					for _, e := range v {
						walk(e)
					}
				default:
					fmt.Fprintf(&flat, "%v\n", v)
				}
			}
			walk(doc)
			for _, want := range tt.want {
				if !strings.Contains(flat.String(), want) {
					t.Errorf("%s: the steps lack %q", tt.file, want)
				}
			}
		})
	}
	if _, err := os.Stat("../../examples/app/ci/post-plan.sh"); err != nil {
		t.Fatal(err)
	}
}
