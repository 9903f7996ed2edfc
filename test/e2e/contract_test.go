package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/internal/testsink"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

// cliRun runs a sealgate subcommand with extra environment and returns its
// combined output and exit status.
func cliRun(t testing.TB, g *gw, extraEnv []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append([]string{}, g.env...), extraEnv...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("sealgate %v: %v", args, err)
	return "", -1
}

func cliOK(t testing.TB, g *gw, args ...string) string {
	t.Helper()
	out, code := cliRun(t, g, nil, args...)
	if code != 0 {
		t.Fatalf("sealgate %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func subjectJA(s string) string { return mime.BEncoding.Encode("UTF-8", s) }

// sealedObjects counts the sealed objects in an fs store: the store keeps
// key K at <data_dir>/objects/objects/K, and sealed files have keys
// sealed/<transfer>/<n>.age (checkpoints and certificates live under
// ledger/ and are not counted).
func sealedObjects(t testing.TB, g *gw) int {
	return countFiles(t, filepath.Join(g.dir, "objects", "objects", "sealed"))
}

func refusal(t testing.TB, err error) *textproto.Error {
	t.Helper()
	var te *textproto.Error
	if !errors.As(err, &te) {
		t.Fatalf("expected an SMTP refusal, got %v", err)
	}
	return te
}

// TestContractRefusals: mail to a recipient the contract does not allow,
// or under a contract that has ended, is refused before 250 with a reason
// in Japanese and English, and nothing of it is delivered or kept.
func TestContractRefusals(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	cliOK(t, g, "contract", "add", "C-2026-001", "--name", "見積支援", "--domains", "client.example", "--manager", "boss@corp.example", "--strip-tag")
	cliOK(t, g, "contract", "add", "C-OLD", "--domains", "client.example", "--start", "2020-01-01", "--end", "2020-12-31")
	cliOK(t, g, "contract", "add", "C-DONE", "--domains", "client.example")
	cliOK(t, g, "contract", "end", "C-DONE", "--yes")
	out := cliOK(t, g, "contract", "list")
	if !strings.Contains(out, "C-2026-001") || !strings.Contains(out, "client.example") || !regexp.MustCompile(`C-DONE\s+ended`).MatchString(out) {
		t.Fatalf("contract list:\n%s", out)
	}

	data := randomBytes(20000)
	msg := func(subject string) []byte {
		return buildMessage(map[string]string{"From": sender, "To": extA + ", " + extB, "Subject": subject},
			"body", attachment{name: "q.bin", contentType: "application/octet-stream", data: data})
	}
	// dave@partner.example is not on contract C-2026-001.
	te := refusal(t, send(t, g.smtpAddr, sender, []string{extA, extB, internal}, msg("[C-2026-001] quote")))
	if te.Code != 550 || !strings.Contains(te.Msg, extB) || !strings.Contains(te.Msg, "許可") || !strings.Contains(te.Msg, "not allowed") {
		t.Fatalf("outsider refusal: %d %s", te.Code, te.Msg)
	}
	te = refusal(t, send(t, g.smtpAddr, sender, []string{extA}, msg(subjectJA("【C-OLD】見積"))))
	// (the scheduler may already have ended it: either reason will do)
	if te.Code != 550 || !strings.Contains(te.Msg, "C-OLD") || !(strings.Contains(te.Msg, "end date") || strings.Contains(te.Msg, "has ended")) {
		t.Fatalf("past end date: %d %s", te.Code, te.Msg)
	}
	te = refusal(t, send(t, g.smtpAddr, sender, []string{extA}, msg("[C-DONE] quote")))
	if te.Code != 550 || !strings.Contains(te.Msg, "has ended") || !strings.Contains(te.Msg, "終了") {
		t.Fatalf("ended contract: %d %s", te.Code, te.Msg)
	}
	// The header names the contract too.
	withHeader := append([]byte("X-Sealgate-Contract: C-DONE\r\n"), msg("no tag")...)
	if te = refusal(t, send(t, g.smtpAddr, sender, []string{extA}, withHeader)); te.Code != 550 {
		t.Fatalf("ended contract by header: %d %s", te.Code, te.Msg)
	}
	// Refused before the commit: nothing was recorded, so nothing can be
	// delivered, now or later.
	if n := dbInt(t, g, `SELECT COUNT(*) FROM messages`) + dbInt(t, g, `SELECT COUNT(*) FROM outbound`); n != 0 {
		t.Fatalf("%d rows recorded for refused mail", n)
	}
	if n := sink.Count(); n != 0 {
		t.Fatalf("%d messages delivered for refused mail", n)
	}
	if n := sealedObjects(t, g); n != 0 {
		t.Fatalf("%d objects stored for refused mail", n)
	}
	if n := countFiles(t, filepath.Join(g.dir, "spool")) + dbInt(t, g, `SELECT COUNT(*) FROM spool_files`); n != 0 {
		t.Fatalf("%d spool files left", n)
	}
	refused := 0
	for _, ev := range g.ledger() {
		if ev.Type == "message.refused" {
			refused++
		}
	}
	if refused != 4 {
		t.Fatalf("%d message.refused events, want 4", refused)
	}

	// Allowed: delivered, tag stripped from what the recipient sees.
	if err := send(t, g.smtpAddr, sender, []string{extA}, msg("[C-2026-001] quote")); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(30*time.Second, func(m []testsink.Message) bool { return len(classify(m).copies) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := parseMessage(t, classify(msgs).copies[extA].Data)
	if s := hdr.Get("Subject"); s != "quote" {
		t.Fatalf("subject seen by the recipient: %q", s)
	}
	var code string
	g.db().QueryRow(`SELECT c.code FROM transfers t JOIN contracts c ON c.id = t.contract_id`).Scan(&code)
	if code != "C-2026-001" {
		t.Fatalf("transfer under %q", code)
	}
}

type sentTransfer struct {
	id     string
	tokens map[string]string // recipient → link token
	pass   map[string]string // recipient → passphrase
}

// sendAndCollect sends msg, waits for every external recipient's copy and
// key notice, and returns the transfer's id, links and passphrases.
func sendAndCollect(t *testing.T, g *gw, sink *testsink.Sink, rcpts []string, msg []byte) sentTransfer {
	t.Helper()
	before := len(sink.Messages())
	if err := send(t, g.smtpAddr, sender, rcpts, msg); err != nil {
		t.Fatal(err)
	}
	var ext []string
	for _, r := range rcpts {
		if !strings.HasSuffix(r, "@corp.example") {
			ext = append(ext, r)
		}
	}
	msgs, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool {
		d := classify(m[before:])
		return len(d.copies) == len(ext) && len(d.keys) == len(ext)
	})
	if err != nil {
		t.Fatal(err)
	}
	d := classify(msgs[before:])
	st := sentTransfer{tokens: map[string]string{}, pass: map[string]string{}}
	for _, r := range ext {
		_, st.tokens[r] = linkOf(t, d.copies[r])
		st.pass[r] = passphraseOf(t, d.keys[r])
	}
	g.db().QueryRow(`SELECT t.id FROM recipients r JOIN transfers t ON t.id = r.transfer_id WHERE r.token_hash = ?`,
		tokenHash(st.tokens[ext[0]])).Scan(&st.id)
	if st.id == "" {
		t.Fatal("transfer not found")
	}
	return st
}

// holdings is everything the gateway holds: every value in its database
// and every key file in its data directory.
func holdings(t *testing.T, g *gw, passphrases ...string) *seed.Holdings {
	t.Helper()
	var keyFiles [][]byte
	filepath.Walk(filepath.Join(g.dir, "keys"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			keyFiles = append(keyFiles, b)
		}
		return nil
	})
	if len(keyFiles) == 0 {
		t.Fatal("no key files found")
	}
	h, err := seed.Gather(context.Background(), g.db(), keyFiles, passphrases)
	if err != nil {
		t.Fatal(err)
	}
	h.Expand()
	return h
}

// TestRevokeCryptoShredding: revoking a recipient makes the link page say
// so, the portal gives neither the file nor key.age, and a copy of
// file.age taken from storage before cannot be decrypted with anything the
// gateway holds — every key and value in its database and key files — even
// together with the recipient's passphrase.
func TestRevokeCryptoShredding(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	cliOK(t, g, "contract", "add", "C-REV", "--domains", "client.example,partner.example", "--manager", "boss@corp.example")
	data := randomBytes(40000)
	st := sendAndCollect(t, g, sink, []string{extA, extB}, buildMessage(map[string]string{"From": sender, "To": extA + ", " + extB, "Subject": "[C-REV] drawings"},
		"body", attachment{name: "図面.dwg", contentType: "application/octet-stream", data: data}))
	objPath := filepath.Join(g.dir, "objects", "objects", "sealed", st.id, "0.age")
	stolen, err := os.ReadFile(objPath) // a copy taken from storage before revocation
	if err != nil {
		t.Fatal(err)
	}
	// Control: before revocation, the gateway's holdings and carol's
	// passphrase open it (so the check after revocation can fail).
	if pt, ok := holdings(t, g, st.pass[extA]).Open(stolen); !ok || !bytes.Equal(pt, data) {
		t.Fatal("control failed: the file cannot be opened before revocation")
	}

	out := cliOK(t, g, "transfer", "revoke", st.id, "--recipient", extA, "--reason", "mis-sent")
	if !strings.Contains(out, extA) {
		t.Fatalf("revoke output:\n%s", out)
	}
	resp, page := getEN(t, g.url("/t/"+st.tokens[extA]))
	if resp.StatusCode != http.StatusGone || !contains(page, "revoked") || !contains(page, sender) || !contains(page, "boss@corp.example") {
		t.Fatalf("link page after revocation: %d\n%s", resp.StatusCode, page)
	}
	resp, body := postForm(t, g.url("/t/"+st.tokens[extA]+"/download"), form("passphrase", st.pass[extA], "file", "0"))
	if resp.StatusCode == 200 || bytes.Contains(body, data[:100]) {
		t.Fatalf("file served after revocation: %d", resp.StatusCode)
	}
	resp, body = postForm(t, g.url("/t/"+st.tokens[extA]+"/age"), form("what", "key"))
	if resp.StatusCode == 200 || contains(body, "AGE ENCRYPTED FILE") {
		t.Fatalf("key.age served after revocation: %d", resp.StatusCode)
	}
	h := holdings(t, g, st.pass[extA])
	if _, ok := h.Open(stolen); ok {
		t.Fatalf("after revocation, what the gateway holds (%d values, %d decrypted) and carol's passphrase still open file.age", len(h.Blobs), h.Opened)
	}
	// Dave is not affected.
	resp, body = postForm(t, g.url("/t/"+st.tokens[extB]+"/download"), form("passphrase", st.pass[extB], "file", "0"))
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("dave's download after carol's revocation: %d", resp.StatusCode)
	}

	// Revoking the whole transfer deletes the object.
	cliOK(t, g, "transfer", "revoke", st.id)
	if _, err := os.Stat(objPath); !os.IsNotExist(err) {
		t.Fatalf("object still on disk: %v", err)
	}
	if _, ok := holdings(t, g, st.pass[extA], st.pass[extB]).Open(stolen); ok {
		t.Fatal("after revoking everyone, file.age can still be opened")
	}
	var seq []string
	for _, ev := range g.ledger() {
		if ev.Transfer == st.id {
			switch ev.Type {
			case "recipient.revoked", "transfer.revoked", "key.destroyed", "object.deleted", "object.absent":
				seq = append(seq, ev.Type)
			}
		}
	}
	want := "recipient.revoked key.destroyed transfer.revoked key.destroyed object.deleted object.absent"
	if strings.Join(seq, " ") != want {
		t.Fatalf("ledger:\n got %v\nwant %s", seq, want)
	}
	out = cliOK(t, g, "transfer", "show", st.id)
	if !strings.Contains(out, "revoked") {
		t.Fatalf("transfer show:\n%s", out)
	}
}

// TestExpiryPurgeAndLimit: an expired transfer is purged by the scheduler
// (keys destroyed, objects deleted and proven absent), its page says it
// expired and whom to ask; a recipient cannot download beyond the limit.
func TestExpiryPurgeAndLimit(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{
		"SEALGATE_LINK_EXPIRY=8s", "SEALGATE_LIFECYCLE_INTERVAL=1s", "SEALGATE_DOWNLOAD_LIMIT=2"}})
	data := randomBytes(3000)
	st := sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "expiring"},
		"body", attachment{name: "e.bin", contentType: "application/octet-stream", data: data}))
	for i := 0; i < 2; i++ {
		resp, body := postForm(t, g.url("/t/"+st.tokens[extA]+"/download"), form("passphrase", st.pass[extA], "file", "0"))
		if resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Fatalf("download %d: %d", i+1, resp.StatusCode)
		}
	}
	resp, page := postFormEN(t, g.url("/t/"+st.tokens[extA]+"/download"), form("passphrase", st.pass[extA], "file", "0"))
	if resp.StatusCode != http.StatusForbidden || !contains(page, "download limit") || contains(page, string(data[:64])) {
		t.Fatalf("download beyond the limit: %d\n%s", resp.StatusCode, page)
	}
	refused := false
	for _, ev := range g.ledger() {
		if ev.Type == "file.downloaded" && ev.Result == "refused" {
			refused = true
		}
	}
	if !refused {
		t.Fatal("no ledger event for the refused download")
	}

	waitFor(t, 30*time.Second, "the expired transfer to be purged", func() bool {
		var status string
		var absent int
		g.db().QueryRow(`SELECT t.status, COUNT(f.absent_at) FROM transfers t JOIN files f ON f.transfer_id = t.id WHERE t.id = ?`, st.id).Scan(&status, &absent)
		return status == "expired" && absent == 1
	})
	if n := sealedObjects(t, g); n != 0 {
		t.Fatalf("%d objects left after expiry", n)
	}
	resp, page = getEN(t, g.url("/t/"+st.tokens[extA]))
	if resp.StatusCode != http.StatusGone || !contains(page, "expired") || !contains(page, sender) {
		t.Fatalf("expired link page: %d\n%s", resp.StatusCode, page)
	}
	var keys int
	g.db().QueryRow(`SELECT COUNT(*) FROM recipients WHERE key_wrapped IS NOT NULL`).Scan(&keys)
	if keys != 0 {
		t.Fatal("the expired recipient's key was kept")
	}
	var seq []string
	for _, ev := range g.ledger() {
		if ev.Transfer == st.id && (ev.Type == "transfer.expired" || ev.Type == "key.destroyed" || ev.Type == "object.deleted" || ev.Type == "object.absent") {
			seq = append(seq, ev.Type)
		}
	}
	if strings.Join(seq, " ") != "transfer.expired key.destroyed object.deleted object.absent" {
		t.Fatalf("ledger: %v", seq)
	}
}

