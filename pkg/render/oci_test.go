package render

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/registry"
)

// ociRegistry is a minimal read-only OCI distribution server: GET /v2/,
// manifests by tag or digest (GET and HEAD) and blobs, behind basic auth
// when user is set.
type ociRegistry struct {
	srv        *httptest.Server
	user, pass string
	manifests  map[string][]byte // "name:tag" and "name@digest"
	blobs      map[string][]byte // digest
	mu         sync.Mutex
	auths      []string // Authorization headers received
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// newOCIRegistry serves testdata/repo/charts/app, packaged like `helm push`
// does, as name:tag.
func newOCIRegistry(t *testing.T, name, tag, user, pass string) *ociRegistry {
	t.Helper()
	ch, err := loader.Load("testdata/repo/charts/app")
	if err != nil {
		t.Fatal(err)
	}
	tgzPath, err := chartutil.Save(ch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tgz, err := os.ReadFile(tgzPath)
	if err != nil {
		t.Fatal(err)
	}
	config, err := json.Marshal(ch.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	type descriptor struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int    `json:"size"`
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{registry.ConfigMediaType, digestOf(config), len(config)},
		"layers":        []descriptor{{registry.ChartLayerMediaType, digestOf(tgz), len(tgz)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &ociRegistry{
		user: user, pass: pass,
		manifests: map[string][]byte{name + ":" + tag: manifest, name + "@" + digestOf(manifest): manifest},
		blobs:     map[string][]byte{digestOf(config): config, digestOf(tgz): tgz},
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func ociError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, strings.ToLower(strings.ReplaceAll(code, "_", " ")))
}

func (r *ociRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.auths = append(r.auths, req.Header.Get("Authorization"))
	r.mu.Unlock()
	if r.user != "" {
		if u, p, ok := req.BasicAuth(); !ok || u != r.user || p != r.pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test registry"`)
			ociError(w, http.StatusUnauthorized, "UNAUTHORIZED")
			return
		}
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		ociError(w, http.StatusMethodNotAllowed, "UNSUPPORTED")
		return
	}
	p := req.URL.Path
	if p == "/v2/" {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Write([]byte("{}"))
		return
	}
	var (
		data        []byte
		ok          bool
		contentType string
	)
	if i := strings.LastIndex(p, "/manifests/"); strings.HasPrefix(p, "/v2/") && i > 0 {
		name, ref := p[len("/v2/"):i], p[i+len("/manifests/"):]
		sep := ":"
		if strings.HasPrefix(ref, "sha256:") {
			sep = "@"
		}
		data, ok = r.manifests[name+sep+ref]
		if !ok {
			ociError(w, http.StatusNotFound, "MANIFEST_UNKNOWN")
			return
		}
		contentType = "application/vnd.oci.image.manifest.v1+json"
	} else if i := strings.LastIndex(p, "/blobs/"); strings.HasPrefix(p, "/v2/") && i > 0 {
		data, ok = r.blobs[p[i+len("/blobs/"):]]
		if !ok {
			ociError(w, http.StatusNotFound, "BLOB_UNKNOWN")
			return
		}
		contentType = "application/octet-stream"
	} else {
		ociError(w, http.StatusNotFound, "NAME_UNKNOWN")
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Docker-Content-Digest", digestOf(data))
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	if req.Method == http.MethodGet {
		w.Write(data)
	}
}

func (r *ociRegistry) authHeaders() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auths...)
}

func TestHelmOCIRegistry(t *testing.T) {
	ctx := context.Background()
	local, err := Helm(ctx, appChart())
	if err != nil {
		t.Fatal(err)
	}
	reg := newOCIRegistry(t, "charts/app", "0.1.0", "user", "pass")
	host := strings.TrimPrefix(reg.srv.URL, "http://")
	ociOpts := func() HelmOptions {
		opts := appChart()
		opts.Chart, opts.Repository, opts.Version = "app", "oci://"+host+"/charts", "0.1.0"
		opts.Username, opts.Password = "user", "pass"
		opts.PlainHTTP = true
		opts.HTTPClient = reg.srv.Client()
		return opts
	}
	// Credentials for the registry in a docker config must not be used:
	// only the options authenticate.
	dockerConfig := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("user:pass"))
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dockerConfig)

	t.Run("pull", func(t *testing.T) {
		for _, repo := range []string{"oci://" + host + "/charts", "oci://" + host + "/charts/"} {
			opts := ociOpts()
			opts.Repository = repo
			got, err := Helm(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(dumpSet(t, local)), string(dumpSet(t, got))); diff != "" {
				t.Errorf("chart from OCI registry differs from local chart (-want +got):\n%s", diff)
			}
		}
		want := "Basic " + auth
		var sent bool
		for _, h := range reg.authHeaders() {
			if h != "" && h != want {
				t.Errorf("Authorization %q sent, want %q", h, want)
			}
			sent = sent || h == want
		}
		if !sent {
			t.Error("credentials never sent")
		}
	})
	for _, tt := range []struct {
		name    string
		opts    func(o *HelmOptions)
		wantErr []string
	}{
		{"unknown version", func(o *HelmOptions) { o.Version = "9.9.9" },
			[]string{"helm: pull chart oci://" + host + "/charts/app:9.9.9: ", "not found"}},
		{"unknown chart", func(o *HelmOptions) { o.Chart = "nope" },
			[]string{"helm: pull chart oci://" + host + "/charts/nope:0.1.0: ", "not found"}},
		{"no credentials", func(o *HelmOptions) { o.Username, o.Password = "", "" },
			[]string{"helm: pull chart oci://" + host + "/charts/app:0.1.0: ", "basic credential not found"}},
		{"wrong password", func(o *HelmOptions) { o.Password = "wrong" },
			[]string{"helm: pull chart oci://" + host + "/charts/app:0.1.0: ", "401"}},
		{"no version", func(o *HelmOptions) { o.Version = "" },
			[]string{"helm: chart oci://" + host + "/charts/app:: a version is required for OCI"}},
		{"TLS to a plain HTTP registry", func(o *HelmOptions) { o.PlainHTTP = false },
			[]string{"helm: pull chart oci://" + host + "/charts/app:0.1.0: ", "https://" + host}},
		{"cancelled", nil,
			[]string{"helm: pull chart oci://" + host + "/charts/app:0.1.0: context canceled"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := ociOpts()
			ctx := ctx
			if tt.opts != nil {
				tt.opts(&opts)
			} else {
				c, cancel := context.WithCancel(ctx)
				cancel()
				ctx = c
			}
			_, err := Helm(ctx, opts)
			for _, want := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error = %v, want it to contain %q", err, want)
				}
			}
		})
	}
}
