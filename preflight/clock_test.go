package preflight

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// skewed returns a clock off by d.
func skewed(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }

func TestClockAgainstS3Date(t *testing.T) {
	// Any HTTP server answers with a Date header; net/http writes it.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) }))
	t.Cleanup(srv.Close)
	c := testConfig(t, map[string]string{"SEALGATE_S3_ENDPOINT": srv.URL, "SEALGATE_S3_BUCKET": "b", "SEALGATE_S3_INSECURE": "true"})
	d := deps(c)
	d.ProbeS3 = func(context.Context) error { return nil }

	want(t, check(t, d, "clock"), OK, "against the S3 server", "Date header")
	d.Now = skewed(12 * time.Second)
	want(t, check(t, d, "clock"), Warn, "clock offset -1", "NTP")
	d.Now = skewed(-2 * time.Minute)
	want(t, check(t, d, "clock"), Error, "clock offset +1", "TOTP")
}

// bannerServer answers one SMTP session at a time with a greeting that
// carries the date now() gives, and no extensions.
func bannerServer(t *testing.T, now func() time.Time) string {
	t.Helper()
	return serveConns(t, "tcp", "127.0.0.1:0", func(conn net.Conn) {
		conn.Write([]byte("220 mx.example.net ESMTP Exim 4.96 " + now().Format(time.RFC1123Z) + "\r\n"))
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch strings.ToUpper(strings.Fields(line + " x")[0]) {
			case "EHLO":
				conn.Write([]byte("250 mx.example.net\r\n"))
			case "QUIT":
				conn.Write([]byte("221 bye\r\n"))
				return
			default:
				conn.Write([]byte("502 no\r\n"))
			}
		}
	})
}

func TestClockAgainstSmarthostGreeting(t *testing.T) {
	addr := bannerServer(t, time.Now)
	d := smarthostDeps(t, addr, addr, "starttls")
	want(t, check(t, d, "clock"), OK, "SMTP greeting")
	// A greeting's date is informal: far off, it warns but does not fail.
	d.Now = skewed(-5 * time.Minute)
	want(t, check(t, d, "clock"), Warn, "clock offset +", "SMTP greeting")
}

func TestClockBeforeTheBuild(t *testing.T) {
	d := deps(testConfig(t, nil))
	d.BuildTime = time.Now().Add(48 * time.Hour)
	want(t, check(t, d, "clock"), Error, "before this binary's commit time")
}

func TestClockBehindTheDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	os.Mkdir(dir, 0o700)
	db := filepath.Join(dir, "sealgate.db")
	os.WriteFile(db, nil, 0o600)
	future := time.Now().Add(3 * time.Hour)
	if err := os.Chtimes(db, future, future); err != nil {
		t.Fatal(err)
	}
	d := deps(testConfig(t, map[string]string{"SEALGATE_DATA_DIR": dir}))
	want(t, check(t, d, "clock"), Warn, "the clock went back")
}

func TestClockWithNothingToCompare(t *testing.T) {
	d := deps(testConfig(t, nil))
	d.BuildTime = time.Now().Add(-30 * 24 * time.Hour)
	r := check(t, d, "clock")
	if r.Level != Skip || !strings.Contains(r.EN, "nothing to compare") || !strings.Contains(r.EN, "NTP") {
		t.Fatalf("clock with nothing to compare: %s %s", r.Level, r.Text())
	}
}
