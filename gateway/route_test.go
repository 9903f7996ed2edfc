package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/hold"
)

// routingRegister is the register the routing tests share:
//
//	C-APPR   client.example, approval required
//	C-A      partner.example            } two contracts cover partner.example
//	C-B      partner.example, a@solo.example }
//	C-OLD    oldclient.example, past its end date (not yet ended by the scheduler)
//	C-GONE   gone.example, ended
//	C-SOON   future.example, starts next month
func routingRegister(t *testing.T, g *testGW) {
	t.Helper()
	now := g.Now()
	addContract(t, g, contract.Spec{Code: "C-APPR", Domains: []string{"client.example"}, ApprovalRequired: true, Manager: "boss@corp.example"})
	addContract(t, g, contract.Spec{Code: "C-A", Domains: []string{"partner.example"}})
	addContract(t, g, contract.Spec{Code: "C-B", Domains: []string{"partner.example"}, Addresses: []string{"a@solo.example"}})
	addContract(t, g, contract.Spec{Code: "C-OLD", Domains: []string{"oldclient.example"}, Manager: "boss@corp.example",
		StartsAt: now.Add(-90 * 24 * time.Hour), EndsAt: now.Add(-time.Hour)})
	addContract(t, g, contract.Spec{Code: "C-GONE", Domains: []string{"gone.example"}})
	if err := execWrite(g, `UPDATE contracts SET status = 'ended' WHERE code = 'C-GONE'`); err != nil {
		t.Fatal(err)
	}
	addContract(t, g, contract.Spec{Code: "C-SOON", Domains: []string{"future.example"}, StartsAt: now.Add(30 * 24 * time.Hour)})
}

// TestRoutingNeverLowersProtection: a sender cannot choose a weaker
// contract than the one that covers a recipient — not by tag or header,
// not in another case, not by mixing recipients — and a counterparty of
// an ended contract gets nothing.
func TestRoutingNeverLowersProtection(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	routingRegister(t, g)
	secret := []byte("confidential estimate")
	for _, tc := range []struct {
		name, subject, extra string
		rcpts                []string
		want                 []string // in the 550 reply
	}{
		{"tag DEFAULT", "[DEFAULT] estimate", "", []string{"x@client.example"}, []string{"x@client.example", "C-APPR"}},
		{"tag default", "[default] estimate", "", []string{"x@client.example"}, []string{"x@client.example", "C-APPR"}},
		{"tag DEFAULT, canonical spelling", "【DEFAULT】 estimate", "", []string{"X@CLIENT.EXAMPLE."}, []string{"C-APPR"}},
		{"header DEFAULT", "estimate", "X-Sealgate-Contract: DEFAULT\r\n", []string{"x@client.example"}, []string{"x@client.example", "C-APPR"}},
		{"header default, lower case", "estimate", "X-Sealgate-Contract: default\r\n", []string{"x@client.example"}, []string{"C-APPR"}},
		{"tag of another contract", "[C-A] estimate", "", []string{"x@client.example"}, []string{"x@client.example", "C-APPR"}},
		{"tag covering only some recipients", "[C-A] estimate", "", []string{"y@partner.example", "x@client.example"}, []string{"x@client.example"}},
		{"tag covering only some recipients, reversed", "[C-APPR] estimate", "", []string{"x@client.example", "y@partner.example"}, []string{"y@partner.example"}},
		{"tag DEFAULT mixing a counterparty in", "[DEFAULT] estimate", "", []string{"z@elsewhere.example", "x@client.example"}, []string{"x@client.example", "C-APPR"}},
		{"untagged, counterparty mixed with an outsider", "estimate", "", []string{"z@elsewhere.example", "x@client.example"}, []string{"z@elsewhere.example", "C-APPR"}},
		{"untagged, two contracts' counterparties", "estimate", "", []string{"x@client.example", "y@partner.example"}, []string{"x@client.example", "y@partner.example"}},
		{"untagged, two contracts cover", "estimate", "", []string{"y@partner.example"}, []string{"C-A", "C-B", "[C-A]"}},
		{"untagged, ended contract", "estimate", "", []string{"g@gone.example"}, []string{"g@gone.example", "C-GONE"}},
		{"tag DEFAULT, ended contract", "[DEFAULT] estimate", "", []string{"g@gone.example"}, []string{"g@gone.example", "C-GONE"}},
		{"untagged, contract not started", "estimate", "", []string{"f@future.example"}, []string{"f@future.example", "C-SOON"}},
		{"tag DEFAULT, expired contract", "[DEFAULT] estimate", "", []string{"u@oldclient.example"}, []string{"u@oldclient.example", "C-OLD"}},
		{"reply to internal mail tagged DEFAULT", "Re: [DEFAULT] internal note", "", []string{"bob@corp.example", "x@client.example"}, []string{"x@client.example", "C-APPR"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.send(t, tc.rcpts, routeMessage(tc.subject, strings.Join(tc.rcpts, ", "), tc.extra, secret))
			if err == nil {
				t.Fatal("accepted")
			}
			r := smtpReply(err)
			if r.Code != 550 || !isBilingual(r.Message) {
				t.Fatalf("reply %d %s", r.Code, r.Message)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Message, w) {
					t.Errorf("reply %q lacks %q", r.Message, w)
				}
			}
		})
	}
	var msgs int
	g.DB.Read().QueryRow(`SELECT COUNT(*) FROM messages`).Scan(&msgs)
	if msgs != 0 {
		t.Fatalf("%d refused messages recorded", msgs)
	}
}

