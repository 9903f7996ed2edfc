// Package hold keeps messages whose external copies must wait before they
// leave: for the information manager's approval (持出し承認), under a
// contract with approval_required, and for the send delay (一時保留,
// delivery.send_delay), during which the sender may still cancel.
//
// # States
//
// The gateway commits a held message with its external outbound rows (link
// copies; the key notices wait behind them as usual) in status 'held' —
// nothing leaves — and a holds row, in the same transaction (Create). Then:
//
//   - released: the approval, if needed, is granted and the delay is over;
//     the rows are queued (message.released) — taken out;
//   - refused by a manager (approval.refused, with the reason), expired
//     without a decision (approval.expired), or cancelled by the sender
//     (message.cancelled): the rows are cancelled and the transfer is
//     revoked as a revocation would (destroy.Revoke: every recipient's key
//     destroyed, every object deleted and proven absent).
//
// Every step is conditional on the hold still being 'held', inside the
// single-writer transaction, so that a release and a cancellation racing at
// the end of the delay cannot both happen: whichever commits first wins and
// the other is told. The destruction after a refusal runs after its commit
// and is resumed by Expire (run by the scheduler, package schedule) if the
// process died in between (finished_at stays NULL until it is done).
//
// The sender is told (a receipt when the message is held, with a link to
// cancel it; a notice of every decision) and the managers are asked by
// mail; these are system notices (package notice) queued in the same
// transactions, to the sender only where notice.Policy allows.
package hold

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/internal/linktoken"
	"github.com/sealgate/sealgate/notice"
	"github.com/sealgate/sealgate/outbox"
	"github.com/sealgate/sealgate/transfer"
)

// Hold states.
const (
	StatusHeld      = "held"
	StatusReleased  = "released"
	StatusRefused   = "refused"
	StatusExpired   = "expired"
	StatusCancelled = "cancelled"
)

// Approval states ("" when no approval is needed).
const (
	ApprovalPending = "pending"
	ApprovalGranted = "granted"
	ApprovalRefused = "refused"
	ApprovalExpired = "expired"
)

// Errors; test with errors.Is.
var (
	ErrNotFound       = errors.New("hold: no such held message")
	ErrNotHeld        = errors.New("hold: the message is no longer held")
	ErrNotPending     = errors.New("hold: the message does not await approval")
	ErrSelfApproval   = errors.New("hold: a sender cannot approve their own message")
	ErrReasonRequired = errors.New("hold: a reason is required")
	// ErrContractClosed: the message's contract has ended, or is past its
	// end date; nothing may be approved under it (extend the end date
	// first).
	ErrContractClosed = errors.New("hold: the contract has ended or is past its end date")
)

// Deps are the service's dependencies.
type Deps struct {
	DB     *database.DB
	Ledger *audit.Ledger
	// Transfer revokes the transfer of a refused, expired or cancelled
	// message.
	Transfer destroy.Deps
	Now      func() time.Time
	Log      *slog.Logger
	// Notices queues the approval requests, receipts and decisions (nil:
	// none are sent).
	Notices Notifier
	// Kick wakes the delivery queue after rows were released.
	Kick func()
}

// Service manages held messages. Create it with New.
type Service struct {
	d    Deps
	wake chan struct{}
}

// New returns the service.
func New(d Deps) *Service {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Transfer.Now == nil {
		d.Transfer.Now = d.Now
	}
	return &Service{d: d, wake: make(chan struct{}, 1)}
}

// Spec is what Create needs about a message being committed.
type Spec struct {
	MessageID string
	Contract  string // code
	// ContractID and ContractManager (the register's manager field) are
	// those of the contract.
	ContractID      int64
	ContractManager string
	Transfer        string // "" when nothing was sealed
	Sender          string // envelope sender
	Actor           string // account, "" for relayed mail
	Subject         string
	Recipients      []string // external
	Files           []File
	ReceivedAt      time.Time
	// Approval is set when the contract requires the manager's approval;
	// ApprovalExpiresAt is when an undecided message is destroyed.
	Approval          bool
	ApprovalExpiresAt time.Time
	// ReleaseAt is the end of the send delay (ReceivedAt when none).
	ReleaseAt time.Time
	// CancelToken is the secret of the sender's cancel link ("" for none);
	// only its SHA-256 is stored.
	CancelToken string
	// Expired: the approval is needed because the contract is past its
	// end date (the recipients are its counterparties); the manager can
	// approve only after extending the contract.
	Expired bool
}

