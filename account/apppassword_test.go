package account

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
)

var appPasswordRE = regexp.MustCompile(`^[a-z2-7]{4}(-[a-z2-7]{4}){7}$`)

func create(t *testing.T, s *Service, name string, grants ...Grant) *Account {
	t.Helper()
	a, err := s.Create(context.Background(), "admin", NewAccount{Name: name, Email: name + "@corp.example", Password: pw, Grants: grants})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func smtpLogin(s *Service, name, secret string) (*SMTPLogin, error) {
	return s.AuthenticateSMTP(context.Background(), Login{Name: name, Password: secret, RemoteIP: "192.0.2.25"})
}

// Creation, listing, use, revocation: each a ledger event; the secret is
// shown once and stored nowhere, not even in the ledger.
func TestAppPasswordLifecycle(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	create(t, s, "mgr", Grant{Role: RoleManager})
	secret, ap, err := s.AddAppPassword(ctx, "admin", "mgr", "iPhone")
	if err != nil {
		t.Fatal(err)
	}
	if !appPasswordRE.MatchString(secret) {
		t.Fatalf("app password %q", secret)
	}
	other, _, err := s.AddAppPassword(ctx, "mgr", "mgr", "Thunderbird")
	if err != nil || other == secret {
		t.Fatalf("second app password: %v", err)
	}
	c.Advance(time.Minute)
	l, err := smtpLogin(s, "mgr", secret)
	if err != nil {
		t.Fatalf("SMTP AUTH with the app password: %v", err)
	}
	if l.AppPassword != ap.ID || l.Account.Name != "mgr" {
		t.Fatalf("login %+v", l)
	}
	// Typed with capitals and spaces instead of hyphens: the same secret.
	if _, err := smtpLogin(s, "MGR@corp.example", strings.ToUpper(strings.ReplaceAll(secret, "-", " "))); err != nil {
		t.Fatalf("app password typed differently: %v", err)
	}
	list, err := s.AppPasswords(ctx, "mgr")
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %+v", err, list)
	}
	if list[0].Label != "iPhone" || !list[0].LastUsed.Equal(c.Now().Truncate(time.Millisecond)) || list[0].LastUsedIP != "192.0.2.25" || !list[0].Active() || list[0].CreatedBy != "admin" {
		t.Fatalf("iPhone: %+v", list[0])
	}
	if !list[1].LastUsed.IsZero() {
		t.Fatalf("unused one has a last use: %+v", list[1])
	}
	if err := s.StillValid(ctx, l); err != nil {
		t.Fatalf("still valid: %v", err)
	}
	if _, err := s.RevokeAppPassword(ctx, "admin", "mgr", "iPhone"); err != nil {
		t.Fatal(err)
	}
	if _, err := smtpLogin(s, "mgr", secret); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("revoked app password: %v", err)
	}
	if err := s.StillValid(ctx, l); !errors.Is(err, ErrLoginRevoked) {
		t.Fatalf("a login with a revoked app password: %v", err)
	}
	if _, err := s.RevokeAppPassword(ctx, "admin", "mgr", "iPhone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked twice: %v", err)
	}
	list, _ = s.AppPasswords(ctx, "mgr")
	if list[0].Active() || list[0].RevokedBy != "admin" || !list[1].Active() {
		t.Fatalf("after revocation: %+v", list)
	}

	var added, revoked, used int
	for _, ev := range events(t, s) {
		switch {
		case ev.Type == audit.TypeAccountChanged && ev.Details["change"] == "app password added":
			added++
		case ev.Type == audit.TypeAccountChanged && ev.Details["change"] == "app password revoked" && ev.Details["label"] == "iPhone":
			revoked++
		case ev.Type == audit.TypeLogin && ev.Details["factor"] == "app password" && ev.Details["label"] == "iPhone" && ev.Details["via"] == "smtp":
			used++
		}
	}
	if added != 2 || revoked != 1 || used != 2 {
		t.Fatalf("ledger: %d added, %d revoked, %d uses", added, revoked, used)
	}
	// The secret is nowhere: not in any table, not in the ledger.
	norm := strings.ReplaceAll(secret, "-", "")
	for _, q := range []string{`SELECT data FROM ledger_records`, `SELECT label FROM app_passwords`, `SELECT hash FROM app_passwords`} {
		rows, err := s.DB.Read().QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var b []byte
			rows.Scan(&b)
			if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(norm)) {
				t.Fatalf("the secret is stored: %s", q)
			}
		}
		rows.Close()
	}
}

