package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// requestCounter counts the requests sent through a rest.Config by who
// they are for: the app whose object, inventory or lock they name, or the
// run (lists, discovery, namespaces).
type requestCounter struct {
	mu sync.Mutex
	// apps maps an object name to its app: the app's own name (its
	// objects are named after it), its inventory Secret and its Lease.
	apps map[string]string
	// perApp counts, per app, "verb resource" pairs; run counts those
	// that name no app.
	perApp map[string]map[string]int
	run    map[string]int
}

func newRequestCounter(apps []string) *requestCounter {
	c := &requestCounter{apps: map[string]string{}, perApp: map[string]map[string]int{}, run: map[string]int{}}
	for _, a := range apps {
		c.apps[a] = a
		c.apps[apply.InventoryName(a)] = a
		c.apps["deliver-lock-"+a] = a
		c.perApp[a] = map[string]int{}
	}
	return c
}

func (c *requestCounter) config() *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			c.count(req)
			return rt.RoundTrip(req)
		})
	}
	return cfg
}

// count files req under "verb resource", the way the API server's
// apiserver_request_total names them.
func (c *requestCounter) count(req *http.Request) {
	resource, name := "", ""
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	// /api/v1/..., /apis/group/version/...
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		parts = nil
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) != 2 {
		parts = parts[2:] // a namespaced resource, not a namespace itself
	}
	if len(parts) > 0 {
		resource = parts[0]
	}
	if len(parts) > 1 {
		name = parts[1]
	}
	if len(parts) > 2 {
		resource += "/" + parts[2]
	}
	verb := map[string]string{http.MethodPost: "create", http.MethodPut: "update", http.MethodPatch: "patch", http.MethodDelete: "delete"}[req.Method]
	if req.Method == http.MethodGet {
		switch {
		case req.URL.Query().Get("watch") == "true":
			verb = "watch"
		case name == "":
			verb = "list"
		default:
			verb = "get"
		}
	}
	if resource == "" {
		resource = req.URL.Path // discovery, openapi
	}
	if req.Method == http.MethodPost {
		name = c.createdName(req)
	}
	key := verb + " " + resource
	c.mu.Lock()
	defer c.mu.Unlock()
	if app, ok := c.apps[name]; ok {
		c.perApp[app][key]++
		return
	}
	c.run[key]++
}

// createdName returns the name of the object a create sends, leaving the
// body to be sent: from the JSON, or for protobuf the longest app, Secret
// or Lease name found in it.
func (c *requestCounter) createdName(req *http.Request) string {
	if req.Body == nil {
		return ""
	}
	data, err := io.ReadAll(req.Body)
	req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(data))
	if err != nil {
		return ""
	}
	var obj struct {
		Metadata struct{ Name string } `json:"metadata"`
	}
	if json.Unmarshal(data, &obj) == nil {
		return obj.Metadata.Name
	}
	found := ""
	for name := range c.apps {
		if len(name) > len(found) && bytes.Contains(data, []byte(name)) {
			found = name
		}
	}
	return found
}