// File names a sealed file in notices.
type File struct {
	Name   string
	Size   int64
	SHA256 string
}

// Create records the hold inside the gateway's commit transaction, with
// its ledger events (message.held, approval.requested), the approval
// request to the managers and the receipt to the sender.
func (s *Service) Create(ctx context.Context, tx *database.Tx, sp Spec) error {
	approval := ""
	var expires any
	if sp.Approval {
		approval = ApprovalPending
		expires = sp.ApprovalExpiresAt.UnixMilli()
	}
	var cancelHash any
	if sp.CancelToken != "" {
		cancelHash = linktoken.Hash(sp.CancelToken)
	}
	actor := sp.Actor
	if actor == "" {
		actor = "smtp:" + sp.Sender
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO holds(message_id, contract_id, sender, actor, status, approval, release_at, approval_expires_at, cancel_token_hash, created_at)
		VALUES (?, ?, ?, ?, 'held', ?, ?, ?, ?, ?)`, sp.MessageID, sp.ContractID, sp.Sender, sp.Actor, approval,
		sp.ReleaseAt.UnixMilli(), expires, cancelHash, sp.ReceivedAt.UnixMilli()); err != nil {
		return fmt.Errorf("failed to record hold: %w", err)
	}
	details := map[string]string{"release_at": sp.ReleaseAt.UTC().Format(time.RFC3339), "recipients": fmt.Sprint(len(sp.Recipients))}
	if sp.Approval {
		details["approval"] = "required"
	}
	if sp.Expired {
		details["why"] = "contract past its end date"
	}
	if _, err := s.d.Ledger.Append(ctx, tx, audit.Event{Time: sp.ReceivedAt, Type: audit.TypeMessageHeld, Actor: "system", Contract: sp.Contract,
		Message: sp.MessageID, Transfer: sp.Transfer, Details: details}); err != nil {
		return err
	}
	if sp.Approval {
		managers, err := Approvers(ctx, tx, sp.Contract, sp.ContractManager)
		if err != nil {
			return err
		}
		if _, err := s.d.Ledger.Append(ctx, tx, audit.Event{Time: sp.ReceivedAt, Type: audit.TypeApprovalRequested, Actor: actor, Contract: sp.Contract,
			Message: sp.MessageID, Transfer: sp.Transfer, Details: map[string]string{
				"managers": strings.Join(managers, ", "), "expires_at": sp.ApprovalExpiresAt.UTC().Format(time.RFC3339),
				"recipients": strings.Join(sp.Recipients, ", "), "subject": sp.Subject}}); err != nil {
			return err
		}
		if len(managers) == 0 {
			s.d.Log.Warn("a message awaits approval but its contract has no manager to ask", "contract", sp.Contract, "message", sp.MessageID)
		} else if err := s.notify(ctx, tx, managers, sp.MessageID, request(sp)); err != nil {
			return err
		}
	}
	if err := s.notify(ctx, tx, []string{sp.Sender}, sp.MessageID, receipt(sp)); err != nil {
		return err
	}
	if !sp.Approval {
		tx.AfterCommit(s.Wake)
	}
	return nil
}

// Approvers returns the addresses of who may approve under the contract:
// the active accounts with the manager role for it (or for every
// contract), and the contract's manager field (an address, or an account
// name), in canonical form (package address). An address that does not
// parse — routing syntax such as boss%evil.example@corp.example among
// them, which the next hop could deliver elsewhere — is left out: the
// request would otherwise leave the company, or fail the commit.
func Approvers(ctx context.Context, q database.Querier, code, manager string) ([]string, error) {
	emails, err := account.ActiveEmails(ctx, q, account.RoleManager, code)
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	add := func(addr string) {
		a, err := address.Parse(addr)
		if err != nil || seen[a.Key()] {
			return
		}
		seen[a.Key()] = true
		out = append(out, a.String())
	}
	for _, e := range emails {
		add(e)
	}
	manager = strings.TrimSpace(manager)
	if manager != "" {
		addr := manager
		if !strings.Contains(manager, "@") {
			addr, err = account.ActiveEmailByName(ctx, q, manager)
			if errors.Is(err, account.ErrNotFound) {
				addr = ""
			} else if err != nil {
				return nil, fmt.Errorf("failed to read manager: %w", err)
			}
		}
		// The register's field is free text: only a plain address is
		// mailed (a bad one must not make the gateway refuse mail).
		if a, err := mail.ParseAddress(addr); err == nil && addr != "" {
			add(a.Address)
		}
	}
	return out, nil
}

// Held is a held (or formerly held) message as the portal shows it.
type Held struct {
	MessageID         string
	Contract          string
	ContractID        int64
	ContractManager   string
	Sender            string
	Actor             string
	Subject           string
	Transfer          string
	Status            string
	Approval          string
	ReceivedAt        time.Time
	ReleaseAt         time.Time
	ApprovalExpiresAt time.Time
	DecidedBy         string
	DecidedAt         time.Time
	Reason            string
	EndedAt           time.Time
	Recipients        []string
	Files             []File
}

// Awaiting reports whether the message still awaits a manager's decision.
func (h *Held) Awaiting() bool { return h.Status == StatusHeld && h.Approval == ApprovalPending }

const heldColumns = `message_id, contract_id, sender, actor, status, approval, release_at, approval_expires_at, decided_by, decided_at, reason, ended_at`

func ms(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

func scanHeld(row interface{ Scan(...any) error }) (*Held, error) {
	h := &Held{}
	var release int64
	var expires, decided, ended sql.NullInt64
	if err := row.Scan(&h.MessageID, &h.ContractID, &h.Sender, &h.Actor, &h.Status, &h.Approval, &release, &expires, &h.DecidedBy, &decided,
		&h.Reason, &ended); err != nil {
		return nil, err
	}
	h.ReleaseAt = time.UnixMilli(release).UTC()
	h.ApprovalExpiresAt, h.DecidedAt, h.EndedAt = ms(expires), ms(decided), ms(ended)
	return h, nil
}

// Get returns one held message with its recipients and files.
func Get(ctx context.Context, q database.Querier, messageID string) (*Held, error) {
	h, err := scanHeld(q.QueryRowContext(ctx, `SELECT `+heldColumns+` FROM holds WHERE message_id = ?`, messageID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read hold: %w", err)
	}
	return h, fillDetails(ctx, q, h, map[int64]*contract.Contract{})
}

// fillDetails fills in what the owners of the message, its contract (read
// once per contract: contracts), its transfer and its outbound rows know.
func fillDetails(ctx context.Context, q database.Querier, h *Held, contracts map[int64]*contract.Contract) error {
	m, err := transfer.MessageByID(ctx, q, h.MessageID)
	if err != nil {
		return fmt.Errorf("failed to read hold: %w", err)
	}
	h.Subject, h.ReceivedAt, h.Transfer = m.Subject, m.ReceivedAt, m.TransferID
	c := contracts[h.ContractID]
	if c == nil {
		if c, err = contract.ByID(ctx, q, h.ContractID); err != nil {
			return fmt.Errorf("failed to read hold: %w", err)
		}
		contracts[h.ContractID] = c
	}
	h.Contract, h.ContractManager = c.Code, c.Manager
	if h.Recipients, err = outbox.ExternalRecipients(ctx, q, h.MessageID); err != nil {
		return err
	}
	if h.Transfer == "" {
		return nil
	}
	files, err := transfer.Files(ctx, q, h.Transfer)
	if err != nil {
		return err
	}
	for _, f := range files {
		h.Files = append(h.Files, File{Name: f.Name, Size: f.Size, SHA256: f.SHA256})
	}
	return nil
}

// Filter selects held messages for List.
type Filter struct {
	// Contracts restricts to these codes (nil: every contract).
	Contracts []string
	// Status selects one state ("" = all); AwaitingOnly selects messages
	// awaiting a decision.
	Status       string
	AwaitingOnly bool
	// Sender selects by envelope sender or account (either matches).
	Sender, Actor string
	Limit         int // default 200
}

// List returns held messages, oldest first for those awaiting a decision,
// else newest first.
func List(ctx context.Context, q database.Querier, f Filter) ([]*Held, error) {
	if f.Limit <= 0 {
		f.Limit = 200
	}
	where := []string{"1 = 1"}
	var args []any
	if f.Contracts != nil {
		ids, err := contract.IDsByCode(ctx, q, f.Contracts...)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, nil
		}
		list := make([]int64, 0, len(ids))
		for _, id := range ids {
			list = append(list, id)
		}
		b, _ := json.Marshal(list)
		where, args = append(where, "contract_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))"), append(args, string(b))
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, f.Status)
	}
	order := "created_at DESC"
	if f.AwaitingOnly {
		where = append(where, "status = 'held' AND approval = 'pending'")
		order = "created_at"
	}
	if f.Sender != "" || f.Actor != "" {
		where, args = append(where, "(sender = ? COLLATE NOCASE OR (actor != '' AND actor = ?))"), append(args, f.Sender, f.Actor)
	}
	rows, err := q.QueryContext(ctx, `SELECT `+heldColumns+` FROM holds WHERE `+strings.Join(where, " AND ")+` ORDER BY `+order+` LIMIT ?`,
		append(args, f.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("failed to list held messages: %w", err)
	}
	var out []*Held
	for rows.Next() {
		h, err := scanHeld(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to list held messages: %w", err)
		}
		out = append(out, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list held messages: %w", err)
	}
	contracts := map[int64]*contract.Contract{}
	for _, h := range out {
		if err := fillDetails(ctx, q, h, contracts); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CountAwaiting counts the held messages of a contract that await a
// manager's decision.
func CountAwaiting(ctx context.Context, q database.Querier, contractID int64) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM holds WHERE contract_id = ? AND status = 'held' AND approval = 'pending'`, contractID).Scan(&n); err != nil {
		return 0, fmt.Errorf("failed to count held messages: %w", err)
	}
	return n, nil
}

