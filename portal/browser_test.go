package portal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
)

// events returns the ledger events of type typ, in order.
func (px *portalFixture) events(t *testing.T, typ string) []audit.Event {
	t.Helper()
	rows, err := px.db.Read().Query(`SELECT data FROM ledger_records WHERE type = ? ORDER BY idx`, typ)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		ev, err := audit.ParseRecord(data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// attempts returns failed_attempts and browser_attempts of the fixture's
// recipient.
func (px *portalFixture) attempts(t *testing.T) (failed, browser int) {
	t.Helper()
	if err := px.db.Read().QueryRow(`SELECT failed_attempts, browser_attempts FROM recipients WHERE id = ?`, px.rcptID).Scan(&failed, &browser); err != nil {
		t.Fatal(err)
	}
	return failed, browser
}

func (px *portalFixture) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	err := px.db.Write(context.Background(), func(tx *database.Tx) error {
		_, err := tx.Exec(query, args...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// browserKey asks for key.age as the page does.
func (px *portalFixture) browserKey(t *testing.T) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	px.post(t, rec, "/key", url.Values{})
	return rec
}

// TestBrowserKeyIsAnAttempt: POST …/key sends key.age with the contract
// key's layer removed — the file the passphrase alone opens, not the
// identity in it — and counts one attempt (failed_attempts and
// browser_attempts), recorded as a key.age fetch in mode browser.
func TestBrowserKeyIsAnAttempt(t *testing.T) {
	px := newPortalFixture(t)
	rec := px.browserKey(t)
	if rec.Code != http.StatusOK {
		t.Fatalf("key request: %d\n%s", rec.Code, rec.Body)
	}
	body := rec.Body.Bytes()
	if !bytes.HasPrefix(body, []byte("-----BEGIN AGE ENCRYPTED FILE-----")) || bytes.Contains(body, []byte("AGE-SECRET-KEY")) {
		t.Fatalf("the answer is not the passphrase-encrypted key.age:\n%s", body)
	}
	if _, err := crypto.OpenKeyFile(body, px.pass); err != nil {
		t.Fatalf("the passphrase does not open what the page gets: %v", err)
	}
	if _, err := crypto.OpenKeyFile(body, "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"); err != crypto.ErrWrongPassphrase {
		t.Fatalf("another passphrase: %v", err)
	}
	if got, want := rec.Header().Get("X-Sealgate-Attempts-Left"), strconv.Itoa(px.maxFail-1); got != want {
		t.Fatalf("attempts left %q, want %q", got, want)
	}
	if f, b := px.attempts(t); f != 1 || b != 1 {
		t.Fatalf("after one key request: failed %d, browser %d", f, b)
	}
	evs := px.events(t, audit.TypeFileDownloaded)
	if len(evs) != 1 || evs[0].Details["format"] != "key" || evs[0].Details["mode"] != "browser" || evs[0].Result != "ok" ||
		evs[0].Details["attempt"] != "1/"+strconv.Itoa(px.maxFail) {
		t.Fatalf("ledger: %+v", evs)
	}
}

// TestBrowserDownloadGivesTheAttemptBack: a complete file.age download in
// mode browser gives back one attempt of the page's, and only such an
// attempt: a wrong passphrase typed on the server path stays counted, and
// so does an attempt followed by a partial download or by a download not
// in mode browser.
func TestBrowserDownloadGivesTheAttemptBack(t *testing.T) {
	px := newPortalFixture(t, 5000, 300000)
	// A wrong passphrase on the server path.
	rec := httptest.NewRecorder()
	px.post(t, rec, "/download", url.Values{"passphrase": {"AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"}, "file": {"0"}})
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("wrong passphrase: %d", rec.Code)
	}
	px.browserKey(t)
	if f, b := px.attempts(t); f != 2 || b != 1 {
		t.Fatalf("failed %d, browser %d", f, b)
	}
	// Not in mode browser (the age command path): nothing given back.
	rec = httptest.NewRecorder()
	px.post(t, rec, "/age", url.Values{"file": {"0"}})
	if rec.Code != http.StatusOK {
		t.Fatalf("file.age: %d", rec.Code)
	}
	if f, b := px.attempts(t); f != 2 || b != 1 {
		t.Fatalf("after a download not in mode browser: failed %d, browser %d", f, b)
	}
	// Partial, in mode browser: nothing given back.
	cw := &cutWriter{left: 200000}
	px.post(t, cw, "/age", url.Values{"file": {"1"}, "mode": {"browser"}})
	if ev, _ := px.lastDownload(t); ev.Result != audit.ResultPartial || ev.Details["mode"] != "browser" {
		t.Fatalf("cut download recorded as %+v", ev)
	}
	if f, b := px.attempts(t); f != 2 || b != 1 {
		t.Fatalf("after a partial download: failed %d, browser %d", f, b)
	}
	// Complete, in mode browser: the page's attempt comes back.
	rec = httptest.NewRecorder()
	px.post(t, rec, "/age", url.Values{"file": {"1"}, "mode": {"browser"}})
	if rec.Code != http.StatusOK || !bytes.HasPrefix(rec.Body.Bytes(), []byte("age-encryption.org/v1\n")) {
		t.Fatalf("file.age in mode browser: %d", rec.Code)
	}
	if f, b := px.attempts(t); f != 1 || b != 0 {
		t.Fatalf("after a complete download in mode browser: failed %d, browser %d", f, b)
	}
	ev, _ := px.lastDownload(t)
	if ev.Result != "ok" || ev.Details["format"] != "age" || ev.Details["mode"] != "browser" || ev.Details["attempt"] != "given back" {
		t.Fatalf("download recorded as %+v", ev)
	}
	// Again: no attempt of the page's is outstanding; the server path's
	// wrong passphrase stays.
	rec = httptest.NewRecorder()
	px.post(t, rec, "/age", url.Values{"file": {"0"}, "mode": {"browser"}})
	if f, b := px.attempts(t); rec.Code != http.StatusOK || f != 1 || b != 0 {
		t.Fatalf("second download: %d, failed %d, browser %d", rec.Code, f, b)
	}
	if ev, _ := px.lastDownload(t); ev.Details["attempt"] != "" {
		t.Fatalf("nothing to give back, yet recorded %+v", ev)
	}
}

// TestBrowserAttemptsLock: the limit counts the page's attempts; the key
// request that finds it reached locks the link (one link.locked event)
// and sends nothing, and the locked link serves nothing on either path.
func TestBrowserAttemptsLock(t *testing.T) {
	px := newPortalFixture(t)
	for i := 1; i <= px.maxFail; i++ {
		rec := px.browserKey(t)
		if rec.Code != http.StatusOK || rec.Header().Get("X-Sealgate-Attempts-Left") != strconv.Itoa(px.maxFail-i) {
			t.Fatalf("key request %d: %d, attempts left %q", i, rec.Code, rec.Header().Get("X-Sealgate-Attempts-Left"))
		}
		if _, locked := px.failures(t); locked {
			t.Fatalf("locked after %d attempts", i)
		}
	}
	rec := px.browserKey(t)
	if rec.Code != http.StatusForbidden || bytes.Contains(rec.Body.Bytes(), []byte("BEGIN AGE")) || !strings.Contains(rec.Body.String(), "ロック") {
		t.Fatalf("request past the limit: %d\n%s", rec.Code, rec.Body)
	}
	if n, locked := px.failures(t); !locked || n != px.maxFail {
		t.Fatalf("past the limit: failed %d, locked %v", n, locked)
	}
	locks := px.events(t, audit.TypeLinkLocked)
	if len(locks) != 1 || locks[0].Details["mode"] != "browser" {
		t.Fatalf("link.locked events: %+v", locks)
	}
	if keys := px.events(t, audit.TypeFileDownloaded); len(keys) != px.maxFail {
		t.Fatalf("%d key.age fetches recorded, want %d", len(keys), px.maxFail)
	}
	for path, form := range map[string]url.Values{
		"/key":      {},
		"/download": {"passphrase": {px.pass}, "file": {"0"}},
		"/age":      {"file": {"0"}, "mode": {"browser"}},
	} {
		rec := httptest.NewRecorder()
		px.post(t, rec, path, form)
		if rec.Code != http.StatusForbidden {
			t.Fatalf("locked link, %s: %d", path, rec.Code)
		}
	}
	if n := len(px.events(t, audit.TypeLinkLocked)); n != 1 {
		t.Fatalf("%d link.locked events", n)
	}
}

// TestBrowserKeySpentLink: when every file's downloads are spent, the key
// request is refused without counting an attempt.
func TestBrowserKeySpentLink(t *testing.T) {
	px := newPortalFixture(t)
	px.exec(t, `UPDATE contracts SET download_limit = 1`)
	for i := range px.files {
		rec := httptest.NewRecorder()
		px.post(t, rec, "/age", url.Values{"file": {strconv.Itoa(i)}, "mode": {"browser"}})
		if rec.Code != http.StatusOK {
			t.Fatalf("file %d: %d", i, rec.Code)
		}
	}
	rec := px.browserKey(t)
	if rec.Code != http.StatusForbidden || bytes.Contains(rec.Body.Bytes(), []byte("BEGIN AGE")) {
		t.Fatalf("key request on a spent link: %d", rec.Code)
	}
	if f, b := px.attempts(t); f != 0 || b != 0 {
		t.Fatalf("spent link: failed %d, browser %d", f, b)
	}
}

// TestBrowserDecryptedReport: the page's report of what it decrypted is
// recorded as such — ok when its SHA-256 is the one recorded at sealing,
// mismatch otherwise — and refused for a file the recipient has not
// downloaded.
func TestBrowserDecryptedReport(t *testing.T) {
	px := newPortalFixture(t)
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	rec := httptest.NewRecorder()
	px.post(t, rec, "/decrypted", url.Values{"file": {"0"}, "sha256": {sum(px.files[0])}})
	if rec.Code != http.StatusBadRequest || len(px.events(t, audit.TypeFileDecrypted)) != 0 {
		t.Fatalf("report before any download: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	px.post(t, rec, "/age", url.Values{"file": {"0"}, "mode": {"browser"}})
	for _, tc := range []struct {
		sha256, result string
		code           int
	}{
		{sum(px.files[0]), "ok", http.StatusNoContent},
		{strings.ToUpper(sum(px.files[0])), "ok", http.StatusNoContent},
		{sum(px.files[1]), "mismatch", http.StatusNoContent},
		{"", "mismatch", http.StatusNoContent},
		{"xyz", "", http.StatusBadRequest},
	} {
		before := len(px.events(t, audit.TypeFileDecrypted))
		rec := httptest.NewRecorder()
		px.post(t, rec, "/decrypted", url.Values{"file": {"0"}, "sha256": {tc.sha256}})
		if rec.Code != tc.code {
			t.Fatalf("report %q: %d, want %d", tc.sha256, rec.Code, tc.code)
		}
		if left := rec.Header().Get("X-Sealgate-Attempts-Left"); tc.code == http.StatusNoContent && left != strconv.Itoa(px.maxFail) {
			t.Fatalf("report %q: attempts left %q, want %d", tc.sha256, left, px.maxFail)
		}
		evs := px.events(t, audit.TypeFileDecrypted)
		if tc.result == "" {
			if len(evs) != before {
				t.Fatalf("refused report %q recorded", tc.sha256)
			}
			continue
		}
		ev := evs[len(evs)-1]
		if len(evs) != before+1 || ev.Result != tc.result || ev.Details["mode"] != "browser" || ev.SHA256 != sum(px.files[0]) || ev.File != "f0.bin" {
			t.Fatalf("report %q recorded as %+v", tc.sha256, ev)
		}
	}
}

// TestLinkPageAllowsExactlyTheScript: the link page of a passphrase
// recipient loads static/decrypt.js with its Subresource Integrity hash,
// and its CSP allows that hash and no other script (no 'self', no
// 'unsafe-inline', no inline script on the page); every other page keeps
// the CSP that allows no script.
func TestLinkPageAllowsExactlyTheScript(t *testing.T) {
	px := newPortalFixture(t)
	js, err := staticFS.ReadFile("static/decrypt.js")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(js)
	want := "sha256-" + base64.StdEncoding.EncodeToString(h[:])

	get := func(path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "http://portal.test"+path, nil)
		rec := httptest.NewRecorder()
		px.h.ServeHTTP(rec, req)
		return rec
	}
	rec := get("/t/" + px.token)
	csp := rec.Header().Get("Content-Security-Policy")
	scriptSrc := regexp.MustCompile(`script-src ([^;]*)`).FindStringSubmatch(csp)
	if scriptSrc == nil || scriptSrc[1] != "'"+want+"'" {
		t.Fatalf("link page CSP %q, want script-src '%s' alone", csp, want)
	}
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Fatalf("link page CSP %q", csp)
	}
	page := rec.Body.String()
	tags := regexp.MustCompile(`<script[^>]*>`).FindAllString(html.UnescapeString(page), -1)
	if len(tags) != 1 || !strings.Contains(tags[0], `integrity="`+want+`"`) || !strings.Contains(tags[0], `src="/static/decrypt.js?v=`) {
		t.Fatalf("script elements on the link page: %q", tags)
	}
	if strings.Contains(page, "<script>") || regexp.MustCompile(`\son[a-z]+=`).MatchString(page) {
		t.Fatal("inline script on the link page")
	}
	src := regexp.MustCompile(`src="(/static/decrypt\.js[^"]*)"`).FindStringSubmatch(tags[0])[1]
	if r := get(src); r.Code != http.StatusOK || !bytes.Equal(r.Body.Bytes(), js) || !strings.Contains(r.Header().Get("Content-Type"), "javascript") {
		t.Fatalf("GET %s: %d %q", src, r.Code, r.Header().Get("Content-Type"))
	}
	// Both ways, each named for who decrypts.
	for _, s := range []string{`id="browser-decrypt"`, "ブラウザで復号する", "サーバーで復号する", `action="/t/` + px.token + `/download"`} {
		if !strings.Contains(page, s) {
			t.Fatalf("the link page lacks %q", s)
		}
	}
	// Other pages: no script at all.
	for _, path := range []string{"/", "/t/" + strings.Repeat("a", 32), "/keys"} {
		if csp := get(path).Header().Get("Content-Security-Policy"); strings.Contains(csp, "script-src") || !strings.Contains(csp, "default-src 'none'") {
			t.Fatalf("%s: CSP %q", path, csp)
		}
	}
}

// TestMemoryLimitStated: the page states the in-memory limit the script
// applies.
func TestMemoryLimitStated(t *testing.T) {
	for _, key := range []string{"bd.save.memory", "bd.msg.toolarge"} {
		for _, l := range []lang{langJA, langEN} {
			if want := strconv.Itoa(memoryLimit>>20) + " MiB"; !strings.Contains(l.T(key), want) {
				t.Errorf("%s (%s) does not state %s: %q", key, l, want, l.T(key))
			}
		}
	}
}

// TestFreeRecordsBounded: views of the link page, key.age fetches for the
// age command and downloads refused at the limit cost nothing, yet each
// is a ledger entry and a write on the database's single writer (which
// mail's commit waits for too); per link, recordsPerMinute of them a
// minute are served and recorded, later ones answer 429 and record
// nothing.
func TestFreeRecordsBounded(t *testing.T) {
	px := newPortalFixture(t)
	get := func() int {
		req := httptest.NewRequest(http.MethodGet, "http://portal.test/t/"+px.token, nil)
		rec := httptest.NewRecorder()
		px.h.ServeHTTP(rec, req)
		return rec.Code
	}
	ledger := func() int {
		var n int
		if err := px.db.Read().QueryRow(`SELECT COUNT(*) FROM ledger_records`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := ledger()
	for i := range recordsPerMinute - 2 {
		if code := get(); code != http.StatusOK {
			t.Fatalf("view %d: %d", i+1, code)
		}
	}
	rec := httptest.NewRecorder()
	px.post(t, rec, "/age", url.Values{"what": {"key"}})
	if rec.Code != http.StatusOK {
		t.Fatalf("key.age: %d", rec.Code)
	}
	// The download limit: one download, then refusals.
	px.exec(t, `UPDATE contracts SET download_limit = 1`)
	rec = httptest.NewRecorder()
	px.post(t, rec, "/age", url.Values{"file": {"0"}})
	if rec.Code != http.StatusOK {
		t.Fatalf("file.age: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	px.post(t, rec, "/age", url.Values{"file": {"0"}})
	if rec.Code != http.StatusForbidden {
		t.Fatalf("file.age past the download limit: %d", rec.Code)
	}
	if got := ledger() - before; got != recordsPerMinute+1 { // and the download itself
		t.Fatalf("%d ledger entries, want %d", got, recordsPerMinute+1)
	}
	for range 50 {
		if code := get(); code != http.StatusTooManyRequests {
			t.Fatalf("a view past the limit: %d", code)
		}
		rec := httptest.NewRecorder()
		px.post(t, rec, "/age", url.Values{"what": {"key"}})
		if rec.Code != http.StatusTooManyRequests {
			t.Fatalf("key.age past the limit: %d", rec.Code)
		}
		rec = httptest.NewRecorder()
		px.post(t, rec, "/age", url.Values{"file": {"0"}})
		if rec.Code != http.StatusTooManyRequests {
			t.Fatalf("a refused download past the limit: %d", rec.Code)
		}
	}
	if got := ledger() - before; got != recordsPerMinute+1 {
		t.Fatalf("%d ledger entries after the flood, want %d", got, recordsPerMinute+1)
	}
}
