package browser

import (
	"bytes"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// The harness itself: Chromium starts, runs the page's JavaScript, the
// test reads the DOM it produced, and the screenshot lands in the
// artifacts folder as a PNG of the window's size.
func TestHarnessRunsScriptsAndSavesScreenshots(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// The text the test waits for is written by the script, so a
		// browser that does not run it fails the test.
		_, _ = w.Write([]byte(`<!doctype html><html><head><title>harness</title></head><body>
<h1 id="out">static</h1>
<script>document.getElementById("out").textContent = "from script " + (6*7);</script>
</body></html>`))
	}))
	defer srv.Close()

	tab := newBrowser(t)
	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL), chromedp.WaitVisible(chromedp.CSS("#out"))); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("#out")))
	if err != nil {
		t.Fatal(err)
	}
	if text != "from script 42" {
		t.Fatalf("#out = %q, want the script's %q", text, "from script 42")
	}
	shot := screenshot(t, tab, "harness")
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is no PNG: %v", err)
	}
	if w := img.Bounds().Dx(); w != 1280 {
		t.Errorf("screenshot %d px wide, want the window's 1280", w)
	}
	saved, err := os.ReadFile(filepath.Join(artifacts(t), "harness.png"))
	if err != nil || !bytes.Equal(saved, shot) {
		t.Errorf("the artifact is not the screenshot (read: %v)", err)
	}
}
