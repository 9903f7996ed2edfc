package account

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/internal/testpg"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/notice"
	"github.com/sealgate/sealgate/notice/noticetest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newService(t *testing.T) (*Service, *clock) {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, testpg.Target(t, filepath.Join(t.TempDir(), "db")), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	mk, _ := crypto.GenerateMasterKey()
	keys, _ := crypto.NewKeyring(mk)
	c := &clock{t: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)}
	led, _ := audit.New(audit.Options{Origin: "test/ledger", Now: c.Now})
	return &Service{DB: db, Keys: keys, Ledger: led, Now: c.Now, Rand: rand.Reader}, c
}

func events(t *testing.T, s *Service) []audit.Event {
	var out []audit.Event
	s.Ledger.Records(context.Background(), s.DB.Read(), 0, 1<<40, func(idx int64, data []byte) error {
		ev, err := audit.ParseRecord(data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
		return nil
	})
	return out
}

func TestCreateAndAuthenticate(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	a, err := s.Create(ctx, "admin", NewAccount{Name: "Alice", Email: "alice@corp.example", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "alice" || !a.Has(RoleSender, "") || a.Has(RoleManager, "") {
		t.Fatalf("%+v", a)
	}
	if _, err := s.Create(ctx, "admin", NewAccount{Name: "alice", Email: "other@corp.example", Password: "correct horse battery"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := s.Create(ctx, "admin", NewAccount{Name: "bob", Email: "bob@corp.example", Password: "short"}); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("weak password: %v", err)
	}
	if _, err := s.Authenticate(ctx, Login{Name: "alice", Password: "correct horse battery", Via: "portal", RemoteIP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateSMTP(ctx, Login{Name: "alice@corp.example", Password: "correct horse battery"}); err != nil {
		t.Fatalf("login by address: %v", err)
	}
	if _, err := s.Authenticate(ctx, Login{Name: "alice", Password: "wrong horse battery", Via: "portal"}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := s.Authenticate(ctx, Login{Name: "mallory", Password: "whatever whatever", Via: "portal"}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("unknown name: %v", err)
	}
	if err := s.Disable(ctx, "admin", "alice", "left the company"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, Login{Name: "alice", Password: "correct horse battery", Via: "portal"}); !errors.Is(err, ErrDisabled) {
		t.Fatalf("disabled account logged in: %v", err)
	}
	var types []string
	for _, ev := range events(t, s) {
		types = append(types, ev.Type)
	}
	want := []string{"account.created", "login", "login", "login.failed", "login.failed", "account.disabled", "login.failed"}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
}

func TestLockoutAfterTenFailures(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	alerts := noticetest.New(t, "https://portal.test")
	s.Notices = alerts
	s.Create(ctx, "admin", NewAccount{Name: "root", Email: "root@corp.example", Password: "correct horse battery", Grants: []Grant{{Role: RoleAdmin}}})
	s.Create(ctx, "admin", NewAccount{Name: "carol", Email: "carol@corp.example", Password: "correct horse battery"})
	for i := 0; i < 10; i++ {
		s.Authenticate(ctx, Login{Name: "carol", Password: "nope nope nope", Via: "portal", RemoteIP: "203.0.113.9"})
	}
	checkLockAlert(t, alerts, "carol", "203.0.113.9")
	if _, err := s.Authenticate(ctx, Login{Name: "carol", Password: "correct horse battery", Via: "portal"}); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked account logged in: %v", err)
	}
	c.Advance(31 * time.Minute)
	if _, err := s.Authenticate(ctx, Login{Name: "carol", Password: "correct horse battery", Via: "portal"}); err != nil {
		t.Fatalf("after the lock expired: %v", err)
	}
}

// checkLockAlert: exactly one alert was queued, to the administrators,
// naming the account and where the last attempt came from.
func checkLockAlert(t *testing.T, alerts *noticetest.Queue, name, ip string) {
	t.Helper()
	sent := alerts.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d notices queued, want one lock alert", len(sent))
	}
	n, ok := sent[0].Notice.(notice.AccountLocked)
	if !ok || n.Name != name || n.LastIP != ip || n.Until.IsZero() || strings.Join(sent[0].To, ",") != "root@corp.example" {
		t.Fatalf("lock alert %+v to %v", sent[0].Notice, sent[0].To)
	}
	if !strings.Contains(sent[0].Subject, "account locked: "+name) || !strings.Contains(sent[0].Text, "Last attempt from: "+ip) {
		t.Fatalf("lock alert:\n%s\n%s", sent[0].Subject, sent[0].Text)
	}
}

func TestTOTP(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	s.Create(ctx, "admin", NewAccount{Name: "mgr", Email: "mgr@corp.example", Password: "correct horse battery", Grants: []Grant{{Role: RoleManager, Contract: "C-1"}}})
	a, _ := s.ByName(ctx, "mgr")
	if !a.NeedsTOTP() {
		t.Fatal("managers need TOTP")
	}
	for _, g := range []Grant{{Role: RoleAdmin}, {Role: RoleAuditor}} {
		if p := (&Account{Grants: []Grant{g}}); !p.NeedsTOTP() {
			t.Errorf("%s does not need TOTP", g.Role)
		}
	}
	if p := (&Account{Grants: []Grant{{Role: RoleSender}}}); p.NeedsTOTP() {
		t.Error("a sender needs TOTP")
	}
	if err := s.CheckTOTP(ctx, a, "123456", "", ""); !errors.Is(err, ErrTOTPRequired) {
		t.Fatalf("no TOTP enrolled: %v", err)
	}
	u, err := s.EnrollTOTP(ctx, "admin", "mgr", "sealgate")
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	secret := pu.Query().Get("secret")
	code, _ := TOTPCode(secret, c.Now())
	if err := s.CheckTOTP(ctx, a, code, "", ""); err != nil {
		t.Fatalf("right code: %v", err)
	}
	c.Advance(5 * time.Minute)
	if err := s.CheckTOTP(ctx, a, code, "", ""); !errors.Is(err, ErrBadTOTP) {
		t.Fatalf("stale code accepted: %v", err)
	}
}

func TestReviewReport(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	s.Create(ctx, "admin", NewAccount{Name: "old", Email: "old@corp.example", Password: "correct horse battery"})
	s.Create(ctx, "admin", NewAccount{Name: "busy", Email: "busy@corp.example", Password: "correct horse battery"})
	c.Advance(100 * 24 * time.Hour)
	s.Authenticate(ctx, Login{Name: "busy", Password: "correct horse battery", Via: "portal", RemoteIP: "192.0.2.10"})
	for i := 0; i < 6; i++ {
		c.Advance(30 * time.Second)
		s.Authenticate(ctx, Login{Name: "busy", Password: "guess guess guess", Via: "portal", RemoteIP: "198.51.100.7"})
	}
	r, err := s.BuildReview(ctx, ReviewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Dormant) != 1 || r.Dormant[0].Name != "old" {
		t.Fatalf("dormant: %+v", r.Dormant)
	}
	if len(r.Bursts) != 1 || r.Bursts[0].Name != "busy" || r.Bursts[0].Count != 6 || r.Bursts[0].IPs[0] != "198.51.100.7" {
		t.Fatalf("bursts: %+v", r.Bursts)
	}
	if len(r.NewIPs) != 1 || r.NewIPs[0].IP != "192.0.2.10" {
		t.Fatalf("new IPs: %+v", r.NewIPs)
	}
	if err := s.MarkReviewed(ctx, "mgr", r, "ok"); err != nil {
		t.Fatal(err)
	}
	evs := events(t, s)
	if evs[len(evs)-1].Type != audit.TypeReviewDone {
		t.Fatal("review not recorded")
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := hashPassword(rand.Reader, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := checkPassword(h, "correct horse battery"); !ok {
		t.Fatal("right password refused")
	}
	if ok, _ := checkPassword(h, "correct horse batterz"); ok {
		t.Fatal("wrong password accepted")
	}
	if ok, err := checkPassword(dummyHash, "anything"); ok || err != nil {
		t.Fatalf("dummy hash: %v %v", ok, err)
	}
}

// An account's address is stored in the canonical form the gateway
// compares senders in (the domain as an IDNA A-label, lower case, without
// a trailing dot); routing tricks are refused.
func TestCreateCanonicalEmail(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	for _, c := range []struct{ in, want string }{
		{"Alice@CORP.Example", "Alice@corp.example"},
		{"bob@ｃｏｒｐ．example", "bob@corp.example"},
		{"carol@例え.jp", "carol@xn--r8jz45g.jp"},
	} {
		name := strings.ToLower(strings.SplitN(c.in, "@", 2)[0])
		a, err := s.Create(ctx, "admin", NewAccount{Name: name, Email: c.in, Password: "correct horse battery"})
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if a.Email != c.want {
			t.Errorf("%s stored as %q, want %q", c.in, a.Email, c.want)
		}
	}
	for i, bad := range []string{"eve%evil.example@corp.example", "eve!evil.example@corp.example", `"eve@evil.example"@corp.example`, "eve@corp..example"} {
		if _, err := s.Create(ctx, "admin", NewAccount{Name: fmt.Sprintf("eve%d", i), Email: bad, Password: "correct horse battery"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", bad, err)
		}
	}
}

// SweepExpired deletes exactly the sessions past one of its limits:
// started too long ago, idle too long, or still waiting too long for the
// second factor.
func TestSweepExpiredSessions(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	a, err := s.Create(ctx, "admin", NewAccount{Name: "alice", Email: "alice@corp.example", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	now := c.Now()
	ss := s.Sessions()
	for _, x := range []struct {
		name          string
		mfa           bool
		created, seen time.Duration // before now
	}{
		{"fresh", true, time.Hour, time.Minute},
		{"old", true, 13 * time.Hour, time.Minute},
		{"idle", true, 2 * time.Hour, 31 * time.Minute},
		{"pending", false, 6 * time.Minute, 6 * time.Minute},
		{"pending-fresh", false, time.Minute, time.Minute},
	} {
		if err := ss.Start(ctx, Session{TokenHash: []byte(x.name), AccountID: a.ID, MFADone: x.mfa,
			CreatedAt: now.Add(-x.created), LastSeen: now.Add(-x.seen)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	n, err := ss.SweepExpired(ctx, now.Add(-12*time.Hour), now.Add(-30*time.Minute), now.Add(-5*time.Minute))
	if err != nil || n != 3 {
		t.Fatalf("deleted %d, %v; want 3", n, err)
	}
	for name, kept := range map[string]bool{"fresh": true, "old": false, "idle": false, "pending": false, "pending-fresh": true} {
		_, err := ss.Get(ctx, []byte(name))
		if kept != (err == nil) {
			t.Errorf("session %s: %v (kept: want %v)", name, err, kept)
		}
	}
}
