package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/corpus"
)

// TestLibraryLogsRouted: a warning Helm writes to the standard library's
// logger (an import-values entry naming a value that is not a table)
// comes out of deliver as one of its own log lines, in JSON with
// --log-format json, not as a bare line on stderr.
func TestLibraryLogsRouted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := corpus.WriteTree(dir, map[string]string{
		"deliver.yaml":                      "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: shop, helm: {chart: charts/web}}\n",
		"charts/web/Chart.yaml":             "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n- name: sub\n  version: 1.0.0\n  import-values:\n  - {child: color, parent: imported}\n",
		"charts/web/templates/cm.yaml":      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: b}\n",
		"charts/web/charts/sub/Chart.yaml":  "apiVersion: v2\nname: sub\nversion: 1.0.0\n",
		"charts/web/charts/sub/values.yaml": "color: blue\n",
	}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(deliverBin, "render", "--path", dir, "--log-format", "json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("deliver render: %v\n%s", err, stderr.String())
	}
	found := false
	for line := range strings.Lines(stderr.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("stderr line is not a JSON log record: %q", line)
			continue
		}
		if msg, _ := rec["msg"].(string); strings.Contains(msg, "ImportValues missing table") {
			found = rec["level"] == "WARN" && rec["logger"] == "log"
		}
	}
	if !found {
		t.Errorf("Helm's import-values warning is not a WARN record of logger log:\n%s", stderr.String())
	}
}
