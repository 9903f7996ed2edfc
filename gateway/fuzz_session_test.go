package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/outbox"
)

// FuzzSession drives the relay listener — a real go-smtp server backed by
// the gateway, on loopback — with fuzzed client bytes: cmds is written
// first (the seeds are EHLO/MAIL/RCPT/DATA dialogues), then data, then an
// end of data and QUIT. Invariants, whatever the bytes:
//
//   - no panic (go-smtp recovers them, so its 421 reply and log line are
//     checked too);
//   - the server still answers a new session afterwards;
//   - no copy for an external recipient of an accepted message carries a
//     32-byte run of a sealed file (checked by decrypting every sealed object
//     with its key notice's passphrase — which also proves it is complete)
//     unless that run occurs elsewhere in the input.
func FuzzSession(f *testing.F) {
	for _, s := range sessionSeeds() {
		f.Add(s.cmds, s.data)
	}
	fz := newFuzzGateway(f)
	f.Fuzz(func(t *testing.T, cmds string, data []byte) {
		fz.run(t, cmds, data)
	})
}

type sessionSeed struct {
	cmds string
	data []byte
}

func sessionSeeds() []sessionSeed {
	env := "EHLO fuzz.test\r\nMAIL FROM:<a@corp.example>\r\nRCPT TO:<x@client.example>\r\nRCPT TO:<y@corp.example>\r\nDATA\r\n"
	att := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("sealed secret content 0123456789 "), 8))
	mixed := "From: a@corp.example\r\nTo: x@client.example\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"r.pdf\"\r\n\r\n" + att + "\r\n--b--\r\n"
	return []sessionSeed{
		{env, []byte(mixed)},
		{env, []byte("Subject: plain\r\n\r\nno attachment\r\n")},
		{env, []byte("Subject: smuggle\r\n\r\nfirst\n.\nMAIL FROM:<e@evil.example>\r\nRCPT TO:<v@evil.example>\r\nDATA\r\nsecond\r\n")},
		{env, []byte("Subject: x\r\nContent-Type: multipart/mixed\r\n\r\n--b\r\nContent-Type: application/zip\r\n\r\nPK\x03\x04rawbytes\r\n")},
		{"EHLO fuzz.test\r\nMAIL FROM:<a@corp.example>\r\nRCPT TO:<x@client.example>\r\nBDAT 40 LAST\r\n", []byte("Subject: bdat\r\n\r\nchunked body of forty\r\n")},
		{"EHLO fuzz.test\r\nSTARTTLS\r\nRSET\r\n", nil},
		{"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<\"q\"@client.example>\r\nRCPT TO:<x@client.example>\r\nDATA\r\n", []byte(mixed)},
		{"EHLO fuzz.test\r\nMAIL FROM:<a@corp.example> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<ü@client.example>\r\nDATA\r\n", []byte("Subject: =?utf-8?B?w7w=?=\r\n\r\n\xc3\xbc\r\n")},
	}
}

// fuzzGateway is one gateway for all iterations of a fuzz worker.
type fuzzGateway struct {
	g       *Gateway
	store   *memStore
	addr    string
	logBuf  *lockedBuffer
	mu      sync.Mutex
	lastID  int64 // outbound rows up to here have been checked
	checked int   // sealed copies checked against their files
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	l.b.Reset()
	return s
}

