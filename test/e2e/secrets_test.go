package e2e

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/internal/testsink"
)

// secretSet collects every secret a test run handled, to look for in
// the gateway's log.
type secretSet struct {
	strs  map[string]string         // secret → what it is
	bytes map[string][]byte         // what it is → binary secret (32-byte runs are looked for)
	res   map[string]*regexp.Regexp // what it is → pattern (for secrets too short to look for as text)
}

func (s *secretSet) add(what, v string) {
	if _, seen := s.strs[v]; !seen && len(v) >= 6 {
		s.strs[v] = what
	}
}

// leaks returns what of s appears in log.
func (s *secretSet) leaks(log string) []string {
	var out []string
	for v, what := range s.strs {
		if strings.Contains(log, v) {
			out = append(out, what+" ("+v+")")
		}
	}
	for what, re := range s.res {
		if m := re.FindString(log); m != "" {
			out = append(out, what+" ("+m+")")
		}
	}
	for what, b := range s.bytes {
		if hasRun([]byte(log), b) || strings.Contains(log, base64.StdEncoding.EncodeToString(b)[:40]) {
			out = append(out, what)
		}
	}
	return out
}

// TestNoSecretsInLogs runs the realistic flows against a gateway logging
// at level debug — mail with an attachment (link notice and key notice),
// a download with the passphrase and one with a wrong passphrase, key.age,
// POSTs without the CSRF token to every kind of token URL, the sender's
// cancel link, a public-key registration confirmed from its mailed link,
// staff sign-in with password and TOTP (right and wrong), SMTP AUTH (right
// and wrong) — and then looks through the whole log for every token,
// passphrase, password, TOTP secret and code, session and CSRF cookie, key
// file and key.age it can find in the delivered mails, the client's
// cookies and the data directory, and for the attachment's bytes.
func TestNoSecretsInLogs(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{"SEALGATE_SEND_DELAY=5s"}})
	sec := &secretSet{strs: map[string]string{}, bytes: map[string][]byte{}, res: map[string]*regexp.Regexp{}}
	const wrongPW = "wrong horse battery staple"
	addUser(t, g, "alice", sender, staffPW)
	addUser(t, g, "mgr", "mgr@corp.example", staffPW, "manager")
	totpSecret := enrolTOTP(t, g, "mgr")
	sec.add("password", staffPW)
	sec.add("wrong password", wrongPW)
	sec.add("TOTP secret", totpSecret)

	// A message cancelled from its receipt's link, and one that goes out.
	data := append([]byte("%PDF-1.7\n"), randomBytes(200<<10)...)
	sec.bytes["attachment"] = data[100:]
	msg := func(subject string) []byte {
		return buildMessage(map[string]string{"From": sender, "To": extA, "Subject": subject}, "body",
			attachment{name: "plan.pdf", contentType: "application/pdf", data: data})
	}
	if err := send(t, g.smtpAddr, sender, []string{extA}, msg("to cancel")); err != nil {
		t.Fatal(err)
	}
	cancelRE := regexp.MustCompile(`https?://\S+(/c/([a-z2-7]{32}))`)
	var cancel string
	waitFor(t, 30*time.Second, "the cancel link", func() bool {
		for _, n := range noticesTo(t, sink, sender) {
			if m := cancelRE.FindStringSubmatch(n); m != nil && strings.Contains(n, "to cancel") {
				cancel = m[1]
				sec.add("cancel token", m[2])
				return true
			}
		}
		return false
	})
	plain := &http.Client{Timeout: time.Minute} // no cookies, no CSRF token
	if resp, err := plain.PostForm(g.url(cancel), url.Values{}); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CSRF-less cancel: %v %v", resp, err)
	}
	sc := staffClient()
	if code, _ := pageOf(t, sc, g.url(cancel)); code != 200 {
		t.Fatalf("cancel page: %d", code)
	}
	if resp := staffPost(t, sc, g.url(cancel), g.url(cancel), url.Values{}); resp.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %d", resp.StatusCode)
	}

	st := sendAndCollect(t, g, sink, []string{extA}, msg("to download"))
	token, pass := st.tokens[extA], st.pass[extA]
	sec.add("link token", token)
	sec.add("passphrase", pass)
	norm, _ := crypto.NormalizePassphrase(pass)
	sec.add("passphrase (normalized)", norm)
	if code, _ := pageOf(t, staffClient(), g.url("/t/"+token)); code != 200 {
		t.Fatalf("link page: %d", code)
	}
	if resp, err := plain.PostForm(g.url("/t/"+token+"/download"), form("passphrase", pass, "file", "0")); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CSRF-less download: %v %v", resp, err)
	}
	if resp, err := plain.PostForm(g.url("/t/"+token+"/age"), form("what", "key")); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CSRF-less key.age: %v %v", resp, err)
	}
	wrong := strings.Replace(pass, pass[:5], "ZZZZZ", 1)
	sec.add("wrong passphrase", wrong)
	if resp, _ := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", wrong, "file", "0")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong passphrase: %d", resp.StatusCode)
	}
	if resp, body := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", pass, "file", "0")); resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	resp, keyAge := postForm(t, g.url("/t/"+token+"/age"), form("what", "key"))
	if resp.StatusCode != 200 {
		t.Fatalf("key.age: %d", resp.StatusCode)
	}
	sec.bytes["key.age"] = keyAge
	if resp, _ := postForm(t, g.url("/t/"+strings.Repeat("a", 32)+"/download"), form("passphrase", pass, "file", "0")); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown link: %d", resp.StatusCode)
	}

	// A public key registered, confirmed from the mailed link.
	keyC := staffClient()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	sec.add("recipient's identity", id.String())
	if resp := staffPost(t, keyC, g.url("/keys"), g.url("/keys"), url.Values{"address": {extB}, "public_key": {id.Recipient().String()}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("key registration: %d", resp.StatusCode)
	}
	var verify string
	waitFor(t, 30*time.Second, "the confirmation mail", func() bool {
		for _, n := range noticesTo(t, sink, extB) {
			if m := regexp.MustCompile(`https?://\S+(/keys/verify/([A-Za-z0-9_-]+))`).FindStringSubmatch(n); m != nil {
				verify = m[1]
				sec.add("key verification token", m[2])
				return true
			}
		}
		return false
	})
	if resp, err := plain.PostForm(g.url(verify), url.Values{}); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CSRF-less key confirmation: %v %v", resp, err)
	}
	if code, _ := pageOf(t, keyC, g.url(verify)); code != 200 {
		t.Fatalf("confirmation page: %d", code)
	}
	if resp := staffPost(t, keyC, g.url(verify), g.url(verify), url.Values{}); resp.StatusCode != http.StatusOK {
		t.Fatalf("confirm: %d", resp.StatusCode)
	}

	// Staff sign-in: a wrong password, a wrong code, then right.
	x := staffClient()
	staffPost(t, x, g.url("/login"), g.url("/login"), url.Values{"name": {"alice"}, "password": {wrongPW}})
	mgr := staffClient()
	if resp := staffPost(t, mgr, g.url("/login"), g.url("/login"), url.Values{"name": {"mgr"}, "password": {staffPW}, "next": {"/home"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	code, _ := account.TOTPCode(totpSecret, time.Now())
	bad := "000000"
	if bad == code {
		bad = "111111"
	}
	staffPost(t, mgr, g.url("/login/totp"), g.url("/login/totp"), url.Values{"code": {bad}, "next": {"/home"}})
	sec.res["wrong TOTP code"] = regexp.MustCompile(`(^|[^0-9])` + bad + `([^0-9]|$)`)
	code, _ = account.TOTPCode(totpSecret, time.Now())
	sec.res["TOTP code"] = regexp.MustCompile(`(^|[^0-9])` + code + `([^0-9]|$)`)
	if resp := staffPost(t, mgr, g.url("/login/totp"), g.url("/login/totp"), url.Values{"code": {code}, "next": {"/home"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("second factor: %d", resp.StatusCode)
	}
	if c, _ := pageOf(t, mgr, g.url("/manage/transfers/"+st.id)); c != 200 {
		t.Fatalf("incident view: %d", c)
	}
	alice := signIn(t, g, "alice", "")
	if c, _ := pageOf(t, alice, g.url("/transfers/"+st.id)); c != 200 {
		t.Fatalf("my transfer: %d", c)
	}
	// A POST without the CSRF token from a signed-in session.
	if resp, err := alice.PostForm(g.url("/transfers/"+st.id+"/revoke"), url.Values{"reason": {"x"}}); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CSRF-less revoke: %v %v", resp, err)
	}
	for _, c := range []*http.Client{mgr, alice, keyC, sc, x, browser} {
		for _, ck := range c.Jar.Cookies(&url.URL{Scheme: "http", Host: g.httpAddr, Path: "/"}) {
			if ck.Name != "lang" {
				sec.add("cookie "+ck.Name, ck.Value)
			}
		}
	}

	// SMTP AUTH, wrong then right.
	if _, err := submitClient(t, g, "alice", wrongPW); !code535(err) {
		t.Fatalf("wrong SMTP password: %v", err)
	}
	if c, err := submitClient(t, g, "alice", staffPW); err != nil {
		t.Fatalf("SMTP AUTH: %v", err)
	} else if err := sendVia(c, sender, []string{internal}, []byte("From: "+sender+"\r\nTo: "+internal+"\r\nSubject: hi\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Wait(30*time.Second, func(ms []testsink.Message) bool {
		for _, m := range ms {
			if len(m.To) == 1 && m.To[0] == internal {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}

	// Every token and passphrase of every delivered mail.
	for _, m := range sink.Messages() {
		text := textOf(t, m)
		for _, re := range []*regexp.Regexp{regexp.MustCompile(`/(?:t|c)/([a-z2-7]{32})`), regexp.MustCompile(`/keys/verify/([A-Za-z0-9_-]{20,})`), passRE} {
			for _, mm := range re.FindAllStringSubmatch(text, -1) {
				sec.add("token or passphrase from a mail", mm[1])
			}
		}
	}
	// Key files of the data directory.
	filepath.Walk(filepath.Join(g.dir, "keys"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || strings.HasSuffix(p, ".pub") {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				sec.add("key file "+filepath.Base(p), line)
			}
		}
		return nil
	})
	if len(sec.strs) < 12 {
		t.Fatalf("only %d secrets collected: %v", len(sec.strs), sec.strs)
	}

	g.stop(syscall.SIGTERM) // the log is complete
	log := g.log.String()
	if !strings.Contains(log, "level=DEBUG") && !strings.Contains(log, "level=INFO") {
		t.Fatalf("the gateway log is empty:\n%s", log)
	}
	if leaks := sec.leaks(log); len(leaks) > 0 {
		t.Fatalf("the gateway log holds secrets: %s\n\nlog:\n%s", strings.Join(leaks, "; "), log)
	}
	t.Logf("%d secrets and %d binary secrets looked for in %d bytes of log", len(sec.strs), len(sec.bytes), len(log))
}