var certPathRE = regexp.MustCompile(`JSON: (\S+\.json\.gz)`)

// certDocument returns the JSON document of a certificate file: a v4 file
// (two gzip members) uncompressed.
func certDocument(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the certificate is not compressed: %v", err)
	}
	doc, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// editCertificate returns a v4 certificate file whose first member (the
// certificate's content) is edit of the original, compressed again; the
// second member (the signature) is kept: what someone without the key
// could make.
func editCertificate(t *testing.T, data []byte, edit func([]byte) []byte) []byte {
	t.Helper()
	br := bytes.NewReader(data)
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	head, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	sig := data[len(data)-br.Len():]
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(edit(head))
	zw.Close()
	return append(out.Bytes(), sig...)
}

// TestContractEndCertificate: ending a contract removes every object and
// key, says so on the link pages, and issues a certificate that verifies
// offline; a tampered certificate does not.
func TestContractEndCertificate(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	cliOK(t, g, "contract", "add", "C-END", "--name", "設計支援", "--counterparty", "Client KK",
		"--domains", "client.example,partner.example", "--manager", "boss@corp.example")
	a, b := randomBytes(30000), randomBytes(5000)
	st1 := sendAndCollect(t, g, sink, []string{extA, extB, internal}, buildMessage(map[string]string{"From": sender, "To": extA + ", " + extB + ", " + internal,
		"Subject": "[C-END] one"}, "body", attachment{name: "仕様書.pdf", contentType: "application/pdf", data: a},
		attachment{name: "b.bin", contentType: "application/octet-stream", data: b}))
	st2 := sendAndCollect(t, g, sink, []string{extB}, buildMessage(map[string]string{"From": sender, "To": extB, "Subject": "[C-END] two"},
		"body", attachment{name: "c.bin", contentType: "application/octet-stream", data: randomBytes(7000)}))
	// Carol downloads the PDF before the end.
	if resp, body := postForm(t, g.url("/t/"+st1.tokens[extA]+"/download"), form("passphrase", st1.pass[extA], "file", "0")); resp.StatusCode != 200 || !bytes.Equal(body, a) {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	if n := sealedObjects(t, g); n != 3 {
		t.Fatalf("%d objects before the end", n)
	}

	out, code := cliRun(t, g, nil, "contract", "end", "C-END")
	if code != 2 || !strings.Contains(out, "--yes") {
		t.Fatalf("end without confirmation: exit %d\n%s", code, out)
	}
	out = cliOK(t, g, "contract", "end", "C-END", "--yes", "--reason", "契約満了")
	m := certPathRE.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "objects:") {
		t.Fatalf("contract end output:\n%s", out)
	}
	certPath := m[1]
	if n := sealedObjects(t, g); n != 0 {
		t.Fatalf("%d objects left after the contract ended", n)
	}
	var keys, kek, pending int
	g.db().QueryRow(`SELECT COUNT(*) FROM recipients WHERE key_wrapped IS NOT NULL`).Scan(&keys)
	g.db().QueryRow(`SELECT COUNT(*) FROM contracts WHERE code = 'C-END' AND kek_wrapped IS NOT NULL`).Scan(&kek)
	g.db().QueryRow(`SELECT COUNT(*) FROM outbound WHERE secret IS NOT NULL`).Scan(&pending)
	if keys+kek+pending != 0 {
		t.Fatalf("left: %d transfer keys, %d contract keys, %d secrets", keys, kek, pending)
	}
	for _, tok := range []string{st1.tokens[extA], st2.tokens[extB]} {
		resp, page := getEN(t, g.url("/t/"+tok))
		if resp.StatusCode != http.StatusGone || !contains(page, "destroyed") {
			t.Fatalf("link page after the end: %d\n%s", resp.StatusCode, page)
		}
	}

	pub := filepath.Join(g.dir, "keys", "ledger.pub")
	out = cliOK(t, g, "audit", "verify-certificate", "--key", "@"+pub, certPath)
	if !strings.Contains(out, "verifies") || !strings.Contains(out, "3 files") {
		t.Fatalf("verify-certificate:\n%s", out)
	}
	certFile, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	cert := certDocument(t, certFile)
	for _, want := range []string{`"downloaded": true`, "仕様書.pdf", `"operator": "cli`, "boss@corp.example", "契約満了", `"internal_recipients"`} {
		if !bytes.Contains(cert, []byte(want)) {
			t.Errorf("certificate lacks %s", want)
		}
	}
	html, err := os.ReadFile(strings.TrimSuffix(certPath, ".json.gz") + ".html")
	if err != nil || !bytes.Contains(html, []byte("削除証明書")) || !bytes.Contains(html, []byte("ダウンロード済み")) {
		t.Fatalf("HTML certificate: %v", err)
	}
	id := strings.TrimSuffix(filepath.Base(certPath), ".json.gz")
	if _, err := os.Stat(filepath.Join(g.dir, "objects", "objects", "ledger", "certificates", id+".json.gz")); err != nil {
		t.Fatalf("certificate not in object storage: %v", err)
	}
	// Tampered: one hex digit of a file's hash, compressed again.
	tampered := editCertificate(t, certFile, func(doc []byte) []byte {
		return regexp.MustCompile(`("sha256": ")([0-9a-f])`).ReplaceAllFunc(doc, func(s []byte) []byte {
			s = bytes.Clone(s)
			if s[len(s)-1] == '0' {
				s[len(s)-1] = '1'
			} else {
				s[len(s)-1] = '0'
			}
			return s
		})
	})
	bad := filepath.Join(t.TempDir(), "tampered.json.gz")
	os.WriteFile(bad, tampered, 0o600)
	out, code = cliRun(t, g, nil, "audit", "verify-certificate", "--key", "@"+pub, bad)
	if code == 0 || !strings.Contains(out, "改ざん") {
		t.Fatalf("a tampered certificate: exit %d\n%s", code, out)
	}
	// Ending it again writes the same certificate out again.
	out = cliOK(t, g, "contract", "end", "C-END")
	if !strings.Contains(out, id) {
		t.Fatalf("second end:\n%s", out)
	}
}

