package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/schedule"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/fs"
)

// memTransport records what the queue sends.
type memTransport struct {
	mu   sync.Mutex
	sent []sentMsg
	fail func(rcpt string) error
}

type sentMsg struct {
	from  string
	rcpts []string
	data  []byte
}

func (m *memTransport) Send(ctx context.Context, env Envelope, body func(io.Writer) error) ([]error, error) {
	from, rcpts := env.From, env.Rcpts
	var buf bytes.Buffer
	if err := body(&buf); err != nil {
		return nil, err
	}
	res := make([]error, len(rcpts))
	var ok []string
	for i, r := range rcpts {
		if m.fail != nil {
			res[i] = m.fail(r)
		}
		if res[i] == nil {
			ok = append(ok, r)
		}
	}
	m.mu.Lock()
	if len(ok) > 0 {
		m.sent = append(m.sent, sentMsg{from, ok, buf.Bytes()})
	}
	m.mu.Unlock()
	return res, nil
}

type testGW struct {
	*Gateway
	tr  *memTransport
	dir string
}

// runJobs runs the gateway's background jobs (delivery, held messages,
// refused objects) on the system clock until ctx is done.
func (g *testGW) runJobs(ctx context.Context) error {
	return schedule.New(schedule.Deps{Delivery: g.Gateway, Discards: g.Gateway, Holds: g.Holds}).Run(ctx)
}

