package chunkpipe

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
)

func TestCopy(t *testing.T) {
	data := make([]byte, 5<<20+123)
	rand.Read(data)
	w, r := New(4, 64<<10)
	go func() {
		src := bytes.NewReader(data)
		buf := make([]byte, 7777)
		for {
			n, err := src.Read(buf)
			w.Write(buf[:n])
			if err != nil {
				break
			}
		}
		w.Close()
	}()
	var got bytes.Buffer
	if _, err := io.Copy(&got, r); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got.Bytes()) != sha256.Sum256(data) {
		t.Fatal("mismatch")
	}
}

func TestErrors(t *testing.T) {
	boom := errors.New("boom")
	w, r := New(2, 16)
	go func() {
		w.Write([]byte("hello world, this is more than one chunk"))
		w.CloseWithError(boom)
	}()
	b, err := io.ReadAll(r)
	if !errors.Is(err, boom) || string(b) != "hello world, this is more than one chunk"[:len(b)] {
		t.Fatalf("got %q %v", b, err)
	}

	w, r = New(1, 4)
	r.CloseWithError(boom)
	if _, err := w.Write(make([]byte, 100)); !errors.Is(err, boom) {
		t.Fatalf("writer after reader close: %v", err)
	}
}
