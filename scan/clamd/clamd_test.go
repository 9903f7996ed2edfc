package clamd

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testclamd"
)

// startClamd starts a private clamd, or skips (fails when SEALGATE_REQUIRE_TOOLS=1).
func startClamd(t testing.TB, o testclamd.Options) *testclamd.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in, err := testclamd.Start(ctx, t.TempDir(), o)
	if errors.Is(err, testclamd.ErrNotInstalled) && os.Getenv("SEALGATE_REQUIRE_TOOLS") != "1" {
		t.Skipf("%v; set SEALGATE_REQUIRE_TOOLS=1 to fail instead", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	return in
}

func client(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func scan(t testing.TB, c *Client, writes ...[]byte) (Verdict, error) {
	t.Helper()
	s, err := c.Scan(context.Background())
	if err != nil {
		return Verdict{}, err
	}
	for _, w := range writes {
		if _, err := s.Write(w); err != nil {
			s.Abort()
			return Verdict{}, err
		}
	}
	if err := s.Close(); err != nil {
		return Verdict{}, err
	}
	return s.Verdict(), nil
}

func TestScanRealClamd(t *testing.T) {
	in := startClamd(t, testclamd.Options{StreamMaxLength: "2M"})
	c := client(t, Config{Address: in.Socket, Timeout: 10 * time.Second})

	v, err := c.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v.Engine, "ClamAV ") || v.Raw == "" {
		t.Errorf("version %+v", v)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}

	eicar := testclamd.EICAR()
	// In one write, in two, and in 7-byte chunks: clamd reassembles the stream.
	small := client(t, Config{Address: "unix:" + in.Socket, MaxChunk: 7})
	for name, run := range map[string]func() (Verdict, error){
		"one write":     func() (Verdict, error) { return scan(t, c, eicar) },
		"two writes":    func() (Verdict, error) { return scan(t, c, eicar[:30], eicar[30:]) },
		"7-byte chunks": func() (Verdict, error) { return scan(t, small, eicar) },
	} {
		v, err := run()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !v.Infected || !strings.HasPrefix(v.Signature, testclamd.Signature) {
			t.Errorf("%s: EICAR: %+v", name, v)
		}
	}

	clean := make([]byte, 1<<20)
	rand.Read(clean)
	v2, err := scan(t, c, clean[:300<<10], clean[300<<10:])
	if err != nil {
		t.Fatal(err)
	}
	if v2.Infected || v2.Signature != "" {
		t.Errorf("clean file: %+v", v2)
	}
	// EICAR with one byte changed is not EICAR.
	almost := bytes.Clone(eicar)
	almost[0] = 'Y'
	if v, err := scan(t, c, almost); err != nil || v.Infected {
		t.Errorf("altered EICAR: %+v %v", v, err)
	}

	// Over clamd's StreamMaxLength: an error, not a verdict.
	big := make([]byte, 3<<20)
	_, err = scan(t, c, big)
	if !errors.Is(err, ErrLimit) || errors.Is(err, ErrUnavailable) {
		t.Errorf("3 MiB against StreamMaxLength 2M: %v, want ErrLimit", err)
	}
}

func TestUnavailableAndTimeout(t *testing.T) {
	in := startClamd(t, testclamd.Options{})
	c := client(t, Config{Address: in.Socket, Timeout: 500 * time.Millisecond})
	if v, err := scan(t, c, []byte("hello")); err != nil || v.Infected {
		t.Fatalf("before: %+v %v", v, err)
	}

	// clamd hangs: the connection is accepted but nothing is answered.
	if err := in.Pause(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := scan(t, c, testclamd.EICAR())
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrTimeout) {
		t.Errorf("paused clamd: %v, want ErrUnavailable and ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timeout took %v", d)
	}
	if _, err := c.Version(context.Background()); !errors.Is(err, ErrTimeout) {
		t.Errorf("paused clamd, VERSION: %v", err)
	}
	// A context deadline shorter than the timeout wins.
	cl := client(t, Config{Address: in.Socket, Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	s, err := cl.Scan(ctx)
	if err == nil {
		s.Write([]byte("x"))
		err = s.Close()
	}
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("paused clamd, context deadline: %v", err)
	}
	in.Resume()
	if v, err := scan(t, c, testclamd.EICAR()); err != nil || !v.Infected {
		t.Fatalf("resumed: %+v %v", v, err)
	}

	// clamd stopped: nothing listens on the socket.
	in.Stop()
	_, err = scan(t, c, []byte("hello"))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout) {
		t.Errorf("stopped clamd: %v, want ErrUnavailable (not a timeout)", err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("stopped clamd, PING: %v", err)
	}
}

func TestUnavailableTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := client(t, Config{Address: "tcp:" + addr, Timeout: time.Second})
	if _, err := scan(t, c, []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("nothing listening: %v", err)
	}
}

// A server that answers nonsense is unavailable, not a verdict.
func TestGarbageReply(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 64<<10)
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				for {
					n, err := conn.Read(buf)
					if err != nil || bytes.HasSuffix(buf[:n], []byte{0, 0, 0, 0}) {
						break
					}
				}
				conn.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n\x00"))
			}()
		}
	}()
	c := client(t, Config{Address: ln.Addr().String(), Timeout: 2 * time.Second})
	if _, err := scan(t, c, []byte("hello")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("garbage: %v", err)
	}
}

func TestParseVerdict(t *testing.T) {
	for reply, want := range map[string]error{
		"stream: OK":                          nil,
		"stream: Win.Test.EICAR_HDB-1 FOUND":  nil,
		"INSTREAM size limit exceeded. ERROR": ErrLimit,
		"stream: Can't allocate memory ERROR": ErrScanner,
		"stream: something else":              ErrUnavailable,
		"":                                    ErrUnavailable,
	} {
		v, err := parseVerdict(reply)
		if !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("%q: %v, want %v", reply, err, want)
		}
		if reply == "stream: Win.Test.EICAR_HDB-1 FOUND" && (v.Signature != "Win.Test.EICAR_HDB-1" || !v.Infected) {
			t.Errorf("%q: %+v", reply, v)
		}
	}
	for _, a := range []string{"", "tcp:nocolon", "unix:"} {
		if _, err := New(Config{Address: a}); err == nil {
			t.Errorf("New(%q) accepted", a)
		}
	}
}

// BenchmarkScan20KB: one INSTREAM round trip per 20 KB attachment (connect, send, verdict),
// against the private clamd.
func BenchmarkScan20KB(b *testing.B) {
	in := startClamd(b, testclamd.Options{})
	c := client(b, Config{Address: in.Socket, Timeout: 10 * time.Second})
	part := make([]byte, 20000)
	rand.Read(part)
	b.SetBytes(int64(len(part)))
	for b.Loop() {
		v, err := scan(b, c, part)
		if err != nil || v.Infected {
			b.Fatal(v, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/scan")
}
