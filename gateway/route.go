package gateway

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/store"
)

// Routing a message to its contract, in order:
//
//  1. a subject tag "[CODE]" or "【CODE】" naming an existing contract
//     (stripped from the subject external recipients see when the
//     contract says so);
//  2. else the header X-Sealgate-Contract: CODE (never forwarded to
//     external recipients; an unknown code is refused);
//  3. else the single contract, among those that restrict their
//     recipients, that allows every external recipient;
//  4. else the default contract (transfer.default_contract).
//
// The contract must be active and within its dates, and must allow every
// external recipient, or the whole message is refused (550) before any
// 250 — never partly sent. Mail with internal recipients only that names no
// contract is recorded under the default contract whatever its state (it
// leaves nothing outside the company).
//
// For mail with external recipients the decision is made in
// mimeseal.Options.EditHeader, before the header is written to the
// skeleton, so that the tag can be stripped and X-Sealgate-Contract
// dropped; a refusal stops the walk at the first attachment (routedSealer)
// so nothing is stored for a message that will be refused.

// routeHeader decides the contract of m from its header h (editing h for
// the copies external recipients get) and records the decision or the
// refusal in m.
func (g *Gateway) routeHeader(ctx context.Context, m *received, h *textproto.Header) {
	c, by, stripped, err := g.pickContract(ctx, m, h)
	h.Del("X-Sealgate-Contract")
	if err != nil {
		m.routeErr = err
		return
	}
	if by == "tag" && c.StripTag {
		h.Set("Subject", encodeSubject(stripped))
	}
	m.contract, m.routedBy = c, by
}

func (g *Gateway) pickContract(ctx context.Context, m *received, h *textproto.Header) (c *contract.Contract, by, stripped string, err error) {
	db := g.DB.Read()
	now := g.Now()
	lookup := func(code string) (*contract.Contract, error) {
		c, err := contract.ByCode(ctx, db, code)
		if errors.Is(err, contract.ErrNotFound) {
			return nil, reject(550, smtp.EnhancedCode{5, 7, 1},
				fmt.Sprintf("契約 %s は登録されていないため送信しませんでした。契約コードを確認してください。", code),
				fmt.Sprintf("Contract %s is not registered; the message was not sent. Check the contract code", code))
		}
		if err != nil {
			return nil, temporary(err)
		}
		return c, nil
	}
	subject := decodeHeader(h.Get("Subject"))
	var lookupErr error
	known := func(code string) bool {
		_, err := contract.ByCode(ctx, db, code)
		if err != nil && !errors.Is(err, contract.ErrNotFound) {
			lookupErr = err
		}
		return err == nil
	}
	explicit := true
	if code, rest, ok := contract.ParseTag(subject, known); ok {
		c, by, stripped = nil, "tag", rest
		if c, err = lookup(code); err != nil {
			return nil, "", "", err
		}
	} else if lookupErr != nil {
		return nil, "", "", temporary(lookupErr)
	} else if code := strings.TrimSpace(h.Get("X-Sealgate-Contract")); code != "" {
		by = "header"
		if c, err = lookup(code); err != nil {
			return nil, "", "", err
		}
	} else {
		explicit = false
		if len(m.external) > 0 {
			cands, err := contract.Candidates(ctx, db, m.external, now)
			if err != nil {
				return nil, "", "", temporary(err)
			}
			if len(cands) == 1 {
				c, by = cands[0], "recipients"
			}
		}
		if c == nil {
			by = "default"
			if c, err = lookup(g.Config.Transfer.DefaultContract); err != nil {
				return nil, "", "", err
			}
		}
	}
	if !explicit && len(m.external) == 0 {
		return c, by, stripped, nil
	}
	if err := c.Usable(now); err != nil {
		return nil, "", "", refuseContract(c, err, g)
	}
	if bad, ok := c.FirstDisallowed(m.external); ok {
		return nil, "", "", reject(550, smtp.EnhancedCode{5, 7, 1},
			fmt.Sprintf("宛先 %s は契約 %s で許可された受信者ではないため、このメールは誰にも送信しませんでした。宛先を確認するか、情報管理責任者に相談してください。", bad, c.Code),
			fmt.Sprintf("Recipient %s is not allowed under contract %s; the message was not sent to anyone. Check the recipients or ask the contract's information manager", bad, c.Code))
	}
	return c, by, stripped, nil
}

