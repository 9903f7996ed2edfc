package gateway

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/gateway/mimeseal"
)

// Routing a message to its contract. The rule: routing never lowers
// protection. A recipient whom a contract that restricts its recipients
// names (a listed domain or address: its counterparty, see
// contract.Coverage) is only ever sent to under such a contract.
//
// 1. A contract named by a subject tag "[CODE]" or "【CODE】" (stripped from
//    the subject external recipients see when the contract says so), else
//    by the header X-Sealgate-Contract: CODE (never forwarded to external
//    recipients; an unknown code is refused), is used only if, for every
//    external recipient: it is one of the recipient's active covering
//    contracts; or the recipient has none and it allows them. Otherwise
//    the message is refused (550), naming the recipient and the contract(s)
//    to use. So "[DEFAULT]" (in any case, by tag or header, alone or next
//    to other recipients) reaches no counterparty of a contract.
// 2. Untagged, the message goes under the one contract that covers every
//    external recipient. Recipients of different contracts, or a
//    counterparty together with a recipient no contract covers, cannot
//    share a message (550: send separately). When several contracts cover
//    all the recipients the message is refused (550) naming them and how
//    to tag it: which contract the files belong to decides who approves
//    them and when they are destroyed, and there is no order of
//    "strictness" between contracts that differ in approval, key delivery,
//    limits and end dates that would make a guess safe.
// 3. Recipients no contract covers go under the default contract
//    (transfer.default_contract); with none configured, such mail is
//    refused (550, naming the recipient).
//
// States: mail to a counterparty of a contract that is ending or has ended
// is refused (the information must no longer flow); of one that has not
// started, refused too; of one past its end date that the scheduler has
// not ended yet, held for its information manager (package hold) under
// that contract, approvable only once the end date is extended. A
// recipient that also has an active covering contract goes under that one.
// Mail with internal recipients only that names no contract is recorded
// under the default contract whatever its state (nothing leaves the
// company), or under none when the default is off.
//
// All of this is decided from one read of the register per message
// (contract.List), never per recipient.
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
	all, err := contract.List(ctx, g.DB.Read())
	if err != nil {
		return nil, "", "", temporary(err)
	}
	now := g.Now()
	find := func(code string) *contract.Contract {
		for _, c := range all {
			if strings.EqualFold(c.Code, code) {
				return c
			}
		}
		return nil
	}
	code := ""
	if tag, rest, ok := contract.ParseTag(decodeHeader(h.Get("Subject")), func(code string) bool { return find(code) != nil }); ok {
		code, by, stripped = tag, "tag", rest
	} else if hc := strings.TrimSpace(h.Get("X-Sealgate-Contract")); hc != "" {
		code, by = hc, "header"
	}
	if code != "" {
		if c = find(code); c == nil {
			return nil, "", "", refuseUnknown(code)
		}
	}
	if len(m.external) == 0 {
		if c != nil {
			if err := c.Usable(now); err != nil {
				return nil, "", "", g.refuseContract(c, err)
			}
			return c, by, stripped, nil
		}
		// Nothing leaves the company: recorded under the default contract
		// whatever its state, or under none.
		if def := g.Config.Transfer.DefaultContract; def != "" {
			c = find(def)
		}
		return c, "default", "", nil
	}
	covs := make([]contract.Coverage, len(m.external))
	for i, r := range m.external {
		covs[i] = contract.CoverageOf(all, r, now)
	}
	if c != nil {
		if err := g.checkNamed(c, m, covs, now); err != nil {
			return nil, "", "", err
		}
		return c, by, stripped, nil
	}
	c, by, err = g.pickCovering(m, covs, find, now)
	return c, by, "", err
}

// checkNamed checks the contract a tag or header named against every
// external recipient's coverage.
func (g *Gateway) checkNamed(c *contract.Contract, m *received, covs []contract.Coverage, now time.Time) error {
	switch err := c.Usable(now); {
	case errors.Is(err, contract.ErrExpired):
		// Past its end date: only its own counterparties, held for its
		// manager, and only those no active contract covers.
		for i := range m.external {
			if len(covs[i].Active) > 0 || !slices.Contains(covs[i].Expired, c) {
				return g.refuseContract(c, err)
			}
		}
		m.expiredHold = true
		return nil
	case err != nil:
		return g.refuseContract(c, err)
	}
	for i, r := range m.external {
		cv := covs[i]
		switch {
		case len(cv.Active) > 0:
			if !slices.Contains(cv.Active, c) {
				return refuseCounterparty(r, cv.Active, c)
			}
		case len(cv.Expired) > 0:
			return g.refuseExpiredCounterparty(r, cv.Expired[0], c)
		case len(cv.Ended) > 0:
			return refuseEndedCounterparty(r, cv.Ended[0])
		case len(cv.NotStarted) > 0:
			return g.refuseNotStartedCounterparty(r, cv.NotStarted[0])
		case !c.Allows(r):
			return refuseNotAllowed(r, c)
		}
	}
	return nil
}

