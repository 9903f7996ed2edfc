package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sealgate/sealgate/internal/testsink"
)

// gatewayProc is one `sealgate serve` process, fresh for each run so that
// its VmHWM (peak resident set) belongs to that run alone.
type gatewayProc struct {
	cmd      *exec.Cmd
	smtpAddr string
	httpAddr string
	log      *capBuffer
	done     chan struct{}
	waitErr  error
}

// capBuffer keeps the first bytes of a log (enough to explain a failure).
type capBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *capBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 256<<10 - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *capBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("failed to find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// gatewayEnv is the process environment of a gateway run: the parent's
// environment without any SEALGATE_* variable (a stray SEALGATE_S3_ENDPOINT
// would switch the store), then the run's own settings.
func gatewayEnv(settings map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SEALGATE_") {
			env = append(env, kv)
		}
	}
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	return env
}

func startGateway(ctx context.Context, bin string, settings map[string]string) (*gatewayProc, error) {
	smtpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	// Listeners the run does not use stay closed: their default ports may
	// be taken by another gateway on the machine.
	settings["SEALGATE_SUBMISSION_ADDR"] = "off"
	settings["SEALGATE_INBOUND_ADDR"] = "off"
	settings["SEALGATE_SMTP_ADDR"] = smtpAddr
	settings["SEALGATE_HTTP_ADDR"] = httpAddr
	settings["SEALGATE_PUBLIC_URL"] = "http://" + httpAddr
	g := &gatewayProc{smtpAddr: smtpAddr, httpAddr: httpAddr, log: &capBuffer{}, done: make(chan struct{})}
	g.cmd = exec.CommandContext(ctx, bin, "serve")
	g.cmd.Env = gatewayEnv(settings)
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	g.cmd.WaitDelay = 5 * time.Second
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start sealgate: %w", err)
	}
	go func() { g.waitErr = g.cmd.Wait(); close(g.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-g.done:
			return nil, fmt.Errorf("failed to start sealgate: exited (%v):\n%s", g.waitErr, g.log)
		default:
		}
		if resp, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", smtpAddr); err == nil {
				c.Close()
				return g, nil
			}
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("failed to start sealgate within 60s:\n%s", g.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// memory reads the process's peak and current resident set from
// /proc/<pid>/status, in bytes.
func (g *gatewayProc) memory() (hwm, rss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return 0, 0, fmt.Errorf("failed to read the gateway's memory use: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("failed to parse %s: %w", k, err)
		}
		if k == "VmHWM" {
			hwm = n << 10
		} else {
			rss = n << 10
		}
	}
	if hwm == 0 {
		return 0, 0, fmt.Errorf("failed to find VmHWM in /proc/%d/status", g.cmd.Process.Pid)
	}
	return hwm, rss, nil
}

// resetPeak resets the process's peak resident set (VmHWM) to its current
// resident set, so that memory() then reports the peak of what follows.
func (g *gatewayProc) resetPeak() error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", g.cmd.Process.Pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("failed to reset the gateway's peak RSS: %w", err)
	}
	return nil
}

// cpu returns the CPU time (user+system) the process has used so far.
func (g *gatewayProc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", g.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("failed to read the gateway's CPU time: %w", err)
	}
	// Fields after the command name (which may hold spaces): utime and
	// stime are the 14th and 15th fields of the line.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("failed to parse /proc/%d/stat", g.cmd.Process.Pid)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("failed to parse /proc/%d/stat: %w", g.cmd.Process.Pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// stop ends the process (SIGTERM, then SIGKILL) and returns the CPU time it
// used.
func (g *gatewayProc) stop() time.Duration {
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
	}
	if ps := g.cmd.ProcessState; ps != nil {
		return ps.UserTime() + ps.SystemTime()
	}
	return 0
}

// runSink is the bare-transport server, run in its own process (the
// benchmark re-executes itself with -bare-sink) like the gateway: go-smtp
// with a session that discards DATA. It prints its address and exits when
// its stdin closes.
func runSink() error {
	s, err := testsink.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	s.Discard(true)
	fmt.Println(s.Addr())
	io.Copy(io.Discard, os.Stdin)
	s.Stop()
	return nil
}

type sinkProc struct {
	cmd   *exec.Cmd
	stdin io.Closer
	addr  string
}

func startSink(ctx context.Context) (*sinkProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("failed to find the benchmark binary: %w", err)
	}
	cmd := exec.CommandContext(ctx, self, "-bare-sink")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("failed to start bare server: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("failed to start bare server: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start bare server: %w", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stdin.Close()
		cmd.Wait()
		return nil, fmt.Errorf("failed to start bare server: %w", err)
	}
	return &sinkProc{cmd: cmd, stdin: stdin, addr: strings.TrimSpace(line)}, nil
}

// stop ends the process and returns the CPU time it used.
func (s *sinkProc) stop() time.Duration {
	s.stdin.Close()
	s.cmd.Wait()
	if ps := s.cmd.ProcessState; ps != nil {
		return ps.UserTime() + ps.SystemTime()
	}
	return 0
}
