package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	netsmtp "net/smtp"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/storage/fs"
)

// FuzzDownload fuzzes the link token in the path and the passphrase and
// file form values against the portal's handler, with a real transfer
// sealed by the gateway into an in-process database and store. The token
// and passphrase are either the real ones, mangled, or raw fuzz (the
// modes). Invariants, whatever the input:
//
//   - no panic;
//   - plaintext file bytes are served only to a POST …/download with the
//     right token, a passphrase that normalizes to the right one, an
//     existing file, an unlocked link and a valid CSRF pair — and then
//     exactly the file;
//   - failed_attempts grows by one exactly when such a request carries a
//     wrong passphrase, and the link locks at the limit;
//   - GET never changes failed_attempts.
func FuzzDownload(f *testing.F) {
	f.Add(uint8(0), "", uint8(0), "", "0", uint8(0), uint8(0), true)
	f.Add(uint8(0), "", uint8(0), "lower-nohyphen", "1", uint8(3), uint8(0), true)
	f.Add(uint8(0), "", uint8(1), "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA", "0", uint8(9), uint8(0), true)
	f.Add(uint8(0), "", uint8(1), "ＡＢＣＤＥ－ＦＧＨＪＫ", "0", uint8(0), uint8(0), true)
	f.Add(uint8(0), "", uint8(2), "X", "0", uint8(0), uint8(0), true)
	f.Add(uint8(0), "", uint8(0), "", "+1", uint8(0), uint8(0), true)
	f.Add(uint8(0), "", uint8(0), "", "0", uint8(10), uint8(0), true)
	f.Add(uint8(0), "", uint8(0), "", "0", uint8(0), uint8(0), false)
	f.Add(uint8(1), "Z", uint8(0), "", "0", uint8(0), uint8(0), true)
	f.Add(uint8(2), "../../etc/passwd", uint8(0), "", "0", uint8(0), uint8(0), true)
	f.Add(uint8(3), "A", uint8(0), "", "0", uint8(0), uint8(1), true)
	f.Add(uint8(0), "", uint8(3), "0", "0", uint8(0), uint8(2), true)
	f.Add(uint8(0), "", uint8(0), "", "0", uint8(0), uint8(3), true)
	px := newPortalFixture(f)
	f.Fuzz(func(t *testing.T, tokenMode uint8, tokenFuzz string, passMode uint8, passFuzz string, file string, preFailed uint8, route uint8, csrf bool) {
		px.run(t, tokenMode, tokenFuzz, passMode, passFuzz, file, preFailed, route, csrf)
	})
}

type portalFixture struct {
	db      *database.DB
	h       http.Handler
	token   string
	pass    string // canonical
	rcptID  int64
	files   [][]byte
	maxFail int
	metrics *metrics.Metrics // what the portal counted
	deps    Deps             // the portal's (tests make another from them)
}

// captureTransport accepts everything (deliveries are not needed: the
// token and passphrase are read from the queue).
type captureTransport struct{}

func (captureTransport) Send(ctx context.Context, env gateway.Envelope, body func(io.Writer) error) ([]error, error) {
	rcpts := env.Rcpts
	if err := body(io.Discard); err != nil {
		return nil, err
	}
	return make([]error, len(rcpts)), nil
}

