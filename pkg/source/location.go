package source

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

type kind int

const (
	// kindRemote is fetched over the network into the cache.
	kindRemote kind = iota
	// kindFile is a repository on this machine (file://), read in place.
	kindFile
	// kindLocal is a working tree used as it is on disk.
	kindLocal
)

// location is a parsed repository URL with credentials split off.
type location struct {
	kind   kind
	scheme string
	// url is what go-git gets and what errors print: never credentials.
	url string
	// user and password come from the URL's userinfo.
	user, password string
	host           string
	port           int
	// path is the filesystem path for kindFile and kindLocal.
	path string
}

// redactRaw removes userinfo from a raw URL for error messages, by hand
// rather than with url.Parse so that even an unparseable URL is printed
// without its password.
func redactRaw(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority := rest
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority = rest[:i]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	return scheme + "://" + rest
}

func parseLocation(raw string) (location, error) {
	if raw == "" {
		return location{}, fmt.Errorf("empty url")
	}
	if strings.HasPrefix(raw, "file://") {
		u, err := url.Parse(raw)
		if err != nil {
			return location{}, err
		}
		p := filepath.FromSlash(u.Path)
		return location{kind: kindFile, scheme: "file", url: "file://" + u.Path, path: p}, nil
	}
	ep, err := transport.NewEndpoint(raw)
	if err != nil {
		return location{}, fmt.Errorf("%s", redactRaw(err.Error()))
	}
	switch ep.Protocol {
	case "file":
		abs, err := filepath.Abs(raw)
		if err != nil {
			return location{}, err
		}
		return location{kind: kindLocal, scheme: "file", url: abs, path: abs}, nil
	case "http", "https", "ssh", "git":
	default:
		return location{}, fmt.Errorf("unsupported scheme %q", ep.Protocol)
	}
	loc := location{
		kind:     kindRemote,
		scheme:   ep.Protocol,
		user:     ep.User,
		password: ep.Password,
		host:     ep.Host,
		port:     ep.Port,
	}
	ep.Password = ""
	if ep.Protocol != "ssh" {
		// For HTTP the user name is part of the credentials; for SSH it
		// selects the account (git@) and is not secret.
		ep.User = ""
	}
	loc.url = ep.String()
	return loc, nil
}