// TestContractEndCrashResumes: the process destroying a contract dies
// half-way (a fault-injection hook exits it after N objects, as a crash
// would); running `contract end` again finishes, and so does a restarted
// `serve` for another contract. Each step is recorded once and the
// certificates verify.
func TestContractEndCrashResumes(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	for _, code := range []string{"C-CRASH", "C-CRASH2"} {
		cliOK(t, g, "contract", "add", code, "--domains", "client.example")
		for i := 0; i < 3; i++ {
			var atts []attachment
			for j := 0; j < 3; j++ {
				atts = append(atts, attachment{name: "f.bin", contentType: "application/octet-stream", data: randomBytes(2000 + j)})
			}
			sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[" + code + "] part"}, "body", atts...))
		}
	}
	if n := sealedObjects(t, g); n != 18 {
		t.Fatalf("%d objects", n)
	}
	crash := []string{"SEALGATE_TEST_CRASH_AFTER_OBJECTS=4", "SEALGATE_DELETE_WORKERS=2"}
	status := func(code string) string {
		var s string
		g.db().QueryRow(`SELECT status FROM contracts WHERE code = ?`, code).Scan(&s)
		return s
	}
	objectsOf := func(code string) int {
		var n int
		g.db().QueryRow(`SELECT COUNT(*) FROM files f JOIN transfers t ON t.id = f.transfer_id JOIN contracts c ON c.id = t.contract_id
			WHERE c.code = ? AND f.absent_at IS NULL`, code).Scan(&n)
		return n
	}

	// 1. The CLI dies; running it again resumes.
	out, code := cliRun(t, g, crash, "contract", "end", "C-CRASH", "--yes")
	if code != 3 || status("C-CRASH") != "ending" || strings.Contains(out, "JSON:") {
		t.Fatalf("crash: exit %d, status %s\n%s", code, status("C-CRASH"), out)
	}
	var deletedRecorded int
	var kek []byte
	g.db().QueryRow(`SELECT COUNT(f.deleted_at) FROM files f JOIN transfers t ON t.id = f.transfer_id JOIN contracts c ON c.id = t.contract_id
		WHERE c.code = 'C-CRASH'`).Scan(&deletedRecorded)
	g.db().QueryRow(`SELECT kek_wrapped FROM contracts WHERE code = 'C-CRASH'`).Scan(&kek)
	if onDisk := sealedObjects(t, g); kek != nil || objectsOf("C-CRASH") != 9 || deletedRecorded == 9 || onDisk <= 9 || onDisk >= 18 {
		t.Fatalf("not a crash half-way: contract key kept %v, %d deletions recorded, %d objects on disk", kek != nil, deletedRecorded, onDisk)
	}
	out = cliOK(t, g, "contract", "end", "C-CRASH")
	if !strings.Contains(out, "JSON:") || status("C-CRASH") != "ended" || objectsOf("C-CRASH") != 0 {
		t.Fatalf("resume: status %s\n%s", status("C-CRASH"), out)
	}
	pub := "@" + filepath.Join(g.dir, "keys", "ledger.pub")
	cliOK(t, g, "audit", "verify-certificate", "--key", pub, certPathRE.FindStringSubmatch(out)[1])

	// 2. The CLI dies; a restarted serve resumes (its scheduler finds the
	// destruction's owner gone).
	if _, code := cliRun(t, g, crash, "contract", "end", "C-CRASH2", "--yes"); code != 3 || status("C-CRASH2") != "ending" {
		t.Fatalf("second crash: exit %d, status %s", code, status("C-CRASH2"))
	}
	g.restart()
	waitFor(t, 60*time.Second, "serve to finish the destruction", func() bool { return status("C-CRASH2") == "ended" })
	if n := sealedObjects(t, g); n != 0 {
		t.Fatalf("%d objects left", n)
	}
	var certs int
	g.db().QueryRow(`SELECT COUNT(*) FROM certificates`).Scan(&certs)
	if certs != 2 {
		t.Fatalf("%d certificates", certs)
	}
	out = cliOK(t, g, "contract", "end", "C-CRASH2")
	cliOK(t, g, "audit", "verify-certificate", "--key", pub, certPathRE.FindStringSubmatch(out)[1])
	counts := map[string]int{}
	for _, ev := range g.ledger() {
		counts[ev.Type]++
	}
	if counts["object.deleted"] != 18 || counts["object.absent"] != 18 || counts["contract.ended"] != 2 || counts["certificate.issued"] != 2 {
		t.Fatalf("ledger counts: %v", counts)
	}
}