// ByCancelToken returns the held message a sender's cancel link names,
// changing nothing.
func ByCancelToken(ctx context.Context, q database.Querier, token string) (*Held, error) {
	if token == "" || len(token) > 128 {
		return nil, ErrNotFound
	}
	var id string
	err := q.QueryRowContext(ctx, `SELECT message_id FROM holds WHERE cancel_token_hash = ?`, linktoken.Hash(token)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read hold: %w", err)
	}
	return Get(ctx, q, id)
}

// Decider is who decides: a manager approving or refusing, or the sender
// cancelling.
type Decider struct {
	Name      string // account name (or "sender:<address>" for a cancel link)
	Email     string
	RemoteIP  string
	UserAgent string
}

// Approve grants the approval of a message awaiting it; the message leaves
// at once, or when its send delay ends. A sender cannot approve their own
// message.
func (s *Service) Approve(ctx context.Context, messageID string, by Decider, note string) error {
	return s.d.DB.Write(ctx, func(tx *database.Tx) error {
		h, err := Get(ctx, tx, messageID)
		if err != nil {
			return err
		}
		if !h.Awaiting() {
			return fmt.Errorf("%w: it is %s", ErrNotPending, h.Status)
		}
		if isSender(h, by) {
			return ErrSelfApproval
		}
		now := s.d.Now()
		// Nothing leaves under a contract that has ended or is past its
		// end date; a message held for that reason waits for the
		// manager to extend the contract.
		c, err := contract.ByID(ctx, tx, h.ContractID)
		if err != nil {
			return fmt.Errorf("failed to read contract: %w", err)
		}
		ends := c.EndsAt
		if c.Status != contract.StatusActive || (!ends.IsZero() && ends.UnixMilli() <= now.UnixMilli()) {
			return fmt.Errorf("%w: %s", ErrContractClosed, h.Contract)
		}
		if !ends.IsZero() && h.Transfer != "" {
			// Links never outlive the contract.
			if err := transfer.CapExpiry(ctx, tx, h.Transfer, ends); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE holds SET approval = 'granted', decided_by = ?, decided_at = ?, reason = ? WHERE message_id = ?`,
			by.Name, now.UnixMilli(), note, messageID); err != nil {
			return fmt.Errorf("failed to record approval: %w", err)
		}
		if _, err := s.d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeApprovalGranted, Actor: by.Name, Contract: h.Contract,
			Message: messageID, Transfer: h.Transfer, Reason: note, RemoteIP: by.RemoteIP, UserAgent: by.UserAgent,
			Details: map[string]string{"sender": h.Sender, "recipients": strings.Join(h.Recipients, ", ")}}); err != nil {
			return err
		}
		if err := s.notify(ctx, tx, []string{h.Sender}, messageID, decision(h, notice.Approved, by.Name, note, now)); err != nil {
			return err
		}
		if !h.ReleaseAt.After(now) {
			return s.releaseTx(ctx, tx, h, now)
		}
		tx.AfterCommit(s.Wake)
		return nil
	})
}

func isSender(h *Held, by Decider) bool {
	return (h.Actor != "" && strings.EqualFold(h.Actor, by.Name)) || (by.Email != "" && address.Same(h.Sender, by.Email))
}

// Refuse refuses a message awaiting approval: nothing of it leaves, and
// its transfer is destroyed. The reason is required and told to the
// sender.
func (s *Service) Refuse(ctx context.Context, messageID string, by Decider, reason string) error {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return ErrReasonRequired
	}
	h, err := s.end(ctx, messageID, func(h *Held) error {
		if !h.Awaiting() {
			return fmt.Errorf("%w: it is %s", ErrNotPending, h.Status)
		}
		return nil
	}, StatusRefused, ApprovalRefused, audit.TypeApprovalRefused, by, reason)
	if err != nil {
		return err
	}
	return s.destroy(ctx, h, by.Name, "approval refused: "+reason)
}

// Cancel cancels a held message for its sender (from the portal or the
// cancel link of the receipt): nothing of it leaves, and its transfer is
// destroyed. It fails with ErrNotHeld once the message has left.
func (s *Service) Cancel(ctx context.Context, messageID string, by Decider) error {
	h, err := s.end(ctx, messageID, func(h *Held) error { return nil }, StatusCancelled, "", audit.TypeMessageCancelled, by, "cancelled by the sender")
	if err != nil {
		return err
	}
	return s.destroy(ctx, h, by.Name, "cancelled by the sender")
}

// end moves a held message to a final state other than released, in one
// transaction: the hold, its ledger event, the cancelled rows and the
// notice to the sender.
func (s *Service) end(ctx context.Context, messageID string, check func(*Held) error, status, approval, evType string, by Decider, reason string) (*Held, error) {
	var held *Held
	var spools []string
	err := s.d.DB.Write(ctx, func(tx *database.Tx) error {
		h, err := Get(ctx, tx, messageID)
		if err != nil {
			return err
		}
		if h.Status != StatusHeld {
			return fmt.Errorf("%w: it is %s", ErrNotHeld, h.Status)
		}
		if err := check(h); err != nil {
			return err
		}
		now := s.d.Now()
		newApproval := h.Approval
		if approval != "" {
			newApproval = approval
		}
		decider, decided := h.DecidedBy, any(nil)
		if !h.DecidedAt.IsZero() {
			decided = h.DecidedAt.UnixMilli()
		}
		if evType != audit.TypeMessageCancelled {
			decider, decided = by.Name, now.UnixMilli()
		}
		if _, err := tx.ExecContext(ctx, `UPDATE holds SET status = ?, approval = ?, decided_by = ?, decided_at = ?, reason = ?, ended_at = ? WHERE message_id = ? AND status = 'held'`,
			status, newApproval, decider, decided, reason, now.UnixMilli(), messageID); err != nil {
			return fmt.Errorf("failed to end hold: %w", err)
		}
		if spools, err = outbox.CancelExternal(ctx, tx, messageID, status); err != nil {
			return err
		}
		if _, err := s.d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: evType, Actor: by.Name, Contract: h.Contract,
			Message: messageID, Transfer: h.Transfer, Reason: reason, RemoteIP: by.RemoteIP, UserAgent: by.UserAgent,
			Details: map[string]string{"sender": h.Sender, "recipients": strings.Join(h.Recipients, ", ")}}); err != nil {
			return err
		}
		if err := s.notify(ctx, tx, []string{h.Sender}, messageID, decision(h, endedAs(status), by.Name, reason, now)); err != nil {
			return err
		}
		h.Status, h.Approval = status, newApproval
		held = h
		return nil
	})
	if err != nil {
		return nil, err
	}
	destroy.ReleaseSpools(ctx, s.d.Transfer, spools)
	return held, nil
}

// destroy revokes the transfer of a message that will never leave and
// records that it is done.
func (s *Service) destroy(ctx context.Context, h *Held, actor, reason string) error {
	if h.Transfer != "" {
		_, err := destroy.Revoke(ctx, s.d.Transfer, h.Transfer, "", actor, reason)
		if err != nil && !errors.Is(err, transfer.ErrNotActive) {
			return fmt.Errorf("failed to destroy the held transfer %s: %w", h.Transfer, err)
		}
	}
	return s.d.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE holds SET finished_at = ? WHERE message_id = ? AND finished_at IS NULL`, s.d.Now().UnixMilli(), h.MessageID)
		return err
	})
}