// TestFirstApplyRequestBudget counts the requests of a first apply of many
// small apps, each a ServiceAccount, a headless Service, a Deployment
// scaled to zero and an Ingress (the shape of the apps rows of
// hack/bench and of issue 18), through the library call of `deliver
// apply`, with and without waiting for readiness. Each app must send
// exactly the requests of the table, and the requests that name no app
// (the shared lists and watches, discovery) must not grow with the number
// of apps: what a new app costs beyond its objects is most of the time
// between one app of 4,000 objects and 1,000 apps.
func TestFirstApplyRequestBudget(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	// What each new app sends, and why: nothing else, waiting or not.
	want := map[string]int{
		// Its four objects, each created by one server-side apply.
		"patch serviceaccounts": 1,
		"patch services":        1,
		"patch deployments":     1,
		"patch ingresses":       1,
		// Its lock: created without a read first (the run's list of
		// inventory Secret names found the app new), released at the
		// end by clearing the holder (deliver never deletes these
		// Leases: a Lease it creates proves no run held the app before,
		// which lets it trust the inventory found missing ahead instead
		// of reading it again under the lock).
		"create leases": 1,
		"update leases": 1,
		// Its inventory: created before the first write, so that a
		// crash after any write leaves an inventory naming the object,
		// and written once more at the end, with the result and the
		// resourceVersions the writes returned.
		"create secrets": 1,
		"patch secrets":  1,
	}
	const resources = 4 + 1 // the apps' four kinds and the autoscalers
	for _, tc := range []struct {
		name string
		wait bool
		// run bounds the requests that name no app, per namespace of
		// the apps; discovery and the inventories' lists come on top.
		run int
	}{
		// One list per namespace of each resource the apps use, shared
		// by the apps (SharedLists).
		{name: "no wait", run: resources},
		// The wait lists nothing (it knows the resourceVersions its
		// writes returned): one watch per namespace of each of the
		// apps' kinds, shared by the apps' waits.
		{name: "wait", wait: true, run: resources + 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const apps = 24
			namespaces := []string{env.Namespace(t), env.Namespace(t)}
			dir, names, byApp := smallApps(t, apps, namespaces)
			c := newRequestCounter(names)
			opts := clusterOptions(dir, env.Namespace(t))
			opts.Kube = func(string) (*rest.Config, error) { return c.config(), nil }
			opts.Wait = &tc.wait
			if tc.wait {
				// This control plane runs no controllers: the test
				// reports each Deployment rolled out, as the deployment
				// controller would, through a client of its own.
				var wg sync.WaitGroup
				defer wg.Wait()
				deployments := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
				for _, name := range names {
					wg.Add(1)
					go func() {
						defer wg.Done()
						env.SetStatus(t, deployments, byApp[name], name, 1, map[string]any{
							"conditions": []any{
								map[string]any{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
								map[string]any{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
							},
						})
					}()
				}
			}
			res, err := Apply(context.Background(), opts)
			if err == nil {
				err = res.Err()
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, app := range names {
				if got := c.perApp[app]; !equalCounts(got, want) {
					t.Errorf("requests of %s:\n%s\nwant:\n%s", app, formatCounts(got), formatCounts(want))
				}
			}
			// The run's own requests: the API's discovery (GET /api and
			// /apis), the lists (and watches) per namespace, and the
			// inventories: one labelled list per hundred apps and one
			// list of the Secrets' names, which tells the new apps
			// apart.
			total := 0
			for _, n := range c.run {
				total += n
			}
			if maxRun := 2 + len(namespaces)*tc.run + 2; total > maxRun {
				t.Errorf("%d requests that name no app, want at most %d:\n%s", total, maxRun, formatCounts(c.run))
			}
			t.Logf("run's own requests (%d):\n%s", total, formatCounts(c.run))
		})
	}
}

// smallApps writes a deliver.yaml of n apps spread over namespaces, each a
// ServiceAccount, a headless Service, a Deployment scaled to zero and an
// Ingress named after the app, and returns its folder, the apps' names
// and each app's namespace.
func smallApps(t *testing.T, n int, namespaces []string) (string, []string, map[string]string) {
	files := map[string]string{}
	var config strings.Builder
	config.WriteString("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n")
	var names []string
	byApp := map[string]string{}
	for i := range n {
		name, ns := fmt.Sprintf("app-%02d", i), namespaces[i%len(namespaces)]
		names = append(names, name)
		byApp[name] = ns
		fmt.Fprintf(&config, "- {name: %s, namespace: %s, manifests: {path: %s}}\n", name, ns, name)
		files[name+"/objects.yaml"] = strings.ReplaceAll(`apiVersion: v1
kind: ServiceAccount
metadata: {name: NAME}
---
apiVersion: v1
kind: Service
metadata: {name: NAME}
spec:
  clusterIP: None
  selector: {app: NAME}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME}
spec:
  replicas: 0
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec:
      serviceAccountName: NAME
      containers:
      - {name: app, image: registry.example/app:1.0.0, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: NAME}
spec:
  rules:
  - host: NAME.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: NAME, port: {name: http}}}
`, "NAME", name)
	}
	files["deliver.yaml"] = config.String()
	dir := t.TempDir()
	testenv.WriteFiles(t, dir, files)
	return dir, names, byApp
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-40s %d\n", k, m[k])
	}
	return b.String()
}
