// Package testpg runs a private PostgreSQL for tests: the Debian binaries
// under /usr/lib/postgresql/*/bin, a cluster made by initdb in a temporary
// directory, started by pg_ctl, listening on a unix socket in that
// directory only (no TCP port). When the tests run as root the cluster is
// owned and run by the unprivileged user nobody (PostgreSQL refuses to run
// as root). Each test gets a database of its own, dropped when it ends.
//
// Target gives PostgreSQL when SEALGATE_TEST_POSTGRES is set, to the
// packages whose TestMain calls Main (which stops the server when the
// tests end); otherwise the SQLite path it was handed. The packages that
// own tables call Main, so that their tests run on both dialects; a
// package that does not keeps SQLite, and no server is started that
// nobody would stop. URL (a test that needs PostgreSQL whatever the
// variable says) fails without Main.
package testpg

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// Env is the environment variable that runs the tests on PostgreSQL.
const Env = "SEALGATE_TEST_POSTGRES"

// Enabled reports whether SEALGATE_TEST_POSTGRES is set.
func Enabled() bool { return os.Getenv(Env) != "" }

// cluster is the server of one test process, started on first use. The
// state is the test binary's: one server shared by its tests (initdb takes
// seconds; a database takes milliseconds).
var cluster = struct {
	sync.Mutex
	main  bool // Main was called
	srv   *Server
	err   error
	count int
}{}

// Main runs the package's tests (TestMain: testpg.Main(m)) and stops the
// server afterwards if one was started.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has more to do: it returns the exit
// code.
func Run(m *testing.M) int {
	cluster.Lock()
	cluster.main = true
	cluster.Unlock()
	code := m.Run()
	cluster.Lock()
	if cluster.srv != nil {
		if err := cluster.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testpg:", err)
		}
		cluster.srv = nil
	}
	cluster.Unlock()
	return code
}

// Target returns what the test should hand to database.Open: with
// SEALGATE_TEST_POSTGRES set, in a package whose TestMain calls Main, the
// URL of a new empty PostgreSQL database; otherwise sqlitePath.
func Target(t testing.TB, sqlitePath string) string {
	t.Helper()
	cluster.Lock()
	main := cluster.main
	cluster.Unlock()
	if !Enabled() || !main {
		return sqlitePath
	}
	return URL(t)
}

// URL returns the URL of a new empty database on the process's server,
// starting the server the first time. The database is dropped when the
// test ends. It fails the test when the package's TestMain does not call
// Main, or when PostgreSQL is not installed and SEALGATE_TEST_POSTGRES or
// SEALGATE_REQUIRE_TOOLS is set (without either, it skips the test).
func URL(t testing.TB) string {
	t.Helper()
	cluster.Lock()
	if !cluster.main {
		cluster.Unlock()
		t.Fatal("testpg: the package's TestMain must call testpg.Main to use PostgreSQL")
	}
	if cluster.srv == nil && cluster.err == nil {
		cluster.srv, cluster.err = Start(context.Background())
	}
	srv, err := cluster.srv, cluster.err
	cluster.count++
	name := fmt.Sprintf("t%d", cluster.count)
	cluster.Unlock()
	if errors.Is(err, ErrNotInstalled) && !Enabled() && os.Getenv("SEALGATE_REQUIRE_TOOLS") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	url, err := srv.CreateDatabase(context.Background(), name)
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.DropDatabase(context.Background(), name); err != nil {
			t.Errorf("testpg: %v", err)
		}
	})
	return url
}

// ErrNotInstalled: no PostgreSQL server binaries under /usr/lib/postgresql.
var ErrNotInstalled = errors.New("testpg: PostgreSQL is not installed (apt-get install postgresql)")

// Server is a running private PostgreSQL cluster.
type Server struct {
	Dir   string // holds the cluster (data/), its log and its socket
	bin   string
	cred  *syscall.Credential
	admin *sql.DB
	opts  string // the server's options (pg_ctl -o)
}

// superuser is the cluster's superuser (initdb -U); the socket is reached
// by trust authentication, and only from this machine's processes that
// can open the directory.
const superuser = "sealgate"

