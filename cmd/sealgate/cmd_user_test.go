package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/account"
)

var cliAppPasswordRE = regexp.MustCompile(`(?m)^    ([a-z2-7]{4}(?:-[a-z2-7]{4}){7})$`)

// sealgate user app-password add|list|revoke.
func TestUserAppPasswordCLI(t *testing.T) {
	c := newCLIEnv(t)
	c.e.Stdin = strings.NewReader("correct horse battery staple\n")
	c.run(t, cmdUser, "add", "hanako", "--email", "hanako@corp.example", "--role", "manager", "--password-stdin")
	out := c.run(t, cmdUser, "app-password", "add", "hanako", "--label", "iPhone")
	m := cliAppPasswordRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("add printed no app password:\n%s", out)
	}
	c.run(t, cmdUser, "app-password", "add", "--label", "Thunderbird", "hanako")
	ctx := context.Background()
	svc, err := c.e.accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AuthenticateSMTP(ctx, account.Login{Name: "hanako", Password: m[1], RemoteIP: "192.0.2.1"}); err != nil {
		t.Fatalf("the printed app password does not work: %v", err)
	}
	out = c.run(t, cmdUser, "app-password", "list", "hanako")
	if !strings.Contains(out, "iPhone") || !strings.Contains(out, "Thunderbird") || !strings.Contains(out, "192.0.2.1") || strings.Contains(out, m[1]) {
		t.Fatalf("list:\n%s", out)
	}
	out = c.run(t, cmdUser, "app-password", "revoke", "hanako", "iPhone")
	if !strings.Contains(out, "iPhone") {
		t.Fatalf("revoke: %s", out)
	}
	if _, err := svc.AuthenticateSMTP(ctx, account.Login{Name: "hanako", Password: m[1]}); err == nil {
		t.Fatal("a revoked app password still works")
	}
	out = c.run(t, cmdUser, "app-password", "list", "hanako")
	if !strings.Contains(out, "revoked") || !strings.Contains(out, "by cli:alice") {
		t.Fatalf("list after revoke:\n%s", out)
	}
	if err := cmdUser(ctx, c.e, []string{"app-password", "add", "hanako"}); err == nil {
		t.Fatal("add without a label")
	}
	if err := cmdUser(ctx, c.e, []string{"app-password", "revoke", "hanako", "nothing"}); err == nil {
		t.Fatal("revoke of no such app password")
	}
}
