package portal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
)

// cutWriter is a response writer whose connection fails after accepting
// left bytes of the body, as a client that goes away does.
type cutWriter struct {
	h    http.Header
	code int
	left int64
	body bytes.Buffer
}

var errCut = errors.New("write: connection reset by peer")

func (c *cutWriter) Header() http.Header {
	if c.h == nil {
		c.h = http.Header{}
	}
	return c.h
}

func (c *cutWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}

func (c *cutWriter) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	if int64(len(p)) <= c.left {
		c.left -= int64(len(p))
		return c.body.Write(p)
	}
	n := int(c.left)
	c.body.Write(p[:n])
	c.left = 0
	return n, errCut
}

// post sends one form to the portal's handler through w.
func (px *portalFixture) post(t *testing.T, w http.ResponseWriter, path string, form url.Values) {
	t.Helper()
	form.Set("csrf", "0123456789abcdef0123456789abcdef")
	req := httptest.NewRequest(http.MethodPost, "http://portal.test/t/"+px.token+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "sg_csrf", Value: form.Get("csrf")})
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			panic(p)
		}
	}()
	px.h.ServeHTTP(w, req)
}

// lastDownload returns the last file.downloaded event for a file.
func (px *portalFixture) lastDownload(t *testing.T) (audit.Event, bool) {
	t.Helper()
	rows, err := px.db.Read().Query(`SELECT data FROM ledger_records WHERE type = ? ORDER BY idx`, audit.TypeFileDownloaded)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var last audit.Event
	found := false
	for rows.Next() {
		var data []byte
		rows.Scan(&data)
		ev, err := audit.ParseRecord(data)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Details["format"] != "key" {
			last, found = ev, true
		}
	}
	return last, found
}

func (px *portalFixture) counts(t *testing.T, idx int) (file, recipient int) {
	t.Helper()
	px.db.Read().QueryRow(`SELECT COALESCE((SELECT rf.downloads FROM recipient_files rf JOIN files f ON f.id = rf.file_id WHERE f.idx = ?), 0), downloads FROM recipients`, idx).
		Scan(&file, &recipient)
	return
}

