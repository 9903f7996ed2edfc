package account

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestAccountLookups: the reads other packages make of accounts and
// roles (whom to mail, who approves).
func TestAccountLookups(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	for _, n := range []NewAccount{
		{Name: "boss", Email: "Boss@corp.example", Password: "correct horse battery", Grants: []Grant{{Role: RoleManager, Contract: "C-1"}}},
		{Name: "chief", Email: "chief@corp.example", Password: "correct horse battery", Grants: []Grant{{Role: RoleManager}}},
		{Name: "other", Email: "other@corp.example", Password: "correct horse battery", Grants: []Grant{{Role: RoleManager, Contract: "C-2"}}},
		{Name: "gone", Email: "gone@corp.example", Password: "correct horse battery", Grants: []Grant{{Role: RoleManager}}},
	} {
		if _, err := s.Create(ctx, "admin", n); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Disable(ctx, "admin", "gone", "left"); err != nil {
		t.Fatal(err)
	}
	q := s.DB.Read()
	got, err := ManagerEmails(ctx, q, "C-1")
	if err != nil || !slices.Equal(got, []string{"Boss@corp.example", "chief@corp.example"}) {
		t.Fatalf("managers of C-1: %v %v", got, err)
	}
	for addr, want := range map[string]bool{"boss@corp.example": true, "CHIEF@corp.example": true, "gone@corp.example": false, "x@corp.example": false} {
		if ok, err := ActiveAddress(ctx, q, addr); err != nil || ok != want {
			t.Errorf("ActiveAddress(%s) = %v, %v", addr, ok, err)
		}
	}
	if addr, err := ActiveEmailByName(ctx, q, "Chief"); err != nil || addr != "chief@corp.example" {
		t.Fatalf("chief: %q %v", addr, err)
	}
	if _, err := ActiveEmailByName(ctx, q, "gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("disabled account: %v", err)
	}
}
