package source

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Environment variables read by AuthFromEnv. They are only read when the
// caller asks for it, so Fetch itself never depends on the process
// environment.
const (
	EnvUsername         = "DELIVER_GIT_USERNAME"
	EnvPassword         = "DELIVER_GIT_PASSWORD"
	EnvToken            = "DELIVER_GIT_TOKEN"
	EnvSSHKeyFile       = "DELIVER_GIT_SSH_KEY_FILE"
	EnvSSHKeyPassphrase = "DELIVER_GIT_SSH_KEY_PASSPHRASE"
	EnvKnownHosts       = "DELIVER_GIT_KNOWN_HOSTS"
	EnvCAFile           = "DELIVER_GIT_CA_FILE"
	// EnvSSHKnownHosts is OpenSSH's and go-git's conventional variable,
	// honoured when EnvKnownHosts is unset.
	EnvSSHKnownHosts = "SSH_KNOWN_HOSTS"
)

// Auth holds the credentials and trust anchors used to talk to a remote.
// The zero value means anonymous HTTPS with the system CA pool, and SSH
// through the running ssh-agent with ~/.ssh/known_hosts.
type Auth struct {
	// Username for HTTPS basic auth. Default with a Token: "git", which
	// GitHub, Gitea and Bitbucket accept; GitLab wants "oauth2".
	Username string
	// Password for HTTPS basic auth.
	Password string
	// Token is an access token sent as the basic-auth password, the one
	// scheme every major forge accepts for git over HTTPS. It wins over
	// Password when both are set.
	Token string

	// SSHKey is a PEM private key (OpenSSH, PKCS#1 or PKCS#8) for SSH.
	SSHKey []byte
	// SSHKeyFile is read when SSHKey is empty.
	SSHKeyFile string
	// SSHKeyPassphrase decrypts an encrypted SSHKey.
	SSHKeyPassphrase string
	// KnownHostsFiles lists known_hosts files the SSH host key must be in.
	// Default: ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts. There is
	// deliberately no way to skip the check: an unknown key is an error.
	KnownHostsFiles []string

	// CABundle is PEM certificates trusted for HTTPS in addition to the
	// system pool, for self-hosted forges with a private CA.
	CABundle []byte
	// CAFile is read and appended to CABundle.
	CAFile string
}

// AuthFromEnv reads an Auth from DELIVER_GIT_* environment variables
// through lookup (usually os.LookupEnv); see the package documentation.
func AuthFromEnv(lookup func(string) (string, bool)) Auth {
	get := func(k string) string { v, _ := lookup(k); return v }
	a := Auth{
		Username:         get(EnvUsername),
		Password:         get(EnvPassword),
		Token:            get(EnvToken),
		SSHKeyFile:       get(EnvSSHKeyFile),
		SSHKeyPassphrase: get(EnvSSHKeyPassphrase),
		CAFile:           get(EnvCAFile),
	}
	kh := get(EnvKnownHosts)
	if kh == "" {
		kh = get(EnvSSHKnownHosts)
	}
	if kh != "" {
		a.KnownHostsFiles = filepath.SplitList(kh)
	}
	return a
}

// secrets returns every value that must never appear in an error.
func (a Auth) secrets() []string {
	return []string{a.Password, a.Token, a.SSHKeyPassphrase}
}

// caBundle returns the PEM bundle to trust, nil for the system pool only.
func (a Auth) caBundle() ([]byte, error) {
	bundle := append([]byte(nil), a.CABundle...)
	if a.CAFile != "" {
		b, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca file: %w", err)
		}
		bundle = append(bundle, '\n')
		bundle = append(bundle, b...)
	}
	if len(bundle) == 0 {
		return nil, nil
	}
	return bundle, nil
}

// method builds the go-git auth method for loc.
func (a Auth) method(loc location) (transport.AuthMethod, error) {
	switch loc.scheme {
	case "http", "https":
		return a.httpMethod(loc), nil
	case "ssh":
		return a.sshMethod(loc)
	default:
		return nil, nil
	}
}

func (a Auth) httpMethod(loc location) transport.AuthMethod {
	user, pass := a.Username, a.Password
	if a.Token != "" {
		pass = a.Token
		if user == "" {
			user = "git"
		}
	}
	if user == "" && pass == "" {
		// Credentials embedded in the URL are honoured, but only here:
		// the URL handed to go-git and printed in errors has them removed.
		user, pass = loc.user, loc.password
	}
	if user == "" && pass == "" {
		return nil
	}
	return &githttp.BasicAuth{Username: user, Password: pass}
}

func (a Auth) sshMethod(loc location) (transport.AuthMethod, error) {
	files := a.KnownHostsFiles
	if len(files) == 0 {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		files = []string{filepath.Join(home, ".ssh", "known_hosts"), "/etc/ssh/ssh_known_hosts"}
	}
	var existing []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
	}
	if len(existing) == 0 {
		return nil, fmt.Errorf("known_hosts: none of %v exists; host key checking cannot be disabled", files)
	}
	db, err := gitssh.NewKnownHostsDb(existing...)
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	port := loc.port
	if port == 0 {
		port = 22
	}
	// Restricting the offered algorithms to the ones known for this host
	// avoids a spurious mismatch when the server prefers a key type that
	// known_hosts does not list.
	helper := gitssh.HostKeyCallbackHelper{
		HostKeyCallback:   db.HostKeyCallback(),
		HostKeyAlgorithms: db.HostKeyAlgorithms(net.JoinHostPort(loc.host, fmt.Sprint(port))),
	}

	user := loc.user
	if user == "" {
		user = "git"
	}
	key := a.SSHKey
	if len(key) == 0 && a.SSHKeyFile != "" {
		if key, err = os.ReadFile(a.SSHKeyFile); err != nil {
			return nil, fmt.Errorf("read ssh key: %w", err)
		}
	}
	if len(key) == 0 {
		agent, err := gitssh.NewSSHAgentAuth(user)
		if err != nil {
			return nil, fmt.Errorf("no ssh key given and no ssh-agent: %w", err)
		}
		agent.HostKeyCallbackHelper = helper
		return agent, nil
	}
	pk, err := gitssh.NewPublicKeys(user, key, a.SSHKeyPassphrase)
	if err != nil {
		return nil, fmt.Errorf("parse ssh key: %w", err)
	}
	pk.HostKeyCallbackHelper = helper
	return pk, nil
}
