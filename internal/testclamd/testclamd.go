// Package testclamd runs a private clamd for tests: its own configuration, socket and
// signature database in a directory of the caller's, with no signature download. The
// database holds one signature: the EICAR test file (an .hdb line: MD5, size, name), so that
// a test can send EICAR and expect it found, and anything else clean.
package testclamd

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrNotInstalled: clamd is not installed (Debian: apt-get install clamav-daemon).
var ErrNotInstalled = errors.New("testclamd: clamd is not installed (apt-get install clamav-daemon)")

// Signature is the name clamd reports for EICAR (it adds ".UNOFFICIAL" to signatures of an
// unsigned database).
const Signature = "Eicar-Test-Signature"

// EICAR returns the EICAR anti-virus test file (68 bytes). It is assembled at run time so that
// no source file of the repository carries it whole (scanners flag such files).
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-" + `TEST-FILE!$H+H*`)
}

// Instance is a running clamd.
type Instance struct {
	Socket string // its LocalSocket
	Dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Options configure an instance; zero values are fine.
type Options struct {
	StreamMaxLength string // clamd's StreamMaxLength, e.g. "10M" (default 25M)
}

// Start writes the configuration and the database into dir and starts clamd in the
// foreground; it returns once clamd answers PING. Stop it with Stop (tests: t.Cleanup).
func Start(ctx context.Context, dir string, o Options) (*Instance, error) {
	bin, err := exec.LookPath("clamd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/clamd"); serr != nil {
			return nil, ErrNotInstalled
		}
		bin = "/usr/sbin/clamd"
	}
	if o.StreamMaxLength == "" {
		o.StreamMaxLength = "25M"
	}
	db := filepath.Join(dir, "db")
	if err := os.MkdirAll(db, 0o755); err != nil {
		return nil, fmt.Errorf("failed to create clamd directory: %w", err)
	}
	sum := md5.Sum(EICAR())
	hdb := fmt.Sprintf("%s:%d:%s\n", hex.EncodeToString(sum[:]), len(EICAR()), Signature)
	if err := os.WriteFile(filepath.Join(db, "sealgate-test.hdb"), []byte(hdb), 0o644); err != nil {
		return nil, fmt.Errorf("failed to write clamd database: %w", err)
	}
	sock := filepath.Join(dir, "clamd.sock")
	conf := strings.Join([]string{
		"LocalSocket " + sock,
		"Foreground yes",
		"DatabaseDirectory " + db,
		"TemporaryDirectory " + dir,
		"StreamMaxLength " + o.StreamMaxLength,
		"MaxThreads 4",
		"LogTime no",
		"",
	}, "\n")
	confPath := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("failed to write clamd.conf: %w", err)
	}
	log, err := os.Create(filepath.Join(dir, "clamd.log"))
	if err != nil {
		return nil, fmt.Errorf("failed to create clamd log: %w", err)
	}
	cmd := exec.Command(bin, "-c", confPath)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("failed to start clamd: %w", err)
	}
	in := &Instance{Socket: sock, Dir: dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		log.Close()
		close(in.exited)
	}()
	// Wait for PING → PONG.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ping(sock) {
			return in, nil
		}
		select {
		case <-ctx.Done():
			in.Stop()
			return nil, fmt.Errorf("clamd did not start: %w (log: %s)", ctx.Err(), in.Log())
		case <-in.exited:
			return nil, fmt.Errorf("clamd exited at start (log: %s)", in.Log())
		case <-tick.C:
		}
	}
}

func ping(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("zPING\x00")); err != nil {
		return false
	}
	b := make([]byte, 8)
	n, _ := c.Read(b)
	return strings.HasPrefix(string(b[:n]), "PONG")
}

// Log returns what clamd wrote so far.
func (in *Instance) Log() string {
	b, _ := os.ReadFile(filepath.Join(in.Dir, "clamd.log"))
	return string(b)
}

// Pause stops the clamd process (SIGSTOP): connections are still accepted by the kernel but
// never answered, as when clamd hangs. Resume undoes it.
func (in *Instance) Pause() error  { return in.cmd.Process.Signal(syscall.SIGSTOP) }
func (in *Instance) Resume() error { return in.cmd.Process.Signal(syscall.SIGCONT) }

// Stop ends clamd and waits for it to exit.
func (in *Instance) Stop() {
	in.cmd.Process.Signal(syscall.SIGCONT)
	in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
	case <-time.After(10 * time.Second):
		in.cmd.Process.Kill()
		<-in.exited
	}
}