// releaseTx queues the held rows of h.
func (s *Service) releaseTx(ctx context.Context, tx *database.Tx, h *Held, now time.Time) error {
	n, err := outbox.ReleaseHeld(ctx, tx, h.MessageID, now)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE holds SET status = 'released', ended_at = ?, finished_at = ? WHERE message_id = ? AND status = 'held'`,
		now.UnixMilli(), now.UnixMilli(), h.MessageID); err != nil {
		return fmt.Errorf("failed to release hold: %w", err)
	}
	details := map[string]string{"copies": fmt.Sprint(n), "recipients": strings.Join(h.Recipients, ", ")}
	if h.Approval == ApprovalGranted {
		details["approved_by"] = h.DecidedBy
	}
	if _, err := s.d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeMessageReleased, Actor: "system", Contract: h.Contract,
		Message: h.MessageID, Transfer: h.Transfer, Details: details}); err != nil {
		return err
	}
	if s.d.Kick != nil {
		tx.AfterCommit(s.d.Kick)
	}
	return nil
}

// Release queues every held message whose approval is granted (or not
// needed) and whose send delay is over. It returns how many it released
// and when the next one is due (zero if none is waiting for its time).
func (s *Service) Release(ctx context.Context) (int, time.Time, error) {
	now := s.d.Now()
	rows, err := s.d.DB.Read().QueryContext(ctx, `SELECT message_id FROM holds WHERE status = 'held' AND approval IN ('', 'granted') AND release_at <= ? ORDER BY release_at LIMIT 500`, now.UnixMilli())
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("failed to list held messages: %w", err)
	}
	var due []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, time.Time{}, fmt.Errorf("failed to list held messages: %w", err)
		}
		due = append(due, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, time.Time{}, fmt.Errorf("failed to list held messages: %w", err)
	}
	released := 0
	for _, id := range due {
		// Counted after the commit: the function may run more than
		// once (database.DB.Write).
		var release bool
		err := s.d.DB.Write(ctx, func(tx *database.Tx) error {
			h, err := Get(ctx, tx, id)
			if err != nil {
				return err
			}
			release = h.Status == StatusHeld && (h.Approval == "" || h.Approval == ApprovalGranted) && !h.ReleaseAt.After(now)
			if !release {
				return nil // decided otherwise meanwhile
			}
			return s.releaseTx(ctx, tx, h, now)
		})
		if err != nil {
			return released, time.Time{}, err
		}
		if release {
			released++
		}
	}
	var next sql.NullInt64
	if err := s.d.DB.Read().QueryRowContext(ctx, `SELECT MIN(release_at) FROM holds WHERE status = 'held' AND approval IN ('', 'granted') AND release_at > ?`,
		now.UnixMilli()).Scan(&next); err != nil {
		return released, time.Time{}, fmt.Errorf("failed to list held messages: %w", err)
	}
	return released, ms(next), nil
}

// Wake signals Woken (after a commit that created or approved a hold):
// the scheduler then looks at the holds at once.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Woken is signalled by Wake.
func (s *Service) Woken() <-chan struct{} { return s.wake }

// Expire destroys the held messages whose approval was not decided in time
// (approval.expired, a notice to the sender), and finishes the destruction
// of refused, expired and cancelled ones that a crash interrupted. It
// returns how many expired now.
func (s *Service) Expire(ctx context.Context) (int, error) {
	now := s.d.Now()
	ids, err := s.ids(ctx, `SELECT message_id FROM holds WHERE status = 'held' AND approval = 'pending' AND approval_expires_at <= ? ORDER BY approval_expires_at LIMIT 500`, now.UnixMilli())
	if err != nil {
		return 0, err
	}
	var errs []error
	expired := 0
	for _, id := range ids {
		h, err := s.end(ctx, id, func(h *Held) error {
			if !h.Awaiting() || h.ApprovalExpiresAt.After(now) {
				return ErrNotPending
			}
			return nil
		}, StatusExpired, ApprovalExpired, audit.TypeApprovalExpired, Decider{Name: "system"}, "not approved in time")
		if errors.Is(err, ErrNotPending) || errors.Is(err, ErrNotHeld) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		expired++
		if err := s.destroy(ctx, h, "system", "approval expired"); err != nil {
			errs = append(errs, err)
		}
	}
	// Destructions a crash interrupted.
	ids, err = s.ids(ctx, `SELECT message_id FROM holds WHERE status IN ('refused', 'expired', 'cancelled') AND finished_at IS NULL LIMIT 500`)
	if err != nil {
		return expired, err
	}
	for _, id := range ids {
		h, err := Get(ctx, s.d.DB.Read(), id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.destroy(ctx, h, "system", "held message "+h.Status); err != nil {
			errs = append(errs, err)
		}
	}
	return expired, errors.Join(errs...)
}

func (s *Service) ids(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.d.DB.Read().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to list held messages: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("failed to list held messages: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