// Start makes and starts a new cluster in a new temporary directory.
func Start(ctx context.Context) (*Server, error) { return start(ctx, false, false) }

// StartBench is Start for benchmarks: fsync on as in production (their
// figures must include the flush of every commit to the disk) unless
// fsync is false, and pg_stat_statements loaded, so that a benchmark can
// count the statements it made (CREATE EXTENSION pg_stat_statements in its
// database).
func StartBench(ctx context.Context, fsync bool) (*Server, error) { return start(ctx, fsync, true) }

func start(ctx context.Context, fsync, bench bool) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sealgate-pg-")
	if err != nil {
		return nil, fmt.Errorf("failed to create the cluster directory: %w", err)
	}
	s := &Server{Dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("failed to find the user nobody to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("failed to give the cluster directory to nobody: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	if err := s.run(ctx, "initdb", "-D", data, "-U", superuser, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// No TCP, the socket in dir; no fsync (a test cluster is thrown
	// away) unless asked; room for the connection pools of many open
	// databases.
	opts := fmt.Sprintf("-c listen_addresses='' -k %s -c max_connections=300 -c shared_buffers=32MB", dir)
	if !fsync {
		opts += " -F"
	}
	if bench {
		opts += " -c shared_preload_libraries=pg_stat_statements"
	}
	s.opts = opts
	if err := s.run(ctx, "pg_ctl", "start", "-w", "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	admin, err := sql.Open("pgx", s.url("postgres"))
	if err == nil {
		err = admin.PingContext(ctx)
	}
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("failed to connect to the test cluster: %w", err)
	}
	admin.SetMaxOpenConns(2)
	s.admin = admin
	return s, nil
}

// url is the URL of database name on the cluster's socket.
func (s *Server) url(name string) string {
	return fmt.Sprintf("postgres://%s@/%s?host=%s", superuser, name, s.Dir)
}

// CreateDatabase creates the empty database name and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	if _, err := s.admin.ExecContext(ctx, `CREATE DATABASE `+quoteIdent(name)); err != nil {
		return "", fmt.Errorf("failed to create database %s: %w", name, err)
	}
	return s.url(name), nil
}

// DropDatabase drops database name, closing whatever connections remain.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	if _, err := s.admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+quoteIdent(name)+` WITH (FORCE)`); err != nil {
		return fmt.Errorf("failed to drop database %s: %w", name, err)
	}
	return nil
}

// Restart stops the server at once, as a crash would (pg_ctl stop -m
// immediate: no shutdown checkpoint, every connection cut), and starts
// it again, which replays its WAL. The databases and their URLs stay.
func (s *Server) Restart(ctx context.Context) error {
	data := filepath.Join(s.Dir, "data")
	if err := s.run(ctx, "pg_ctl", "stop", "-D", data, "-m", "immediate", "-w"); err != nil {
		return err
	}
	return s.run(ctx, "pg_ctl", "start", "-w", "-D", data, "-l", filepath.Join(s.Dir, "log"), "-o", s.opts)
}

// Stop stops the server at once and removes its directory.
func (s *Server) Stop() error {
	if s.admin != nil {
		s.admin.Close()
	}
	err := s.run(context.Background(), "pg_ctl", "stop", "-D", filepath.Join(s.Dir, "data"), "-m", "immediate", "-w")
	return errors.Join(err, os.RemoveAll(s.Dir))
}

// run runs one of the server's programs as the cluster's owner.
func (s *Server) run(ctx context.Context, prog string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=" + s.Dir}
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("failed to run %s: %w\n%s", prog, err, out)
	}
	return nil
}

// binDir returns the bin directory of the newest installed PostgreSQL.
func binDir() (string, error) {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(found) == 0 {
		return "", ErrNotInstalled
	}
	sort.Slice(found, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[j]))))
		return vi < vj
	})
	return filepath.Dir(found[len(found)-1]), nil
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string {
	out := []byte{'"'}
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			out = append(out, '"')
		}
		out = append(out, s[i])
	}
	return string(append(out, '"'))
}