// refuseContract is the reply for a contract that cannot take mail.
func refuseContract(c *contract.Contract, why error, g *Gateway) error {
	day := func(t interface{ Format(string) string }) string { return t.Format("2006-01-02") }
	switch {
	case errors.Is(why, contract.ErrNotStarted):
		return reject(550, smtp.EnhancedCode{5, 7, 1},
			fmt.Sprintf("契約 %s はまだ開始していない（開始日 %s）ため送信しませんでした。", c.Code, day(c.StartsAt.In(g.loc))),
			fmt.Sprintf("Contract %s has not started yet (it starts %s); the message was not sent", c.Code, day(c.StartsAt.In(g.loc))))
	case errors.Is(why, contract.ErrExpired):
		return reject(550, smtp.EnhancedCode{5, 7, 1},
			fmt.Sprintf("契約 %s は終了日（%s）を過ぎているため送信しませんでした。", c.Code, day(c.EndsAt.In(g.loc))),
			fmt.Sprintf("Contract %s is past its end date (%s); the message was not sent", c.Code, day(c.EndsAt.In(g.loc))))
	}
	return reject(550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("契約 %s は終了しているため送信しませんでした。", c.Code),
		fmt.Sprintf("Contract %s has ended; the message was not sent", c.Code))
}

// encodeSubject encodes a subject for a header field (RFC 2047 when it is
// not plain ASCII).
func encodeSubject(s string) string {
	for _, r := range s {
		if r >= 0x80 || r < 0x20 {
			return mime.BEncoding.Encode("UTF-8", s)
		}
	}
	return s
}

// routedSealer refuses to start sealing once routing has refused the
// message: nothing is stored for a message that will not be sent.
type routedSealer struct {
	ctx context.Context
	g   *Gateway
	m   *received
}

func (r routedSealer) Begin(a mimeseal.Attachment) (mimeseal.PartWriter, error) {
	if r.m.routeErr == nil && !r.m.keysOK {
		r.m.routeErr = r.g.checkKeyDelivery(r.ctx, r.m)
		r.m.keysOK = r.m.routeErr == nil
	}
	if r.m.routeErr != nil {
		return nil, r.m.routeErr
	}
	return r.m.sealer.Begin(a)
}

// checkKeyDelivery applies the contract's key delivery mode to a message
// with something to seal. public-key: every external recipient must have
// registered a public key (no passphrase is ever mailed). manual: the
// passphrases go to the sender, who must be someone the gateway mails
// (an internal address or an account), to hand over by another channel.
func (g *Gateway) checkKeyDelivery(ctx context.Context, m *received) error {
	if m.contract == nil {
		return nil
	}
	switch m.contract.KeyDelivery {
	case contract.KeyPublicKey:
		for i, addr := range m.external {
			if m.pubkeys == nil || m.pubkeys[i] == nil {
				keys := strings.TrimRight(g.Config.PublicURL, "/") + "/keys"
				return reject(550, smtp.EnhancedCode{5, 7, 1},
					fmt.Sprintf("契約 %s では添付ファイルを受信者の公開鍵でのみ暗号化します。宛先 %s は公開鍵を登録していないため、このメールは誰にも送信しませんでした。受信者に %s で鍵を登録してもらってから再送してください。", m.contract.Code, addr, keys),
					fmt.Sprintf("Contract %s encrypts attachments to recipients' public keys only, and %s has registered none; the message was not sent to anyone. Ask the recipient to register a key at %s, then send again", m.contract.Code, addr, keys))
			}
		}
	case contract.KeyManual:
		if !g.MayNotify(ctx, m.env.from) {
			return reject(550, smtp.EnhancedCode{5, 7, 1},
				fmt.Sprintf("契約 %s ではパスフレーズを送信者に届け、送信者が別の手段で受信者に伝えます。送信者 %s は社内のアドレスではないため、このメールは送信しませんでした。", m.contract.Code, m.env.from),
				fmt.Sprintf("Under contract %s the passphrases go to the sender, who hands them over by another channel; the sender %s is not an internal address, so the message was not sent", m.contract.Code, m.env.from))
		}
	}
	return nil
}

// checkContractOpen re-checks, inside the commit's transaction, that the
// contract still takes mail: a contract that started ending while the
// message was read gets nothing more (its destruction would miss it).
func checkContractOpen(ctx context.Context, tx *store.Tx, m *received) error {
	if m.contract == nil || (m.routedBy == "default" && len(m.external) == 0) {
		return nil
	}
	var status string
	if err := tx.QueryRowContext(ctx, `SELECT status FROM contracts WHERE id = ?`, m.contract.ID).Scan(&status); err != nil {
		return fmt.Errorf("failed to read contract: %w", err)
	}
	if status != contract.StatusActive {
		return reject(550, smtp.EnhancedCode{5, 7, 1},
			fmt.Sprintf("契約 %s は終了しているため送信しませんでした。", m.contract.Code),
			fmt.Sprintf("Contract %s has ended; the message was not sent", m.contract.Code))
	}
	return nil
}
