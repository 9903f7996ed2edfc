package mimeseal

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sealgate/sealgate/internal/mailcorpus"
	"github.com/sealgate/sealgate/policy"
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

// fuzzPolicy is a policy whose content rules (an inline logo kept, an invitation kept, an
// encrypted archive refused) take the two-phase path.
var fuzzPolicy = sync.OnceValue(func() *policy.Policy {
	p, err := policy.Load("../../policy/examples/contracts-and-confidential.toml")
	if err != nil {
		panic(err)
	}
	return p
})

func checkInvariants(t *testing.T, msg []byte) {
	for _, opt := range []Options{
		{Limits: Limits{MaxDepth: 20, MaxParts: 200}},
		{Limits: Limits{MaxDepth: 20, MaxParts: 200}, Policy: fuzzPolicy(), Gather: true, Observe: func(*Report) {}},
	} {
		checkRewrite(t, msg, opt)
	}
}

func checkRewrite(t *testing.T, msg []byte, opt Options) {
	skel, res, s, spans, err := run(t, msg, opt)
	if KindOf(err) == Malformed {
		checkSealWhole(t, msg)
		return
	}
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

// checkSealWhole: a malformed message sealed whole gives a copy with one notice and no byte of
// the input after its header.
func checkSealWhole(t *testing.T, msg []byte) {
	s := newMemSealer()
	var skel bytes.Buffer
	var sp span
	res, err := SealWhole(&skel, bytes.NewReader(msg), s, Options{testSpan: func(_ int, start, end int64) { sp = span{start, end} }})
	if err != nil {
		if KindOf(err) == Malformed {
			t.Fatalf("SealWhole: %v", err)
		}
		return
	}
	if len(res.Attachments) != 1 || !res.Attachments[0].Message || len(s.parts) != 1 || !s.parts[0].closed {
		t.Fatalf("SealWhole: %+v", res.Attachments)
	}
	var tok [12]byte
	rand.Read(tok[:])
	token := "NOTICE-" + hex.EncodeToString(tok[:])
	out := render(t, skel.Bytes(), token)
	if n := bytes.Count(out, []byte(token)); n != 1 {
		t.Fatalf("%d notices for a message sealed whole", n)
	}
	var c crlfCheck
	if !c.ok(out) || c.cr {
		t.Fatalf("bare CR or LF in the output: %q", out)
	}
	if _, err := leaves(out, opaquePolicy); err != nil {
		t.Fatalf("output does not parse with go-message: %v\n%q", err, out)
	}
	if leak := leaks(msg[sp.start:], msg, windowsOf(out, token), sp, true); leak != "" {
		t.Fatalf("the body of a message sealed whole leaks: %s\ninput %q\noutput %q", leak, msg, out)
	}
}

// TestCorpusInvariants checks FuzzRewrite's invariants on the messages of public
// mail-parsing libraries' test suites (read from the module cache: internal/mailcorpus),
// under the default policy and one with content rules; a message Rewrite finds malformed is
// sealed whole by SealWhole, and its copy shows nothing of its body.
func TestCorpusInvariants(t *testing.T) {
	files, err := mailcorpus.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		norm, err := io.ReadAll(NewCRLFReader(SkipMboxFrom(bytes.NewReader(raw))))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) { checkInvariants(t, norm) })
	}
}
