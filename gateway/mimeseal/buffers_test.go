package mimeseal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Reusing buffers between messages changes nothing: every message rewrites
// to the same skeleton, the same sealed contents and the same error with a
// shared Buffers as with fresh buffers — including after messages that
// failed half-way and left their buffers full (no byte of one message can
// reach another's output).
func TestBuffersReuseIsInvisible(t *testing.T) {
	files, err := filepath.Glob("testdata/*.eml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test messages: %v", err)
	}
	var msgs [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
		for _, cut := range []int{len(b) / 3, len(b) / 2, len(b) - 7} {
			if cut > 0 {
				msgs = append(msgs, b[:cut]) // truncated: some fail mid-part
			}
		}
	}
	// A large attachment first, so the buffers are full of its content.
	big := []byte("From: a@x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\n\r\n" +
		string(bytes.Repeat([]byte("SECRET-CONTENT-LINE-0123456789\r\n"), 20000)) + "--b--\r\n")
	msgs = append([][]byte{big}, msgs...)

	shared := NewBuffers()
	outcome := func(msg []byte, bufs *Buffers) string {
		s := newMemSealer()
		var skel bytes.Buffer
		_, err := Rewrite(&skel, bytes.NewReader(msg), s, Options{Buffers: bufs})
		var parts bytes.Buffer
		for _, p := range s.parts {
			fmt.Fprintf(&parts, "[%d %v %v %x]", p.a.Index, p.closed, p.aborted, p.data.Bytes())
		}
		return fmt.Sprintf("err=%v\nskeleton=%x\nparts=%s", err, skel.Bytes(), parts.Bytes())
	}
	for round := 0; round < 2; round++ {
		for i, msg := range msgs {
			if got, want := outcome(msg, shared), outcome(msg, nil); got != want {
				t.Fatalf("round %d, message %d: a reused buffer changed the result", round, i)
			}
		}
	}
}