// pickCovering routes a message that names no contract.
func (g *Gateway) pickCovering(m *received, covs []contract.Coverage, find func(string) *contract.Contract, now time.Time) (*contract.Contract, string, error) {
	var cands []*contract.Contract
	first, outsider := -1, -1
	for i, r := range m.external {
		cv := covs[i]
		set := cv.Active
		if len(set) == 0 {
			set = cv.Expired
		}
		if len(set) == 0 {
			switch {
			case len(cv.Ended) > 0:
				return nil, "", refuseEndedCounterparty(r, cv.Ended[0])
			case len(cv.NotStarted) > 0:
				return nil, "", g.refuseNotStartedCounterparty(r, cv.NotStarted[0])
			}
			if outsider < 0 {
				outsider = i
			}
			continue
		}
		if first < 0 {
			first, cands = i, set
			continue
		}
		both := slices.DeleteFunc(slices.Clone(cands), func(c *contract.Contract) bool { return !slices.Contains(set, c) })
		if len(both) == 0 {
			return nil, "", refuseSeparate(m.external[first], cands, r, set)
		}
		cands = both
	}
	if first < 0 {
		// Nobody is any contract's counterparty: the default contract.
		def := g.Config.Transfer.DefaultContract
		if def == "" {
			return nil, "", refuseNoDefault(m.external[0])
		}
		c := find(def)
		if c == nil {
			return nil, "", refuseUnknown(def)
		}
		if err := c.Usable(now); err != nil {
			return nil, "", g.refuseContract(c, err)
		}
		if bad, ok := c.FirstDisallowed(m.external); ok {
			return nil, "", refuseNotAllowed(bad, c)
		}
		return c, "default", nil
	}
	if outsider >= 0 {
		return nil, "", refuseOutsider(m.external[outsider], m.external[first], cands)
	}
	if len(cands) > 1 {
		return nil, "", refuseSeveral(cands)
	}
	c := cands[0]
	if errors.Is(c.Usable(now), contract.ErrExpired) {
		m.expiredHold = true
	}
	return c, "recipients", nil
}

// The refusals of routing: 550 5.7.1, bilingual, naming the recipient and
// the contract, and saying what to do.

func refuseUnknown(code string) error {
	return reject(550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("契約 %s は登録されていないため送信しませんでした。契約コードを確認してください。", code),
		fmt.Sprintf("Contract %s is not registered; the message was not sent. Check the contract code", code))
}

func refuseNotAllowed(r string, c *contract.Contract) error {
	return reject(550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("宛先 %s は契約 %s で許可された受信者ではないため、このメールは誰にも送信しませんでした。宛先を確認するか、情報管理責任者に相談してください。", r, c.Code),
		fmt.Sprintf("Recipient %s is not allowed under contract %s; the message was not sent to anyone. Check the recipients or ask the contract's information manager", r, c.Code))
}

// tags renders the tags of cs for a reply: "[A]" or "[A] / [B]".
func tags(cs []*contract.Contract) string {
	t := make([]string, len(cs))
	for i, c := range cs {
		t[i] = "[" + c.Code + "]"
	}
	return strings.Join(t, " / ")
}

func refuseCounterparty(r string, covering []*contract.Contract, named *contract.Contract) error {
	codes := strings.Join(contract.Codes(covering), ", ")
	return reject(550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("宛先 %s は契約 %s の相手先のため、契約 %s では送信できません。このメールは誰にも送信しませんでした。件名に %s を付けて送信してください。", r, codes, named.Code, tags(covering)),
		fmt.Sprintf("Recipient %s is a counterparty of contract %s and cannot receive mail under contract %s; the message was not sent to anyone. Tag the subject with %s", r, codes, named.Code, tags(covering)))
}

func (g *Gateway) refuseExpiredCounterparty(r string, e, named *contract.Contract) error {
	end := e.EndsAt.In(g.loc).Format("2006-01-02")
	return reject(550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("宛先 %s は終了日（%s）を過ぎた契約 %s の相手先のため、契約 %s では送信できません。このメールは誰にも送信しませんでした。件名に契約を付けずに（または [%s] を付けて）送ると、情報管理責任者の承認待ちになります。", r, end, e.Code, named.Code, e.Code),
		fmt.Sprintf("Recipient %s is a counterparty of contract %s, which is past its end date (%s), and cannot receive mail under contract %s; the message was not sent to anyone. Sent untagged (or tagged [%s]) it waits for the information manager's approval", r, e.Code, end, named.Code, e.Code))
}