// newPortalFixture seals one transfer with files of sizes (5000 and 40000
// bytes when none given) to x@client.example.
func newPortalFixture(tb testing.TB, sizes ...int) *portalFixture {
	tb.Helper()
	dir := tb.TempDir()
	c, err := config.Load("", func(k string) string {
		return map[string]string{"SEALGATE_DATA_DIR": dir, "SEALGATE_INTERNAL_DOMAINS": "corp.example", "SEALGATE_PUBLIC_URL": "http://portal.test"}[k]
	})
	if err != nil {
		tb.Fatal(err)
	}
	// Rate limits and download limits are not what this target is about.
	c.Transfer.PerIPAttemptsPerMin = 1 << 30
	c.Transfer.PerLinkAttemptsPerMin = 1 << 30
	c.Transfer.DownloadLimit = 0
	ctx := context.Background()
	db, err := database.Open(ctx, filepath.Join(dir, "db"), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	st, err := fs.Open(filepath.Join(dir, "objects"))
	if err != nil {
		tb.Fatal(err)
	}
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
	log := slog.New(slog.DiscardHandler)
	start := time.Now()
	gw, err := gateway.New(ctx, gateway.Deps{Config: &c, DB: db, Store: st, Keys: keys, Ledger: led, Log: log,
		Rand: rand.Reader, Transport: captureTransport{}})
	if err != nil {
		tb.Fatal(err)
	}
	srv := gw.NewRelayServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	px := &portalFixture{db: db, maxFail: c.Transfer.MaxPassphraseFailure, metrics: metrics.New()}
	if len(sizes) == 0 {
		sizes = []int{5000, 40000}
	}
	for _, n := range sizes {
		px.files = append(px.files, randomBytes(tb, n))
	}
	var msg bytes.Buffer
	msg.WriteString("From: a@corp.example\r\nTo: x@client.example\r\nSubject: fuzz\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfiles\r\n")
	for i, b := range px.files {
		fmt.Fprintf(&msg, "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"f%d.bin\"\r\n\r\n%s\r\n", i, wrap76(base64.StdEncoding.EncodeToString(b)))
	}
	msg.WriteString("--b--\r\n")
	if err := sendMail(ln.Addr().String(), msg.Bytes()); err != nil {
		tb.Fatal(err)
	}
	// The link token and the passphrase, from the queue (as the notices
	// would carry them).
	var tokenW, passW []byte
	if err := db.Read().QueryRow(`SELECT o.secret, k.secret, o.recipient_id FROM outbound o JOIN outbound k ON k.recipient_id = o.recipient_id AND k.kind = 'key' WHERE o.kind = 'sealed'`).
		Scan(&tokenW, &passW, &px.rcptID); err != nil {
		tb.Fatal(err)
	}
	tok, err := keys.Unwrap(tokenW)
	if err != nil {
		tb.Fatal(err)
	}
	pass, err := keys.Unwrap(passW)
	if err != nil {
		tb.Fatal(err)
	}
	px.token, px.pass = string(tok), string(pass)
	// The clock stands still a minute after sealing: the link never expires
	// during the run, and the test does not depend on the wall clock.
	now := start.Add(time.Minute)
	px.deps = Deps{Config: &c, DB: db, Store: st, Keys: keys, Ledger: led, Log: log, Now: func() time.Time { return now }, Metrics: px.metrics}
	web, err := New(px.deps)
	if err != nil {
		tb.Fatal(err)
	}
	px.h = web.Handler()
	return px
}

func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}

