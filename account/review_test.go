package account

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// The lockout is per account, whatever the form of the name typed.
func TestLockoutIsPerAccountWhateverTheNameForm(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	s.Create(ctx, "admin", NewAccount{Name: "carol", Email: "Carol@Corp.example", Password: pw})
	for i, n := range []string{"carol", "CAROL", " carol ", "carol@corp.example", "CAROL@CORP.EXAMPLE", "Carol@Corp.example", "carol", "carol@corp.example", "Carol", "carol"} {
		if _, err := s.AuthenticateSMTP(ctx, Login{Name: n, Password: fmt.Sprintf("wrong %d", i)}); !errors.Is(err, ErrBadCredentials) && !errors.Is(err, ErrLocked) {
			t.Fatalf("%q: %v", n, err)
		}
	}
	if _, err := s.Authenticate(ctx, Login{Name: "carol", Password: pw}); !errors.Is(err, ErrLocked) {
		t.Fatalf("10 failures under several name forms did not lock: %v", err)
	}
	// The review sees one burst for the account, not one per form typed.
	r, err := s.BuildReview(ctx, ReviewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Bursts) != 1 || r.Bursts[0].Name != "carol" || r.Bursts[0].Count != 11 { // ten, and the refused attempt on the locked account
		t.Fatalf("bursts: %+v", r.Bursts)
	}
}
