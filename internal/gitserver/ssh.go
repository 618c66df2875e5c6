package gitserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHServer serves every repository under Root over SSH on 127.0.0.1,
// accepting public-key authentication for the keys it was given.
type SSHServer struct {
	// Addr is host:port of the listener.
	Addr string
	// Root is the directory repository paths are resolved in.
	Root string
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey

	config   *ssh.ServerConfig
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	services []string
}

// NewSSH starts an SSH git server for the repositories under root that
// accepts the given client keys, and stops it when the test ends.
func NewSSH(tb testing.TB, root string, authorized ...ssh.PublicKey) *SSHServer {
	tb.Helper()
	RequireGit(tb)
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		tb.Fatal(err)
	}
	s := &SSHServer{Root: root, HostKey: hostSigner.PublicKey()}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, k := range authorized {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					return nil, nil
				}
			}
			return nil, errors.New("unknown public key")
		},
	}
	s.config.AddHostKey(hostSigner)
	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.Addr = s.ln.Addr().String()
	s.wg.Add(1)
	go s.serve()
	tb.Cleanup(func() {
		s.ln.Close()
		s.wg.Wait()
	})
	return s
}

// RepoURL returns the ssh:// clone URL of the repository at Root/name.
func (s *SSHServer) RepoURL(name string) string {
	return "ssh://git@" + s.Addr + "/" + name
}

// KnownHosts returns a known_hosts line for this server's host key.
func (s *SSHServer) KnownHosts() []byte {
	return []byte(knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey) + "\n")
}

// Services returns the git services run so far ("git-upload-pack", ...),
// one entry per exec.
func (s *SSHServer) Services() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.services...)
}

func (s *SSHServer) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handleConn(conn)
		}()
	}
}

func (s *SSHServer) handleConn(nc net.Conn) {
	defer nc.Close()
	_, chans, reqs, err := ssh.NewServerConn(nc, s.config)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handleSession(ch, chReqs)
		}()
	}
}

func (s *SSHServer) handleSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "env":
			// GIT_PROTOCOL and friends are optional; accepting keeps
			// clients that send them happy.
			_ = req.Reply(true, nil)
		case "exec":
			var payload struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
				_ = req.Reply(false, nil)
				return
			}
			service, dir, err := s.parseCommand(payload.Command)
			if err != nil {
				_ = req.Reply(false, nil)
				fmt.Fprintf(ch.Stderr(), "%v\n", err)
				sendExit(ch, 1)
				return
			}
			_ = req.Reply(true, nil)
			s.mu.Lock()
			s.services = append(s.services, service)
			s.mu.Unlock()
			sendExit(ch, runService(ch, service, dir))
			return
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// parseCommand turns "git-upload-pack '/repo.git'" into the service and a
// directory inside Root, refusing anything else.
func (s *SSHServer) parseCommand(command string) (service, dir string, err error) {
	service, arg, ok := strings.Cut(command, " ")
	if !ok || (service != "git-upload-pack" && service != "git-receive-pack") {
		return "", "", fmt.Errorf("unsupported command %q", command)
	}
	arg = strings.Trim(arg, "'\"")
	rel := strings.TrimPrefix(path.Clean("/"+arg), "/")
	if rel == "" {
		return "", "", fmt.Errorf("no repository in %q", command)
	}
	return service, filepath.Join(s.Root, filepath.FromSlash(rel)), nil
}

func runService(ch ssh.Channel, service, dir string) int {
	cmd := exec.CommandContext(context.Background(), service, dir)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	// A pipe instead of cmd.Stdin = ch: Wait would otherwise block until
	// the client closes its side, which clients do only after the exit
	// status arrives.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(ch.Stderr(), "%v\n", err)
		return 1
	}
	go func() {
		_, _ = io.Copy(stdin, ch)
		stdin.Close()
	}()
	if err := cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		return 1
	}
	return 0
}

func sendExit(ch ssh.Channel, code int) {
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
}

// NewClientKey generates an ed25519 client key and returns its OpenSSH PEM
// private key (encrypted when passphrase is not empty) and public key.
func NewClientKey(tb testing.TB, passphrase string) (privatePEM []byte, public ssh.PublicKey) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "test key")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test key", []byte(passphrase))
	}
	if err != nil {
		tb.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(block), sshPub
}