func sendMail(addr string, msg []byte) error {
	c, err := netsmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail("a@corp.example"); err != nil {
		return fmt.Errorf("failed to send MAIL: %w", err)
	}
	if err := c.Rcpt("x@client.example"); err != nil {
		return fmt.Errorf("failed to send RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("failed to send DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("failed to send the message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("failed to end the message: %w", err)
	}
	return c.Quit()
}

func randomBytes(tb testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

// sloppy writes the passphrase as a person might type it: the fuzz bytes
// choose lower case, dropped hyphens, spaces, full-width characters.
func sloppy(pass, how string) string {
	out := pass
	for _, c := range []byte(how) {
		switch c % 5 {
		case 0:
			out = strings.ToLower(out)
		case 1:
			out = strings.ReplaceAll(out, "-", "")
		case 2:
			out = strings.ReplaceAll(out, "-", " ")
		case 3:
			out = strings.Map(func(r rune) rune {
				if r >= '0' && r <= 'Z' {
					return r - '!' + '\uff01'
				}
				return r
			}, out)
		case 4:
			out = " " + out + "\t"
		}
	}
	return out
}

func (px *portalFixture) setFailures(t *testing.T, n int) {
	err := px.db.Write(context.Background(), func(tx *database.Tx) error {
		var locked any
		if n >= px.maxFail {
			locked = time.Now().UnixMilli()
		}
		_, err := tx.Exec(`UPDATE recipients SET failed_attempts = ?, locked_at = ? WHERE id = ?`, n, locked, px.rcptID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (px *portalFixture) failures(t *testing.T) (int, bool) {
	var n int
	var locked sql.NullInt64
	if err := px.db.Read().QueryRow(`SELECT failed_attempts, locked_at FROM recipients WHERE id = ?`, px.rcptID).Scan(&n, &locked); err != nil {
		t.Fatal(err)
	}
	return n, locked.Valid
}

func (px *portalFixture) run(t *testing.T, tokenMode uint8, tokenFuzz string, passMode uint8, passFuzz, file string, preFailed, route uint8, csrf bool) {
	token := px.token
	switch tokenMode % 4 {
	case 1:
		token += tokenFuzz
	case 2:
		token = tokenFuzz
	case 3:
		if tokenFuzz != "" {
			i := int(tokenFuzz[0]) % len(token)
			token = token[:i] + tokenFuzz + token[i+1:]
		}
	}
	pass := sloppy(px.pass, passFuzz)
	switch passMode % 4 {
	case 1:
		pass = passFuzz
	case 2:
		pass = px.pass + passFuzz
	case 3:
		if passFuzz != "" {
			i := int(passFuzz[0]) % len(px.pass)
			pass = px.pass[:i] + passFuzz + px.pass[i+1:]
		}
	}
	before := int(preFailed) % (px.maxFail + 2)
	px.setFailures(t, before)

	var req *http.Request
	path := "/t/" + url.PathEscape(token)
	form := url.Values{"passphrase": {pass}, "file": {file}}
	csrfToken := hex.EncodeToString(randomBytes(t, 20))
	if csrf {
		form.Set("csrf", csrfToken)
	}
	switch route % 4 {
	case 0:
		req = httptest.NewRequest(http.MethodPost, "http://portal.test"+path+"/download", strings.NewReader(form.Encode()))
	case 1:
		req = httptest.NewRequest(http.MethodGet, "http://portal.test"+path, nil)
	case 2:
		form.Set("what", map[bool]string{true: "key", false: "file"}[len(passFuzz)%2 == 0])
		req = httptest.NewRequest(http.MethodPost, "http://portal.test"+path+"/age", strings.NewReader(form.Encode()))
	case 3:
		req = httptest.NewRequest(http.MethodGet, "http://portal.test"+path+"/download?"+form.Encode(), nil)
	}
	if req.Method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.AddCookie(&http.Cookie{Name: "sg_csrf", Value: csrfToken})
	rec := httptest.NewRecorder()
	func() {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					t.Fatalf("handler aborted a response (integrity failure?)")
				}
				panic(p)
			}
		}()
		px.h.ServeHTTP(rec, req)
	}()
	body := rec.Body.Bytes()
	after, locked := px.failures(t)

	tokenOK := token == px.token
	idx, err := strconv.Atoi(file)
	fileOK := err == nil && idx >= 0 && idx < len(px.files)
	norm, normOK := crypto.NormalizePassphrase(pass)
	passOK := normOK && norm == px.pass
	isLocked := before >= px.maxFail
	download := route%4 == 0
	reaches := download && tokenOK && csrf && !isLocked && fileOK // the passphrase is checked

	// Plaintext only to the one request that may have it, and then whole.
	for i, f := range px.files {
		if hasRun(body, f) {
			if !(reaches && passOK && idx == i) {
				t.Fatalf("file %d served (status %d) to route %d token ok %v csrf %v locked %v file %q pass %q ok %v",
					i, rec.Code, route%4, tokenOK, csrf, isLocked, file, pass, passOK)
			}
			if !bytes.Equal(body, f) {
				t.Fatalf("file %d served with %d bytes, want %d", i, len(body), len(f))
			}
		}
	}
	want := before
	switch {
	case reaches && passOK:
		if rec.Code != http.StatusOK || !bytes.Equal(body, px.files[idx]) {
			t.Fatalf("right passphrase %q (file %d): status %d, %d bytes", pass, idx, rec.Code, len(body))
		}
	case reaches:
		want = before + 1
		wantCode := http.StatusUnauthorized
		if want >= px.maxFail {
			wantCode = http.StatusForbidden
		}
		if rec.Code != wantCode {
			t.Fatalf("wrong passphrase %q: status %d, want %d", pass, rec.Code, wantCode)
		}
		if want >= px.maxFail && !locked {
			t.Fatalf("%d failures and the link is not locked", want)
		}
	default:
		if rec.Code == http.StatusOK && download {
			t.Fatalf("POST download answered 200 without reaching the passphrase check")
		}
	}
	if after != want {
		t.Fatalf("failed_attempts %d → %d, want %d (route %d, token ok %v, csrf %v, file %q, pass %q)", before, after, want, route%4, tokenOK, csrf, file, pass)
	}
}

// hasRun reports whether any 32-byte run of secret appears in out.
func hasRun(out, secret []byte) bool {
	const n = 32
	if len(out) < n {
		return false
	}
	idx := make(map[string]struct{}, len(out))
	for i := 0; i+n <= len(out); i++ {
		idx[string(out[i:i+n])] = struct{}{}
	}
	for i := 0; i+n <= len(secret); i++ {
		if _, ok := idx[string(secret[i:i+n])]; ok {
			return true
		}
	}
	return false
}
