// Package s3test gives tests and benchmarks a real S3 server.
//
// Start returns the server named by the SEALGATE_S3_* environment variables
// (see s3.ConfigFromEnv) when SEALGATE_S3_ENDPOINT is set. Otherwise it
// starts versitygw (the Versity S3 gateway, Apache-2.0) on a free loopback
// port with a temporary data directory, bucket versioning support and an
// internal IAM store, and kills it when the test ends. The binary is found
// through SEALGATE_VERSITYGW, then PATH, then $GOBIN and $(go env
// GOPATH)/bin; install it with
//
//	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// When neither is possible the test is skipped, unless SEALGATE_REQUIRE_S3=1,
// in which case it fails. A server this package started can be stopped and
// started again on the same port and data (Stop, Start) to simulate an
// outage.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sealgate/sealgate/storage/s3"
)

// Root credentials of a server started by this package.
const (
	RootAccessKey = "sealgate-root"
	RootSecretKey = "sealgate-root-secret-key"
	// DefaultBucket is the bucket of Config when the environment names none.
	DefaultBucket = "sealgate-test"
	// startTimeout bounds how long versitygw may take to answer.
	startTimeout = 20 * time.Second
)

// Server is an S3 server for one test.
type Server struct {
	t       testing.TB
	cfg     s3.Config
	managed bool

	// Only for managed servers.
	bin       string
	args      []string
	env       []string
	adminAddr string
	logPath   string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	running bool
}

// Config returns the configuration of an S3 server for t: Start(t).Config().
func Config(t testing.TB) s3.Config {
	t.Helper()
	return Start(t).Config()
}

// Start returns the server from the environment, or starts versitygw, or
// skips t (fails it when SEALGATE_REQUIRE_S3=1). A started server is killed
// and its data removed when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if cfg, ok := s3.ConfigFromEnv(os.Getenv); ok {
		if cfg.Bucket == "" {
			cfg.Bucket = DefaultBucket
		}
		return &Server{t: t, cfg: cfg}
	}
	bin, err := findVersitygw()
	if err != nil {
		msg := "no S3 server: set SEALGATE_S3_ENDPOINT (and SEALGATE_S3_BUCKET, _ACCESS_KEY, _SECRET_KEY, _INSECURE, _PATH_STYLE), " +
			"or install versitygw (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0): " + err.Error()
		if os.Getenv("SEALGATE_REQUIRE_S3") == "1" {
			t.Fatal(msg + " (SEALGATE_REQUIRE_S3=1)")
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	addr, adminAddr := freeAddr(t), freeAddr(t)
	for _, d := range []string{"data", "versions", "iam"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{
		t:       t,
		managed: true,
		bin:     bin,
		args: []string{
			"--port", addr,
			"--admin-port", adminAddr,
			"--iam-dir", filepath.Join(dir, "iam"),
			"--health", "/health",
			"--quiet",
			"posix",
			"--versioning-dir", filepath.Join(dir, "versions"),
			filepath.Join(dir, "data"),
		},
		env: append(os.Environ(),
			"ROOT_ACCESS_KEY="+RootAccessKey,
			"ROOT_SECRET_KEY="+RootSecretKey,
		),
		adminAddr: adminAddr,
		logPath:   filepath.Join(dir, "versitygw.log"),
		cfg: s3.Config{
			Endpoint:  "http://" + addr,
			Region:    "us-east-1",
			Bucket:    DefaultBucket,
			AccessKey: RootAccessKey,
			SecretKey: RootSecretKey,
			Insecure:  true,
			PathStyle: true,
		},
	}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.stopLocked()
	})
	s.Start()
	return s
}

// Config returns the server's configuration with its default bucket.
func (s *Server) Config() s3.Config { return s.cfg }

// Managed reports whether this package started the server (and so can
// stop it and create users).
func (s *Server) Managed() bool { return s.managed }

