package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/minio/minio-go/v7"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/internal/testsink"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

// partialPost posts form v to u over a plain TCP connection the way a
// browser whose user gives up does: it reads the response headers and the
// first n bytes of the body, then closes the connection. It returns the
// status and the body bytes read.
func partialPost(t testing.TB, u string, v url.Values, n int) (int, []byte) {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	csrf := csrfToken(t, u)
	v.Set("csrf", csrf)
	body := v.Encode()
	// A small receive buffer, as on a slow link: the gateway cannot push
	// much more than n bytes ahead of the reader.
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: partial-test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\nCookie: sg_csrf=%s\r\n\r\n%s",
		pu.RequestURI(), pu.Host, len(body), csrf, body)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n)
	m, err := io.ReadFull(resp.Body, got)
	if err != nil {
		t.Fatalf("read %d of %d bytes: %v", m, n, err)
	}
	return resp.StatusCode, got
}

// decryptablePrefix is how many plaintext bytes the stock age library
// yields from the first n bytes of the age file data with identity id.
func decryptablePrefix(data []byte, n int64, id age.Identity) int64 {
	r, err := age.Decrypt(bytes.NewReader(data[:min(n, int64(len(data)))]), id)
	if err != nil {
		return 0 // not even the header
	}
	got, _ := io.Copy(io.Discard, r)
	return got
}

