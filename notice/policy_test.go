package notice

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/database"
)

func testPolicy(accounts ...string) Policy {
	return Policy{
		Internal: func(d string) bool { return d == "corp.example" || strings.HasSuffix(d, ".corp.example") },
		Active: func(ctx context.Context, q database.Querier, key string) (bool, error) {
			if key == "broken@partner.example" {
				return true, errors.New("database is locked")
			}
			return slices.Contains(accounts, key), nil
		},
	}
}

// TestMayNotify: a message's sender is mailed at an internal address or an
// active account's, in any spelling of it; never at an address with
// routing syntax, the null sender, or an address the accounts cannot be
// read for.
func TestMayNotify(t *testing.T) {
	p := testPolicy("erin@partner.example")
	for addr, want := range map[string]bool{
		"alice@corp.example":                   true,
		"Alice@CORP.EXAMPLE.":                  true,
		"bob@sub.corp.example":                 true,
		"erin@partner.example":                 true,
		"Erin@Partner.Example":                 true, // an account's address, spelled otherwise
		"frank@partner.example":                false,
		"mallory@evil.example":                 false,
		"":                                     false,
		"alice%evil.example@corp.example":      false,
		"alice!evil.example@corp.example":      false,
		`"alice@evil.example"@corp.example`:    false,
		"@corp.example:alice@evil.example":     false,
		"broken@partner.example":               false,
		"erin@partner.example@corp.example":    false,
		"alice@corp.example, eve@evil.example": false,
	} {
		if got := p.MayNotify(context.Background(), nil, addr); got != want {
			t.Errorf("MayNotify(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestRecipients: recipients go out canonical; one that does not parse is
// left out and reported; the policy filters a message's sender, not the
// managers or administrators a caller chose, nor a key's owner.
func TestRecipients(t *testing.T) {
	p := testPolicy("erin@partner.example")
	ctx := context.Background()
	to, bad := p.Recipients(ctx, nil, Mail{To: []string{"admin%evil.example@corp.example", "Admin2@CORP.EXAMPLE.", ""}, Notice: AccountLocked{}})
	if strings.Join(to, ",") != "Admin2@corp.example" || strings.Join(bad, ",") != "admin%evil.example@corp.example" {
		t.Errorf("alert: to %v, bad %v", to, bad)
	}
	for _, n := range []Notice{HoldReceipt{}, HoldDecision{}, DownloadReceipt{}} {
		to, bad := p.Recipients(ctx, nil, Mail{To: []string{"mallory@evil.example", "Erin@Partner.Example", "alice@CORP.example"}, Notice: n})
		if strings.Join(to, ",") != "Erin@partner.example,alice@corp.example" || len(bad) != 0 {
			t.Errorf("%s: to %v, bad %v", Kind(n), to, bad)
		}
	}
	for _, n := range []Notice{ApprovalRequest{}, KeyRegistration{}, AccountLocked{}} {
		to, _ := p.Recipients(ctx, nil, Mail{To: []string{"carol@client.example"}, Notice: n})
		if strings.Join(to, ",") != "carol@client.example" {
			t.Errorf("%s: to %v", Kind(n), to)
		}
	}
}