func newFuzzGateway(tb testing.TB) *fuzzGateway {
	tb.Helper()
	dir := tb.TempDir()
	c, err := config.Load("", func(k string) string {
		return map[string]string{"SEALGATE_DATA_DIR": dir, "SEALGATE_INTERNAL_DOMAINS": "corp.example", "SEALGATE_KEY_NOTICE_DELAY": "0s"}[k]
	})
	if err != nil {
		tb.Fatal(err)
	}
	c.SMTP.MaxMessageSize = 1 << 20
	c.SMTP.ReadTimeout = config.Duration(5 * time.Second)
	c.SMTP.WriteTimeout = config.Duration(5 * time.Second)
	ctx := context.Background()
	db, err := database.Open(ctx, filepath.Join(dir, "db"), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	mk, err := crypto.GenerateMasterKey()
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := crypto.NewKeyring(mk)
	if err != nil {
		tb.Fatal(err)
	}
	led, err := audit.New(audit.Options{Origin: "fuzz/ledger"})
	if err != nil {
		tb.Fatal(err)
	}
	logBuf := &lockedBuffer{}
	ms := newMemStore()
	g, err := New(ctx, Deps{Config: &c, DB: db, Store: ms, Keys: keys, Ledger: led,
		Log: slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelWarn})), Rand: rand.Reader, Transport: &memTransport{}})
	if err != nil {
		tb.Fatal(err)
	}
	srv := g.NewRelayServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return &fuzzGateway{g: g, store: ms, addr: ln.Addr().String(), logBuf: logBuf}
}

func (fz *fuzzGateway) run(t *testing.T, cmds string, data []byte) {
	fz.mu.Lock() // the leak check reads rows committed by this iteration only
	defer fz.mu.Unlock()
	conn, err := net.Dial("tcp", fz.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	transcript := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(conn)
		transcript <- b
	}()
	conn.Write([]byte(cmds))
	conn.Write(data)
	conn.Write([]byte("\r\n.\r\nQUIT\r\n"))
	conn.(*net.TCPConn).CloseWrite()
	replies := <-transcript
	conn.Close()

	if bytes.Contains(replies, []byte("421 4.0.0 Internal server error")) {
		t.Fatalf("the server panicked:\n%s", fz.logBuf.take())
	}
	if log := fz.logBuf.take(); strings.Contains(log, "panic") {
		t.Fatalf("panic in the log:\n%s", log)
	}
	fz.stillAnswers(t)
	fz.checkCopies(t, append([]byte(cmds), data...))
	// Every copy of this iteration has been checked: drop the objects so
	// that a long fuzzing run stays in bounded memory.
	fz.store.mu.Lock()
	clear(fz.store.objs)
	fz.store.mu.Unlock()
}