// Start starts the server again after Stop, on the same address with the
// same data, and waits until it answers. Start on a running server does
// nothing.
func (s *Server) Start() {
	s.t.Helper()
	s.requireManaged("start")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("failed to start versitygw: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	s.cmd, s.exited, s.running = cmd, exited, true
	if err := waitHealthy(strings.TrimPrefix(s.cfg.Endpoint, "http://"), exited); err != nil {
		s.stopLocked()
		log, _ := os.ReadFile(s.logPath)
		s.t.Fatalf("versitygw did not come up: %v\n%s", err, log)
	}
}

// Stop kills the server (SIGKILL, as in a crash) and waits for it to exit.
// Data stay for Start.
func (s *Server) Stop() {
	s.t.Helper()
	s.requireManaged("stop")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if !s.running {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.running = false
}

func (s *Server) requireManaged(what string) {
	if !s.managed {
		s.t.Fatalf("s3test: cannot %s a server given by the environment; check Managed first", what)
	}
}

// CreateUser creates an IAM account on a managed server with the
// versitygw admin CLI. role is "user", "userplus" or "admin"; a "user" may
// use only the buckets it owns.
func (s *Server) CreateUser(access, secret, role string) error {
	s.requireManaged("create a user on")
	cmd := exec.Command(s.bin, "admin",
		"--access", RootAccessKey, "--secret", RootSecretKey,
		"--endpoint-url", "http://"+s.adminAddr,
		"create-user", "--access", access, "--secret", secret, "--role", role)
	cmd.Env = os.Environ()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to create user %s: %v: %s", access, err, out)
	}
	return nil
}

// Bucket returns the server's Config with a new, unique bucket name
// starting with prefix (the bucket itself is created by s3.Open). When t
// ends the bucket is emptied — every version, bypassing governance
// retention — and removed, best effort.
func (s *Server) Bucket(t testing.TB, prefix string) s3.Config {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	cfg := s.cfg
	cfg.Bucket = prefix + "-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := Client(cfg)
		if err != nil {
			return
		}
		for o := range c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true, WithVersions: true}) {
			if o.Err != nil {
				break
			}
			_ = c.RemoveObject(ctx, cfg.Bucket, o.Key, minio.RemoveObjectOptions{VersionID: o.VersionID, GovernanceBypass: true})
		}
		_ = c.RemoveBucket(ctx, cfg.Bucket)
	})
	return cfg
}

// Client returns a raw minio client for cfg, for tests that look behind
// the Store (versions, incomplete uploads, bucket settings).
func Client(cfg s3.Config) (*minio.Client, error) {
	host, secure := cfg.Endpoint, !cfg.Insecure
	if h, ok := strings.CutPrefix(host, "http://"); ok {
		host, secure = h, false
	} else if h, ok := strings.CutPrefix(host, "https://"); ok {
		host, secure = h, true
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	return minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   1,
	})
}

// MeasurePeakHeap runs f while sampling the Go heap every millisecond and
// returns the peak of HeapInuse above its level before f (after a GC) and
// the bytes allocated during f. It is meant for one upload at a time in a
// quiet process: other goroutines' allocations count too.
//
// HeapInuse also counts garbage not yet collected, and with the default
// GOGC the collector lets the heap reach twice what is live before it
// runs: an upload holding one 8 MiB part was then measured at 8 to 16.1
// MiB depending on when the collector ran. So the collector runs at
// GOGC=10 while f does (restored after), and the peak is what f keeps
// alive plus at most a tenth of it in garbage.
func MeasurePeakHeap(f func()) (peak, allocated uint64) {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	// Two collections empty the sync.Pools (a pooled object survives one
	// in the victim cache), so a part buffer pooled before f — by a
	// probe at Open — is allocated again during f and counted.
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, baseAlloc := ms.HeapInuse, ms.TotalAlloc
	var maxInuse uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			maxInuse = max(maxInuse, m.HeapInuse)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	runtime.ReadMemStats(&ms)
	maxInuse = max(maxInuse, ms.HeapInuse)
	if maxInuse > base {
		peak = maxInuse - base
	}
	return peak, ms.TotalAlloc - baseAlloc
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("failed to find a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func waitHealthy(addr string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("versitygw exited")
		default:
		}
		resp, err := client.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("health check: %s", resp.Status)
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer within %v: %w", startTimeout, lastErr)
}

func findVersitygw() (string, error) {
	if p := os.Getenv("SEALGATE_VERSITYGW"); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("SEALGATE_VERSITYGW=%s is not an executable file", p)
		}
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		goTool = p
	}
	if out, err := exec.Command(goTool, "env", "GOPATH").Output(); err == nil {
		for _, p := range filepath.SplitList(string(bytes.TrimSpace(out))) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("versitygw not found on PATH nor in %v", dirs)
}