// TestRoutingCovered: what is accepted goes under the covering contract.
func TestRoutingCovered(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	routingRegister(t, g)
	secret := []byte("confidential estimate")
	for _, tc := range []struct {
		name, subject string
		rcpts         []string
		want          string
		held          bool
	}{
		{"untagged counterparty", "estimate", []string{"x@client.example", "bob@corp.example"}, "C-APPR", true},
		{"tag of the covering contract, lower case", "[c-appr] estimate", []string{"X@Client.Example."}, "C-APPR", true},
		{"tag picks among two", "[C-B] estimate", []string{"y@partner.example", "a@solo.example"}, "C-B", false},
		{"untagged, one contract covers all", "estimate", []string{"y@partner.example", "a@solo.example"}, "C-B", false},
		{"untagged outsider", "estimate", []string{"z@elsewhere.example"}, "DEFAULT", false},
		{"tag DEFAULT, outsider", "[DEFAULT] estimate", []string{"z@elsewhere.example"}, "DEFAULT", false},
		{"internal only", "internal note", []string{"bob@corp.example"}, "DEFAULT", false},
		{"expired contract: held for its manager", "estimate", []string{"u@oldclient.example"}, "C-OLD", true},
		{"expired contract by tag: held", "[C-OLD] estimate", []string{"u@oldclient.example"}, "C-OLD", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := g.send(t, tc.rcpts, routeMessage(tc.subject, strings.Join(tc.rcpts, ", "), "", secret))
			if err != nil {
				t.Fatal(err)
			}
			if got := g.contractOf(t, id); got != tc.want {
				t.Fatalf("routed to %s, want %s", got, tc.want)
			}
			h, err := hold.Get(context.Background(), g.DB.Read(), id)
			if tc.held != (err == nil) || (tc.held && !h.Awaiting()) {
				t.Fatalf("held: %v (%v), want %v awaiting approval", h, err, tc.held)
			}
		})
	}
}

// TestExpiredHoldNeedsExtension: a message held because its contract is
// past its end date cannot be approved until the manager extends the
// contract; then it leaves, its links expiring no later than the new end.
func TestExpiredHoldNeedsExtension(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	routingRegister(t, g)
	ctx := context.Background()
	id, err := g.send(t, []string{"u@oldclient.example"}, routeMessage("estimate", "u@oldclient.example", "", []byte("confidential")))
	if err != nil {
		t.Fatal(err)
	}
	by := hold.Decider{Name: "boss", Email: "boss@corp.example"}
	if err := g.Holds.Approve(ctx, id, by, ""); err == nil {
		t.Fatal("approved under a contract past its end date")
	}
	end := g.Now().Add(10 * 24 * time.Hour)
	if _, err := contract.Update(ctx, g.DB, g.Ledger, "C-OLD", contract.Changes{EndsAt: &end}, "cli:test", g.Now()); err != nil {
		t.Fatal(err)
	}
	if err := g.Holds.Approve(ctx, id, by, "extended"); err != nil {
		t.Fatal(err)
	}
	var expires int64
	var status string
	g.DB.Read().QueryRow(`SELECT expires_at FROM transfers WHERE message_id = ?`, id).Scan(&expires)
	g.DB.Read().QueryRow(`SELECT status FROM outbound WHERE message_id = ? AND kind = 'sealed'`, id).Scan(&status)
	if time.UnixMilli(expires).After(end) || time.UnixMilli(expires).Before(g.Now()) || status != "queued" {
		t.Fatalf("after approval: link expires %v (contract ends %v), copy %s", time.UnixMilli(expires), end, status)
	}
}

// TestDefaultContractOff: with transfer.default_contract = "" external
// mail that no contract covers is refused, naming the recipient; internal
// mail and covered mail go as before.
func TestDefaultContractOff(t *testing.T) {
	g := newTestGateway(t, nil, func(c *config.Config) { c.Transfer.DefaultContract = "" })
	addContract(t, g, contract.Spec{Code: "C-A", Domains: []string{"partner.example"}})
	_, err := g.send(t, []string{"z@elsewhere.example"}, routeMessage("estimate", "z@elsewhere.example", "", []byte("confidential")))
	if r := smtpReply(err); err == nil || r.Code != 550 || !strings.Contains(r.Message, "z@elsewhere.example") || !isBilingual(r.Message) {
		t.Fatalf("uncovered recipient without a default contract: %v", err)
	}
	if _, err := g.send(t, []string{"bob@corp.example"}, routeMessage("internal", "bob@corp.example", "", nil)); err != nil {
		t.Fatalf("internal mail: %v", err)
	}
	id, err := g.send(t, []string{"y@partner.example"}, routeMessage("estimate", "y@partner.example", "", []byte("confidential")))
	if err != nil {
		t.Fatal(err)
	}
	if got := g.contractOf(t, id); got != "C-A" {
		t.Fatalf("routed to %s", got)
	}
	var n int
	g.DB.Read().QueryRow(`SELECT COUNT(*) FROM contracts WHERE code = 'DEFAULT'`).Scan(&n)
	if n != 0 {
		t.Fatal("a default contract was created although it is switched off")
	}
	c, err := config.Load("", func(k string) string {
		return map[string]string{"SEALGATE_DEFAULT_CONTRACT": "off"}[k]
	})
	if err != nil || c.Transfer.DefaultContract != "" {
		t.Fatalf("SEALGATE_DEFAULT_CONTRACT=off: %q, %v", c.Transfer.DefaultContract, err)
	}
}