// Privileged accounts (manager, admin, auditor) are refused their sign-in
// password over SMTP; it is not counted, so a mail client still set up
// with it does not lock the person out of the portal. A wrong password
// counts as always.
func TestPrivilegedAccountsNeedAnAppPassword(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	create(t, s, "mgr", Grant{Role: RoleManager, Contract: "C-1"})
	create(t, s, "root", Grant{Role: RoleAdmin})
	create(t, s, "aud", Grant{Role: RoleAuditor}, Grant{Role: RoleSender})
	create(t, s, "alice")
	for _, n := range []string{"mgr", "root", "aud"} {
		for i := 0; i < 12; i++ {
			if _, err := smtpLogin(s, n, pw); !errors.Is(err, ErrAppPasswordRequired) {
				t.Fatalf("%s with the sign-in password over SMTP: %v", n, err)
			}
		}
		a, _ := s.ByName(ctx, n)
		if !a.LockedUntil.IsZero() || a.FailedLogins != 0 {
			t.Fatalf("%s: the right password over SMTP counted: %+v", n, a)
		}
		if _, err := smtpLogin(s, n, "wrong password!"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("%s wrong password: %v", n, err)
		}
		if a, _ := s.ByName(ctx, n); a.FailedLogins != 1 {
			t.Fatalf("%s: a wrong password over SMTP not counted: %+v", n, a)
		}
		secret, _, err := s.AddAppPassword(ctx, "admin", n, "mail")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := smtpLogin(s, n, secret); err != nil {
			t.Fatalf("%s with an app password: %v", n, err)
		}
		// The portal does not take app passwords.
		if _, err := s.Authenticate(ctx, Login{Name: n, Password: secret}); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("%s: app password on the portal: %v", n, err)
		}
	}
	n := countEvents(t, s, func(ev audit.Event) bool {
		return ev.Type == audit.TypeLoginFailed && ev.Reason == "app password required"
	})
	if n != 36 {
		t.Fatalf("%d login.failed 'app password required'", n)
	}
	// Senders: password or app password; with AppPasswordsOnly, only the
	// latter.
	if _, err := smtpLogin(s, "alice", pw); err != nil {
		t.Fatalf("sender with the password: %v", err)
	}
	secret, _, _ := s.AddAppPassword(ctx, "alice", "alice", "laptop")
	if _, err := smtpLogin(s, "alice", secret); err != nil {
		t.Fatalf("sender with an app password: %v", err)
	}
	s.AppPasswordsOnly = true
	if _, err := smtpLogin(s, "alice", pw); !errors.Is(err, ErrAppPasswordRequired) {
		t.Fatalf("sender with the password, app passwords only: %v", err)
	}
	if _, err := smtpLogin(s, "alice", secret); err != nil {
		t.Fatalf("sender with an app password, app passwords only: %v", err)
	}
}

// An account that sends no mail (auditor only) gets no app password and
// no SMTP login.
func TestNoSMTPWithoutASendingRole(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	create(t, s, "aud", Grant{Role: RoleAuditor})
	if _, _, err := s.AddAppPassword(ctx, "admin", "aud", "mail"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("app password for an auditor only: %v", err)
	}
	create(t, s, "aud2", Grant{Role: RoleAuditor}, Grant{Role: RoleSender})
	secret, _, err := s.AddAppPassword(ctx, "admin", "aud2", "mail")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetGrants(ctx, "admin", "aud2", []Grant{{Role: RoleAuditor}}); err != nil {
		t.Fatal(err)
	}
	if _, err := smtpLogin(s, "aud2", secret); !errors.Is(err, ErrNoSendingRole) {
		t.Fatalf("app password of an account that no longer sends: %v", err)
	}
}

// Every SMTP AUTH costs the same: the sign-in password is hashed even when
// only an app password could be accepted, and for unknown names.
func TestSMTPAuthTiming(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	create(t, s, "mgr", Grant{Role: RoleManager})
	secret, _, _ := s.AddAppPassword(ctx, "admin", "mgr", "mail")
	d := fastest(5, func() { smtpLogin(s, "nobody", pw) },
		func() { smtpLogin(s, "mgr", pw) },
		func() { smtpLogin(s, "mgr", secret) },
		func() { smtpLogin(s, "mgr", "wrong password!") })
	for i, what := range []string{"privileged, right password", "privileged, app password", "privileged, wrong password"} {
		if d[i+1] < d[0]/3 {
			t.Errorf("%s: %v, unknown name %v", what, d[i+1], d[0])
		}
	}
}

// A password reset revokes the app passwords; SMTP logins made with the
// old password or a revoked app password no longer hold, nor those of a
// disabled account, nor a password login of an account promoted to a
// privileged role.
func TestSMTPLoginsEnd(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	create(t, s, "alice")
	create(t, s, "bob")
	create(t, s, "carol")
	secret, _, _ := s.AddAppPassword(ctx, "alice", "alice", "phone")
	byPassword, err := smtpLogin(s, "alice", pw)
	if err != nil {
		t.Fatal(err)
	}
	byApp, err := smtpLogin(s, "alice", secret)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	if err := s.SetPassword(ctx, "admin", "alice", "a new password here"); err != nil {
		t.Fatal(err)
	}
	for what, l := range map[string]*SMTPLogin{"password": byPassword, "app password": byApp} {
		if err := s.StillValid(ctx, l); !errors.Is(err, ErrLoginRevoked) {
			t.Errorf("%s login after a reset: %v", what, err)
		}
	}
	if _, err := smtpLogin(s, "alice", secret); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("app password after a reset: %v", err)
	}
	if n := countEvents(t, s, func(ev audit.Event) bool {
		return ev.Details["change"] == "app password revoked" && ev.Reason == "password reset"
	}); n != 1 {
		t.Fatalf("%d revocations recorded for the reset", n)
	}

	lb, _ := smtpLogin(s, "bob", pw)
	s.Disable(ctx, "admin", "bob", "left")
	if err := s.StillValid(ctx, lb); !errors.Is(err, ErrDisabled) {
		t.Fatalf("disabled: %v", err)
	}
	lc, _ := smtpLogin(s, "carol", pw)
	s.SetGrants(ctx, "admin", "carol", []Grant{{Role: RoleManager}})
	if err := s.StillValid(ctx, lc); !errors.Is(err, ErrLoginRevoked) {
		t.Fatalf("promoted to manager: %v", err)
	}
}

// Confirming the password before creating an app password: a wrong one
// counts toward the lockout.
func TestConfirmPassword(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	a := create(t, s, "alice")
	if err := s.ConfirmPassword(ctx, a, pw, "", ""); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := s.ConfirmPassword(ctx, a, "wrong password!", "", ""); err == nil {
			t.Fatal("wrong password confirmed")
		}
	}
	if err := s.ConfirmPassword(ctx, a, pw, "", ""); !errors.Is(err, ErrLocked) {
		t.Fatalf("after 10 wrong confirmations: %v", err)
	}
}
