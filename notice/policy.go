package notice

import (
	"context"

	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/database"
)

// Policy is whom sealgate mails on its own initiative.
//
// Every recipient is mailed in canonical form (address.Parse); an address
// that does not parse — routing syntax such as boss%evil.example@corp.example
// among them, which the next hop could deliver elsewhere — is never mailed.
//
// A notice to the sender of a message (a receipt, a decision, a download
// receipt; and the passphrases under key delivery "manual", which the
// gateway checks when it accepts the message) goes only to an internal
// address or to an active account's address: relayed mail may carry any
// envelope sender, and mailing it would be backscatter. Other notices go
// to whom their caller chose from the accounts and the contract register
// (approval requests, alerts), or to the address that asked for them (the
// confirmation of a key registration).
type Policy struct {
	// Internal reports whether a canonical domain is the company's own
	// (config.Config.IsInternalDomain).
	Internal func(domain string) bool
	// Active reports whether an address, in its comparison form
	// (address.Address.Key), is an active account's (account.HasActiveEmail).
	Active func(ctx context.Context, q database.Querier, key string) (bool, error)
}

// MayNotify reports whether the sender addr of a message may be mailed
// notices about it: an internal address, or an active account's. q reads
// the accounts (the caller's transaction, or a read handle).
func (p Policy) MayNotify(ctx context.Context, q database.Querier, addr string) bool {
	if addr == "" {
		return false // the null sender
	}
	a, err := address.Parse(addr)
	if err != nil {
		return false // routing syntax could take the notice elsewhere
	}
	if p.Internal != nil && p.Internal(a.Domain) {
		return true
	}
	if p.Active == nil {
		return false
	}
	ok, err := p.Active(ctx, q, a.Key())
	return err == nil && ok
}

// Recipients returns the recipients of m that it may be mailed to, in
// canonical form. An address that does not parse is returned in bad, for
// the caller to log (an account or a register entry that needs fixing); a
// sender that MayNotify refuses, and an empty address, are left out
// silently (relayed mail may carry any envelope sender, or none: that is
// no error).
func (p Policy) Recipients(ctx context.Context, q database.Querier, m Mail) (to, bad []string) {
	toSender := m.Notice.spec().toSender
	for _, r := range m.To {
		if r == "" {
			continue
		}
		a, err := address.Parse(r)
		if err != nil {
			bad = append(bad, r)
			continue
		}
		if toSender && !p.MayNotify(ctx, q, r) {
			continue
		}
		to = append(to, a.String())
	}
	return to, bad
}
