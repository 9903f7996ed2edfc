package account

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
)

const pw = "correct horse battery"

// lockByPasswords fails n password logins for name.
func lockByPasswords(t *testing.T, s *Service, name string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := s.Authenticate(context.Background(), Login{Name: name, Password: fmt.Sprintf("wrong guess %d", i), Via: "portal", RemoteIP: "203.0.113.9"}); err == nil {
			t.Fatal("a wrong password was accepted")
		}
	}
}

// median returns the median time f takes over n runs.
func median(n int, f func()) time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		start := time.Now()
		f()
		ds[i] = time.Since(start)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[n/2]
}

// A locked or disabled account gives one answer whatever the password:
// the answer is no password oracle. The password is still hashed (same
// time as an unknown name, which is hashed against the dummy).
func TestLockedOrDisabledAnswerDoesNotDependOnPassword(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	for _, n := range []string{"carol", "dave"} {
		if _, err := s.Create(ctx, "admin", NewAccount{Name: n, Email: n + "@corp.example", Password: pw}); err != nil {
			t.Fatal(err)
		}
	}
	lockByPasswords(t, s, "carol", 10)
	if err := s.Disable(ctx, "admin", "dave", "left"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want error
	}{{"carol", ErrLocked}, {"dave", ErrDisabled}} {
		var errs []string
		for _, p := range []string{pw, "wrong horse battery"} {
			for _, via := range []string{"portal", "smtp"} {
				_, err := s.Authenticate(ctx, Login{Name: c.name, Password: p, Via: via})
				if !errors.Is(err, c.want) {
					t.Errorf("%s via %s with password %q: %v, want %v", c.name, via, p, err, c.want)
					continue
				}
				errs = append(errs, err.Error())
			}
		}
		for _, e := range errs {
			if e != errs[0] {
				t.Errorf("%s: answers differ: %q", c.name, errs)
			}
		}
	}
	// Failures on a locked account do not extend or re-arm the lock.
	a, _ := s.ByName(ctx, "carol")
	if a.FailedLogins != 0 {
		t.Errorf("failures counted while locked: %d", a.FailedLogins)
	}

	// Timing: a locked account still costs one argon2id computation.
	unknown := median(5, func() { s.Authenticate(ctx, Login{Name: "nobody", Password: "wrong horse battery", Via: "portal"}) })
	locked := median(5, func() { s.Authenticate(ctx, Login{Name: "carol", Password: "wrong horse battery", Via: "portal"}) })
	if locked < unknown/3 {
		t.Errorf("a locked account answers in %v, an unknown name in %v: the password is not hashed", locked, unknown)
	}
}

func countEvents(t *testing.T, s *Service, match func(audit.Event) bool) int {
	n := 0
	for _, ev := range events(t, s) {
		if match(ev) {
			n++
		}
	}
	return n
}
