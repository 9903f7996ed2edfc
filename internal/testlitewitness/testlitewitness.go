// Package testlitewitness runs litewitness, the witness of
// filippo.io/torchwood (an implementation of c2sp.org/tlog-witness
// independent of sealgate's), for interoperability tests. It builds
// litewitness and witnessctl from the module cache (go mod download, then
// go build in the module's own directory with its own go.sum), gives it a
// fresh Ed25519 key through an ssh-agent served in this process
// (golang.org/x/crypto/ssh/agent; litewitness takes its key only from an
// agent), registers one log with witnessctl and starts it on a loopback
// port.
package testlitewitness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/sealgate/sealgate/witness/cosig"
)

// Module and Version are the torchwood release used: the newest that
// builds with this project's Go (v0.10.0 requires Go 1.27).
const (
	Module  = "filippo.io/torchwood"
	Version = "v0.9.0"
)

// ErrUnavailable: litewitness could not be built here.
var ErrUnavailable = errors.New("testlitewitness: cannot build litewitness (filippo.io/torchwood " + Version + " needs the Go module proxy or the module cache)")

// Binaries are the built commands.
type Binaries struct {
	Litewitness string
	Witnessctl  string
}

// Build builds litewitness and witnessctl into dir.
func Build(ctx context.Context, dir string) (Binaries, error) {
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", Module+"@"+Version)
	dl.Dir = dir // outside any module
	dl.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := dl.Output()
	var info struct{ Dir, Error string }
	if err != nil || json.Unmarshal(out, &info) != nil || info.Dir == "" {
		return Binaries{}, fmt.Errorf("%w: go mod download: %v %s %s", ErrUnavailable, err, info.Error, out)
	}
	b := Binaries{Litewitness: filepath.Join(dir, "litewitness"), Witnessctl: filepath.Join(dir, "witnessctl")}
	build := exec.CommandContext(ctx, "go", "build", "-o", dir, "./cmd/litewitness", "./cmd/witnessctl")
	build.Dir = info.Dir
	build.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("%w: go build: %v\n%s", ErrUnavailable, err, out)
	}
	return b, nil
}

// Options start one litewitness.
type Options struct {
	Bin Binaries
	// Dir holds its database (created if missing).
	Dir string
	// Name is the witness's name (in its cosignature lines).
	Name string
	// Origin and LogKey are the log it accepts: the checkpoint origin and
	// the log's note verifier key.
	Origin, LogKey string
	// Rand is the source of its key.
	Rand io.Reader
	// Log receives its output (default: discarded).
	Log io.Writer
}

// Instance is a litewitness process and its agent.
type Instance struct {
	URL       string // its submission prefix, http://127.0.0.1:port
	Addr      string
	Key       string // its verifier key, computed here from the public key
	LoggedKey string // its verifier key as litewitness printed it

	o      Options
	db     string
	sock   string
	agent  net.Listener
	fp     string
	log    *syncWriter
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	if s.w != nil {
		s.w.Write(p)
	}
	return len(p), nil
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Start sets up a witness for the log of o (key, agent, database) and
// starts it. Stop it with Close.
func Start(ctx context.Context, o Options) (*Instance, error) {
	pub, priv, err := ed25519.GenerateKey(o.Rand)
	if err != nil {
		return nil, err
	}
	key, err := cosig.VerifierKey(o.Name, pub)
	if err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	// A socket path must be short (108 bytes): not under a test's
	// temporary directory.
	sockDir, err := os.MkdirTemp("", "lw")
	if err != nil {
		return nil, err
	}
	in := &Instance{Key: key, o: o, db: filepath.Join(o.Dir, "litewitness.db"), sock: filepath.Join(sockDir, "a"),
		fp: ssh.FingerprintSHA256(sshPub), log: &syncWriter{w: o.Log}}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		return nil, err
	}
	if in.agent, err = net.Listen("unix", in.sock); err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := in.agent.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				agent.ServeAgent(keyring, c)
			}()
		}
	}()
	for _, args := range [][]string{
		{"add-log", "-db", in.db, "-origin", o.Origin},
		{"add-key", "-db", in.db, "-origin", o.Origin, "-key", o.LogKey},
	} {
		cmd := exec.CommandContext(ctx, o.Bin.Witnessctl, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			in.Close()
			return nil, fmt.Errorf("witnessctl %s: %v\n%s", args[0], err, out)
		}
	}
	if err := in.Start(ctx); err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

// Start starts the litewitness process (again, after Stop), on the same
// port as before if it had one.
func (in *Instance) Start(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd != nil {
		return errors.New("testlitewitness: already running")
	}
	if in.Addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		in.Addr = ln.Addr().String()
		ln.Close()
		in.URL = "http://" + in.Addr
	}
	cmd := exec.Command(in.o.Bin.Litewitness, "-db", in.db, "-name", in.o.Name, "-ssh-agent", in.sock,
		"-key", in.fp, "-listen", in.Addr)
	cmd.Stdout, cmd.Stderr = in.log, in.log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	in.cmd, in.exited = cmd, exited
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			in.cmd = nil
			return fmt.Errorf("litewitness exited at start:\n%s", in.log.String())
		default:
		}
		// Any HTTP answer means it is serving.
		if resp, err := http.Get(in.URL + "/"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("litewitness did not start:\n%s", in.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	sc := bufio.NewScanner(strings.NewReader(in.log.String()))
	for sc.Scan() {
		if _, v, ok := strings.Cut(sc.Text(), "vkey="); ok {
			in.LoggedKey = strings.Trim(strings.Fields(v)[0], `"`)
		}
	}
	return nil
}

// Stop ends the litewitness process (its agent and database stay).
func (in *Instance) Stop() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return
	}
	in.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-in.exited:
	case <-time.After(10 * time.Second):
		in.cmd.Process.Kill()
		<-in.exited
	}
	in.cmd = nil
}

// Close stops the process and the agent.
func (in *Instance) Close() {
	in.Stop()
	if in.agent != nil {
		in.agent.Close()
		os.RemoveAll(filepath.Dir(in.sock))
	}
}

// Output returns what litewitness wrote so far.
func (in *Instance) Output() string { return in.log.String() }