func newTestGateway(tb testing.TB, st storage.Store, mutate func(*config.Config)) *testGW {
	tb.Helper()
	dir := tb.TempDir()
	db, err := database.Open(context.Background(), testpg.Target(tb, filepath.Join(dir, "db")), testdb.Options(database.Options{}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if st == nil {
		fst, err := fs.Open(filepath.Join(dir, "objects"))
		if err != nil {
			tb.Fatal(err)
		}
		st = fst
	}
	mk, _ := crypto.GenerateMasterKey()
	keys, _ := crypto.NewKeyring(mk)
	led, err := audit.New(audit.Options{Origin: "test/ledger"})
	if err != nil {
		tb.Fatal(err)
	}
	return newInstance(tb, instance{dir: dir, db: db, st: st, keys: keys, led: led}, mutate)
}

// instance is what a test gateway shares with others of its fleet (the
// database, the object store, the master key, the ledger) and, when
// spool is set, where its spool files go. dir is its data directory
// ("": one of its own).
type instance struct {
	dir   string
	db    *database.DB
	st    storage.Store
	keys  *crypto.Keyring
	led   *audit.Ledger
	spool SpoolStore
}

// newInstance starts a gateway on in.
func newInstance(tb testing.TB, in instance, mutate func(*config.Config)) *testGW {
	tb.Helper()
	dir := in.dir
	if dir == "" {
		dir = tb.TempDir()
	}
	c, err := config.Load("", func(k string) string {
		return map[string]string{"SEALGATE_DATA_DIR": dir, "SEALGATE_INTERNAL_DOMAINS": "corp.example", "SEALGATE_KEY_NOTICE_DELAY": "0s"}[k]
	})
	if err != nil {
		tb.Fatal(err)
	}
	c.SMTP.MaxMessageSize = 4 << 30
	if mutate != nil {
		mutate(&c)
	}
	tr := &memTransport{}
	g, err := New(context.Background(), Deps{Config: &c, DB: in.db, Store: in.st, Keys: in.keys, Ledger: in.led,
		Log: slog.New(slog.DiscardHandler), Rand: rand.Reader, Transport: tr, Spool: in.spool})
	if err != nil {
		tb.Fatal(err)
	}
	return &testGW{Gateway: g, tr: tr, dir: dir}
}

func bigMessage(n int, to string) (io.Reader, int64) {
	head := fmt.Sprintf("From: a@corp.example\r\nTo: %s\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"+
		"--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"+
		"Content-Disposition: attachment; filename=\"big.bin\"\r\n\r\n", to)
	tail := "\r\n--b--\r\n"
	body := &b64Lines{left: n}
	size := int64(len(head)) + int64(base64.StdEncoding.EncodedLen(n)) + int64((base64.StdEncoding.EncodedLen(n)+75)/76*2) + int64(len(tail))
	return io.MultiReader(bytes.NewReader([]byte(head)), body, bytes.NewReader([]byte(tail))), size
}

// b64Lines generates base64 in 76-column lines without holding the
// attachment in memory: one precomputed 57 KiB block (random bytes),
// repeated. Cheap to generate, so the benchmark measures the gateway.
type b64Lines struct {
	left  int
	buf   []byte
	block []byte
}

func (b *b64Lines) Read(p []byte) (int, error) {
	if len(b.buf) == 0 {
		if b.left <= 0 {
			return 0, io.EOF
		}
		if b.block == nil {
			raw := make([]byte, 57*1024)
			rand.Read(raw)
			enc := base64.StdEncoding.EncodeToString(raw)
			var out bytes.Buffer
			for len(enc) > 0 {
				out.WriteString(enc[:76])
				out.WriteString("\r\n")
				enc = enc[76:]
			}
			b.block = out.Bytes()
		}
		if b.left >= 57*1024 {
			b.buf = b.block
			b.left -= 57 * 1024
			if b.left == 0 {
				b.buf = b.buf[:len(b.buf)-2]
			}
		} else {
			raw := make([]byte, b.left)
			rand.Read(raw)
			b.buf = []byte(base64.StdEncoding.EncodeToString(raw))
			b.left = 0
		}
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

func TestAcceptAndDeliver(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	msg, _ := bigMessage(3<<20, "x@client.example")
	env := &envelope{client: "127.0.0.1:1", from: "a@corp.example", rcpts: []string{"x@client.example", "y@corp.example"}}
	id, err := g.accept(context.Background(), env, msg)
	if err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, g)
	if len(g.tr.sent) != 3 {
		t.Fatalf("message %s: %d deliveries, want 3 (plain, copy, key)", id, len(g.tr.sent))
	}
	var pending int
	g.DB.Read().QueryRow(`SELECT COUNT(*) FROM outbound WHERE status != 'delivered'`).Scan(&pending)
	if pending != 0 {
		t.Fatalf("%d outbound rows not delivered", pending)
	}
	var secrets int
	g.DB.Read().QueryRow(`SELECT COUNT(*) FROM outbound WHERE secret IS NOT NULL`).Scan(&secrets)
	if secrets != 0 {
		t.Fatalf("%d secrets left in the queue after delivery", secrets)
	}
	if names := spoolNames(t, g.Spool); len(names) != 0 {
		t.Fatalf("spool files left after delivery: %v", names)
	}
}

// spoolNames lists the committed files of st (DBSpool: its rows and the
// files of its directory or bucket).
func spoolNames(t testing.TB, st SpoolStore) []string {
	t.Helper()
	var names []string
	if err := st.List(context.Background(), func(name string, _ time.Time) error {
		names = append(names, name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

func mustGlob(t testing.TB, pattern string) []string {
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// failingStore fails every Put after some bytes, as an S3 outage would.
type failingStore struct{ storage.Store }

func (f failingStore) Put(ctx context.Context, key string, r io.Reader) (storage.Info, error) {
	io.CopyN(io.Discard, r, 100<<10)
	return storage.Info{}, fmt.Errorf("simulated outage: %w", storage.ErrUnavailable)
}

func TestStorageOutageIsTemporary(t *testing.T) {
	dir := t.TempDir()
	fst, _ := fs.Open(dir)
	g := newTestGateway(t, failingStore{fst}, nil)
	msg, _ := bigMessage(2<<20, "x@client.example")
	_, err := g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}}, msg)
	if err == nil {
		t.Fatal("accepted with storage down")
	}
	if r := smtpReply(err); r.Code != 451 {
		t.Fatalf("reply %d %s, want 451", r.Code, r.Message)
	}
	var n int
	g.DB.Read().QueryRow(`SELECT COUNT(*) FROM outbound`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d rows queued for a refused message", n)
	}
}

func TestSMTPReplies(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{&mimeseal.Error{Kind: mimeseal.Malformed, Err: errors.New("x")}, 554},
		{&mimeseal.Error{Kind: mimeseal.LimitExceeded, Err: errors.New("x")}, 554},
		{fmt.Errorf("wrapped: %w", smtp.ErrDataTooLarge), 552},
		{fmt.Errorf("put: %w", storage.ErrUnavailable), 451},
		{errors.New("database is locked (5) (SQLITE_BUSY)"), 451},
		{errors.New("something unexpected"), 451},
		{reject(550, smtp.EnhancedCode{5, 7, 1}, "日本語", "English"), 550},
	} {
		r := smtpReply(c.err)
		if r.Code != c.code {
			t.Errorf("%v → %d, want %d", c.err, r.Code, c.code)
		}
		if c.code != 550 && (!bytes.ContainsAny([]byte(r.Message), "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん") || !bytes.Contains([]byte(r.Message), []byte("\n"))) {
			t.Errorf("reply for %v is not bilingual: %q", c.err, r.Message)
		}
	}
}

// BenchmarkAccept measures the sealing pipeline (MIME walk, base64 decode,
// SHA-256, age, fs store with fsync, spool, commit) for one external
// recipient, without the SMTP transport.
func BenchmarkAccept(b *testing.B) {
	for _, size := range []int{20 << 10, 1 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			g := newTestGateway(b, nil, nil)
			_, encSize := bigMessage(size, "x@client.example")
			b.SetBytes(encSize)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				msg, _ := bigMessage(size, "x@client.example")
				if _, err := g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}}, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkThroughput is the in-process form of bench/load.sh's
// throughput phase: 10 concurrent senders, each message with one 20 KiB
// attachment for one external recipient, accepted and then delivered by
// the queue (link notice and key notice) to an in-memory transport. With
// -cpuprofile it shows where a message's CPU goes, SMTP parsing aside.
func BenchmarkThroughput(b *testing.B) { benchThroughput(b, nil) }

func benchThroughput(b *testing.B, mutate func(*config.Config)) {
	g := newTestGateway(b, nil, mutate)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.runJobs(ctx) }()
	b.SetParallelism(5) // 10 senders on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			msg, _ := bigMessage(20<<10, "x@client.example")
			if _, err := g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}}, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for {
		g.tr.mu.Lock()
		n := len(g.tr.sent)
		g.tr.mu.Unlock()
		if n >= 2*b.N {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
}

// The first transient failure of a distribution is a ledger event
// (delivery.deferred, with the reason); retries after it are only logged.
func TestDeferralRecordedOnce(t *testing.T) {
	g := newTestGateway(t, nil, func(c *config.Config) {
		c.Delivery.RetryMin = config.Duration(50 * time.Millisecond)
		c.Delivery.RetryMax = config.Duration(50 * time.Millisecond)
	})
	var mu sync.Mutex
	attempts := 0
	g.tr.fail = func(rcpt string) error {
		mu.Lock()
		defer mu.Unlock()
		if attempts++; attempts <= 3 {
			return &smtp.SMTPError{Code: 451, Message: "try later"}
		}
		return nil
	}
	msg, _ := bigMessage(1<<10, "x@client.example")
	if _, err := g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}}, msg); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, g)
	var deferred int
	var data string
	g.DB.Read().QueryRow(`SELECT COUNT(*), COALESCE(MAX(CAST(data AS TEXT)), '') FROM ledger_records WHERE type = ?`, audit.TypeDeliveryDeferred).Scan(&deferred, &data)
	if deferred != 1 || !strings.Contains(data, `"recipient":"x@client.example"`) || !strings.Contains(data, "try later") {
		t.Fatalf("%d deferral events after 3 transient failures, want 1: %s", deferred, data)
	}
	if len(g.tr.sent) != 2 {
		t.Fatalf("%d deliveries, want 2 (notice and key notice)", len(g.tr.sent))
	}
}
