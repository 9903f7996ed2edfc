package preflight

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testclamd"
)

// fakeClamd answers PING and VERSION on a unix socket.
func fakeClamd(t *testing.T, version string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "clamd.sock")
	serveConns(t, "unix", sock, func(conn net.Conn) {
		buf := make([]byte, 64)
		n, _ := conn.Read(buf)
		switch cmd := string(bytes.TrimRight(buf[:n], "\x00")); cmd {
		case "zPING":
			conn.Write([]byte("PONG\x00"))
		case "zVERSION":
			conn.Write([]byte(version + "\x00"))
		}
	})
	return sock
}

func TestClamd(t *testing.T) {
	d := deps(testConfig(t, nil))
	if r := check(t, d, "clamd"); r.Level != Skip {
		t.Fatalf("scanning off: %s %s", r.Level, r.Text())
	}
	recent := time.Now().Add(-6 * time.Hour).Format(time.ANSIC)
	d.Clamd = fakeClamd(t, "ClamAV 1.4.3/27500/"+recent)
	want(t, check(t, d, "clamd"), OK, "ClamAV 1.4.3/27500")

	d.Clamd = fakeClamd(t, "ClamAV 1.4.3/27400/"+time.Now().Add(-20*24*time.Hour).Format(time.ANSIC))
	want(t, check(t, d, "clamd"), Warn, "days ago", "freshclam")

	d.Clamd = fakeClamd(t, "ClamAV 1.4.3")
	want(t, check(t, d, "clamd"), Warn, "no official signature database", "freshclam")

	d.Clamd = filepath.Join(t.TempDir(), "nobody.sock")
	r := check(t, d, "clamd")
	want(t, r, Error, "does not answer", "on_unavailable")
	if !r.Transient {
		t.Fatal("clamd not answering is not marked transient")
	}
}

// TestClamdReal asks a real clamd (a private instance with the test
// signature only): it answers, and has no official database.
func TestClamdReal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in, err := testclamd.Start(ctx, t.TempDir(), testclamd.Options{})
	if errors.Is(err, testclamd.ErrNotInstalled) && os.Getenv("SEALGATE_REQUIRE_TOOLS") != "1" {
		t.Skipf("%v; set SEALGATE_REQUIRE_TOOLS=1 to fail instead", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	d := deps(testConfig(t, nil))
	d.Clamd = in.Socket
	want(t, check(t, d, "clamd"), Warn, "no official signature database", "ClamAV")
}
