package account

import (
	"context"
	"errors"
	"slices"
	"strings"
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
	got, err := ActiveEmails(ctx, q, RoleManager, "C-1")
	if err != nil || !slices.Equal(got, []string{"Boss@corp.example", "chief@corp.example"}) {
		t.Fatalf("managers of C-1: %v %v", got, err)
	}
	for key, want := range map[string]bool{"boss@corp.example": true, "chief@corp.example": true, "gone@corp.example": false, "x@corp.example": false} {
		if ok, err := HasActiveEmail(ctx, q, key); err != nil || ok != want {
			t.Errorf("HasActiveEmail(%s) = %v, %v", key, ok, err)
		}
	}
	if addr, err := ActiveEmailByName(ctx, q, "Chief"); err != nil || addr != "chief@corp.example" {
		t.Fatalf("chief: %q %v", addr, err)
	}
	if _, err := ActiveEmailByName(ctx, q, "gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("disabled account: %v", err)
	}
}

// TestLookups: the typed lookups other packages make (whom to alert, whom
// to ask for approval, whether a sender may be mailed) see active accounts
// only, with the roles as granted.
func TestLookups(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	for _, a := range []struct {
		name, email string
		grants      []Grant
	}{
		{"root", "root@corp.example", []Grant{{Role: RoleAdmin}}},
		{"root2", "Root2@Corp.Example", []Grant{{Role: RoleAdmin}, {Role: RoleSender}}},
		{"gone", "gone@corp.example", []Grant{{Role: RoleAdmin}}},
		{"m1", "m1@corp.example", []Grant{{Role: RoleManager, Contract: "C-1"}}},
		{"m2", "m2@corp.example", []Grant{{Role: RoleManager}}},
		{"m3", "m3@corp.example", []Grant{{Role: RoleManager, Contract: "C-2"}}},
		{"erin", "Erin@Partner.Example", []Grant{{Role: RoleSender}}},
	} {
		if _, err := s.Create(ctx, "test", NewAccount{Name: a.name, Email: a.email, Password: "correct horse battery", Grants: a.grants}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Disable(ctx, "test", "gone", "left"); err != nil {
		t.Fatal(err)
	}
	q := s.DB.Read()
	for _, c := range []struct{ role, contract, want string }{
		{RoleAdmin, "", "Root2@corp.example,root@corp.example"}, // stored canonical: the domain lower-cased
		{RoleManager, "C-1", "m1@corp.example,m2@corp.example"},
		{RoleManager, "C-9", "m2@corp.example"},
		{RoleManager, "", "m1@corp.example,m2@corp.example,m3@corp.example"},
		{RoleAuditor, "", ""},
	} {
		got, err := ActiveEmails(ctx, q, c.role, c.contract)
		if err != nil || strings.Join(got, ",") != c.want {
			t.Errorf("ActiveEmails(%s, %q) = %v (%v), want %s", c.role, c.contract, got, err, c.want)
		}
	}
	for key, want := range map[string]bool{"erin@partner.example": true, "root2@corp.example": true, "gone@corp.example": false, "nobody@corp.example": false} {
		if got, err := HasActiveEmail(ctx, q, key); err != nil || got != want {
			t.Errorf("HasActiveEmail(%s) = %v (%v), want %v", key, got, err, want)
		}
	}
	if got, err := ActiveEmailByName(ctx, q, "M1"); err != nil || got != "m1@corp.example" {
		t.Errorf("ActiveEmailByName(M1) = %q (%v)", got, err)
	}
	for _, name := range []string{"gone", "nobody"} {
		if _, err := ActiveEmailByName(ctx, q, name); !errors.Is(err, ErrNotFound) {
			t.Errorf("ActiveEmailByName(%s): %v, want ErrNotFound", name, err)
		}
	}
}
