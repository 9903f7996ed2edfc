package gateway

import (
	"bytes"
	"context"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"

	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/internal/mailcorpus"
)

// TestCorpus sends the messages of public mail-parsing libraries' test suites (read from the
// module cache, internal/mailcorpus) through the gateway, each to an external recipient, under
// the default policy, and checks what the recipient's copy holds against an independent parse
// of the message (go-message): no part that is not a plain text or HTML body reaches the
// copy, by a 32-byte run of its decoded or raw content; a message sealed whole shows nothing of
// its body. Nothing may crash, and at most 5 % may be refused. The figure is logged.
func TestCorpus(t *testing.T) {
	files, err := mailcorpus.Files()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 90 {
		t.Fatalf("%d messages in the corpus, want the whole of it", len(files))
	}
	g := newTestGateway(t, nil, nil)
	refused, whole := 0, 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(filepath.Dir(f)) + "/" + filepath.Base(f)
		id, err := g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}}, bytes.NewReader(raw))
		if err != nil {
			refused++
			t.Logf("%s: refused %d: %v", name, smtpReply(err).Code, err)
			continue
		}
		cp := renderCopy(t, g, id)
		norm, _ := io.ReadAll(mimeseal.NewCRLFReader(mimeseal.SkipMboxFrom(bytes.NewReader(raw))))
		if sealedWhole(t, g, id) {
			whole++
			body := norm[headerEnd(norm):]
			if leak := firstRun(body, cp, nil); leak != "" {
				t.Errorf("%s (sealed whole): the copy shows %q", name, leak)
			}
			continue
		}
		checkCopy(t, name, norm, cp)
	}
	t.Logf("corpus: %d messages, %d refused (%.1f %%), %d sealed whole as unparseable", len(files), refused, 100*float64(refused)/float64(len(files)), whole)
	if refused*20 > len(files) {
		t.Errorf("%d of %d messages refused: more than 5 %%", refused, len(files))
	}
}

// renderCopy renders the external recipient's copy of message id, a plain notice in place of
// each sealed part.
func renderCopy(t *testing.T, g *testGW, id string) []byte {
	t.Helper()
	var spool string
	if err := g.DB.Read().QueryRow(`SELECT spool FROM outbound WHERE message_id = ? AND kind IN ('copy', 'sealed')`, id).Scan(&spool); err != nil {
		t.Fatal(err)
	}
	r, err := g.spool.open(context.Background(), spool)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out bytes.Buffer
	if err := mimeseal.Render(&out, r, func(w io.Writer, a mimeseal.Attachment) error {
		_, err := io.WriteString(w, "Content-Type: text/plain\r\n\r\nSEALED\r\n")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func sealedWhole(t *testing.T, g *testGW, id string) bool {
	var n int
	g.DB.Read().QueryRow(`SELECT COUNT(*) FROM files f JOIN transfers tr ON tr.id = f.transfer_id WHERE tr.message_id = ? AND f.name = 'message.eml' AND f.content_type = 'message/rfc822'`, id).Scan(&n)
	return n == 1
}

// headerEnd is where the body of b starts (len(b) for a message without one).
func headerEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return len(b)
}

// checkCopy parses the message with go-message and checks that no leaf that is not a text body
// reaches the copy.
func checkCopy(t *testing.T, name string, msg, cp []byte) {
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		t.Logf("%s: go-message cannot read it (%v): split by its boundary", name, err)
		checkChunks(t, name, msg, cp)
		return
	}
	var secret, open [][]byte
	walkErr := e.Walk(func(path []int, ent *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return err
		}
		if ent.MultipartReader() != nil {
			return nil
		}
		rawBody, _ := io.ReadAll(ent.Body)
		mt, _, _ := ent.Header.ContentType()
		disp, params, _ := mime.ParseMediaType(ent.Header.Get("Content-Disposition"))
		_, ctParams, _ := ent.Header.ContentType()
		body := (mt == "" || mt == "text/plain" || mt == "text/html") && (disp == "" || disp == "inline") && params["filename"] == "" && ctParams["name"] == ""
		if body {
			open = append(open, rawBody)
		} else {
			secret = append(secret, rawBody)
		}
		return nil
	})
	if walkErr != nil {
		t.Logf("%s: go-message cannot walk it (%v): split by its boundary", name, walkErr)
		checkChunks(t, name, msg, cp)
		return
	}
	for _, s := range secret {
		if leak := firstRun(s, cp, append(open, msg[:headerEnd(msg)])); leak != "" {
			t.Errorf("%s: a part that is not a text body reached the copy: %q", name, leak)
		}
	}
}

