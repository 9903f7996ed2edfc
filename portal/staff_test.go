package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	netsmtp "net/smtp"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"filippo.io/age"
	"filippo.io/age/armor"
	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/hold"
	"github.com/sealgate/sealgate/internal/clock"
	"github.com/sealgate/sealgate/internal/ratelimit"
	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/pubkey"
	"github.com/sealgate/sealgate/schedule"
	"github.com/sealgate/sealgate/storage/fs"
)

// staffFixture is a gateway and a portal in one process, with accounts of
// every role, a contract that requires approval, and a recording
// transport.
type staffFixture struct {
	t      *testing.T
	db     *database.DB
	gw     *gateway.Gateway
	srv    *httptest.Server
	web    *Server
	smtp   string
	accts  *account.Service
	sent   *recorder
	secret map[string]string // TOTP secrets by account
	cfg    *config.Config
	clock  *offsetClock // the portal's and the accounts' clock
	deps   Deps         // the portal's (tests make another from them)
	// usedStep is the last TOTP step each account signed in with.
	usedStep map[string]int64
}

// offsetClock is the wall clock moved by an offset that tests advance (no
// sleeping across session timeouts or TOTP windows).
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *offsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// recorder is a Transport that keeps what it delivers.
type recorder struct {
	mu   sync.Mutex
	msgs []recorded
}

type recorded struct {
	to   []string
	data []byte
}

func (r *recorder) Send(ctx context.Context, env gateway.Envelope, body func(io.Writer) error) ([]error, error) {
	rcpts := env.Rcpts
	var b bytes.Buffer
	if err := body(&b); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, recorded{to: rcpts, data: b.Bytes()})
	r.mu.Unlock()
	return make([]error, len(rcpts)), nil
}

func (r *recorder) to(addr string) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, m := range r.msgs {
		for _, t := range m.to {
			if t == addr {
				out = append(out, m)
			}
		}
	}
	return out
}

const testPassword = "correct horse battery staple"

func newStaffFixture(t *testing.T, env map[string]string) *staffFixture {
	t.Helper()
	return newStaffFixtureOn(t, env, nil)
}

