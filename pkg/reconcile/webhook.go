package reconcile

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// maxWebhookBody bounds a push event; GitHub caps its payloads at 25 MB,
// but a push event with thousands of commits is still far below this.
const maxWebhookBody = 10 << 20

// seenCapacity bounds the deliveries remembered against replays.
const seenCapacity = 4096

// webhook verifies push events and triggers a fetch. It accepts:
//
//   - GitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>,
//     X-GitHub-Delivery, X-GitHub-Event
//   - Gitea/Forgejo: X-Gitea-Signature: <hex HMAC-SHA256>,
//     X-Gitea-Delivery, X-Gitea-Event (Gitea also sends GitHub's headers)
//   - GitLab: X-Gitlab-Token: <the secret>, X-Gitlab-Event,
//     X-Gitlab-Event-UUID when GitLab sends it
//
// A request that is unsigned, badly signed, or a replay (a delivery ID or
// a body seen before) gets 401 and is logged without its body.
type webhook struct {
	secret  []byte
	ref     string
	trigger func()
	log     *slog.Logger

	mu   sync.Mutex
	seen map[string]bool
	ring []string
	next int
}

func newWebhook(secret []byte, ref string, trigger func(), log *slog.Logger) *webhook {
	return &webhook{secret: secret, ref: ref, trigger: trigger, log: log, seen: map[string]bool{}, ring: make([]string, seenCapacity)}
}

// readSecretFile reads a webhook secret, without the trailing newline an
// editor or a Kubernetes Secret made from a file often has.
func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	return b, nil
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxWebhookBody))
	if err != nil {
		h.reject(w, req, http.StatusRequestEntityTooLarge, "body unreadable or too large")
		return
	}
	forge, delivery, event, err := h.verify(req.Header, body)
	if err != nil {
		h.reject(w, req, http.StatusUnauthorized, err.Error())
		return
	}
	// A replay of a validly signed request (the signature covers neither
	// the delivery ID nor a time) is refused by its ID and by its body.
	sum := sha256.Sum256(body)
	if !h.remember(forge+"/"+delivery, "body/"+hex.EncodeToString(sum[:])) {
		h.reject(w, req, http.StatusUnauthorized, "replayed delivery")
		return
	}
	if !isPush(event) {
		h.log.Info("webhook ignored", "forge", forge, "event", event, "delivery", delivery)
		fmt.Fprintf(w, "ignored: event %s\n", event)
		return
	}
	var push struct {
		Ref string `json:"ref"`
	}
	_ = json.Unmarshal(body, &push)
	if !h.follows(push.Ref) {
		h.log.Info("webhook ignored", "forge", forge, "event", event, "delivery", delivery, "ref", push.Ref)
		fmt.Fprintf(w, "ignored: ref %s is not followed\n", push.Ref)
		return
	}
	h.log.Info("webhook", "forge", forge, "event", event, "delivery", delivery, "ref", push.Ref)
	h.trigger()
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintln(w, "reconcile triggered")
}

// reject answers and logs a refused request: never its body, which an
// attacker controls and which may hold anything.
func (h *webhook) reject(w http.ResponseWriter, req *http.Request, code int, why string) {
	h.log.Warn("webhook rejected", "reason", why, "remote", req.RemoteAddr, "status", code,
		"github_delivery", req.Header.Get("X-GitHub-Delivery"), "gitlab_event", req.Header.Get("X-Gitlab-Event"))
	http.Error(w, http.StatusText(code), code)
}

// verify authenticates the request and returns the forge, the delivery ID
// (empty when the forge sent none) and the event name.
func (h *webhook) verify(hd http.Header, body []byte) (forge, delivery, event string, err error) {
	switch {
	case hd.Get("X-Gitea-Signature") != "":
		if !h.validHMAC(hd.Get("X-Gitea-Signature"), body) {
			return "", "", "", errors.New("bad X-Gitea-Signature")
		}
		return "gitea", hd.Get("X-Gitea-Delivery"), hd.Get("X-Gitea-Event"), nil
	case hd.Get("X-Hub-Signature-256") != "":
		sig, ok := strings.CutPrefix(hd.Get("X-Hub-Signature-256"), "sha256=")
		if !ok || !h.validHMAC(sig, body) {
			return "", "", "", errors.New("bad X-Hub-Signature-256")
		}
		if hd.Get("X-GitHub-Delivery") == "" {
			return "", "", "", errors.New("no X-GitHub-Delivery")
		}
		return "github", hd.Get("X-GitHub-Delivery"), hd.Get("X-GitHub-Event"), nil
	case hd.Get("X-Gitlab-Token") != "":
		if subtle.ConstantTimeCompare([]byte(hd.Get("X-Gitlab-Token")), h.secret) != 1 {
			return "", "", "", errors.New("bad X-Gitlab-Token")
		}
		return "gitlab", hd.Get("X-Gitlab-Event-UUID"), hd.Get("X-Gitlab-Event"), nil
	default:
		return "", "", "", errors.New("unsigned: no X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token")
	}
}

func (h *webhook) validHMAC(sigHex string, body []byte) bool {
	sig, err := hex.DecodeString(sigHex)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, h.secret)
	mac.Write(body)
	return hmac.Equal(sig, mac.Sum(nil))
}

// remember records the keys (empty delivery IDs aside) and reports
// whether none was seen before. The oldest are forgotten past
// seenCapacity: a fixed ring and a set, by hand because an LRU cache
// (k8s.io/utils/lru) would keep a replayed key young, and a replay must
// not extend how long its delivery is remembered.
func (h *webhook) remember(keys ...string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		if !strings.HasSuffix(k, "/") && h.seen[k] {
			return false
		}
	}
	for _, k := range keys {
		if strings.HasSuffix(k, "/") {
			continue
		}
		if old := h.ring[h.next]; old != "" {
			delete(h.seen, old)
		}
		h.ring[h.next] = k
		h.seen[k] = true
		h.next = (h.next + 1) % len(h.ring)
	}
	return true
}

// isPush reports whether a forge's event name is a push of commits or
// tags.
func isPush(event string) bool {
	switch event {
	case "push", "Push Hook", "Tag Push Hook", "create":
		return true
	}
	return false
}

// follows reports whether a pushed ref is the one the reconciler follows:
// the configured ref expanded by git's rules (go-git's RefRevParseRules, as
// the fetch resolves it: main, heads/main and refs/heads/main all follow
// refs/heads/main). With no ref configured (the remote's HEAD) any push
// may move it.
func (h *webhook) follows(ref string) bool {
	if h.ref == "" || ref == "" {
		return true
	}
	for _, rule := range plumbing.RefRevParseRules {
		if ref == fmt.Sprintf(rule, h.ref) {
			return true
		}
	}
	return false
}