// checkChunks is the oracle for a message go-message cannot walk: its body is split on the
// top-level boundary's lines, and each part is a text body only if every line of its header is
// a field (or a continuation) and says so; any other part must not reach the copy.
func checkChunks(t *testing.T, name string, msg, cp []byte) {
	h := msg[:headerEnd(msg)]
	boundary := ""
	for _, f := range looseFieldsOf(h) {
		if strings.EqualFold(f[0], "Content-Type") {
			if _, p, err := mime.ParseMediaType(f[1]); err == nil {
				boundary = p["boundary"]
			}
		}
	}
	body := msg[len(h):]
	if boundary == "" {
		if leak := firstRun(body, cp, nil); leak != "" {
			t.Errorf("%s: the copy shows %q", name, leak)
		}
		return
	}
	var secret, open [][]byte
	for _, chunk := range bytes.Split(body, []byte("\r\n--"+boundary)) {
		ph := chunk[:min(headerEnd(chunk), len(chunk))]
		fields := looseFieldsOf(ph)
		text := fields != nil
		for _, f := range fields {
			switch strings.ToLower(f[0]) {
			case "content-type":
				mt, p, err := mime.ParseMediaType(f[1])
				text = text && err == nil && (mt == "text/plain" || mt == "text/html") && p["name"] == ""
			case "content-disposition":
				d, p, err := mime.ParseMediaType(f[1])
				text = text && err == nil && (d == "inline" || d == "") && p["filename"] == ""
			}
		}
		if text {
			open = append(open, chunk)
		} else {
			secret = append(secret, chunk[len(ph):])
		}
	}
	for _, s := range secret {
		if leak := firstRun(s, cp, append(open, h)); leak != "" {
			t.Errorf("%s: a part that is not a text body reached the copy: %q", name, leak)
		}
	}
}

// looseFieldsOf returns the fields of a header, or nil when a line is neither a field nor a
// continuation.
func looseFieldsOf(h []byte) [][2]string {
	var out [][2]string
	for _, line := range strings.Split(strings.TrimRight(string(h), "\r\n"), "\r\n") {
		if strings.HasPrefix(line, "--") && len(out) == 0 {
			continue // the rest of a delimiter line
		}
		if line != "" && (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1][1] += line
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil
		}
		out = append(out, [2]string{k, strings.TrimSpace(v)})
	}
	if out == nil {
		out = [][2]string{}
	}
	return out
}

// firstRun returns the first 32-byte run of content (without a line break) that occurs in out
// and in none of allowed, or "".
func firstRun(content, out []byte, allowed [][]byte) string {
	const n = 32
	idx := map[string]bool{}
	for i := 0; i+n <= len(out); i++ {
		idx[string(out[i:i+n])] = true
	}
	for i := 0; i+n <= len(content); i++ {
		w := content[i : i+n]
		if bytes.ContainsAny(w, "\r\n") || !idx[string(w)] || strings.TrimSpace(string(w)) == "" {
			continue
		}
		ok := false
		for _, a := range allowed {
			if bytes.Contains(a, w) {
				ok = true
				break
			}
		}
		if !ok {
			return string(w)
		}
	}
	return ""
}
