package account

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSessions: a session is found by its token hash, refreshed, ended,
// replaced by the browser's next one, and ends with every other session
// of its account when the account is disabled.
func TestSessions(t *testing.T) {
	s, clk := newService(t)
	ctx := context.Background()
	a, err := s.Create(ctx, "admin", NewAccount{Name: "alice", Email: "alice@corp.example", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	ss := s.Sessions()
	now := clk.Now().Truncate(time.Millisecond)
	one := Session{TokenHash: []byte("one"), AccountID: a.ID, CreatedAt: now, LastSeen: now, RemoteIP: "192.0.2.1", UserAgent: "ua"}
	if err := ss.Start(ctx, one, nil); err != nil {
		t.Fatal(err)
	}
	got, err := ss.Get(ctx, []byte("one"))
	if err != nil || got.AccountID != a.ID || got.MFADone || !got.CreatedAt.Equal(now) || !got.LastSeen.Equal(now) {
		t.Fatalf("session %+v %v", got, err)
	}
	later := now.Add(time.Hour)
	if err := ss.Touch(ctx, []byte("one"), later); err != nil {
		t.Fatal(err)
	}
	if got, _ := ss.Get(ctx, []byte("one")); !got.LastSeen.Equal(later) {
		t.Fatalf("touched session %+v", got)
	}
	// The second factor gives the browser a new session in place of the
	// first.
	two := Session{TokenHash: []byte("two"), AccountID: a.ID, MFADone: true, CreatedAt: later, LastSeen: later}
	if err := ss.Start(ctx, two, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Get(ctx, []byte("one")); !errors.Is(err, ErrNoSession) {
		t.Fatalf("replaced session: %v", err)
	}
	if got, err := ss.Get(ctx, []byte("two")); err != nil || !got.MFADone {
		t.Fatalf("new session %+v %v", got, err)
	}
	if err := ss.Start(ctx, Session{TokenHash: []byte("three"), AccountID: a.ID, CreatedAt: later, LastSeen: later}, nil); err != nil {
		t.Fatal(err)
	}
	if err := ss.End(ctx, []byte("three")); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Get(ctx, []byte("three")); !errors.Is(err, ErrNoSession) {
		t.Fatalf("ended session: %v", err)
	}
	if err := s.Disable(ctx, "admin", "alice", "left"); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Get(ctx, []byte("two")); !errors.Is(err, ErrNoSession) {
		t.Fatalf("session of a disabled account: %v", err)
	}
}
