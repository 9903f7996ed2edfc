package account

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestUnknownNameNotKept: a password typed into the name field is not
// kept in the login history or the append-only ledger; a name-shaped
// unknown name is (the access review lists guessed names).
func TestUnknownNameNotKept(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	for _, typed := range []string{"Tr0ub4dor&3 horse", "admin"} {
		if _, err := s.Authenticate(ctx, Login{Name: typed, Password: "x", RemoteIP: "192.0.2.9", Via: "portal"}); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("unknown name %q: %v", typed, err)
		}
	}
	var kept []string
	rows, err := s.DB.Read().Query(`SELECT name FROM logins`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		kept = append(kept, n)
	}
	rows.Close()
	for _, ev := range events(t, s) {
		kept = append(kept, ev.Actor)
	}
	all := strings.Join(kept, "\n")
	if strings.Contains(strings.ToLower(all), "tr0ub4dor") {
		t.Fatalf("a password typed as the name was kept:\n%s", all)
	}
	if !strings.Contains(all, "unknown:admin") {
		t.Fatalf("a name-shaped unknown name was not kept:\n%s", all)
	}
}
