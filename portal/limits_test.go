package portal

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/ratelimit"
)

// TestLimitsFailClosed: when the shared counters cannot be reached (the
// database they live in is down), a passphrase attempt is refused before
// the passphrase is tried — 503, a retry-later answer in both languages,
// Retry-After — whether it is right or wrong, on the server path and in
// the browser, and nothing is counted against the link.
func TestLimitsFailClosed(t *testing.T) {
	px := newPortalFixture(t)
	down, err := database.Open(context.Background(), filepath.Join(t.TempDir(), "counters"), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	down.Close()
	d := px.deps
	d.Config.Transfer.PerIPAttemptsPerMin = 30
	d.Config.Transfer.PerLinkAttemptsPerMin = 10
	d.Limits = (&ratelimit.Store{DB: down, Now: d.Now, Key: func() ([]byte, error) { return make([]byte, 32), nil }}).Maker()
	web, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	px.h = web.Handler()
	for _, tc := range []struct {
		path string
		form url.Values
	}{
		{"/download", url.Values{"passphrase": {px.pass}, "file": {"0"}}},
		{"/download", url.Values{"passphrase": {"AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"}, "file": {"0"}}},
		{"/key", url.Values{}},
		{"/age", url.Values{"what": {"key"}}},
	} {
		rec := httptest.NewRecorder()
		px.post(t, rec, tc.path, tc.form)
		body := rec.Body.String()
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" ||
			!strings.Contains(body, "数えられない試行は受け付けていません") {
			t.Fatalf("POST %s %v with the counters down: %d, Retry-After %q\n%s", tc.path, tc.form.Has("passphrase"), rec.Code, rec.Header().Get("Retry-After"), body)
		}
		if strings.Contains(rec.Header().Get("Content-Type"), "octet-stream") {
			t.Fatalf("POST %s served a file with the counters down", tc.path)
		}
	}
	if failed, browser := px.attempts(t); failed != 0 || browser != 0 {
		t.Fatalf("attempts counted against the link: %d failed, %d in the browser", failed, browser)
	}
}

// TestLimitsShared: two portals on one database with the shared counters
// limit one link's attempts together (the per-link limit of 3 a minute,
// attempts alternating between them).
func TestLimitsShared(t *testing.T) {
	px := newPortalFixture(t)
	now := time.Date(2026, 12, 7, 8, 0, 10, 0, time.UTC)
	d := px.deps
	d.Config.Transfer.PerLinkAttemptsPerMin = 3
	store := &ratelimit.Store{DB: px.db, Now: func() time.Time { return now }, Key: func() ([]byte, error) { return make([]byte, 32), nil }}
	d.Limits = store.Maker()
	var hs []http.Handler
	for range 2 {
		web, err := New(d)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, web.Handler())
	}
	for i := 0; i < 5; i++ {
		px.h = hs[i%2]
		rec := httptest.NewRecorder()
		px.post(t, rec, "/download", url.Values{"passphrase": {"AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"}, "file": {"0"}})
		want := http.StatusUnauthorized
		if i >= 3 {
			want = http.StatusTooManyRequests
		}
		if rec.Code != want {
			t.Fatalf("attempt %d on portal %d: %d, want %d", i+1, i%2, rec.Code, want)
		}
	}
	if failed, _ := px.attempts(t); failed != 3 {
		t.Fatalf("%d failed attempts counted, want 3", failed)
	}
}

// TestSignInRefusedWhenUncounted: with the counters of failed sign-ins out
// of reach, sign-in is refused (503, retry later) before the password is
// checked — even a right one: no guessing goes uncounted.
func TestSignInRefusedWhenUncounted(t *testing.T) {
	f := newStaffFixture(t, nil)
	down, err := database.Open(context.Background(), filepath.Join(t.TempDir(), "counters"), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	down.Close()
	d := f.deps
	d.Limits = (&ratelimit.Store{DB: down, Now: d.Now, Key: func() ([]byte, error) { return make([]byte, 32), nil }}).Maker()
	web, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(web.Handler())
	t.Cleanup(f.srv.Close)
	code, loc, msg := f.browser().signIn("alice", testPassword, "/home")
	if code != http.StatusServiceUnavailable || loc != "" || !strings.Contains(msg, "数えられない試行は受け付けていません") {
		t.Fatalf("sign-in with the counters down: %d %q %q", code, loc, msg)
	}
	a, err := f.accts.ByName(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !a.LastLogin.IsZero() {
		t.Fatal("the sign-in was checked and recorded with the counters down")
	}
}

// TestSignInBurstCounted: wrong sign-ins sent from one address all at
// once are each counted before the password is checked: no more than the
// limit (20 in 10 minutes) are checked, the rest refused with 429. (The
// count was read first and a failure counted only after the check, so
// all of them were checked.) A right password afterwards is refused too,
// the limit being used up; the count of right passwords is given back.
func TestSignInBurstCounted(t *testing.T) {
	f := newStaffFixture(t, nil)
	if code, _, _ := f.browser().signIn("alice", testPassword, "/home"); code != http.StatusSeeOther {
		t.Fatalf("right password: %d", code)
	}
	const n = 60
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := f.browser()
			<-start
			codes[i], _, _ = b.signIn("alice", "wrong-password-0123456789", "/home")
		}()
	}
	close(start)
	wg.Wait()
	checked, refused := 0, 0
	for _, c := range codes {
		switch c {
		case http.StatusUnauthorized:
			checked++
		case http.StatusTooManyRequests:
			refused++
		}
	}
	if checked != 20 || refused != n-20 {
		t.Fatalf("%d wrong passwords sent at once from one address: %d checked, %d refused; want 20 checked (the limit), %d refused", n, checked, refused, n-20)
	}
}
