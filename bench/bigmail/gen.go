package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
)

// input is the benchmark's input: the plaintext (what age -r encrypts) and
// the message that carries it as a base64 attachment.
type input struct {
	plainPath string
	plainSize int64
	plainHash string // hex SHA-256, checked against what the gateway records
	msgPath   string
	msgSize   int64
}

const (
	sender    = "bench@corp.example"
	recipient = "someone@client.example" // external: the attachment is sealed
	boundary  = "bigmail-7f3a9c1e"
	lineRaw   = 57 // bytes per base64 line: 76 characters
)

// generate writes a random plaintext of size bytes and the message carrying
// it, in one streaming pass, into dir. The message is CRLF throughout, its
// base64 lines are 76 characters, and no line starts with "." (the base64
// alphabet has none and neither have the header and the text part), so it
// can be sent as DATA without dot-stuffing.
func generate(dir string, size int64) (*input, error) {
	in := &input{
		plainPath: filepath.Join(dir, "plain.bin"),
		plainSize: size,
		msgPath:   filepath.Join(dir, "message.eml"),
	}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("failed to seed the generator: %w", err)
	}
	src := mrand.NewChaCha8(seed)

	pf, err := os.Create(in.plainPath)
	if err != nil {
		return nil, fmt.Errorf("failed to create plaintext: %w", err)
	}
	defer pf.Close()
	mf, err := os.Create(in.msgPath)
	if err != nil {
		return nil, fmt.Errorf("failed to create message: %w", err)
	}
	defer mf.Close()
	pw := bufio.NewWriterSize(pf, 1<<20)
	mw := bufio.NewWriterSize(mf, 1<<20)

	fmt.Fprintf(mw, "From: Bench <%s>\r\nTo: <%s>\r\nSubject: bigmail benchmark (%d bytes)\r\n"+
		"Message-ID: <bigmail.%x@corp.example>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"+
		"--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe file is attached.\r\n"+
		"--%s\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"+
		"Content-Disposition: attachment; filename=\"plain.bin\"\r\n\r\n",
		sender, recipient, size, seed[:8], boundary, boundary, boundary)

	h := sha256.New()
	block := make([]byte, lineRaw*8192) // 456 KiB of plaintext per round
	line := make([]byte, 76+2)
	for left := size; left > 0; {
		b := block[:min(int64(len(block)), left)]
		src.Read(b)
		left -= int64(len(b))
		h.Write(b)
		if _, err := pw.Write(b); err != nil {
			return nil, fmt.Errorf("failed to write plaintext: %w", err)
		}
		for len(b) > 0 {
			n := min(len(b), lineRaw)
			k := base64.StdEncoding.EncodedLen(n)
			base64.StdEncoding.Encode(line, b[:n])
			line[k], line[k+1] = '\r', '\n'
			mw.Write(line[:k+2])
			b = b[n:]
		}
	}
	fmt.Fprintf(mw, "--%s--\r\n", boundary)
	if err := pw.Flush(); err != nil {
		return nil, fmt.Errorf("failed to write plaintext: %w", err)
	}
	if err := mw.Flush(); err != nil {
		return nil, fmt.Errorf("failed to write message: %w", err)
	}
	fi, err := mf.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to stat message: %w", err)
	}
	in.msgSize = fi.Size()
	in.plainHash = hex.EncodeToString(h.Sum(nil))
	return in, nil
}
