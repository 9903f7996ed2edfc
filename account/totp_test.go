package account

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/notice/noticetest"
)

// wrongCode returns a 6-digit code valid in none of the steps around now.
func wrongCode(t *testing.T, secret string, now time.Time) string {
	t.Helper()
	valid := map[string]bool{}
	for _, d := range []time.Duration{-30 * time.Second, 0, 30 * time.Second} {
		c, err := TOTPCode(secret, now.Add(d))
		if err != nil {
			t.Fatal(err)
		}
		valid[c] = true
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", (123456+i*7919)%1000000)
		if !valid[c] {
			return c
		}
	}
}

func newManager(t *testing.T, s *Service, name string) (*Account, string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Create(ctx, "admin", NewAccount{Name: name, Email: name + "@corp.example", Password: pw, Grants: []Grant{{Role: RoleManager}}}); err != nil {
		t.Fatal(err)
	}
	u, err := s.EnrollTOTP(ctx, "admin", name, "sealgate")
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	a, err := s.ByName(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return a, pu.Query().Get("secret")
}

// Wrong one-time codes count toward the lockout exactly like wrong
// passwords: the lock, its ledger events and the alert.
func TestWrongTOTPCodesLockTheAccount(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	alerts := noticetest.New(t, "https://portal.test")
	s.Notices = alerts
	s.Create(ctx, "admin", NewAccount{Name: "root", Email: "root@corp.example", Password: pw, Grants: []Grant{{Role: RoleAdmin}}})
	a, secret := newManager(t, s, "mgr")
	for i := 0; i < 10; i++ {
		if err := s.CheckTOTP(ctx, a, wrongCode(t, secret, c.Now()), "198.51.100.4", "ua"); !errors.Is(err, ErrBadTOTP) && !errors.Is(err, ErrLocked) {
			t.Fatalf("wrong code %d: %v", i, err)
		}
	}
	checkLockAlert(t, alerts, "mgr", "198.51.100.4")
	b, _ := s.ByName(ctx, "mgr")
	if b.LockedUntil.IsZero() || !c.Now().Before(b.LockedUntil) {
		t.Fatalf("not locked after 10 wrong codes: %+v", b)
	}
	if n := countEvents(t, s, func(ev audit.Event) bool {
		return ev.Type == audit.TypeAccountChanged && ev.Details["change"] == "locked" && ev.Account == "mgr"
	}); n != 1 {
		t.Fatalf("%d lock events", n)
	}
	if n := countEvents(t, s, func(ev audit.Event) bool {
		return ev.Type == audit.TypeLoginFailed && ev.Reason == "wrong one-time code"
	}); n != 10 {
		t.Fatalf("%d login.failed events for wrong codes", n)
	}
	// Locked: the right password and the right code are refused.
	if _, err := s.Authenticate(ctx, Login{Name: "mgr", Password: pw, Via: "portal"}); !errors.Is(err, ErrLocked) {
		t.Fatalf("right password on a locked account: %v", err)
	}
	code, _ := TOTPCode(secret, c.Now())
	if err := s.CheckTOTP(ctx, a, code, "", ""); !errors.Is(err, ErrLocked) {
		t.Fatalf("right code on a locked account: %v", err)
	}
}

// The password step of a two-step login does not reset the failure
// count: otherwise whoever holds the password could guess codes forever,
// 9 at a time.
func TestPasswordStepDoesNotResetCodeFailures(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	a, secret := newManager(t, s, "mgr")
	for round := 0; round < 2; round++ {
		if _, err := s.Authenticate(ctx, Login{Name: "mgr", Password: pw, Via: "portal"}); err != nil {
			t.Fatalf("round %d: password step: %v", round, err)
		}
		for i := 0; i < 5; i++ {
			s.CheckTOTP(ctx, a, wrongCode(t, secret, c.Now()), "", "")
		}
	}
	if _, err := s.Authenticate(ctx, Login{Name: "mgr", Password: pw, Via: "portal"}); !errors.Is(err, ErrLocked) {
		t.Fatalf("10 wrong codes in two rounds, then the password: %v", err)
	}
	// Mixed: wrong passwords and wrong codes add up.
	b, secretB := newManager(t, s, "boss")
	lockByPasswords(t, s, "boss", 5)
	for i := 0; i < 5; i++ {
		s.CheckTOTP(ctx, b, wrongCode(t, secretB, c.Now()), "", "")
	}
	if _, err := s.Authenticate(ctx, Login{Name: "boss", Password: pw, Via: "portal"}); !errors.Is(err, ErrLocked) {
		t.Fatalf("5 wrong passwords and 5 wrong codes: %v", err)
	}
}

// A completed login (right code) is the one that resets the count and
// is recorded as a login.
func TestCompletedTwoStepLogin(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	a, secret := newManager(t, s, "mgr")
	s.CheckTOTP(ctx, a, wrongCode(t, secret, c.Now()), "", "")
	if _, err := s.Authenticate(ctx, Login{Name: "mgr", Password: pw, Via: "portal"}); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, s, func(ev audit.Event) bool { return ev.Type == audit.TypeLogin }); n != 0 {
		t.Fatalf("the password step alone was recorded as a login (%d)", n)
	}
	code, _ := TOTPCode(secret, c.Now())
	if err := s.CheckTOTP(ctx, a, code, "192.0.2.7", "ua"); err != nil {
		t.Fatal(err)
	}
	b, _ := s.ByName(ctx, "mgr")
	if b.FailedLogins != 0 || b.LastLogin.IsZero() {
		t.Fatalf("after a completed login: %+v", b)
	}
	if n := countEvents(t, s, func(ev audit.Event) bool {
		return ev.Type == audit.TypeLogin && ev.Account == "mgr" && ev.Details["factor"] == "totp" && ev.RemoteIP == "192.0.2.7"
	}); n != 1 {
		t.Fatalf("%d login events after the code", n)
	}
}

