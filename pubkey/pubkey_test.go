package pubkey

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/internal/testpg"

	"filippo.io/age"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/notice/noticetest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newService(t *testing.T) (*Service, *clock, *noticetest.Queue) {
	t.Helper()
	db, err := database.Open(context.Background(), testpg.Target(t, filepath.Join(t.TempDir(), "db")), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cl := &clock{t: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)}
	led, _ := audit.New(audit.Options{Origin: "test/ledger", Now: cl.Now})
	mails := noticetest.New(t, "https://portal.test")
	s := &Service{DB: db, Ledger: led, Now: cl.Now, Rand: rand.Reader, Notices: mails,
		IsInternal: func(a string) bool { return strings.HasSuffix(a, "@corp.example") }}
	return s, cl, mails
}

var linkRE = regexp.MustCompile(`https://portal\.test/keys/verify/([A-Za-z0-9_-]+)`)

func request(t *testing.T, s *Service, mails *noticetest.Queue, addr, key string) string {
	t.Helper()
	if _, err := s.Request(context.Background(), Request{Address: addr, PublicKey: key, RemoteIP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	sent := mails.Sent()
	last := sent[len(sent)-1].Text
	m := linkRE.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("no link in %q", last)
	}
	return m[1]
}

func TestRegisterConfirmReplace(t *testing.T) {
	s, cl, mails := newService(t)
	ctx := context.Background()
	id1, _ := age.GenerateX25519Identity()
	id2, _ := age.GenerateX25519Identity()
	tok1 := request(t, s, mails, "Carol@Client.Example", id1.Recipient().String())
	if to := mails.Sent()[0].To; len(to) != 1 || to[0] != "carol@client.example" {
		t.Fatalf("mailed to %q", to)
	}
	// Nothing is active until confirmed; Pending changes nothing.
	for i := 0; i < 2; i++ {
		if _, err := s.Pending(ctx, tok1); err != nil {
			t.Fatal(err)
		}
	}
	if keys, _ := Active(ctx, s.DB.Read(), []string{"carol@client.example"}); len(keys) != 0 {
		t.Fatal("active before confirmation")
	}
	k, err := s.Confirm(ctx, tok1, "192.0.2.2", "")
	if err != nil || k.Status != StatusActive {
		t.Fatalf("confirm: %v", err)
	}
	if _, err := s.Confirm(ctx, tok1, "", ""); !errors.Is(err, ErrUsed) {
		t.Fatalf("second confirm: %v", err)
	}
	keys, err := Active(ctx, s.DB.Read(), []string{"CAROL@client.example", "dave@x.example"})
	if err != nil || len(keys) != 1 || keys["carol@client.example"].PublicKey != id1.Recipient().String() {
		t.Fatalf("active: %v %v", keys, err)
	}
	// A second key replaces the first; an expired link confirms nothing.
	tok2 := request(t, s, mails, "carol@client.example", id2.Recipient().String())
	tok3 := request(t, s, mails, "carol@client.example", id1.Recipient().String())
	cl.Advance(25 * time.Hour)
	if _, err := s.Confirm(ctx, tok3, "", ""); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired link: %v", err)
	}
	cl.t = cl.t.Add(-24 * time.Hour)
	if _, err := s.Confirm(ctx, tok2, "", ""); err != nil {
		t.Fatal(err)
	}
	keys, _ = Active(ctx, s.DB.Read(), []string{"carol@client.example"})
	if keys["carol@client.example"].PublicKey != id2.Recipient().String() {
		t.Fatal("the new key did not replace the old one")
	}
	var n int
	s.DB.Read().QueryRow(`SELECT COUNT(*) FROM ledger_records WHERE type = 'pubkey.registered'`).Scan(&n)
	if n != 2 {
		t.Fatalf("%d pubkey.registered events", n)
	}
}

func TestRequestChecks(t *testing.T) {
	s, _, mails := newService(t)
	ctx := context.Background()
	id, _ := age.GenerateX25519Identity()
	for _, c := range []struct{ addr, key string }{
		{"not an address", id.Recipient().String()},
		{"bob@corp.example", id.Recipient().String()},
		{"carol@client.example", "age1qqqq"},
		{"carol@client.example", id.String()}, // a private key is refused
		{"carol@client.example", "ssh-ed25519 AAAA"},
		// Routing syntax: the confirmation link would reach evil.example
		// at a next hop with the percent hack.
		{"carol%evil.example@client.example", id.Recipient().String()},
		{"\"carol@evil.example\"@client.example", id.Recipient().String()},
		{"carol!evil.example@client.example", id.Recipient().String()},
	} {
		if _, err := s.Request(ctx, Request{Address: c.addr, PublicKey: c.key}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q %q: %v", c.addr, c.key, err)
		}
	}
	if len(mails.Sent()) != 0 {
		t.Fatal("an invalid request sent mail")
	}
	// One mailbox, however it is spelt: the key is registered under the
	// form the gateway looks it up by.
	if k, err := s.Request(ctx, Request{Address: "Carol@CLIENT.example.", PublicKey: id.Recipient().String()}); err != nil || k.Address != "carol@client.example" {
		t.Fatalf("canonical registration: %+v %v", k, err)
	}
	ssh := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDn5iA8sNXbCr4p/CyS2H2FNo2i4qdJpFN1b5hKsEjCr carol@laptop"
	k, err := s.Request(ctx, Request{Address: "carol@client.example", PublicKey: ssh})
	if err != nil || k.Kind != "ssh" || strings.Contains(k.PublicKey, "laptop") {
		t.Fatalf("ssh key: %+v %v", k, err)
	}
	s.Request(ctx, Request{Address: "carol@client.example", PublicKey: id.Recipient().String()})
	if _, err := s.Request(ctx, Request{Address: "carol@client.example", PublicKey: id.Recipient().String()}); !errors.Is(err, ErrTooMany) {
		t.Fatalf("flood: %v", err)
	}
}
