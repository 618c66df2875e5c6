package browser

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/deliverhq/deliver/internal/testenv"
)

var update = flag.Bool("update", false, "write docs/ui-apps.png from the apps page screenshot")

// chromium returns the path of the Chromium binary, or fails the test with
// how to install it; with DELIVER_BROWSER=optional it skips instead.
func chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("DELIVER_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("DELIVER_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("DELIVER_BROWSER") == "optional" {
		t.Skip("no Chromium and DELIVER_BROWSER=optional: skipping the browser test")
	}
	t.Fatal("the browser tests need Chromium: `apt-get install -y chromium` (what .ci/run does), " +
		"point DELIVER_CHROMIUM at a Chrome binary, or set DELIVER_BROWSER=optional to skip them")
	return ""
}

// newBrowser starts a headless Chromium for one test and returns a tab's
// context; the browser ends with the test. Every action on the context is
// bounded by the test's deadline, or 3 minutes.
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests start Chromium: not under -short")
	}
	bin := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		// The user data folder is the test's: no profile is shared between
		// parallel tests or left behind.
		chromedp.UserDataDir(t.TempDir()),
		// No network but the test's own servers: no update checks or
		// component downloads, as on a machine without internet.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox (CI containers).
		opts = append(opts, chromedp.NoSandbox)
	}
	deadline := time.Now().Add(3 * time.Minute)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if td, ok := d.Deadline(); ok && td.Before(deadline) {
			deadline = td
		}
	}
	ctx, cancelTime := context.WithDeadline(context.Background(), deadline)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelTime()
	})
	// Start the browser now, so that a browser that cannot start fails
	// here with its own error rather than in the first page's step.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	return tab
}

// artifacts returns the folder for the test artifacts: $DELIVER_ARTIFACTS,
// else .cache/artifacts/ in the repository root (ignored by git, and kept
// after the test, unlike t.TempDir).
func artifacts(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("DELIVER_ARTIFACTS")
	if dir == "" {
		root, err := testenv.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, ".cache", "artifacts")
	}
	dir = filepath.Join(dir, "browser")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the whole page of tab as name.png in the artifacts
// folder and returns the PNG.
func screenshot(t testing.TB, tab context.Context, name string) []byte {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		// An artifact, not an assertion: a page caught between two
		// renders has no size for a moment ("Cannot take screenshot with
		// 0 width"), which failed a test whose checks had all passed.
		t.Logf("screenshot %s: %v", name, err)
		return nil
	}
	path := filepath.Join(artifacts(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return png
}