// Each code works once: the last accepted time step is recorded and any
// step at or before it is refused; ±1 step of clock skew stays.
func TestTOTPCodeWorksOnce(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	a, secret := newManager(t, s, "mgr")
	code, _ := TOTPCode(secret, c.Now())
	if err := s.CheckTOTP(ctx, a, code, "", ""); err != nil {
		t.Fatalf("first use: %v", err)
	}
	c.Advance(10 * time.Second) // same 30 s window
	if err := s.CheckTOTP(ctx, a, code, "", ""); !errors.Is(err, ErrBadTOTP) {
		t.Fatalf("replayed within its window: %v", err)
	}
	c.Advance(30 * time.Second) // next window: the old code is within the skew but used
	if err := s.CheckTOTP(ctx, a, code, "", ""); !errors.Is(err, ErrBadTOTP) {
		t.Fatalf("replayed in the next window: %v", err)
	}
	// Skew: the next step's code works now; afterwards the current one
	// (an earlier step) no longer does.
	next, _ := TOTPCode(secret, c.Now().Add(30*time.Second))
	if err := s.CheckTOTP(ctx, a, next, "", ""); err != nil {
		t.Fatalf("code of the next step (clock skew): %v", err)
	}
	cur, _ := TOTPCode(secret, c.Now())
	if cur != next {
		if err := s.CheckTOTP(ctx, a, cur, "", ""); !errors.Is(err, ErrBadTOTP) {
			t.Fatalf("an earlier step after a later one: %v", err)
		}
	}
	c.Advance(60 * time.Second)
	fresh, _ := TOTPCode(secret, c.Now())
	if err := s.CheckTOTP(ctx, a, fresh, "", ""); err != nil {
		t.Fatalf("a fresh code: %v", err)
	}

	// Concurrent use of one code: exactly one wins.
	c.Advance(60 * time.Second)
	code, _ = TOTPCode(secret, c.Now())
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.CheckTOTP(ctx, a, code, "", "") == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("one code accepted %d times concurrently", ok)
	}
}

// Enrolling a new TOTP secret (e.g. a lost phone) ends the account's
// sessions, as a password reset does.
func TestEnrolTOTPEndsSessions(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	a, _ := newManager(t, s, "mgr")
	if err := s.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions(token_hash, account_id, mfa_done, created_at, last_seen_at) VALUES (?, ?, 1, ?, ?)`, []byte{1}, a.ID, c.Now().UnixMilli(), c.Now().UnixMilli())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnrollTOTP(ctx, "admin", "mgr", "sealgate"); err != nil {
		t.Fatal(err)
	}
	var n int
	s.DB.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions WHERE account_id = ?`, a.ID).Scan(&n)
	if n != 0 {
		t.Fatalf("%d sessions left after a new TOTP enrolment", n)
	}
}
