// Package browser drives deliver's web view in a real browser: headless
// Chromium, the Debian package, through the DevTools protocol (chromedp),
// against the local control plane and a running reconciler. The tests
// check the DOM the way a user reads the page and save screenshots as test
// artifacts.
//
// Chromium is required: `.ci/run` installs it when /usr/bin/chromium is
// missing. Set DELIVER_BROWSER=optional to skip these tests on a machine
// without it instead of failing; DELIVER_CHROMIUM names another binary.
// Screenshots go to $DELIVER_ARTIFACTS, default .cache/artifacts/ in the
// repository root; -update also writes docs/ui-apps.png for the README.
package browser