// TestPartialDownloadAccounting: a download whose connection fails after
// exactly k bytes of the body is a partial download of exactly those bytes
// when they hold plaintext (format plain) or a complete age chunk (format
// age: what the age library decrypts from them), spending the allowance;
// otherwise it is "aborted" and the allowance is given back. The case of
// the issue — everything but the held-back last 64 KiB sent — is the first.
func TestPartialDownloadAccounting(t *testing.T) {
	const size = 300000
	const chunk = 64 << 10
	plainCut := func(k int64) func(int64) int64 { return func(int64) int64 { return k } }
	// For file.age, cuts relative to the start of the payload chunks:
	// cipher size minus the payload (nonce, chunks with their tags).
	chunks := int64((size + chunk - 1) / chunk)
	ageCut := func(k int64) func(int64) int64 {
		return func(cipherSize int64) int64 { return cipherSize - (16 + size + 16*chunks) + 16 + k }
	}
	for _, tc := range []struct {
		name    string
		path    string
		cut     func(cipherSize int64) int64
		partial bool // else aborted (nothing usable sent)
	}{
		{"plain, all but the held-back 64 KiB", "/download", plainCut(size - 64<<10), true},
		{"plain, 1000 bytes", "/download", plainCut(1000), true},
		{"plain, 1 byte", "/download", plainCut(1), true},
		{"plain, nothing", "/download", plainCut(0), false},
		{"age, two chunks and 5 bytes", "/age", ageCut(2*(chunk+16) + 5), true},
		{"age, exactly one chunk", "/age", ageCut(chunk + 16), true},
		{"age, one byte short of a chunk", "/age", ageCut(chunk + 15), false},
		{"age, header only", "/age", ageCut(-10), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			px := newPortalFixture(t, size)
			var cipherSize int64
			px.db.Read().QueryRow(`SELECT cipher_size FROM files`).Scan(&cipherSize)
			cut := tc.cut(cipherSize)
			w := &cutWriter{left: cut}
			form := url.Values{"file": {"0"}, "passphrase": {px.pass}}
			px.post(t, w, tc.path, form)
			if int64(w.body.Len()) != cut {
				t.Fatalf("the client got %d bytes, want %d", w.body.Len(), cut)
			}
			ev, ok := px.lastDownload(t)
			fileN, rcptN := px.counts(t, 0)
			if !tc.partial {
				if !ok || ev.Result != "aborted" || fileN != 0 || rcptN != 0 {
					t.Fatalf("nothing usable sent: event %+v (found %v), allowance used %d, recipient downloads %d; want aborted, 0, 0", ev, ok, fileN, rcptN)
				}
				return
			}
			// What the recipient can have from the bytes it got.
			can := int64(w.body.Len())
			if tc.path == "/age" {
				kw := httptest.NewRecorder()
				px.post(t, kw, "/age", url.Values{"what": {"key"}})
				id, err := crypto.OpenKeyFile(kw.Body.Bytes(), px.pass)
				if err != nil {
					t.Fatal(err)
				}
				can = 0
				// What decrypts before the file's cut end.
				can, _ = crypto.DecryptFile(io.Discard, bytes.NewReader(w.body.Bytes()), id)
			} else if !bytes.Equal(w.body.Bytes(), px.files[0][:cut]) {
				t.Fatal("the plain bytes sent are not the file's beginning")
			}
			if !ok || ev.Result != audit.ResultPartial || ev.Details["bytes"] != strconv.FormatInt(cut, 10) ||
				ev.Details["plaintext_bytes"] != strconv.FormatInt(can, 10) || audit.PartialBytes(ev) != can || ev.File != "f0.bin" {
				t.Fatalf("event %+v (found %v); want result partial, bytes %d, plaintext_bytes %d", ev, ok, cut, can)
			}
			if fileN != 1 || rcptN != 1 {
				t.Fatalf("allowance used %d, recipient downloads %d; want 1 and 1", fileN, rcptN)
			}
		})
	}
	t.Run("complete", func(t *testing.T) {
		px := newPortalFixture(t, size)
		w := httptest.NewRecorder()
		px.post(t, w, "/download", url.Values{"file": {"0"}, "passphrase": {px.pass}})
		ev, ok := px.lastDownload(t)
		if !bytes.Equal(w.Body.Bytes(), px.files[0]) || !ok || ev.Result != "ok" || ev.Details["bytes"] != "" {
			t.Fatalf("complete download: %d bytes, event %+v", w.Body.Len(), ev)
		}
	})
}

// TestStalledDownloadIsCut: a client that stops reading in the middle of a
// download (over a real connection, a small receive window) is cut after
// StallTimeout, and the download is recorded as partial, not held open
// for as long as the client keeps the connection.
func TestStalledDownloadIsCut(t *testing.T) {
	px := newPortalFixture(t, 8<<20)
	d := px.deps
	d.StallTimeout = 300 * time.Millisecond
	web, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	const csrf = "0123456789abcdef0123456789abcdef"
	form := url.Values{"file": {"0"}, "passphrase": {px.pass}, "csrf": {csrf}}.Encode()
	fmt.Fprintf(conn, "POST /t/%s/download HTTP/1.1\r\nHost: portal.test\r\nContent-Type: application/x-www-form-urlencoded\r\nCookie: sg_csrf=%s\r\nContent-Length: %d\r\n\r\n%s",
		px.token, csrf, len(form), form)
	head := make([]byte, 16<<10)
	if _, err := io.ReadFull(conn, head); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		t.Fatalf("response: %.200q", head)
	}
	// The client reads no more.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ev, ok := px.lastDownload(t)
		if ok && ev.Result == "partial" {
			sent, _ := strconv.ParseInt(ev.Details["bytes"], 10, 64)
			if sent <= 0 || sent >= 8<<20 {
				t.Fatalf("partial download of %d bytes of 8 MiB", sent)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stalled download was not cut within 20 s (last download event: %+v, found %v)", ev, ok)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