// TestPartialDownload: a recipient who breaks off a download has what was
// sent: the plain download that served part of the file and the file.age
// download that served some complete age chunks are recorded as partial
// downloads with the bytes served, spend a download of the allowance,
// trigger the sender's first-download receipt, and appear as downloads in
// the incident view, `sealgate transfer show` and the destruction
// certificate ("downloaded (partial, N bytes)"), which verifies.
func TestPartialDownload(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	runPartialDownload(t, g, sink, func(key string) []byte {
		b, err := os.ReadFile(filepath.Join(g.dir, "objects", "objects", filepath.FromSlash(key)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// TestPartialDownloadS3 is TestPartialDownload with the sealed files in a
// real S3 server: there the client going away also cancels the read from
// storage.
func TestPartialDownloadS3(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "partial")
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: s3Env(cfg)})
	cl, err := s3test.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runPartialDownload(t, g, sink, func(key string) []byte {
		o, err := cl.GetObject(context.Background(), cfg.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		b, err := io.ReadAll(o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// runPartialDownload runs the flow of TestPartialDownload against g;
// object returns a stored object's bytes.
func runPartialDownload(t *testing.T, g *gw, sink *testsink.Sink, object func(key string) []byte) {
	addUser(t, g, "alice", sender, staffPW)
	addUser(t, g, "mgr", "mgr@corp.example", staffPW, "manager:C-PART")
	secret := enrolTOTP(t, g, "mgr")
	cliOK(t, g, "contract", "add", "C-PART", "--domains", "client.example", "--manager", "mgr", "--download-limit", "3")

	// Large enough that the socket buffers (tcp_wmem at most 4 MiB) cannot
	// take the rest of the file after the client stops reading.
	plain, sealed := randomBytes(8<<20), randomBytes(8<<20)
	st := sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[C-PART] large"}, "body",
		attachment{name: "plain.bin", contentType: "application/octet-stream", data: plain},
		attachment{name: "sealed.bin", contentType: "application/octet-stream", data: sealed}))
	token, pass := st.tokens[extA], st.pass[extA]

	// The gateway notices the closed connection when its next write fails.
	downloads := func() map[string]ledgerEvent {
		out := map[string]ledgerEvent{}
		for _, ev := range g.ledger() {
			if ev.Type == "file.downloaded" && ev.File != "" {
				out[ev.File] = ev
			}
		}
		return out
	}
	const n = 300000 // neither a chunk boundary nor near the end
	code, got := partialPost(t, g.url("/t/"+token+"/download"), form("passphrase", pass, "file", "0"), n)
	if code != 200 || !bytes.Equal(got, plain[:n]) {
		t.Fatalf("plain download: %d, first bytes equal: %v", code, bytes.Equal(got, plain[:n]))
	}
	waitFor(t, 30*time.Second, "the broken-off plain download recorded", func() bool { return len(downloads()) == 1 })
	code, _ = partialPost(t, g.url("/t/"+token+"/age"), form("file", "1"), n)
	if code != 200 {
		t.Fatalf("file.age download: %d", code)
	}
	waitFor(t, 30*time.Second, "the broken-off file.age download recorded", func() bool { return len(downloads()) == 2 })
	// A client that went away is not a storage failure.
	for _, line := range strings.Split(g.log.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "component=portal") {
			t.Fatalf("an error logged for a download the client broke off:\n%s", line)
		}
	}
	evs := downloads()
	var objSealed string
	var cipherSize int64
	g.db().QueryRow(`SELECT object_key, cipher_size FROM files WHERE name = 'sealed.bin'`).Scan(&objSealed, &cipherSize)

	ep := evs["plain.bin"]
	t.Logf("plain: %+v", ep)
	servedPlain, _ := strconv.ParseInt(ep.Details["bytes"], 10, 64)
	if ep.Result != "partial" || ep.Details["format"] != "plain" || servedPlain < n || servedPlain >= int64(len(plain)) ||
		ep.Details["plaintext_bytes"] != ep.Details["bytes"] {
		t.Fatalf("the broken-off plain download is recorded as %+v; want result partial, format plain, %d <= bytes < %d, plaintext_bytes = bytes",
			ep, n, len(plain))
	}
	ea := evs["sealed.bin"]
	t.Logf("file.age: %+v", ea)
	servedAge, _ := strconv.ParseInt(ea.Details["bytes"], 10, 64)
	if ea.Result != "partial" || ea.Details["format"] != "age" || servedAge < n || servedAge >= cipherSize {
		t.Fatalf("the broken-off file.age download is recorded as %+v; want result partial, format age, %d <= bytes < %d", ea, n, cipherSize)
	}
	// What the recipient can decrypt from the bytes served, found with the
	// stock age library: key.age (not counted) opened with the passphrase.
	resp, keyAge := postForm(t, g.url("/t/"+token+"/age"), form("what", "key"))
	if resp.StatusCode != 200 {
		t.Fatalf("key.age: %d", resp.StatusCode)
	}
	norm, _ := crypto.NormalizePassphrase(pass)
	sid, err := age.NewScryptIdentity(norm)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := age.Decrypt(armor.NewReader(bytes.NewReader(keyAge)), sid)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(kr)
	if err != nil || len(ids) != 1 {
		t.Fatalf("key.age: %v", err)
	}
	canDecrypt := decryptablePrefix(object(objSealed), servedAge, ids[0])
	if canDecrypt < 64<<10 || ea.Details["plaintext_bytes"] != strconv.FormatInt(canDecrypt, 10) {
		t.Fatalf("file.age: %s bytes served, the age library decrypts %d bytes of them, the ledger says %q", ea.Details["bytes"], canDecrypt, ea.Details["plaintext_bytes"])
	}

	// The allowance is spent: one of three downloads per file.
	for _, name := range []string{"plain.bin", "sealed.bin"} {
		if n := dbInt(t, g, `SELECT rf.downloads FROM recipient_files rf JOIN files f ON f.id = rf.file_id WHERE f.name = ?`, name); n != 1 {
			t.Fatalf("%s: %d downloads counted against the allowance, want 1", name, n)
		}
	}
	if n := dbInt(t, g, `SELECT downloads FROM recipients`); n != 2 {
		t.Fatalf("recipient downloads: %d, want 2", n)
	}
	// The sender hears of the first download, and that it was partial.
	waitFor(t, 30*time.Second, "the download receipt", func() bool {
		for _, m := range noticesTo(t, sink, sender) {
			if strings.Contains(m, extA+" downloaded part of a file for the first time") && strings.Contains(m, "plain.bin") {
				return true
			}
		}
		return false
	})

	// The incident view.
	mgr := signIn(t, g, "mgr", secret)
	code2, page := pageOf(t, mgr, g.url("/manage/transfers/"+st.id+"?lang=en"))
	if code2 != 200 {
		t.Fatalf("incident view: %d", code2)
	}
	summary := page[strings.Index(page, "Downloaded before revocation"):]
	summary = summary[:strings.Index(summary, "</table>")]
	if !strings.Contains(summary, "<strong>Yes</strong>") && !strings.Contains(summary, "<strong>yes</strong>") {
		t.Fatalf("incident view: the recipient is not shown as having downloaded:\n%s", summary)
	}
	for _, want := range []string{fmt.Sprintf("partial, %d bytes", servedPlain), fmt.Sprintf("partial, %d bytes", canDecrypt)} {
		if !strings.Contains(page, want) {
			t.Fatalf("incident view lacks %q", want)
		}
	}
	// `sealgate transfer show`.
	out := cliOK(t, g, "transfer", "show", st.id)
	for _, want := range []string{"plain.bin", "sealed.bin", fmt.Sprintf("partial, %d bytes", servedPlain), fmt.Sprintf("partial, %d bytes", canDecrypt)} {
		if !strings.Contains(out, want) {
			t.Fatalf("transfer show lacks %q:\n%s", want, out)
		}
	}

	// The certificate.
	out = cliOK(t, g, "contract", "end", "C-PART", "--yes")
	m := certPathRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("contract end output:\n%s", out)
	}
	pub := "@" + filepath.Join(g.dir, "keys", "ledger.pub")
	cliOK(t, g, "audit", "verify-certificate", "--key", pub, m[1])
	raw, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	var cert struct {
		Names       []audit.Name // the client's copy: the names the certificate commits to
		Certificate struct {
			Transfers []struct {
				Files []struct {
					Name      string
					Downloads []struct {
						Recipient  string
						Downloaded bool
						Partial    bool
						Bytes      int64
					}
				}
			}
		}
	}
	if err := json.Unmarshal(certDocument(t, raw), &cert); err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, n := range cert.Names {
		if !n.Check() {
			t.Fatalf("certificate: the opening of %q does not reproduce %s", n.Value, n.Commitment)
		}
		names[n.Commitment] = n.Value
	}
	want := map[string]int64{"plain.bin": servedPlain, "sealed.bin": canDecrypt}
	for _, tr := range cert.Certificate.Transfers {
		for _, f := range tr.Files {
			if v, ok := names[f.Name]; ok {
				f.Name = v
			}
			if len(f.Downloads) != 1 || !f.Downloads[0].Downloaded || !f.Downloads[0].Partial || f.Downloads[0].Bytes != want[f.Name] {
				t.Fatalf("certificate, %s: %+v; want downloaded, partial, %d bytes", f.Name, f.Downloads, want[f.Name])
			}
			delete(want, f.Name)
		}
	}
	if len(want) != 0 {
		t.Fatalf("certificate lacks %v", want)
	}
	html, err := os.ReadFile(strings.TrimSuffix(m[1], ".json.gz") + ".html")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []int64{servedPlain, canDecrypt} {
		for _, want := range []string{fmt.Sprintf("ダウンロード済み（一部、%d バイト）", b), fmt.Sprintf("downloaded (partial, %d bytes)", b)} {
			if !bytes.Contains(html, []byte(want)) {
				t.Fatalf("HTML certificate lacks %q", want)
			}
		}
	}
}
