package server

import (
	"bytes"
	"context"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/testsink"
)

// TestServeOneMessage builds the whole gateway through New — the
// constructor `sealgate serve` uses — on loopback ports, relays one
// message with an attachment, sees the sealed copy and the key notice
// reach the next hop, and stops cleanly when its context ends.
func TestServeOneMessage(t *testing.T) {
	sink, err := testsink.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sink.Stop)
	dir := t.TempDir()
	env := map[string]string{
		"SEALGATE_DATA_DIR": dir, "SEALGATE_SMTP_ADDR": "127.0.0.1:0", "SEALGATE_SUBMISSION_ADDR": "off",
		"SEALGATE_HTTP_ADDR": "127.0.0.1:0", "SEALGATE_SMARTHOST": sink.Addr(), "SEALGATE_SMARTHOST_TLS": "none",
		"SEALGATE_INTERNAL_DOMAINS": "corp.example", "SEALGATE_KEY_NOTICE_DELAY": "0s", "SEALGATE_HOSTNAME": "gw.corp.example",
	}
	c, err := config.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	sys := Open(&c, Options{Stderr: &log, CreateKeys: true, Getenv: func(string) string { return "" }})
	t.Cleanup(func() { sys.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := New(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	msg := "From: alice@corp.example\r\nTo: carol@client.example\r\nSubject: plans\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=plans.pdf\r\n\r\nSECRET-PLANS\r\n--b--\r\n"
	if err := send(srv.relayLn.Addr().String(), "alice@corp.example", "carol@client.example", msg); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(30*time.Second, func(ms []testsink.Message) bool { return len(ms) == 2 })
	if err != nil {
		t.Fatalf("%v (%d delivered)\n%s", err, len(msgs), log.String())
	}
	for _, m := range msgs {
		if bytes.Contains(m.Data, []byte("SECRET-PLANS")) {
			t.Fatal("the attachment reached the next hop in clear")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if !strings.Contains(log.String(), "sealgate is running") {
		t.Fatalf("log:\n%s", log.String())
	}
}

// send relays one message without STARTTLS (loopback is trusted).
func send(addr, from, to, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
