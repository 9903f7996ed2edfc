package mimeseal

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRewrite checks the invariants that must hold whatever the input: no panic; on success
// the rendered output parses with go-message, has CRLF line endings only, has exactly one
// notice per sealed part, and holds no 32-byte run of a sealed part's decoded content or raw
// body that does not also occur in the input outside that part.
func FuzzRewrite(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		norm, err := io.ReadAll(NewCRLFReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range [][]byte{in, norm} {
			checkInvariants(t, msg)
		}
	})
}

func checkInvariants(t *testing.T, msg []byte) {
	skel, res, s, spans, err := run(t, msg, Options{Limits: Limits{MaxDepth: 20, MaxParts: 200}})
	if err != nil {
		return
	}
	var tok [12]byte
	rand.Read(tok[:])
	token := "NOTICE-" + hex.EncodeToString(tok[:])
	out := render(t, skel, token)
	if n := bytes.Count(out, []byte(token)); n != len(res.Attachments) {
		t.Fatalf("%d notices for %d sealed parts", n, len(res.Attachments))
	}
	var c crlfCheck
	if !c.ok(out) || c.cr {
		t.Fatalf("bare CR or LF in the output: %q", out)
	}
	l, err := leaves(out, opaquePolicy)
	if err != nil {
		t.Fatalf("output does not parse with go-message: %v\n%q", err, out)
	}
	notices := 0
	for _, x := range l {
		if bytes.Contains(x.body, []byte(token)) {
			notices++
		}
	}
	if notices != len(res.Attachments) {
		t.Fatalf("go-message sees %d notices, %d sealed parts\n%q", notices, len(res.Attachments), out)
	}
	ws := windowsOf(out, token)
	for i, p := range s.parts {
		sp, ok := spans[i]
		if !ok {
			t.Fatalf("no span for part %d", i)
		}
		for _, content := range [][]byte{p.data.Bytes(), msg[sp.start:sp.end]} {
			if leak := leaks(content, msg, ws, sp, true); leak != "" {
				t.Fatalf("part %d (%+v) leaks: %s\ninput %q\noutput %q", i, p.a, leak, msg, out)
			}
		}
	}
}
