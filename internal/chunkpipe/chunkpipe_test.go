package chunkpipe

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"testing/iotest"
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

func TestReadFrom(t *testing.T) {
	data := make([]byte, 3<<20+77)
	rand.Read(data)
	w, r := New(3, 64<<10)
	done := make(chan error, 1)
	go func() {
		// io.Copy uses Writer.ReadFrom; HalfReader makes reads of odd sizes.
		n, err := io.Copy(w, iotest.HalfReader(bytes.NewReader(data)))
		if err == nil && n != int64(len(data)) {
			err = io.ErrShortWrite
		}
		w.CloseWithError(err)
		done <- err
	}()
	var got bytes.Buffer
	if _, err := io.Copy(&got, r); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("mismatch")
	}

	// A read error stops ReadFrom and is returned as is.
	boom := errors.New("boom")
	w, r = New(2, 16)
	go io.Copy(io.Discard, r)
	if _, err := w.ReadFrom(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Fatalf("read error: %v", err)
	}
	// The reader giving up stops ReadFrom with its error.
	w, r = New(1, 4)
	r.CloseWithError(boom)
	if _, err := w.ReadFrom(bytes.NewReader(make([]byte, 100))); !errors.Is(err, boom) {
		t.Fatalf("reader closed: %v", err)
	}
}
