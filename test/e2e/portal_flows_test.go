package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/internal/agecli"
	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/internal/testsink"
)

// The staff, manager and recipient features of the portal, end to end
// against `sealgate serve`: approval refused (nothing leaves, the transfer
// is destroyed), the send delay cancelled from the receipt's link,
// registered public keys with the stock age CLI, the access review through
// the manager's page, and accounts disabled from the admin page.

const staffPW = "correct horse battery staple"

// enrolTOTP enrols the account's second factor with the CLI and returns
// the secret.
func enrolTOTP(t testing.TB, g *gw, name string) string {
	t.Helper()
	out, err := g.cli("", "user", "totp", name)
	if err != nil {
		t.Fatal(err, out)
	}
	u, err := url.Parse(strings.TrimSpace(out[strings.Index(out, "otpauth://"):]))
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("secret")
}

// signIn signs name in with its own cookie jar (and the second factor when
// secret is set).
func signIn(t testing.TB, g *gw, name, secret string) *http.Client {
	t.Helper()
	c := staffClient()
	resp := staffPost(t, c, g.url("/login"), g.url("/login"), url.Values{"name": {name}, "password": {staffPW}, "next": {"/home"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in of %s: %d", name, resp.StatusCode)
	}
	if secret != "" {
		code, _ := account.TOTPCode(secret, time.Now())
		if resp := staffPost(t, c, g.url("/login/totp"), g.url("/login/totp"), url.Values{"code": {code}, "next": {"/home"}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("second factor of %s: %d", name, resp.StatusCode)
		}
	}
	return c
}

func pageOf(t testing.TB, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// textOf is the decoded text of a (single-part) notice.
func textOf(t testing.TB, m testsink.Message) string {
	t.Helper()
	_, parts := parseMessage(t, m.Data)
	var b strings.Builder
	for _, p := range parts {
		b.Write(p.body)
	}
	return b.String()
}

// noticesTo returns the decoded system notices (and key notices) to addr.
func noticesTo(t testing.TB, sink *testsink.Sink, addr string) []string {
	var out []string
	for _, m := range sink.Messages() {
		if len(m.To) == 1 && m.To[0] == addr && bytes.Contains(m.Data, []byte("X-Sealgate-Notice:")) {
			out = append(out, textOf(t, m))
		}
	}
	return out
}

func externalCopies(sink *testsink.Sink, addr string) int {
	n := 0
	for _, m := range sink.Messages() {
		for _, r := range m.To {
			if r == addr && !bytes.Contains(m.Data, []byte("X-Sealgate-Notice: system")) {
				n++
			}
		}
	}
	return n
}

// sealedAgeFiles counts the sealed objects (*.age) in the fs store,
// whatever prefix the gateway stores them under.
func sealedAgeFiles(t testing.TB, g *gw) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(g.dir, "objects", "objects"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".age") && !strings.Contains(p, string(filepath.Separator)+"ledger"+string(filepath.Separator)) {
			n++
		}
		return nil
	})
	return n
}

func dbString(t testing.TB, g *gw, query string, args ...any) string {
	t.Helper()
	var s string
	if err := g.db().QueryRow(query, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

func dbInt(t testing.TB, g *gw, query string, args ...any) int {
	t.Helper()
	var n int
	if err := g.db().QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestApprovalRefused: under a contract that requires approval, nothing
// leaves before the manager decides; a refusal (with a reason the sender
// is told) destroys the transfer (keys, objects) and nothing is ever
// delivered to the recipient. A CSRF-less decision is refused.
func TestApprovalRefused(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	addUser(t, g, "alice", sender, staffPW)
	addUser(t, g, "mgr", "mgr@corp.example", staffPW, "manager:C-APP")
	secret := enrolTOTP(t, g, "mgr")
	cliOK(t, g, "contract", "add", "C-APP", "--domains", "client.example", "--manager", "mgr", "--approval")

	raw := buildMessage(map[string]string{"From": "Alice <" + sender + ">", "To": extA, "Subject": "[C-APP] quote"},
		"見積です", attachment{name: "quote.pdf", contentType: "application/pdf", data: randomBytes(20000)})
	start := time.Now()
	if err := send(t, g.smtpAddr, sender, []string{extA}, raw); err != nil {
		t.Fatal(err)
	}
	// The managers are asked and the sender gets a receipt; the recipient nothing.
	waitFor(t, 30*time.Second, "the approval request", func() bool { return len(noticesTo(t, sink, "mgr@corp.example")) == 1 })
	req := noticesTo(t, sink, "mgr@corp.example")[0]
	m := regexp.MustCompile(`/manage/approvals/(m[a-z2-7]+)`).FindStringSubmatch(req)
	if m == nil || !strings.Contains(req, "quote.pdf") {
		t.Fatalf("approval request:\n%s", req)
	}
	msgID := m[1]
	waitFor(t, 30*time.Second, "the sender's receipt", func() bool { return len(noticesTo(t, sink, sender)) == 1 })
	if dbString(t, g, `SELECT status FROM outbound WHERE kind = 'sealed'`) != "held" {
		t.Fatal("the copy is not held")
	}
	if n := sealedAgeFiles(t, g); n != 1 {
		t.Fatalf("%d sealed objects stored, want 1", n)
	}

	c := signIn(t, g, "mgr", secret)
	if code, body := pageOf(t, c, g.url("/manage/approvals?lang=en")); code != 200 || !strings.Contains(body, "quote") {
		t.Fatalf("approvals page: %d", code)
	}
	// Without the CSRF token: refused, still held.
	resp, err := c.PostForm(g.url("/manage/approvals/"+msgID), url.Values{"action": {"refuse"}, "reason": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || dbString(t, g, `SELECT status FROM holds`) != "held" {
		t.Fatalf("CSRF-less refusal: %d", resp.StatusCode)
	}
	decided := time.Now()
	resp = staffPost(t, c, g.url("/manage/approvals/"+msgID), g.url("/manage/approvals/"+msgID),
		url.Values{"action": {"refuse"}, "reason": {"宛先の確認が必要 / check the recipient"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("refuse: %d", resp.StatusCode)
	}
	waitFor(t, 30*time.Second, "the transfer destroyed", func() bool {
		return dbInt(t, g, `SELECT COUNT(*) FROM files WHERE absent_at IS NULL`) == 0 && dbString(t, g, `SELECT status FROM transfers`) == "revoked"
	})
	t.Logf("held %.1fs until the refusal; refused → objects proven absent in %.2fs", decided.Sub(start).Seconds(), time.Since(decided).Seconds())
	waitFor(t, 30*time.Second, "the sender told", func() bool {
		for _, n := range noticesTo(t, sink, sender) {
			if strings.Contains(n, "check the recipient") {
				return true
			}
		}
		return false
	})
	if n := sealedAgeFiles(t, g); n != 0 {
		t.Fatalf("%d sealed objects remain in storage", n)
	}
	if n := dbInt(t, g, `SELECT COUNT(*) FROM recipients WHERE key_wrapped IS NOT NULL`); n != 0 {
		t.Fatal("the recipient's key survived the refusal")
	}
	// The refusal cancelled the held copy and its key notice; once nothing
	// is left to deliver, whatever would have reached the recipient has.
	if got := dbString(t, g, `SELECT GROUP_CONCAT(DISTINCT status) FROM outbound WHERE kind IN ('sealed', 'key')`); got != "cancelled" {
		t.Fatalf("the refused message's copy and key notice are %q, want cancelled", got)
	}
	g.waitIdle(30 * time.Second)
	if n := externalCopies(sink, extA); n != 0 {
		t.Fatalf("%d messages reached the recipient of a refused message", n)
	}
	var types []string
	for _, ev := range g.ledger() {
		switch ev.Type {
		case "message.held", "approval.requested", "approval.refused", "transfer.revoked", "key.destroyed", "object.absent", "message.released":
			types = append(types, ev.Type)
		}
	}
	if got := strings.Join(types, " "); got != "message.held approval.requested approval.refused transfer.revoked key.destroyed object.absent" {
		t.Fatalf("ledger: %s", got)
	}
}

// TestSendDelayCancel: with a send delay, the sender's receipt carries a
// cancel link; opening it (GET) changes nothing, its button (POST) cancels
// and nothing is delivered; a message not cancelled leaves after the delay.
func TestSendDelayCancel(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{"SEALGATE_SEND_DELAY=5s"}})
	msg := func(subject, to string) []byte {
		return buildMessage(map[string]string{"From": sender, "To": to, "Subject": subject}, "body",
			attachment{name: "a.bin", contentType: "application/octet-stream", data: randomBytes(3000)})
	}
	start := time.Now()
	if err := send(t, g.smtpAddr, sender, []string{extA}, msg("oops, wrong person", extA)); err != nil {
		t.Fatal(err)
	}
	if err := send(t, g.smtpAddr, sender, []string{extB}, msg("fine to send", extB)); err != nil {
		t.Fatal(err)
	}
	var link string
	waitFor(t, 30*time.Second, "the receipt", func() bool {
		for _, n := range noticesTo(t, sink, sender) {
			if strings.Contains(n, "oops, wrong person") {
				if m := regexp.MustCompile(`https?://\S+(/c/[a-z2-7]{32})`).FindStringSubmatch(n); m != nil {
					link = m[1]
					return true
				}
			}
		}
		return false
	})
	c := staffClient()
	for i := 0; i < 3; i++ { // a mail scanner opening the link changes nothing
		if code, body := pageOf(t, c, g.url(link+"?lang=en")); code != 200 || !strings.Contains(body, "oops, wrong person") {
			t.Fatalf("cancel page: %d", code)
		}
	}
	if dbInt(t, g, `SELECT COUNT(*) FROM holds WHERE status = 'held'`) != 2 {
		t.Fatal("GET changed a hold")
	}
	if resp := staffPost(t, c, g.url(link), g.url(link), url.Values{}); resp.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %d", resp.StatusCode)
	}
	cancelledAt := time.Since(start)
	waitFor(t, 30*time.Second, "the other message", func() bool { return externalCopies(sink, extB) >= 2 })
	left := time.Since(start)
	// The cancelled message's rows are cancelled; once nothing is left to
	// deliver, whatever would have reached its recipient has.
	if got := dbString(t, g, `SELECT GROUP_CONCAT(DISTINCT o.status) FROM outbound o JOIN messages m ON m.id = o.message_id
		WHERE m.subject = 'oops, wrong person' AND o.kind IN ('sealed', 'key')`); got != "cancelled" {
		t.Fatalf("the cancelled message's copy and key notice are %q, want cancelled", got)
	}
	g.waitIdle(30 * time.Second)
	if n := externalCopies(sink, extA); n != 0 {
		t.Fatalf("%d messages of a cancelled send reached the recipient", n)
	}
	if left < 5*time.Second {
		t.Fatalf("the delayed message left after %v, before the 5s delay", left)
	}
	t.Logf("cancelled %.1fs after sending; the other message left %.1fs after sending (delay 5s)", cancelledAt.Seconds(), left.Seconds())
	if dbString(t, g, `SELECT t.status FROM transfers t JOIN messages m ON m.id = t.message_id WHERE m.subject = 'oops, wrong person'`) != "revoked" {
		t.Fatal("the cancelled transfer was not destroyed")
	}
	var cancelled bool
	for _, ev := range g.ledger() {
		cancelled = cancelled || ev.Type == "message.cancelled"
	}
	if !cancelled {
		t.Fatal("no message.cancelled event")
	}
}

// TestRegisteredKey: a recipient registers an age key made by the stock
// age-keygen; the next transfer to them is encrypted to it, the key notice
// carries no passphrase, and the stock age CLI decrypts file.age with the
// identity alone.
func TestRegisteredKey(t *testing.T) {
	if _, err := agecli.Path(); err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	dir := t.TempDir()
	identity := filepath.Join(dir, "key.txt")
	pub, err := agecli.Keygen(context.Background(), identity)
	if err != nil {
		t.Fatal(err)
	}
	c := staffClient()
	if resp := staffPost(t, c, g.url("/keys"), g.url("/keys"), url.Values{"address": {extA}, "public_key": {pub}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("registration: %d", resp.StatusCode)
	}
	var link string
	waitFor(t, 30*time.Second, "the confirmation mail", func() bool {
		for _, n := range noticesTo(t, sink, extA) {
			if m := regexp.MustCompile(`https?://\S+(/keys/verify/[A-Za-z0-9_-]+)`).FindStringSubmatch(n); m != nil {
				link = m[1]
				return true
			}
		}
		return false
	})
	if code, body := pageOf(t, c, g.url(link)); code != 200 || !strings.Contains(body, pub) {
		t.Fatalf("confirmation page: %d", code)
	}
	if dbString(t, g, `SELECT status FROM recipient_keys`) != "pending" {
		t.Fatal("opening the link registered the key")
	}
	if resp := staffPost(t, c, g.url(link), g.url(link), url.Values{}); resp.StatusCode != http.StatusOK {
		t.Fatalf("confirm: %d", resp.StatusCode)
	}
	data := append([]byte("%PDF-1.7\n"), randomBytes(100<<10)...)
	raw := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "to your key"}, "body",
		attachment{name: "plan.pdf", contentType: "application/pdf", data: data})
	if err := send(t, g.smtpAddr, sender, []string{extA}, raw); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(30*time.Second, func(ms []testsink.Message) bool {
		var copyOK, keyOK bool
		for _, m := range ms {
			if len(m.To) == 1 && m.To[0] == extA {
				copyOK = copyOK || bytes.Contains(m.Data, []byte("X-Sealgate-Sealed"))
				keyOK = keyOK || bytes.Contains(m.Data, []byte("X-Sealgate-Notice: key"))
			}
		}
		return copyOK && keyOK
	})
	if err != nil {
		t.Fatal(err)
	}
	var token, keyNotice string
	for _, m := range msgs {
		if len(m.To) != 1 || m.To[0] != extA {
			continue
		}
		if bytes.Contains(m.Data, []byte("X-Sealgate-Notice: key")) {
			keyNotice = textOf(t, m)
		} else if bytes.Contains(m.Data, []byte("X-Sealgate-Sealed")) {
			_, token = linkOf(t, m)
		}
	}
	if passRE.MatchString(keyNotice) || strings.Contains(keyNotice, "Passphrase:") || !strings.Contains(keyNotice, "SHA256:") {
		t.Fatalf("key notice of a registered key:\n%s", keyNotice)
	}
	if n := dbInt(t, g, `SELECT COUNT(*) FROM outbound WHERE kind = 'key' AND secret IS NOT NULL`); n != 0 {
		t.Fatal("a passphrase was stored for a registered key")
	}
	resp, fileAge := postForm(t, g.url("/t/"+token+"/age"), form("file", "0"))
	if resp.StatusCode != 200 {
		t.Fatalf("file.age: %d", resp.StatusCode)
	}
	resp, keyAge := postForm(t, g.url("/t/"+token+"/age"), form("what", "key"))
	if resp.StatusCode != 200 {
		t.Fatalf("key.age for a registered key: %d", resp.StatusCode)
	}
	in, keyIn, tkey, out := filepath.Join(dir, "plan.pdf.age"), filepath.Join(dir, "key.age"), filepath.Join(dir, "t.key"), filepath.Join(dir, "plan.pdf")
	os.WriteFile(in, fileAge, 0o600)
	os.WriteFile(keyIn, keyAge, 0o600)
	// file.age is encrypted to the transfer identity only: the registered
	// key alone does not open it (a copy kept anywhere dies with key.age).
	if err := agecli.DecryptWithIdentity(context.Background(), identity, in, out); err == nil {
		t.Fatal("stock age opened file.age with the registered key alone")
	}
	// The two commands of the notice, with the stock age CLI.
	if err := agecli.DecryptWithIdentity(context.Background(), identity, keyIn, tkey); err != nil {
		t.Fatalf("age -d -i my.key key.age > t.key: %v", err)
	}
	if err := agecli.DecryptWithIdentity(context.Background(), tkey, in, out); err != nil {
		t.Fatalf("age -d -i t.key file.age > file: %v", err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, data) {
		t.Fatal("stock age: decrypted bytes differ")
	}
	if !strings.Contains(keyNotice, "key.age > t.key") {
		t.Fatalf("the key notice does not show the two commands:\n%s", keyNotice)
	}

	// A second transfer whose key.age carol never fetched: once revoked,
	// a retained copy of its file.age opens neither with her private key
	// nor with anything the gateway holds.
	raw = buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "second"}, "body",
		attachment{name: "second.pdf", contentType: "application/pdf", data: data})
	before := len(sink.Messages())
	if err := send(t, g.smtpAddr, sender, []string{extA}, raw); err != nil {
		t.Fatal(err)
	}
	msgs, err = sink.Wait(30*time.Second, func(ms []testsink.Message) bool { return len(classify(ms[before:]).copies) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	_, token2 := linkOf(t, classify(msgs[before:]).copies[extA])
	var tid string
	g.db().QueryRow(`SELECT transfer_id FROM recipients WHERE token_hash = ?`, tokenHash(token2)).Scan(&tid)
	retained, err := os.ReadFile(filepath.Join(g.dir, "objects", "objects", "sealed", tid, "0.age"))
	if err != nil {
		t.Fatal(err)
	}
	privKey, _ := os.ReadFile(identity)
	// Control: before revocation, the gateway's holdings with carol's
	// private key open it (key.age is encrypted to her key).
	ctl, err := seed.Gather(context.Background(), g.db(), append(currentKeyFiles(t, g), privKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctl.Expand()
	if pt, ok := ctl.Open(retained); !ok || !bytes.Equal(pt, data) {
		t.Fatal("control failed: the retained copy does not open before revocation")
	}
	cliOK(t, g, "transfer", "revoke", tid, "--recipient", extA)
	kept := filepath.Join(dir, "retained.age")
	os.WriteFile(kept, retained, 0o600)
	if err := agecli.DecryptWithIdentity(context.Background(), identity, kept, filepath.Join(dir, "retained")); err == nil {
		t.Fatal("the registered key opens a retained copy after revocation")
	}
	if resp, body := postForm(t, g.url("/t/"+token2+"/age"), form("what", "key")); resp.StatusCode == 200 || contains(body, "AGE ENCRYPTED FILE") {
		t.Fatalf("key.age served after revocation: %d", resp.StatusCode)
	}
	h, err := seed.Gather(context.Background(), g.db(), append(currentKeyFiles(t, g), privKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Expand()
	if _, ok := h.Open(retained); ok {
		t.Fatal("the gateway's holdings with carol's private key open a retained copy after revocation")
	}
}

// TestReviewAndAccounts: the access review on the manager's page lists a
// dormant account and a failed-login burst and records review.done; the
// admin disables an account from the portal, which then can neither sign
// in nor send (SMTP AUTH).
func TestReviewAndAccounts(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{"SEALGATE_REVIEW_DORMANT_AFTER=3s"}})
	addUser(t, g, "alice", sender, staffPW)
	addUser(t, g, "sleepy", "sleepy@corp.example", staffPW)
	addUser(t, g, "mgr", "mgr@corp.example", staffPW, "manager")
	addUser(t, g, "root", "root@corp.example", staffPW, "admin")
	mgrSecret := enrolTOTP(t, g, "mgr")
	rootSecret := enrolTOTP(t, g, "root")
	// A burst of failed logins for alice (5 in a row).
	x := staffClient()
	for i := 0; i < 5; i++ {
		staffPost(t, x, g.url("/login"), g.url("/login"), url.Values{"name": {"alice"}, "password": {"wrong guess " + string(rune('a'+i))}})
	}
	time.Sleep(3500 * time.Millisecond) // sleepy never signs in: dormant after 3s
	mgr := signIn(t, g, "mgr", mgrSecret)
	alice := signIn(t, g, "alice", "")
	_ = alice
	code, body := pageOf(t, mgr, g.url("/manage/review?lang=en"))
	if code != 200 {
		t.Fatalf("review page: %d", code)
	}
	dormant := body[strings.Index(body, "Dormant accounts"):strings.Index(body, "Bursts of failed sign-ins")]
	bursts := body[strings.Index(body, "Bursts of failed sign-ins"):strings.Index(body, "Sign-ins from new addresses")]
	if !strings.Contains(dormant, "sleepy") || strings.Contains(dormant, ">mgr<") {
		t.Fatalf("dormant section:\n%s", dormant)
	}
	if !strings.Contains(bursts, "alice") || !strings.Contains(bursts, "<td>5</td>") {
		t.Fatalf("bursts section:\n%s", bursts)
	}
	if resp := staffPost(t, mgr, g.url("/manage/review"), g.url("/manage/review"), url.Values{"note": {"alice: typo, confirmed with her"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("mark done: %d", resp.StatusCode)
	}
	var done *ledgerEvent
	for _, ev := range g.ledger() {
		if ev.Type == "review.done" {
			e := ev
			done = &e
		}
	}
	if done == nil || done.Actor != "mgr" || done.Details["dormant"] == "0" || done.Details["failed_bursts"] == "0" {
		t.Fatalf("review.done: %+v", done)
	}

	// The admin disables alice from the portal.
	root := signIn(t, g, "root", rootSecret)
	if resp := staffPost(t, root, g.url("/admin/accounts"), g.url("/admin/accounts"), url.Values{"action": {"disable"}, "name": {"alice"}, "reason": {"left"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("disable: %d", resp.StatusCode)
	}
	if code, _ := pageOf(t, alice, g.url("/transfers")); code != http.StatusSeeOther {
		t.Fatalf("a disabled account's session still works: %d", code)
	}
	if resp := staffPost(t, staffClient(), g.url("/login"), g.url("/login"), url.Values{"name": {"alice"}, "password": {staffPW}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a disabled account signs in: %d", resp.StatusCode)
	}
	if _, err := submitClient(t, g, "alice", staffPW); code535(err) {
		return
	} else {
		t.Fatalf("a disabled account authenticates for SMTP: %v", err)
	}
}

func code535(err error) bool { return code(err) == 535 }

// download posts a form (with the page's CSRF token) and returns the
// response and its body.
func downloadForm(t testing.TB, c *http.Client, page, action string, v url.Values) (*http.Response, []byte) {
	t.Helper()
	_, body := pageOf(t, c, page)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on %s", page)
	}
	v.Set("csrf", m[1])
	resp, err := c.PostForm(action, v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestManagerPages: the incident view of a revoked transfer says who
// downloaded before the revocation, exported as CSV (BOM, Excel) and JSON;
// the ledger searched by recipient and exported as a bundle that `sealgate
// audit verify` accepts offline; the contract ended from the portal (with
// the code typed to confirm) and its destruction certificate verified
// offline.
func TestManagerPages(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	addUser(t, g, "alice", sender, staffPW)
	addUser(t, g, "mgr", "mgr@corp.example", staffPW, "manager:C-INC")
	addUser(t, g, "aud", "aud@corp.example", staffPW, "auditor")
	secret := enrolTOTP(t, g, "mgr")
	audSecret := enrolTOTP(t, g, "aud")
	cliOK(t, g, "contract", "add", "C-INC", "--domains", "client.example,partner.example", "--manager", "mgr")

	raw := buildMessage(map[string]string{"From": sender, "To": extA + ", " + extB, "Subject": "[C-INC] 図面"}, "body",
		attachment{name: "drawing.pdf", contentType: "application/pdf", data: randomBytes(30000)})
	if err := send(t, g.smtpAddr, sender, []string{extA, extB}, raw); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool { d := classify(m); return len(d.keys) == 2 })
	if err != nil {
		t.Fatal(err)
	}
	// The sender is told of the first download.
	downloadFirst(t, g, sink, msgs, extA, sender)
	tid := dbString(t, g, `SELECT id FROM transfers`)
	alice := signIn(t, g, "alice", "")
	if resp := staffPost(t, alice, g.url("/transfers/"+tid+"/revoke"), g.url("/transfers/"+tid+"/revoke"), url.Values{"reason": {"leak suspected"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}

	mgr := signIn(t, g, "mgr", secret)
	code, page := pageOf(t, mgr, g.url("/manage/transfers/"+tid+"?lang=en"))
	if code != 200 || !strings.Contains(page, "Downloaded before revocation") {
		t.Fatalf("incident view: %d", code)
	}
	resp, csv := downloadForm(t, mgr, g.url("/manage/transfers/"+tid), g.url("/manage/transfers/"+tid), url.Values{"format": {"csv"}})
	if resp.StatusCode != 200 || !bytes.HasPrefix(csv, []byte("\xef\xbb\xbf")) || !strings.Contains(resp.Header.Get("Content-Disposition"), ".csv") {
		t.Fatalf("incident CSV: %d %q", resp.StatusCode, csv[:min(len(csv), 40)])
	}
	rows := strings.Split(strings.TrimSpace(string(csv)), "\r\n")
	if len(rows) != 3 {
		t.Fatalf("incident CSV has %d lines:\n%s", len(rows), csv)
	}
	for _, r := range rows[1:] {
		switch {
		case strings.Contains(r, extA) && !strings.Contains(r, "はい / yes"):
			t.Fatalf("carol downloaded before the revocation:\n%s", r)
		case strings.Contains(r, extB) && !strings.Contains(r, "いいえ / no"):
			t.Fatalf("dave never downloaded:\n%s", r)
		}
	}
	resp, js := downloadForm(t, mgr, g.url("/manage/transfers/"+tid), g.url("/manage/transfers/"+tid), url.Values{"format": {"json"}})
	if resp.StatusCode != 200 || !bytes.Contains(js, []byte(`"downloaded_before_revocation": true`)) || !bytes.Contains(js, []byte(`"ip": "127.0.0.1"`)) {
		t.Fatalf("incident JSON: %d\n%s", resp.StatusCode, js)
	}

	// The ledger: search by recipient, and a verifiable export.
	if code, page := pageOf(t, mgr, g.url("/manage/ledger?lang=en&contract=C-INC&recipient="+url.QueryEscape(extA)+"&type=file.downloaded")); code != 200 || !strings.Contains(page, "File downloaded") || strings.Contains(page, extB) {
		t.Fatalf("ledger search: %d", code)
	}
	if code, _ := pageOf(t, mgr, g.url("/manage/ledger?contract=DEFAULT")); code != http.StatusBadRequest {
		t.Fatalf("a manager searched another contract: %d", code)
	}
	resp, bundle := downloadForm(t, mgr, g.url("/manage/ledger"), g.url("/manage/ledger"), url.Values{"contract": {"C-INC"}, "format": {"json"}})
	if resp.StatusCode != 200 {
		t.Fatalf("ledger export: %d", resp.StatusCode)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bundle.json"), bundle, 0o600)
	pub := "@" + filepath.Join(g.dir, "keys", "ledger.pub")
	cliOK(t, g, "audit", "verify", "--key", pub, filepath.Join(dir, "bundle.json"))
	// The auditor reads and exports too, but decides nothing.
	// An auditor reads the ledger of every contract: a password alone is not enough.
	if resp := staffPost(t, staffClient(), g.url("/login"), g.url("/login"), url.Values{"name": {"aud"}, "password": {staffPW}, "next": {"/home"}}); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login/totp") {
		t.Fatalf("auditor sign-in without the second factor: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	aud := signIn(t, g, "aud", audSecret)
	if code, _ := pageOf(t, aud, g.url("/manage/ledger?transfer="+tid)); code != 200 {
		t.Fatalf("auditor ledger: %d", code)
	}
	if code, _ := pageOf(t, aud, g.url("/manage/contracts/C-INC/end")); code != http.StatusForbidden {
		t.Fatalf("auditor end page: %d", code)
	}

	// End the contract: a wrong confirmation changes nothing.
	if resp := staffPost(t, mgr, g.url("/manage/contracts/C-INC/end"), g.url("/manage/contracts/C-INC/end"), url.Values{"confirm": {"C-IN"}, "reason": {"project over"}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("wrong confirmation: %d", resp.StatusCode)
	}
	if dbString(t, g, `SELECT status FROM contracts WHERE code = 'C-INC'`) != "active" {
		t.Fatal("a wrong confirmation ended the contract")
	}
	start := time.Now()
	resp = staffPost(t, mgr, g.url("/manage/contracts/C-INC/end"), g.url("/manage/contracts/C-INC/end"), url.Values{"confirm": {"C-INC"}, "reason": {"project over"}})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/manage/certificates/") {
		t.Fatalf("end contract: %d %s", resp.StatusCode, loc)
	}
	t.Logf("contract ended from the portal, certificate issued in %.2fs", time.Since(start).Seconds())
	if code, page := pageOf(t, mgr, g.url(loc)); code != 200 || !strings.Contains(page, "C-INC") {
		t.Fatalf("certificate page: %d", code)
	}
	resp2, err := mgr.Get(g.url(loc + "?format=json"))
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	os.WriteFile(filepath.Join(dir, "cert.json"), cert, 0o600)
	cliOK(t, g, "audit", "verify-certificate", "--key", pub, filepath.Join(dir, "cert.json"))
}

// TestDownloadReceiptToAccount: a sender outside the internal domains who
// has an account (and sends through submission) hears of the first
// download of their transfer, at their account's address however it was
// typed when the account was made: the account half of the one rule of
// whom sealgate mails about a message (notice.Policy).
func TestDownloadReceiptToAccount(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	const erin = "erin@partner.example"
	addUser(t, g, "erin", "Erin@Partner.Example", staffPW)
	c, err := submitClient(t, g, "erin", staffPW)
	if err != nil {
		t.Fatal(err)
	}
	raw := buildMessage(map[string]string{"From": erin, "To": extA, "Subject": "drawings"}, "body",
		attachment{name: "drawing.pdf", contentType: "application/pdf", data: randomBytes(3000)})
	if err := sendVia(c, erin, []string{extA}, raw); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool { d := classify(m); return d.keys[extA].Data != nil })
	if err != nil {
		t.Fatal(err)
	}
	downloadFirst(t, g, sink, msgs, extA, erin)
}

// downloadFirst downloads the first file of rcpt's copy among msgs with
// the passphrase of rcpt's key notice, and waits for the download receipt
// that tells the sender at senderAddr.
func downloadFirst(t testing.TB, g *gw, sink *testsink.Sink, msgs []testsink.Message, rcpt, senderAddr string) {
	t.Helper()
	d := classify(msgs)
	_, token := linkOf(t, d.copies[rcpt])
	if resp, _ := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", passphraseOf(t, d.keys[rcpt]), "file", "0")); resp.StatusCode != 200 {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	waitFor(t, 30*time.Second, "the download receipt to "+senderAddr, func() bool {
		for _, n := range noticesTo(t, sink, senderAddr) {
			if strings.Contains(n, rcpt+" downloaded a file for the first time") {
				return true
			}
		}
		return false
	})
}
