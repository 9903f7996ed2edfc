package gateway

import (
	"context"

	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/hold"
	"github.com/sealgate/sealgate/internal/linktoken"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/pubkey"
)

// holdSpec decides whether the external copies of m are held (package
// hold): under a contract that requires the manager's approval, or while
// the configured send delay runs. It returns nil when they leave at once.
// The hold is recorded in the commit's transaction.
func (g *Gateway) holdSpec(m *received, sealed bool) (*hold.Spec, error) {
	if len(m.external) == 0 {
		return nil, nil
	}
	// A policy rule may hold the message too, and so does a scan without a
	// verdict under scan.on_unavailable = "hold" (policy.go).
	approval := m.contract.ApprovalRequired || m.expiredHold || m.decision.Action == policy.Hold || m.unscanned
	delay := g.Config.Delivery.SendDelay.D()
	if !approval && delay <= 0 {
		return nil, nil
	}
	token, err := linktoken.New(g.Rand)
	if err != nil {
		return nil, err
	}
	sp := &hold.Spec{
		MessageID: m.id, Contract: m.contract.Code, ContractID: m.contract.ID, ContractManager: m.contract.Manager,
		Sender: m.env.from, Actor: m.env.actor, Subject: oneLine(decodeHeader(m.header.Get("Subject"))),
		Recipients: m.external, ReceivedAt: m.receivedAt, ReleaseAt: m.receivedAt.Add(delay),
		Approval: approval, ApprovalExpiresAt: m.receivedAt.Add(g.Config.Transfer.ApprovalExpiry.D()),
		CancelToken: token, Expired: m.expiredHold,
	}
	if sealed {
		sp.Transfer = m.sealer.transferID
		for _, f := range m.sealer.files {
			sp.Files = append(sp.Files, hold.File{Name: f.name, Size: f.size, SHA256: f.sha256})
		}
	}
	return sp, nil
}

// registeredKeys looks up the public keys the external recipients of m
// registered; their key.age is encrypted to them in place of a passphrase
// (no passphrase exists for those recipients).
func (g *Gateway) registeredKeys(ctx context.Context, m *received) error {
	keys, err := pubkey.Active(ctx, g.DB.Read(), m.external)
	if err != nil {
		return temporary(err)
	}
	if len(keys) == 0 {
		return nil
	}
	m.pubkeys = make([]*pubkey.Key, len(m.external))
	m.sealer.registered = make([]*crypto.PublicKey, len(m.external))
	for i, addr := range m.external {
		a, err := address.Parse(addr)
		if err != nil {
			continue
		}
		k := keys[a.Key()]
		if k == nil {
			continue
		}
		r, err := crypto.ParsePublicKey(k.PublicKey)
		if err != nil {
			g.Log.Warn("a registered public key cannot be used; the recipient gets a passphrase", "recipient", addr, "error", err)
			continue
		}
		m.pubkeys[i], m.sealer.registered[i] = k, r
	}
	return nil
}