func refuseEndedCounterparty(r string, e *contract.Contract) error {
	return reject(550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("宛先 %s は終了した契約 %s の相手先です。契約終了後は情報を送れないため、このメールは誰にも送信しませんでした。情報管理責任者に相談してください。", r, e.Code),
		fmt.Sprintf("Recipient %s is a counterparty of contract %s, which has ended: no more information may flow to them. The message was not sent to anyone; ask the contract's information manager", r, e.Code))
}

func (g *Gateway) refuseNotStartedCounterparty(r string, e *contract.Contract) error {
	start := e.StartsAt.In(g.loc).Format("2006-01-02")
	return reject(550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("宛先 %s は契約 %s の相手先ですが、契約はまだ開始していない（開始日 %s）ため、このメールは誰にも送信しませんでした。", r, e.Code, start),
		fmt.Sprintf("Recipient %s is a counterparty of contract %s, which has not started yet (it starts %s); the message was not sent to anyone", r, e.Code, start))
}

func refuseSeparate(r1 string, c1 []*contract.Contract, r2 string, c2 []*contract.Contract) error {
	a, b := strings.Join(contract.Codes(c1), ", "), strings.Join(contract.Codes(c2), ", ")
	return reject(550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("宛先 %s（契約 %s）と %s（契約 %s）は別の契約の相手先のため、1 通のメールでは送信できません。このメールは誰にも送信しませんでした。契約ごとに分けて送信してください。", r1, a, r2, b),
		fmt.Sprintf("Recipients %s (contract %s) and %s (contract %s) belong to different contracts and cannot share one message; the message was not sent to anyone. Send one message per contract", r1, a, r2, b))
}

func refuseOutsider(outsider, r string, cs []*contract.Contract) error {
	codes := strings.Join(contract.Codes(cs), ", ")
	return reject(550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("宛先 %s は契約 %s で許可された受信者ではなく、%s はその契約の相手先のため、1 通のメールでは送信できません。このメールは誰にも送信しませんでした。分けて送信してください。", outsider, codes, r),
		fmt.Sprintf("Recipient %s is not allowed under contract %s, whose counterparty %s is also a recipient; they cannot share one message. The message was not sent to anyone; send separate messages", outsider, codes, r))
}

func refuseSeveral(cs []*contract.Contract) error {
	codes := strings.Join(contract.Codes(cs), ", ")
	return reject(550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("宛先は複数の契約（%s）の相手先です。このメールは誰にも送信しませんでした。どの契約のメールかを件名のタグ（%s のいずれか）で示して送信してください。", codes, tags(cs)),
		fmt.Sprintf("The recipients are counterparties of several contracts (%s); the message was not sent to anyone. Tag the subject with the contract it belongs to (one of %s)", codes, tags(cs)))
}

func refuseNoDefault(r string) error {
	return reject(550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("宛先 %s はどの契約でも許可されておらず、既定の契約は使用しない設定のため、このメールは誰にも送信しませんでした。件名に契約コードを付けるか、情報管理責任者に相談してください。", r),
		fmt.Sprintf("Recipient %s is not covered by any contract, and no default contract is configured; the message was not sent to anyone. Tag the subject with a contract code or ask an information manager", r))
}

// refuseContract is the reply for a contract that cannot take mail.
func (g *Gateway) refuseContract(c *contract.Contract, why error) error {
	day := func(t time.Time) string { return t.In(g.loc).Format("2006-01-02") }
	switch {
	case errors.Is(why, contract.ErrNotStarted):
		return reject(550, smtp.EnhancedCode{5, 7, 1},
			fmt.Sprintf("契約 %s はまだ開始していない（開始日 %s）ため送信しませんでした。", c.Code, day(c.StartsAt)),
			fmt.Sprintf("Contract %s has not started yet (it starts %s); the message was not sent", c.Code, day(c.StartsAt)))
	case errors.Is(why, contract.ErrExpired):
		return reject(550, smtp.EnhancedCode{5, 7, 1},
			fmt.Sprintf("契約 %s は終了日（%s）を過ぎているため送信しませんでした。", c.Code, day(c.EndsAt)),
			fmt.Sprintf("Contract %s is past its end date (%s); the message was not sent", c.Code, day(c.EndsAt)))
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
		if !g.policy.MayNotify(ctx, g.DB.Read(), m.env.from) {
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
func checkContractOpen(ctx context.Context, tx *database.Tx, m *received) error {
	if m.contract == nil || (m.routedBy == "default" && len(m.external) == 0) {
		return nil
	}
	status, err := contract.Status(ctx, tx, m.contract.ID)
	if err != nil {
		return err
	}
	if status != contract.StatusActive {
		return reject(550, smtp.EnhancedCode{5, 7, 1},
			fmt.Sprintf("契約 %s は終了しているため送信しませんでした。", m.contract.Code),
			fmt.Sprintf("Contract %s has ended; the message was not sent", m.contract.Code))
	}
	return nil
}