// stillAnswers opens a new session: greeting, NOOP.
func (fz *fuzzGateway) stillAnswers(t *testing.T) {
	c, err := net.Dial("tcp", fz.addr)
	if err != nil {
		t.Fatalf("server gone: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("NOOP\r\nQUIT\r\n"))
	b, _ := io.ReadAll(c)
	if !bytes.HasPrefix(b, []byte("220 ")) || !bytes.Contains(b, []byte("\r\n250 ")) {
		t.Fatalf("server does not answer a new session: %q", b)
	}
}

// checkCopies renders every external copy committed since the last
// iteration and checks it against the plaintext of its sealed files.
func (fz *fuzzGateway) checkCopies(t *testing.T, input []byte) {
	ctx := context.Background()
	q := fz.g.queue
	db := fz.g.DB.Read()
	rows, err := db.QueryContext(ctx, `SELECT id FROM outbound WHERE id > ? AND kind IN ('sealed', 'copy') ORDER BY id`, fz.lastID)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	var copies []outbox.Row
	for _, id := range ids {
		r, err := outbox.Get(ctx, db, id)
		if err != nil {
			t.Fatal(err)
		}
		copies = append(copies, *r)
	}
	db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM outbound`).Scan(&fz.lastID)
	for _, row := range copies {
		render, err := q.renderer(ctx, row)
		if err != nil {
			t.Fatalf("copy %d (%s) cannot be rendered: %v", row.ID, row.Kind, err)
		}
		var out bytes.Buffer
		if err := render(&out); err != nil {
			t.Fatalf("copy %d (%s) cannot be rendered: %v", row.ID, row.Kind, err)
		}
		if row.Kind != outbox.KindSealed {
			continue
		}
		fz.checked++
		for name, plain := range fz.sealedFiles(t, row) {
			if leak := leakedRun(out.Bytes(), plain, input); leak != "" {
				t.Fatalf("the copy to %v carries sealed file %q: %s\n%q", row.Rcpts, name, leak, out.Bytes())
			}
		}
	}
}

// sealedFiles decrypts the files of the transfer of a sealed copy the way a
// recipient does: the key notice's passphrase opens key.age.
func (fz *fuzzGateway) sealedFiles(t *testing.T, row outbox.Row) map[string][]byte {
	ctx := context.Background()
	db := fz.g.DB.Read()
	var transferID string
	var contractID int64
	var keyWrapped, passWrapped []byte
	err := db.QueryRowContext(ctx, `SELECT t.id, t.contract_id, r.key_wrapped, o.secret FROM recipients r JOIN transfers t ON t.id = r.transfer_id
		JOIN outbound o ON o.recipient_id = r.id AND o.kind = 'key' WHERE r.id = ?`, row.RecipientID).Scan(&transferID, &contractID, &keyWrapped, &passWrapped)
	if err != nil {
		t.Fatalf("sealed copy %d without its key notice: %v", row.ID, err)
	}
	pass, err := fz.g.Keys.Unwrap(passWrapped)
	if err != nil {
		t.Fatal(err)
	}
	kek, err := contract.OpenKEK(ctx, db, fz.g.Keys, contractID)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := kek.UnwrapKeyFile(keyWrapped)
	if err != nil {
		t.Fatal(err)
	}
	id, err := crypto.OpenKeyFile(kf, string(pass))
	if err != nil {
		t.Fatalf("the key notice's passphrase does not open key.age: %v", err)
	}
	rs, err := db.QueryContext(ctx, `SELECT name, content_type, object_key, size, (SELECT COUNT(*) FROM files g WHERE g.transfer_id = f.transfer_id)
		FROM files f WHERE transfer_id = ?`, transferID)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string][]byte{}
	for rs.Next() {
		var name, ctype, key string
		var size, files int64
		if err := rs.Scan(&name, &ctype, &key, &size, &files); err != nil {
			t.Fatal(err)
		}
		rc, _, err := fz.g.Store.Get(ctx, key)
		if err != nil {
			t.Fatalf("sealed object %s missing: %v", key, err)
		}
		var buf bytes.Buffer
		_, err = crypto.DecryptFile(&buf, rc, id)
		rc.Close()
		plain := buf.Bytes()
		if err != nil {
			t.Fatalf("sealed object %s does not decrypt: %v", key, err)
		}
		if int64(len(plain)) != size {
			t.Fatalf("sealed object %s: %d bytes, recorded %d", key, len(plain), size)
		}
		if files == 1 && name == "message.eml" && ctype == "message/rfc822" {
			// A message sealed whole: the recipient's copy keeps its header fields by
			// design (README, "A message sealed whole keeps its header fields"), so
			// only its body is secret.
			plain = bodyOf(plain)
		}
		out[fmt.Sprintf("%s (%s)", name, key)] = plain
	}
	return out
}

// bodyOf returns what follows the header section of a message: after the
// first empty line (CRLF or bare LF), or nothing when there is none.
func bodyOf(msg []byte) []byte {
	for i := 0; i < len(msg); i++ {
		if msg[i] != '\n' {
			continue
		}
		rest := msg[i+1:]
		switch {
		case bytes.HasPrefix(rest, []byte("\r\n")):
			return rest[2:]
		case bytes.HasPrefix(rest, []byte("\n")):
			return rest[1:]
		}
	}
	return nil
}

// leakedRun returns a description of a 32-byte run of secret found in out
// (raw, or its base64 at any phase, line breaks ignored) that cannot come
// from a kept part of the input. The fuzzer may put a sealed file's bytes in
// a kept part too, so the oracle works from counts in the input:
//
//   - a raw run absent from the input was decoded from the sealed part: leak;
//   - a raw run present once is the sealed part itself (7bit) — unless the
//     file came base64-encoded, when that once is a kept part: leak if not;
//   - a base64 run present at most once is the sealed part itself: leak.
//
// More occurrences are ambiguous and skipped; the MIME walker's own fuzz
// target (mimeseal.FuzzRewrite) checks leaks with exact part spans.
func leakedRun(out, secret, input []byte) string {
	const n = 32
	if len(secret) < n {
		return ""
	}
	flatten := func(b []byte) []byte {
		return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r"), nil), []byte("\n"), nil)
	}
	windows := make(map[string]struct{}, 2*len(out))
	for _, o := range [][]byte{out, flatten(out)} {
		for i := 0; i+n <= len(o); i++ {
			windows[string(o[i:i+n])] = struct{}{}
		}
	}
	flatIn := flatten(input)
	var encoded [][]byte
	for phase := 0; phase < 3 && phase < len(secret); phase++ {
		e := []byte(base64.StdEncoding.EncodeToString(secret[phase:]))
		encoded = append(encoded, e[:max(0, len(e)-4)]) // the last group depends on what follows
	}
	cameEncoded := false
	for _, e := range encoded {
		if len(e) >= n && bytes.Contains(flatIn, e[:n]) {
			cameEncoded = true
		}
	}
	for i := 0; i+n <= len(secret); i++ {
		run := secret[i : i+n]
		if _, ok := windows[string(run)]; !ok {
			continue
		}
		switch c := bytes.Count(input, run); {
		case c == 0, c == 1 && !cameEncoded:
			return fmt.Sprintf("raw run %q at %d (in the input %d times)", run, i, c)
		}
	}
	for f, e := range encoded {
		for i := 0; i+n <= len(e); i++ {
			run := e[i : i+n]
			if _, ok := windows[string(run)]; !ok {
				continue
			}
			if c := bytes.Count(flatIn, run); c <= 1 {
				return fmt.Sprintf("base64 run %q (phase %d) at %d (in the input %d times)", run, f, i, c)
			}
		}
	}
	return ""
}

// TestFuzzSessionOracle checks that the fuzz target's checks bite: the
// oracle finds a sealed file in a copy, raw or base64, and a well-formed
// seed makes the target decrypt and check a sealed copy.
func TestFuzzSessionOracle(t *testing.T) {
	secret := []byte("0123456789abcdefghijklmnopqrstuvwxyz-sealed-file-content-0123456789")
	b64 := base64.StdEncoding.EncodeToString(secret)
	input := []byte("Content-Transfer-Encoding: base64\r\n\r\n" + b64[:40] + "\r\n" + b64[40:] + "\r\n")
	notice := []byte("Content-Type: text/plain\r\n\r\nsealed: see link\r\n")
	if l := leakedRun(notice, secret, input); l != "" {
		t.Fatalf("false leak: %s", l)
	}
	for _, out := range [][]byte{
		append(append([]byte(nil), notice...), secret[5:45]...),
		append(append([]byte(nil), notice...), b64[8:60]...),
		append(append([]byte(nil), notice...), b64[8:30]+"\r\n"+b64[30:60]...),
	} {
		if leakedRun(out, secret, input) == "" {
			t.Fatalf("leak not found in %q", out)
		}
	}
	// The same bytes in a kept text part of the input are not a leak.
	kept := append([]byte("Content-Type: text/plain\r\n\r\n"+string(secret)+"\r\n"), input...)
	if l := leakedRun(append(append([]byte(nil), notice...), secret...), secret, kept); l != "" {
		t.Fatalf("kept text counted as a leak: %s", l)
	}

	fz := newFuzzGateway(t)
	seed := sessionSeeds()[0]
	fz.run(t, seed.cmds, seed.data)
	if fz.checked != 1 {
		t.Fatalf("%d sealed copies checked, want 1", fz.checked)
	}
}
