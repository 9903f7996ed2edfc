package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildSealgate builds the sealgate binary into dir.
func buildSealgate(ctx context.Context, dir string, race bool) (string, error) {
	bin := filepath.Join(dir, "sealgate")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/sealgate/sealgate/cmd/sealgate")
	cmd := exec.CommandContext(ctx, goTool(), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("failed to build sealgate: %w\n%s", err, out.String())
	}
	return bin, nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("failed to find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// gatewayProc is one `sealgate serve` process, restarted as often as the
// faults ask, always with the same environment and data directory.
type gatewayProc struct {
	name     string // its EHLO name (SEALGATE_HOSTNAME)
	bin      string
	dir      string // data directory
	env      []string
	smtpAddr string
	httpAddr string
	logPath  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
	kills  int
}

func newGatewayProc(name, bin, dataDir, logPath string, env []string) (*gatewayProc, error) {
	smtpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &gatewayProc{name: name, bin: bin, dir: dataDir, smtpAddr: smtpAddr, httpAddr: httpAddr, logPath: logPath}
	p.env = append(os.Environ(),
		"SEALGATE_DATA_DIR="+dataDir,
		"SEALGATE_SMTP_ADDR="+smtpAddr,
		"SEALGATE_HTTP_ADDR="+httpAddr,
		"SEALGATE_PUBLIC_URL=http://"+httpAddr,
		"SEALGATE_SUBMISSION_ADDR=off",
	)
	p.env = append(p.env, env...)
	p.env = append(p.env, "SEALGATE_HOSTNAME="+name)
	return p, nil
}

// cli runs `sealgate args…` with the instance's environment (its data
// directory, database and store) and returns what it printed.
func (p *gatewayProc) cli(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		// The last line says what failed.
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return string(out), fmt.Errorf("sealgate %s: %w: %s", strings.Join(args[:min(len(args), 3)], " "), err, lines[len(lines)-1])
	}
	return string(out), nil
}

// start starts the process and waits until it answers on SMTP and HTTP.
func (p *gatewayProc) start(ctx context.Context, wait time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("gateway already running")
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("failed to open gateway log: %w", err)
	}
	fmt.Fprintf(logf, "\n=== chaos: start #%d at %s ===\n", p.starts+1, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, "serve")
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("failed to start sealgate: %w", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	p.starts++
	deadline := time.Now().Add(wait)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-done:
			p.cmd = nil
			return fmt.Errorf("sealgate exited at start (see %s)", p.logPath)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := client.Get("http://" + p.httpAddr + "/healthz"); err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", p.smtpAddr); err == nil {
				c.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sealgate did not answer within %s (see %s)", wait, p.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signal sends sig and waits for the process to exit (SIGKILL after grace).
func (p *gatewayProc) signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
	if sig == syscall.SIGKILL {
		p.kills++
	}
	p.cmd = nil
}

// kill is a crash: SIGKILL, no chance to finish anything.
func (p *gatewayProc) kill() { p.signal(syscall.SIGKILL, time.Minute) }

// stop is an orderly shutdown.
func (p *gatewayProc) stop() { p.signal(syscall.SIGTERM, 40*time.Second) }

// pid is the running process's id, 0 when none.
func (p *gatewayProc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// s3Server is a versitygw process (the S3 store), stoppable and restartable
// on the same port and data to simulate an object-store outage.
type s3Server struct {
	bin      string
	args     []string
	env      []string
	endpoint string
	logPath  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

const (
	s3AccessKey = "chaos-root"
	s3SecretKey = "chaos-root-secret-key"
)

// findVersitygw looks on PATH, in $GOBIN and in $(go env GOPATH)/bin.
func findVersitygw() (string, error) {
	if p := os.Getenv("SEALGATE_VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if out, err := exec.Command(goTool(), "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("versitygw not found on PATH nor in %v (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)", dirs)
}

// newS3Server prepares a versitygw in dir. keepAlive keeps its HTTP
// connections open between requests (versitygw --keep-alive; its default
// closes every connection after one response, which costs each S3 request
// a TCP connection that AWS S3 and MinIO do not).
func newS3Server(bin, dir string, keepAlive bool) (*s3Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"data", "versions", "iam"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("failed to prepare versitygw directory: %w", err)
		}
	}
	var ka []string
	if keepAlive {
		ka = []string{"--keep-alive"}
	}
	return &s3Server{
		bin: bin,
		args: append(ka, "--port", addr, "--admin-port", admin, "--iam-dir", filepath.Join(dir, "iam"),
			"--health", "/health", "--quiet", "posix", "--versioning-dir", filepath.Join(dir, "versions"), filepath.Join(dir, "data")),
		env:      append(os.Environ(), "ROOT_ACCESS_KEY="+s3AccessKey, "ROOT_SECRET_KEY="+s3SecretKey),
		endpoint: "http://" + addr,
		logPath:  filepath.Join(dir, "versitygw.log"),
	}, nil
}

// Up starts the server and waits until it answers.
func (s *s3Server) Up(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("failed to open versitygw log: %w", err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("failed to start versitygw: %w", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("versitygw exited at start (see %s)", s.logPath)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := client.Get(s.endpoint + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw did not answer (see %s)", s.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Down kills the server (as in a crash).
func (s *s3Server) Down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

func (s *s3Server) env4gateway(bucket string) []string {
	return []string{
		"SEALGATE_S3_ENDPOINT=" + s.endpoint,
		"SEALGATE_S3_BUCKET=" + bucket,
		"SEALGATE_S3_ACCESS_KEY=" + s3AccessKey,
		"SEALGATE_S3_SECRET_KEY=" + s3SecretKey,
		"SEALGATE_S3_REGION=us-east-1",
		"SEALGATE_S3_INSECURE=true",
		"SEALGATE_S3_PATH_STYLE=true",
	}
}