// TestContractEndS3: destruction against a real S3 server deletes every
// version of every object.
func TestContractEndS3(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "end")
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: s3Env(cfg)})
	cliOK(t, g, "contract", "add", "C-S3", "--domains", "client.example")
	for i := 0; i < 2; i++ {
		sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[C-S3] s3"},
			"body", attachment{name: "s.bin", contentType: "application/octet-stream", data: randomBytes(10000)}))
	}
	cl, err := s3test.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	versions := func() int {
		n := 0
		for o := range cl.ListObjects(context.Background(), cfg.Bucket, minio.ListObjectsOptions{Prefix: "sealed/", Recursive: true, WithVersions: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			n++
		}
		return n
	}
	if n := versions(); n != 2 {
		t.Fatalf("%d object versions before", n)
	}
	out := cliOK(t, g, "contract", "end", "C-S3", "--yes")
	if n := versions(); n != 0 {
		t.Fatalf("%d object versions left in the bucket", n)
	}
	cliOK(t, g, "audit", "verify-certificate", "--key", "@"+filepath.Join(g.dir, "keys", "ledger.pub"), certPathRE.FindStringSubmatch(out)[1])
}

// TestInboundReceipt: mail from a contract's counterparty to an internal
// recipient, through the inbound listener, is passed through unchanged and
// recorded with each attachment's name, size and SHA-256; nothing is
// relayed outside.
func TestInboundReceipt(t *testing.T) {
	sink := startSink(t)
	inAddr := freeAddr(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{"SEALGATE_INBOUND_ADDR=" + inAddr}})
	cliOK(t, g, "contract", "add", "C-IN", "--domains", "client.example")
	att := randomBytes(12345)
	raw := buildMessage(map[string]string{"From": extA, "To": internal, "Subject": subjectJA("図面の送付")},
		"body", attachment{name: "図面.pdf", contentType: "application/pdf", data: att})
	waitFor(t, 10*time.Second, "the inbound listener", func() bool {
		c, err := dialTCP(inAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err := send(t, inAddr, extA, []string{internal}, raw); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(30*time.Second, func(m []testsink.Message) bool { return len(m) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(msgs[0].Data, raw) || msgs[0].To[0] != internal {
		t.Fatal("inbound mail was not passed through unchanged")
	}
	requireReceipt(t, g, extA, internal, "図面の送付", "図面.pdf", att, "C-IN")
	// No relaying to outside recipients.
	if te := refusal(t, send(t, inAddr, extA, []string{extB}, raw)); te.Code != 550 {
		t.Fatalf("inbound relay: %d %s", te.Code, te.Msg)
	}
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(strings.ToLower(token)))
	return h[:]
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func dialTCP(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }

// getEN and postFormEN ask for English pages with Accept-Language and a
// client of their own, so that no language cookie reaches the shared
// browser of the other tests.
func getEN(t testing.TB, u string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Accept-Language", "en")
	return doEN(t, &http.Client{Timeout: time.Minute}, req)
}

func postFormEN(t testing.TB, u string, v url.Values) (*http.Response, []byte) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: time.Minute}
	base, _ := url.Parse(u)
	base.Path = "/"
	resp, err := c.Get(base.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range jar.Cookies(base) {
		if ck.Name == "sg_csrf" {
			v.Set("csrf", ck.Value)
		}
	}
	req, _ := http.NewRequest("POST", u, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept-Language", "en")
	return doEN(t, c, req)
}

func doEN(t testing.TB, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}