// newStaffFixtureOn is newStaffFixture with the gateway and its background
// jobs on clk (nil: the system clock): held messages are released when
// the test advances it past their time.
func newStaffFixtureOn(t *testing.T, env map[string]string, clk *clock.Fake) *staffFixture {
	t.Helper()
	dir := t.TempDir()
	vars := map[string]string{"SEALGATE_DATA_DIR": dir, "SEALGATE_INTERNAL_DOMAINS": "corp.example", "SEALGATE_PUBLIC_URL": "http://portal.test",
		"SEALGATE_KEY_NOTICE_DELAY": "0s"}
	for k, v := range env {
		vars[k] = v
	}
	c, err := config.Load("", func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	db, err := database.Open(ctx, testpg.Target(t, filepath.Join(dir, "db")), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := fs.Open(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	mk, _ := crypto.GenerateMasterKey()
	keys, _ := crypto.NewKeyring(mk)
	led, err := audit.New(audit.Options{Origin: "test/ledger"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	rec := &recorder{}
	gd := gateway.Deps{Config: &c, DB: db, Store: st, Keys: keys, Ledger: led, Log: log, Rand: rand.Reader, Transport: rec}
	sd := schedule.Deps{}
	if clk != nil {
		gd.Now, sd.Clock = clk.Now, clk
	}
	gw, err := gateway.New(ctx, gd)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	sd.Delivery, sd.Discards, sd.Holds = gw, gw, gw.Holds
	jobs := schedule.New(sd)
	go func() { jobs.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	relay := gw.NewRelayServer()
	go relay.Serve(ln)
	t.Cleanup(func() { relay.Close() })

	clock := &offsetClock{}
	accts := &account.Service{DB: db, Keys: keys, Ledger: led, Now: clock.Now, Rand: rand.Reader}
	f := &staffFixture{t: t, db: db, gw: gw, smtp: ln.Addr().String(), accts: accts, sent: rec, secret: map[string]string{}, cfg: &c, clock: clock, usedStep: map[string]int64{}}
	for _, a := range []struct {
		name, email string
		grants      []account.Grant
	}{
		{"alice", "alice@corp.example", []account.Grant{{Role: account.RoleSender}}},
		{"bob", "bob@corp.example", []account.Grant{{Role: account.RoleSender}}},
		{"mgr", "mgr@corp.example", []account.Grant{{Role: account.RoleManager, Contract: "APP"}}},
		{"boss", "boss@corp.example", []account.Grant{{Role: account.RoleManager}}},
		{"root", "root@corp.example", []account.Grant{{Role: account.RoleAdmin}}},
		{"aud", "aud@corp.example", []account.Grant{{Role: account.RoleAuditor}}},
	} {
		if _, err := accts.Create(ctx, "test", account.NewAccount{Name: a.name, Email: a.email, Password: testPassword, Grants: a.grants}); err != nil {
			t.Fatal(err)
		}
		if a.name == "mgr" || a.name == "boss" || a.name == "root" || a.name == "aud" {
			u, err := accts.EnrollTOTP(ctx, "test", a.name, "sealgate")
			if err != nil {
				t.Fatal(err)
			}
			pu, _ := url.Parse(u)
			f.secret[a.name] = pu.Query().Get("secret")
		}
	}
	if _, err := contract.Create(ctx, db, keys, led, contract.Spec{Code: "APP", Name: "Approval contract", Manager: "mgr", ApprovalRequired: true,
		AnyRecipient: true, DownloadLimit: contract.DefaultLimit}, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	_, signer, err := newTestSigner()
	if err != nil {
		t.Fatal(err)
	}
	pk := &pubkey.Service{DB: db, Ledger: led, Now: time.Now, Rand: rand.Reader, IsInternal: c.IsInternal, Notices: gw}
	f.deps = Deps{Config: &c, DB: db, Store: st, Keys: keys, Ledger: led, Log: log, Accounts: accts, Now: clock.Now,
		Notices: gw, Holds: gw.Holds, PubKeys: pk, Signer: signer}
	if db.Dialect() == database.Postgres {
		// As serve does: the limits counted in the database.
		f.deps.Limits = (&ratelimit.Store{DB: db, Now: clock.Now, Key: func() ([]byte, error) { return keys.Current().CounterKey() }}).Maker()
	}
	web, err := New(f.deps)
	if err != nil {
		t.Fatal(err)
	}
	f.web = web
	f.srv = httptest.NewServer(web.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

func newTestSigner() (string, note.Signer, error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "test")
	if err != nil {
		return "", nil, err
	}
	s, err := note.NewSigner(skey)
	return vkey, s, err
}

// send relays a message with one attachment from alice.
func (f *staffFixture) send(subject string, to ...string) {
	f.t.Helper()
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "From: alice@corp.example\r\nTo: %s\r\nSubject: %s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n", strings.Join(to, ", "), subject)
	fmt.Fprintf(&msg, "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"Report 2026.pdf\"\r\n\r\n%s\r\n--b--\r\n", base64.StdEncoding.EncodeToString([]byte("secret contents")))
	c, err := netsmtp.Dial(f.smtp)
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("alice@corp.example"); err != nil {
		f.t.Fatal(err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			f.t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		f.t.Fatal(err)
	}
	w.Write(msg.Bytes())
	if err := w.Close(); err != nil {
		f.t.Fatal(err)
	}
}

// browser is one signed-in person.
type browser struct {
	f *staffFixture
	c *http.Client
}

var csrfFieldRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (f *staffFixture) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{f: f, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(path string) (int, string) {
	b.f.t.Helper()
	resp, err := b.c.Get(b.f.srv.URL + path)
	if err != nil {
		b.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// post submits a form from page (for its CSRF token) to action.
func (b *browser) post(page, action string, v url.Values) (*http.Response, string) {
	b.f.t.Helper()
	_, body := b.get(page)
	m := csrfFieldRE.FindStringSubmatch(body)
	if m == nil {
		b.f.t.Fatalf("no CSRF token on %s", page)
	}
	v.Set("csrf", m[1])
	resp, err := b.c.PostForm(b.f.srv.URL+action, v)
	if err != nil {
		b.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

func (f *staffFixture) login(name string) *browser {
	f.t.Helper()
	b := f.browser()
	resp, _ := b.post("/login", "/login", url.Values{"name": {name}, "password": {testPassword}, "next": {"/home"}})
	if resp.StatusCode != http.StatusSeeOther {
		f.t.Fatalf("login %s: %d", name, resp.StatusCode)
	}
	if secret := f.secret[name]; secret != "" {
		// Each code works once: a second sign-in of the same account
		// within one 30-second step waits (on the test clock) for the next.
		step := f.clock.Now().Unix() / 30
		if step <= f.usedStep[name] {
			f.clock.Advance(time.Duration(f.usedStep[name]+1-step) * 30 * time.Second)
			step = f.usedStep[name] + 1
		}
		f.usedStep[name] = step
		code, _ := account.TOTPCode(secret, time.Unix(step*30, 0))
		resp, _ := b.post("/login/totp", "/login/totp", url.Values{"code": {code}, "next": {"/home"}})
		if resp.StatusCode != http.StatusSeeOther {
			f.t.Fatalf("TOTP %s: %d", name, resp.StatusCode)
		}
	}
	return b
}

func (f *staffFixture) waitFor(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitIdle waits until nothing is left to deliver: no outbound row is
// queued, waiting behind another or held. What has not been sent by then
// never will be (a cancelled or failed row is never attempted again).
func (f *staffFixture) waitIdle() {
	f.t.Helper()
	f.waitFor("the outbound queue to empty", func() bool {
		return f.one(`SELECT COUNT(*) FROM outbound WHERE status IN ('queued', 'waiting', 'held')`) == "0"
	})
}

func (f *staffFixture) one(query string, args ...any) string {
	f.t.Helper()
	var s string
	if err := f.db.Read().QueryRow(query, args...).Scan(&s); err != nil {
		f.t.Fatalf("%s: %v", query, err)
	}
	return s
}

// rawKey matches a catalog key that was not translated (e.g. "f.subject").
var rawKey = regexp.MustCompile(`>(?:[a-z]+\.)+[a-z]+<`)

// TestEveryPageRenders signs in with every role and opens every page in
// both languages: each renders, with no untranslated key.
func TestEveryPageRenders(t *testing.T) {
	f := newStaffFixture(t, nil)
	f.send("normal mail", "carol@client.example")
	f.send("[APP] needs approval", "dave@partner.example")
	f.waitFor("the held message", func() bool {
		var n int
		f.db.Read().QueryRow(`SELECT COUNT(*) FROM holds`).Scan(&n)
		return n == 1
	})
	tid := f.one(`SELECT t.id FROM transfers t JOIN messages m ON m.id = t.message_id WHERE m.subject = 'normal mail'`)
	held := f.one(`SELECT message_id FROM holds`)
	cert := ""
	pages := map[string][]string{
		"alice": {"/home", "/transfers", "/transfers/" + tid, "/transfers/" + tid + "/revoke", "/transfers/" + tid + "/revoke?recipient=carol@client.example",
			"/transfers/" + tid + "/extend", "/held/" + held + "/cancel", "/account/app-passwords"},
		"mgr": {"/home", "/manage/approvals", "/manage/approvals/" + held, "/manage/contracts", "/manage/contracts/APP", "/manage/contracts/APP/end",
			"/manage/ledger", "/manage/ledger?contract=APP&type=message.held", "/manage/review", "/manage/transfers", "/manage/transfers?contract=APP"},
		"boss": {"/manage/transfers/" + tid, "/manage/ledger?recipient=carol@client.example", "/manage/contracts/DEFAULT", "/manage/transfers?recipient=carol@client.example"},
		"root": {"/admin/accounts", "/manage/review", "/account/app-passwords"},
		"aud":  {"/manage/ledger?transfer=" + tid, "/manage/transfers/" + tid, "/account/app-passwords"},
	}
	_ = cert
	for name, paths := range pages {
		b := f.login(name)
		for _, lang := range []string{"ja", "en"} {
			for _, p := range paths {
				sep := "?"
				if strings.Contains(p, "?") {
					sep = "&"
				}
				code, body := b.get(p + sep + "lang=" + lang)
				if code != http.StatusOK {
					t.Errorf("%s %s (%s): %d\n%s", name, p, lang, code, body)
					continue
				}
				if m := rawKey.FindString(body); m != "" {
					t.Errorf("%s %s (%s): untranslated %s", name, p, lang, m)
				}
			}
		}
	}
	// Public pages.
	b := f.browser()
	for _, p := range []string{"/keys", "/login"} {
		if code, body := b.get(p); code != http.StatusOK || rawKey.MatchString(body) {
			t.Errorf("%s: %d %s", p, code, rawKey.FindString(body))
		}
	}
	// Roles are enforced.
	alice := f.login("alice")
	for _, p := range []string{"/manage/approvals", "/manage/ledger", "/admin/accounts", "/manage/contracts/APP"} {
		if code, _ := alice.get(p); code != http.StatusForbidden {
			t.Errorf("alice %s: %d, want 403", p, code)
		}
	}
	// A manager of APP does not see DEFAULT's contract or its transfers.
	mgr := f.login("mgr")
	if code, _ := mgr.get("/manage/contracts/DEFAULT"); code != http.StatusNotFound {
		t.Errorf("mgr sees DEFAULT: %d", code)
	}
	if code, _ := mgr.get("/manage/transfers/" + tid); code != http.StatusNotFound {
		t.Errorf("mgr sees a DEFAULT transfer: %d", code)
	}
	if code, _ := mgr.get("/manage/certificates/APP-20260101T000000Z"); code != http.StatusNotFound {
		t.Errorf("mgr gets a certificate that does not exist: %d", code)
	}
	// The contracts page counts the held message awaiting approval.
	if code, body := mgr.get("/manage/contracts"); code != http.StatusOK || !strings.Contains(body, `<a href="/manage/approvals">1</a>`) {
		t.Errorf("/manage/contracts does not count the message awaiting approval: %d\n%s", code, body)
	}
	// bob cannot see or revoke alice's transfer.
	bob := f.login("bob")
	if code, _ := bob.get("/transfers/" + tid); code != http.StatusNotFound {
		t.Errorf("bob sees alice's transfer: %d", code)
	}
}

// TestCatalogComplete: every key the templates and handlers use has both
// a Japanese and an English text.
func TestCatalogComplete(t *testing.T) {
	keyRE := regexp.MustCompile(`\.T "([a-z0-9._]+)"`)
	var keys []string
	iofs.WalkDir(templateFS, "templates", func(path string, d iofs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := templateFS.ReadFile(path)
		for _, m := range keyRE.FindAllStringSubmatch(string(b), -1) {
			keys = append(keys, m[1])
		}
		return nil
	})
	for _, p := range []string{"st.active", "st.revoked", "st.expired", "st.destroyed", "cst.active", "cst.ending", "cst.ended",
		"ast.active", "ast.disabled", "hold.held", "hold.released", "hold.refused", "hold.expired", "hold.cancelled",
		"approval.pending", "approval.granted", "approval.refused", "approval.expired"} {
		keys = append(keys, p)
	}
	for k := range doneKeys {
		keys = append(keys, "done."+k)
	}
	for _, k := range browserTexts {
		keys = append(keys, "bd.msg."+k)
	}
	// The messages handlers show by key.
	msgRE := regexp.MustCompile(`"(msg\.[a-z]+)"`)
	goFiles, _ := filepath.Glob("*.go")
	for _, name := range goFiles {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgRE.FindAllStringSubmatch(string(b), -1) {
			keys = append(keys, m[1])
		}
	}
	for _, k := range keys {
		t1, ok1 := texts[k]
		t2, ok2 := staffTexts[k]
		if !ok1 && !ok2 {
			t.Errorf("no text for %q", k)
			continue
		}
		tt := t1
		if ok2 {
			tt = t2
		}
		if tt[0] == "" || tt[1] == "" {
			t.Errorf("%q lacks a language", k)
		}
	}
	for _, typ := range audit.AllTypes() {
		if langEN.Type(typ) == typ || langJA.Type(typ) == typ {
			t.Errorf("no label for event type %s", typ)
		}
	}
}

// TestStaffFlows: a sender revokes one recipient and extends; a manager
// refuses a held message (nothing leaves; the transfer is destroyed) and
// approves another (it leaves); POSTs without the CSRF token change
// nothing; the admin disables an account, which can then no longer sign in.
func TestStaffFlows(t *testing.T) {
	f := newStaffFixture(t, nil)
	f.send("two recipients", "carol@client.example", "dave@partner.example")
	f.waitFor("delivery", func() bool { return len(f.sent.to("carol@client.example")) >= 2 })
	tid := f.one(`SELECT id FROM transfers`)
	alice := f.login("alice")

	// Without the CSRF token: refused, nothing revoked.
	resp, err := alice.c.PostForm(f.srv.URL+"/transfers/"+tid+"/revoke", url.Values{"recipient": {"carol@client.example"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || f.one(`SELECT status FROM recipients WHERE address = 'carol@client.example'`) != "active" {
		t.Fatalf("CSRF-less revoke: %d", resp.StatusCode)
	}
	// bob may not revoke it even with a token.
	bob := f.login("bob")
	if resp, _ := bob.post("/transfers", "/transfers/"+tid+"/revoke", url.Values{}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("bob revokes: %d", resp.StatusCode)
	}
	resp, _ = alice.post("/transfers/"+tid+"/revoke?recipient=carol@client.example", "/transfers/"+tid+"/revoke",
		url.Values{"recipient": {"carol@client.example"}, "reason": {"wrong person"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if got := f.one(`SELECT status FROM recipients WHERE address = 'carol@client.example'`); got != "revoked" {
		t.Fatalf("carol is %s", got)
	}
	if got := f.one(`SELECT status FROM transfers`); got != "active" {
		t.Fatalf("transfer is %s after revoking one of two", got)
	}
	// Extend beyond the maximum: refused; within: done.
	tooLate := time.Now().Add(200 * 24 * time.Hour).In(time.FixedZone("JST", 9*3600)).Format("2006-01-02T15:04")
	if resp, body := alice.post("/transfers/"+tid+"/extend", "/transfers/"+tid+"/extend", url.Values{"until": {tooLate}}); resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(body, `aria-invalid="true"`) {
		t.Fatalf("extend too late: %d", resp.StatusCode)
	}
	ok := time.Now().Add(20 * 24 * time.Hour).In(time.FixedZone("JST", 9*3600)).Format("2006-01-02T15:04")
	if resp, _ := alice.post("/transfers/"+tid+"/extend", "/transfers/"+tid+"/extend", url.Values{"until": {ok}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("extend: %d", resp.StatusCode)
	}
	if _, body := alice.get("/transfers/" + tid + "?lang=en"); !strings.Contains(body, "The expiry was extended") && !strings.Contains(body, "dave@partner.example") {
		t.Fatal("transfer page")
	}

	// Approvals: refuse one, approve another.
	before := len(f.sent.to("erin@client.example"))
	f.send("[APP] refuse me", "erin@client.example")
	f.send("[APP] approve me", "erin@client.example")
	f.waitFor("two holds", func() bool {
		var n int
		f.db.Read().QueryRow(`SELECT COUNT(*) FROM holds`).Scan(&n)
		return n == 2
	})
	refuse := f.one(`SELECT h.message_id FROM holds h JOIN messages m ON m.id = h.message_id WHERE m.subject = '[APP] refuse me'`)
	approve := f.one(`SELECT h.message_id FROM holds h JOIN messages m ON m.id = h.message_id WHERE m.subject = '[APP] approve me'`)
	f.waitFor("the approval request", func() bool { return len(f.sent.to("mgr@corp.example")) >= 2 })
	mgr := f.login("mgr")
	if resp, body := mgr.post("/manage/approvals/"+refuse, "/manage/approvals/"+refuse, url.Values{"action": {"refuse"}}); resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(body, `aria-invalid="true"`) {
		t.Fatalf("refuse without a reason: %d", resp.StatusCode)
	}
	if resp, _ := mgr.post("/manage/approvals/"+refuse, "/manage/approvals/"+refuse, url.Values{"action": {"refuse"}, "reason": {"not for them"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("refuse: %d", resp.StatusCode)
	}
	if resp, _ := mgr.post("/manage/approvals/"+approve, "/manage/approvals/"+approve, url.Values{"action": {"approve"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	f.waitFor("the approved copy", func() bool { return len(f.sent.to("erin@client.example")) >= before+2 })
	// The refusal cancelled the refused message's copy and key notice;
	// once nothing is left to deliver, whatever would have reached erin
	// has.
	if got := f.one(`SELECT CASE WHEN COUNT(DISTINCT status) = 1 THEN MIN(status) ELSE 'mixed: ' || MIN(status) || ', ' || MAX(status) END FROM outbound WHERE message_id = ? AND kind IN ('sealed', 'key')`, refuse); got != "cancelled" {
		t.Fatalf("the refused message's copy and key notice are %q, want cancelled", got)
	}
	f.waitIdle()
	for _, m := range f.sent.to("erin@client.example") {
		if bytes.Contains(m.data, []byte("refuse me")) {
			t.Fatal("a refused message was delivered")
		}
	}
	if got := f.one(`SELECT t.status FROM transfers t WHERE t.message_id = ?`, refuse); got != "revoked" {
		t.Fatalf("refused transfer is %s", got)
	}
	f.waitFor("objects deleted", func() bool {
		var n int
		f.db.Read().QueryRow(`SELECT COUNT(*) FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE t.message_id = ? AND f.absent_at IS NULL`, refuse).Scan(&n)
		return n == 0
	})
	var decided []string
	for _, ev := range ledgerTypes(t, f.db) {
		if strings.HasPrefix(ev, "approval.") || ev == "message.released" {
			decided = append(decided, ev)
		}
	}
	if strings.Join(decided, " ") != "approval.requested approval.requested approval.refused approval.granted message.released" {
		t.Fatalf("approval events: %v", decided)
	}
	// The sender was told of both decisions.
	var refusedMail, approvedMail bool
	for _, m := range f.sent.to("alice@corp.example") {
		d := qpDecode(m.data)
		refusedMail = refusedMail || bytes.Contains(d, []byte("X-Sealgate-Notice: system")) && bytes.Contains(d, []byte("not for them"))
		approvedMail = approvedMail || bytes.Contains(d, []byte("approve me")) && bytes.Contains(d, []byte("mgr"))
	}
	if !refusedMail || !approvedMail {
		t.Fatalf("sender notices: refused=%v approved=%v", refusedMail, approvedMail)
	}

	// The admin disables bob: his session ends and he cannot sign in.
	root := f.login("root")
	if resp, _ := root.post("/admin/accounts", "/admin/accounts", url.Values{"action": {"disable"}, "name": {"bob"}, "reason": {"left the company"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("disable: %d", resp.StatusCode)
	}
	if code, _ := bob.get("/transfers"); code != http.StatusSeeOther {
		t.Fatalf("disabled bob's session still works: %d", code)
	}
	b := f.browser()
	if resp, _ := b.post("/login", "/login", url.Values{"name": {"bob"}, "password": {testPassword}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("disabled bob signs in: %d", resp.StatusCode)
	}
}

func ledgerTypes(t *testing.T, db *database.DB) []string {
	res, err := audit.Search(context.Background(), db.Read(), audit.Query{Oldest: true, Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range res {
		out = append(out, r.Event.Type)
	}
	return out
}

// TestRegisteredKey: a recipient registers an age key (GET of the link
// changes nothing, POST confirms); in the next transfer their key.age is
// encrypted to it and no passphrase exists; file.age is encrypted to the
// transfer identity only (the registered key alone does not open it), and
// key.age opened with the registered key does.
func TestRegisteredKey(t *testing.T) {
	f := newStaffFixture(t, nil)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	if resp, body := b.post("/keys", "/keys", url.Values{"address": {"Carol@Client.example"}, "public_key": {"age1notakey"}}); resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(body, `aria-invalid="true"`) {
		t.Fatalf("bad key: %d", resp.StatusCode)
	}
	if resp, _ := b.post("/keys", "/keys", url.Values{"address": {"bob@corp.example"}, "public_key": {id.Recipient().String()}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("internal address: %d", resp.StatusCode)
	}
	if resp, _ := b.post("/keys", "/keys", url.Values{"address": {"Carol@Client.example"}, "public_key": {id.Recipient().String()}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("request: %d", resp.StatusCode)
	}
	var link string
	f.waitFor("the confirmation mail", func() bool {
		for _, m := range f.sent.to("carol@client.example") {
			if mm := regexp.MustCompile(`http://portal\.test(/keys/verify/[A-Za-z0-9_=\-]+)`).FindSubmatch(qpDecode(m.data)); mm != nil {
				link = string(mm[1])
				return true
			}
		}
		return false
	})
	for i := 0; i < 2; i++ {
		if code, body := b.get(link); code != http.StatusOK || !strings.Contains(body, id.Recipient().String()) {
			t.Fatalf("verify page: %d", code)
		}
	}
	if got := f.one(`SELECT status FROM recipient_keys`); got != "pending" {
		t.Fatalf("GET changed the registration: %s", got)
	}
	if resp, _ := b.post(link, link, url.Values{}); resp.StatusCode != http.StatusOK {
		t.Fatalf("confirm: %d", resp.StatusCode)
	}
	if code, _ := b.get(link); code != http.StatusGone {
		t.Fatalf("used link: %d", code)
	}
	f.send("for carol's key", "carol@client.example")
	var notice []byte
	f.waitFor("the key notice", func() bool {
		for _, m := range f.sent.to("carol@client.example") {
			if bytes.Contains(m.data, []byte("X-Sealgate-Notice: key")) {
				notice = qpDecode(m.data)
				return true
			}
		}
		return false
	})
	if bytes.Contains(notice, []byte("Passphrase:")) || !bytes.Contains(notice, []byte(crypto.PublicKeyFingerprint(id.Recipient().String()))) {
		t.Fatalf("key notice:\n%s", notice)
	}
	var secret []byte
	f.db.Read().QueryRow(`SELECT k.secret FROM outbound k WHERE k.kind = 'key'`).Scan(&secret)
	var keyWrapped []byte
	f.db.Read().QueryRow(`SELECT key_wrapped FROM recipients`).Scan(&keyWrapped)
	if len(secret) != 0 {
		t.Fatal("a passphrase was made for a registered key")
	}
	if len(keyWrapped) == 0 {
		t.Fatal("no key.age was kept for a registered key: destroying it could not end the recipient's access")
	}
	// file.age through the link, opened with the registered key.
	var token string
	f.waitFor("the link notice", func() bool {
		for _, m := range f.sent.to("carol@client.example") {
			if mm := regexp.MustCompile(`/t/([a-z2-7]{32})`).FindSubmatch(qpDecode(m.data)); mm != nil {
				token = string(mm[1])
				return true
			}
		}
		return false
	})
	if code, body := b.get("/t/" + token); code != http.StatusOK || strings.Contains(body, `name="passphrase"`) {
		t.Fatalf("link page for a registered key: %d", code)
	}
	resp, body := b.post("/t/"+token, "/t/"+token+"/age", url.Values{"file": {"0"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("file.age: %d", resp.StatusCode)
	}
	if _, err := age.Decrypt(strings.NewReader(body), id); err == nil {
		t.Fatal("file.age opens with the registered key itself: a retained copy would stay readable after destruction")
	}
	resp, keyAge := b.post("/t/"+token, "/t/"+token+"/age", url.Values{"what": {"key"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("key.age: %d", resp.StatusCode)
	}
	tr, err := age.Decrypt(armor.NewReader(strings.NewReader(keyAge)), id)
	if err != nil {
		t.Fatalf("key.age does not open with the registered key: %v", err)
	}
	tkey, _ := io.ReadAll(tr)
	tids, err := age.ParseIdentities(bytes.NewReader(tkey))
	if err != nil {
		t.Fatal(err)
	}
	r, err := age.Decrypt(strings.NewReader(body), tids...)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(r)
	if string(plain) != "secret contents" {
		t.Fatalf("decrypted %q", plain)
	}
	if resp, _ := b.post("/t/"+token, "/t/"+token+"/download", url.Values{"file": {"0"}, "passphrase": {"x"}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("passphrase download for a registered key: %d", resp.StatusCode)
	}
}

func qpDecode(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("=\r\n"), nil)
	re := regexp.MustCompile(`=([0-9A-F]{2})`)
	return re.ReplaceAllFunc(b, func(m []byte) []byte {
		var x byte
		fmt.Sscanf(string(m[1:]), "%02X", &x)
		return []byte{x}
	})
}

// TestSendDelayCancel: with a send delay, the sender's receipt carries a
// cancel link; its GET changes nothing, its POST cancels, and nothing
// leaves. Another message left alone goes out when the delay is over, and
// not before. The gateway runs on a fake clock that the test advances.
func TestSendDelayCancel(t *testing.T) {
	clk := clock.NewFake(time.Now())
	f := newStaffFixtureOn(t, map[string]string{"SEALGATE_SEND_DELAY": "2s"}, clk)
	f.send("cancel me", "carol@client.example")
	f.send("let me go", "dave@partner.example")
	var link string
	f.waitFor("the receipt", func() bool {
		for _, m := range f.sent.to("alice@corp.example") {
			d := qpDecode(m.data)
			if bytes.Contains(d, []byte("cancel me")) {
				if mm := regexp.MustCompile(`http://portal\.test(/c/[a-z2-7]{32})`).FindSubmatch(d); mm != nil {
					link = string(mm[1])
					return true
				}
			}
		}
		return false
	})
	b := f.browser()
	for i := 0; i < 2; i++ {
		if code, body := b.get(link); code != http.StatusOK || !strings.Contains(body, "cancel me") {
			t.Fatalf("cancel page: %d", code)
		}
	}
	if resp, _ := b.post(link, link, url.Values{}); resp.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %d", resp.StatusCode)
	}
	// The clock has not moved: nothing is due, so nothing external has
	// left.
	if n := len(f.sent.to("dave@partner.example")) + len(f.sent.to("carol@client.example")); n != 0 {
		t.Fatalf("%d external mails left before the send delay was over", n)
	}
	if got := f.one(`SELECT CASE WHEN COUNT(DISTINCT o.status) = 1 THEN MIN(o.status) ELSE 'mixed: ' || MIN(o.status) || ', ' || MAX(o.status) END FROM outbound o JOIN messages m ON m.id = o.message_id
		WHERE m.subject = 'cancel me' AND o.kind IN ('sealed', 'key')`); got != "cancelled" {
		t.Fatalf("the cancelled message's copy and key notice are %q, want cancelled", got)
	}
	clk.Advance(2 * time.Second)
	f.waitFor("the other message", func() bool { return len(f.sent.to("dave@partner.example")) >= 2 })
	f.waitIdle()
	if n := len(f.sent.to("carol@client.example")); n != 0 {
		t.Fatalf("a cancelled message reached carol (%d mails)", n)
	}
	if resp, _ := b.post("/keys", link, url.Values{}); resp.StatusCode != http.StatusConflict {
		t.Fatalf("second cancel: %d", resp.StatusCode)
	}
	if got := f.one(`SELECT h.status FROM holds h JOIN messages m ON m.id = h.message_id WHERE m.subject = 'cancel me'`); got != hold.StatusCancelled {
		t.Fatalf("hold %s", got)
	}
}
