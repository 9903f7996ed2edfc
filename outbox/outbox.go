// Package outbox is the durable outbound queue: its rows (table outbound)
// and their state changes. It knows nothing of SMTP, rendering or retries
// — package gateway delivers the rows — and nothing of transfers or
// contracts: callers name what a row belongs to by ids.
//
// # Rows
//
// Each row is one delivery target, queued in the transaction of the change
// that makes it (the message's commit, a notice, a failure):
//
//   - KindPlain: the message unchanged, to the company's own recipients;
//   - KindSealed: the rewritten copy for one external recipient, whose
//     link notices need the wrapped link token in Secret;
//     KindCopy: the same without a transfer (nothing was sealed);
//   - KindKey: the key notice of one recipient: its wrapped passphrase in
//     Secret (none when key.age is encrypted to a registered key);
//   - KindNotice: a system notice (package notice), its rendered body kept
//     wrapped to the master key;
//   - KindBounce: the bounce of a failed row to its sender.
//
// Plain and rewritten copies name a spool file (Spool) that several rows
// may share; it is needed while one of them is pending (SpoolNeeded,
// PendingSpools).
//
// # States
//
// A row is pending while it is held, waiting or queued:
//
//   - held (InsertCopy of a held message): ReleaseHeld queues it;
//   - waiting (InsertKey): Delivered of the sealed copy it follows queues
//     it, due after its delay; Fail of that copy cancels it;
//   - queued: Due hands it out once due; Delivered, Defer (queued again,
//     later) or Fail (failed, and the caller queues a bounce) records the
//     attempt;
//   - any pending row: CancelRecipients, CancelMessages, CancelExternal,
//     CancelOne cancel it.
//
// Delivered, failed and cancelled are final, and the change to each erases
// the row's secret: a wrapped link token or passphrase lives only as long
// as it may still be sent. ReleaseHeld, CancelRecipients, CancelMessages,
// CancelExternal and the changes of the rows waiting behind a copy are
// conditional on the state they move from, so a second run changes
// nothing; the record of an attempt (Delivered, Defer, Fail, CancelOne)
// changes the row it names, which the worker re-read (StillDue) just
// before the attempt.
package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/masterkey"
)

// Kinds of rows.
const (
	KindPlain  = "plain"
	KindCopy   = "copy"
	KindSealed = "sealed"
	KindKey    = "key"
	KindBounce = "bounce"
	KindNotice = "notice"
)

// States of rows.
const (
	StatusWaiting   = "waiting" // a key notice behind its sealed copy
	StatusHeld      = "held"    // held for approval or the send delay (package hold)
	StatusQueued    = "queued"
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// ErrNotFound is returned for a row id that names no row.
var ErrNotFound = errors.New("outbox: no such row")

// Row is one row as the delivery reads it.
type Row struct {
	ID          int64
	MessageID   string // "" for a system notice about no message
	Kind        string
	RecipientID int64 // the transfer's recipient of a sealed copy or key notice (package transfer); 0: none
	MailFrom    string
	Rcpts       []string
	Spool       string // "" when none
	Secret      []byte // wrapped link token or passphrase; nil when none
	RefID       int64  // a bounce's failed row; 0: none
	Attempts    int
	CreatedAt   time.Time
	LastError   string
	// Err is set, by Due and Claim only, for a row whose recipient list
	// cannot be read: it must not be delivered.
	Err error
	// Lease is set by Claim on PostgreSQL: the row is the claiming
	// instance's until then (its next_attempt_at), and StillDue holds
	// only while nobody has claimed it since. Zero on SQLite.
	Lease time.Time
}

const rowColumns = `id, COALESCE(message_id, ''), kind, COALESCE(recipient_id, 0), mail_from, rcpts, COALESCE(spool, ''), secret,
	COALESCE(ref_id, 0), attempts, created_at, last_error`

func scanRow(s interface{ Scan(...any) error }) (Row, string, error) {
	var r Row
	var rcpts string
	var created int64
	err := s.Scan(&r.ID, &r.MessageID, &r.Kind, &r.RecipientID, &r.MailFrom, &rcpts, &r.Spool, &r.Secret, &r.RefID, &r.Attempts, &created, &r.LastError)
	r.CreatedAt = time.UnixMilli(created)
	return r, rcpts, err
}

// jsonArray renders a list as JSON: how a row keeps its recipients, and
// one bound parameter for json_each.
func jsonArray[T int64 | string](list []T) string {
	if len(list) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(list)
	return string(b)
}

func nilIfEmpty[T []byte | string](v T) any {
	if len(v) == 0 {
		return nil
	}
	return v
}

// Copy is a message's copy for one recipient outside the company: kind
// sealed when it has a transfer's recipient (its links rendered from the
// skeleton with Token), else kind copy (nothing was sealed).
type Copy struct {
	MessageID   string
	RecipientID int64  // 0 for an unsealed copy
	From        string // the envelope sender
	To          string
	Spool       string // the skeleton
	Token       []byte // the link token wrapped to the queue key; nil for an unsealed copy
	// Held: nothing leaves before the hold is released (StatusHeld);
	// otherwise the copy is due at At (StatusQueued).
	Held bool
	At   time.Time
}

// InsertCopy queues c in tx and returns its row id, which its key notice
// follows (Key.After).
func InsertCopy(ctx context.Context, tx *database.Tx, c Copy) (int64, error) {
	kind, recipient := KindCopy, any(nil)
	if c.RecipientID != 0 {
		kind, recipient = KindSealed, c.RecipientID
	}
	status := StatusQueued
	if c.Held {
		status = StatusHeld
	}
	at := c.At.UnixMilli()
	var id int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO outbound(message_id, kind, recipient_id, mail_from, rcpts, spool, secret, status, next_attempt_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		c.MessageID, kind, recipient, c.From, jsonArray([]string{c.To}), c.Spool, nilIfEmpty(c.Token), status, at, at).Scan(&id); err != nil {
		return 0, fmt.Errorf("failed to queue copy: %w", err)
	}
	return id, nil
}

// Key is the key notice of one recipient of a transfer.
type Key struct {
	MessageID   string
	RecipientID int64
	From        string // the envelope sender
	To          string // the recipient, or the sender who hands the passphrase over
	// Passphrase is wrapped to the queue key; nil when key.age is
	// encrypted to the recipient's registered key.
	Passphrase []byte
	After      int64         // the sealed copy it follows (InsertCopy)
	Delay      time.Duration // how long after that copy was delivered
	At         time.Time
}

// InsertKey queues k in tx, waiting for its sealed copy.
func InsertKey(ctx context.Context, tx *database.Tx, k Key) error {
	at := k.At.UnixMilli()
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbound(message_id, kind, recipient_id, mail_from, rcpts, secret, after_id, delay_ms, status, next_attempt_at, created_at)
		VALUES (?, 'key', ?, ?, ?, ?, ?, ?, 'waiting', ?, ?)`,
		k.MessageID, k.RecipientID, k.From, jsonArray([]string{k.To}), nilIfEmpty(k.Passphrase), k.After, k.Delay.Milliseconds(), at, at); err != nil {
		return fmt.Errorf("failed to queue key notice: %w", err)
	}
	return nil
}

// Plain is a message unchanged, for the company's own recipients.
type Plain struct {
	MessageID string
	From      string // the envelope sender
	To        []string
	Spool     string // the original
	At        time.Time
}

// InsertPlain queues p in tx, due at once.
func InsertPlain(ctx context.Context, tx *database.Tx, p Plain) error {
	at := p.At.UnixMilli()
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbound(message_id, kind, mail_from, rcpts, spool, status, next_attempt_at, created_at)
		VALUES (?, 'plain', ?, ?, ?, 'queued', ?, ?)`,
		p.MessageID, p.From, jsonArray(p.To), p.Spool, at, at); err != nil {
		return fmt.Errorf("failed to queue internal copy: %w", err)
	}
	return nil
}

// Notice is a rendered system notice, sent from the null sender.
type Notice struct {
	About string // the message it is about; "" for none
	To    []string
	Body  []byte // wrapped to the master key (crypto.Epoch.WrapTransient)
	At    time.Time
}

// InsertNotice queues n in tx, due at once.
func InsertNotice(ctx context.Context, tx *database.Tx, n Notice) error {
	at := n.At.UnixMilli()
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbound(message_id, kind, mail_from, rcpts, body, status, next_attempt_at, created_at)
		VALUES (?, 'notice', '', ?, ?, 'queued', ?, ?)`, nilIfEmpty(n.About), jsonArray(n.To), n.Body, at, at); err != nil {
		return fmt.Errorf("failed to queue notice: %w", err)
	}
	return nil
}

// Bounce is the bounce of a failed row to its sender, from the null
// sender.
type Bounce struct {
	MessageID string
	To        string // the failed row's sender
	Failed    int64  // the failed row (Fail)
	At        time.Time
}

// InsertBounce queues b in tx, due at once.
func InsertBounce(ctx context.Context, tx *database.Tx, b Bounce) error {
	at := b.At.UnixMilli()
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbound(message_id, kind, mail_from, rcpts, ref_id, status, next_attempt_at, created_at)
		VALUES (?, 'bounce', '', ?, ?, 'queued', ?, ?)`, b.MessageID, jsonArray([]string{b.To}), b.Failed, at, at); err != nil {
		return fmt.Errorf("failed to queue bounce: %w", err)
	}
	return nil
}

// Due returns up to limit queued rows due at at, the earliest first. A row
// whose recipient list cannot be read comes with Err set. On an error
// while reading it returns the rows read so far with the error.
func Due(ctx context.Context, q database.Querier, at time.Time, limit int) ([]Row, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+rowColumns+`
		FROM outbound WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`, at.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("failed to query outbound queue: %w", err)
	}
	return readRows(rows)
}

// Claim hands out up to limit queued rows due at at, for one instance of
// several sharing the database, and returns the rows it will attempt.
//
// On SQLite one process owns the queue, and Claim is Due on the read
// pool: the caller's in-flight set keeps a row from being attempted
// twice. On PostgreSQL, where several instances share the queue, the rows
// are claimed in one write: locked with FOR UPDATE SKIP LOCKED (two
// instances claiming at once take different rows) and leased until until
// by moving their next attempt there. A row whose claimer dies falls due
// again when the lease ends, and another instance takes it over; a
// claimer that outlives its lease loses the row (StillDue compares the
// lease), so until must exceed the longest attempt: render, send and
// record.
func Claim(ctx context.Context, db *database.DB, at, until time.Time, limit int) ([]Row, error) {
	if db.Dialect() != database.Postgres {
		return Due(ctx, db.Read(), at, limit)
	}
	if !until.After(at) {
		return nil, fmt.Errorf("outbox: lease until %s does not end after %s", until, at)
	}
	var out []Row
	// Ordered by next_attempt_at alone, the order of the index outbound_due
	// (status, next_attempt_at): PostgreSQL reads the first rows of the
	// index and stops at the limit. Ordered by next_attempt_at, id (as Due
	// is), it read and sorted every due row at each claim — measured 1 ms
	// a claim with a few thousand rows queued, in the transaction every
	// instance's writes wait for. Rows due at the same millisecond come in
	// no particular order.
	err := db.Write(ctx, func(tx *database.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE outbound SET next_attempt_at = ? WHERE id IN (
			SELECT id FROM outbound WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)
			RETURNING `+rowColumns, until.UnixMilli(), at.UnixMilli(), limit)
		if err != nil {
			return fmt.Errorf("failed to claim outbound rows: %w", err)
		}
		out, err = readRows(rows)
		return err
	})
	if err != nil {
		return nil, err
	}
	lease := time.UnixMilli(until.UnixMilli())
	for i := range out {
		out[i].Lease = lease
	}
	slices.SortFunc(out, func(a, b Row) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// readRows reads the rows of Due and Claim and closes them.
func readRows(rows *sql.Rows) ([]Row, error) {
	defer rows.Close()
	var out []Row
	for rows.Next() {
		r, rcpts, err := scanRow(rows)
		if err != nil {
			return out, fmt.Errorf("failed to read outbound row: %w", err)
		}
		if err := json.Unmarshal([]byte(rcpts), &r.Rcpts); err != nil {
			r.Rcpts, r.Err = nil, fmt.Errorf("corrupt recipient list: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// NextDue returns when the earliest queued row that is not due at at falls
// due (zero if there is none).
func NextDue(ctx context.Context, q database.Querier, at time.Time) (time.Time, error) {
	var next sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MIN(next_attempt_at) FROM outbound WHERE status = 'queued' AND next_attempt_at > ?`, at.UnixMilli()).Scan(&next); err != nil {
		return time.Time{}, fmt.Errorf("failed to query outbound queue: %w", err)
	}
	if !next.Valid {
		return time.Time{}, nil
	}
	return time.UnixMilli(next.Int64), nil
}

// StillDue reports whether r is still queued, due at now and not attempted
// since it was read. Due reads from a snapshot; a worker that re-reads its
// row just before an attempt sees every outcome recorded before. A row
// leased by Claim (Lease set) is still due while its lease has not ended
// at now and nobody claimed it since.
func StillDue(ctx context.Context, q database.Querier, r Row, now time.Time) (bool, error) {
	var n int
	var err error
	if r.Lease.IsZero() {
		err = q.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbound WHERE id = ? AND status = 'queued' AND attempts = ? AND next_attempt_at <= ?`,
			r.ID, r.Attempts, now.UnixMilli()).Scan(&n)
	} else if r.Lease.After(now) {
		err = q.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbound WHERE id = ? AND status = 'queued' AND attempts = ? AND next_attempt_at = ?`,
			r.ID, r.Attempts, r.Lease.UnixMilli()).Scan(&n)
	}
	if err != nil {
		return false, fmt.Errorf("failed to check outbound row: %w", err)
	}
	return n == 1, nil
}

// Get returns one row (a bounce reads its failed row), or ErrNotFound.
func Get(ctx context.Context, q database.Querier, id int64) (*Row, error) {
	r, rcpts, err := scanRow(q.QueryRowContext(ctx, `SELECT `+rowColumns+` FROM outbound WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read outbound row %d: %w", id, err)
	}
	json.Unmarshal([]byte(rcpts), &r.Rcpts)
	return &r, nil
}

// Body returns the wrapped body of a system notice.
func Body(ctx context.Context, q database.Querier, id int64) ([]byte, error) {
	var body []byte
	if err := q.QueryRowContext(ctx, `SELECT body FROM outbound WHERE id = ?`, id).Scan(&body); err != nil {
		return nil, fmt.Errorf("failed to read notice: %w", err)
	}
	return body, nil
}

// Delivered records that the next hop accepted r, erasing its secret and
// body; a sealed copy's key notice is then queued, due after its delay.
func Delivered(ctx context.Context, tx *database.Tx, r Row, at time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE outbound SET status = 'delivered', delivered_at = ?, secret = NULL, body = NULL, attempts = attempts + 1, last_error = '' WHERE id = ?`,
		at.UnixMilli(), r.ID); err != nil {
		return fmt.Errorf("failed to record delivery: %w", err)
	}
	if r.Kind != KindSealed {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE outbound SET status = 'queued', next_attempt_at = ? + delay_ms WHERE after_id = ? AND status = 'waiting'`,
		at.UnixMilli(), r.ID); err != nil {
		return fmt.Errorf("failed to queue key notice: %w", err)
	}
	return nil
}

// Defer reschedules r for rcpts at next, recording why. When rcpts are
// only some of r's recipients (the others were accepted or failed), they
// continue in a new row with r's secret, and r is left for the caller to
// record otherwise. A row leased by Claim is rescheduled only while the
// lease is still the caller's: once another instance has claimed it, a
// late deferral must not hand it out a third time.
func Defer(ctx context.Context, tx *database.Tx, r Row, rcpts []string, next time.Time, reason string) error {
	var err error
	if len(rcpts) == len(r.Rcpts) && !r.Lease.IsZero() {
		_, err = tx.ExecContext(ctx, `UPDATE outbound SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ? AND next_attempt_at = ?`,
			next.UnixMilli(), reason, r.ID, r.Lease.UnixMilli())
	} else if len(rcpts) == len(r.Rcpts) {
		_, err = tx.ExecContext(ctx, `UPDATE outbound SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?`,
			next.UnixMilli(), reason, r.ID)
	} else {
		_, err = tx.ExecContext(ctx, `INSERT INTO outbound(message_id, kind, recipient_id, mail_from, rcpts, spool, secret, ref_id, status, attempts, next_attempt_at, created_at, last_error)
			SELECT message_id, kind, recipient_id, mail_from, ?, spool, secret, ref_id, 'queued', attempts + 1, ?, created_at, ? FROM outbound WHERE id = ?`,
			jsonArray(rcpts), next.UnixMilli(), reason, r.ID)
	}
	if err != nil {
		return fmt.Errorf("failed to reschedule delivery: %w", err)
	}
	return nil
}

// Fail records that delivery of r to rcpts failed for good, erasing the
// secret, and returns the failed row (r, or a new row for rcpts when they
// are only some of r's recipients) for its bounce. A sealed copy's waiting
// key notice is cancelled: no key follows a link that never arrived.
func Fail(ctx context.Context, tx *database.Tx, r Row, rcpts []string, at time.Time, reason string) (int64, error) {
	failed := r.ID
	if len(rcpts) == len(r.Rcpts) {
		if _, err := tx.ExecContext(ctx, `UPDATE outbound SET status = 'failed', secret = NULL, attempts = attempts + 1, last_error = ? WHERE id = ?`,
			reason, r.ID); err != nil {
			return 0, fmt.Errorf("failed to record delivery failure: %w", err)
		}
	} else {
		if err := tx.QueryRowContext(ctx, `INSERT INTO outbound(message_id, kind, recipient_id, mail_from, rcpts, ref_id, status, attempts, next_attempt_at, created_at, last_error)
			SELECT message_id, kind, recipient_id, mail_from, CAST(? AS TEXT), ref_id, 'failed', attempts + 1, CAST(? AS BIGINT), created_at, CAST(? AS TEXT) FROM outbound WHERE id = ? RETURNING id`,
			jsonArray(rcpts), at.UnixMilli(), reason, r.ID).Scan(&failed); err != nil {
			return 0, fmt.Errorf("failed to record delivery failure: %w", err)
		}
	}
	if r.Kind == KindSealed {
		if _, err := tx.ExecContext(ctx, `UPDATE outbound SET status = 'cancelled', secret = NULL, last_error = 'link notice failed' WHERE after_id = ? AND status = 'waiting'`, r.ID); err != nil {
			return 0, fmt.Errorf("failed to cancel key notice: %w", err)
		}
	}
	return failed, nil
}

// CancelOne records that row id will not be sent (a key notice whose
// recipient was revoked before it left), erasing its secret.
func CancelOne(ctx context.Context, tx *database.Tx, id int64, reason string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE outbound SET status = 'cancelled', secret = NULL, last_error = ? WHERE id = ?`, reason, id); err != nil {
		return fmt.Errorf("failed to cancel outbound row: %w", err)
	}
	return nil
}

// CancelRecipients cancels the pending rows (waiting, queued or held) of
// the transfer recipients ids — their sealed copies and key notices —
// erasing their secrets (wrapped link tokens and passphrases), and returns
// their spool files.
func CancelRecipients(ctx context.Context, tx *database.Tx, ids []int64, reason string) ([]string, error) {
	return cancel(ctx, tx, cancelPending+`recipient_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) RETURNING spool`, reason, jsonArray(ids))
}

// CancelMessages cancels every pending row of the messages ids — copies,
// key notices, internal copies, notices about them — erasing their
// secrets, and returns their spool files.
func CancelMessages(ctx context.Context, tx *database.Tx, ids []string, reason string) ([]string, error) {
	return cancel(ctx, tx, cancelPending+`message_id IN (SELECT value FROM json_each(?)) RETURNING spool`, reason, jsonArray(ids))
}

// CancelExternal cancels the pending external deliveries of one message —
// its rewritten copies and key notices, held or not — erasing their
// secrets, and returns their spool files. Copies to internal recipients
// (KindPlain) are left alone.
func CancelExternal(ctx context.Context, tx *database.Tx, messageID, reason string) ([]string, error) {
	return cancel(ctx, tx, cancelPending+`message_id = ? AND kind IN ('copy', 'sealed', 'key') RETURNING spool`, reason, messageID)
}

// cancelPending starts the statements that cancel pending rows.
const cancelPending = `UPDATE outbound SET status = 'cancelled', secret = NULL, last_error = ?
	WHERE status IN ('waiting', 'queued', 'held') AND `

// cancel runs one cancelling statement, recording "cancelled: reason".
func cancel(ctx context.Context, tx *database.Tx, query, reason string, arg any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, "cancelled: "+reason, arg)
	if err != nil {
		return nil, fmt.Errorf("failed to cancel pending notices: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("failed to cancel pending notices: %w", err)
		}
		if s.Valid && s.String != "" {
			out = append(out, s.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to cancel pending notices: %w", err)
	}
	return out, nil
}

// ReleaseHeld queues the held rows of a message, due at at, and returns
// how many it queued.
func ReleaseHeld(ctx context.Context, tx *database.Tx, messageID string, at time.Time) (int64, error) {
	res, err := tx.ExecContext(ctx, `UPDATE outbound SET status = 'queued', next_attempt_at = ? WHERE message_id = ? AND status = 'held'`, at.UnixMilli(), messageID)
	if err != nil {
		return 0, fmt.Errorf("failed to release held copies: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// ExternalRecipients returns the recipients of a message's external copies
// (sealed or not, in any state), in the order they were queued, each once.
func ExternalRecipients(ctx context.Context, q database.Querier, messageID string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT rcpts FROM outbound WHERE message_id = ? AND kind IN ('sealed', 'copy') ORDER BY id`, messageID)
	if err != nil {
		return nil, fmt.Errorf("failed to read recipients: %w", err)
	}
	defer rows.Close()
	var out []string
	seen := map[string]bool{}
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("failed to read recipients: %w", err)
		}
		var list []string
		json.Unmarshal([]byte(raw), &list)
		for _, r := range list {
			if !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read recipients: %w", err)
	}
	return out, nil
}

// PlainRecipients returns the recipients of the internal copies of the
// messages ids (who got them unchanged), by message, each once.
func PlainRecipients(ctx context.Context, q database.Querier, ids []string) (map[string][]string, error) {
	out := map[string][]string{}
	rows, err := q.QueryContext(ctx, `SELECT message_id, rcpts FROM outbound
		WHERE message_id IN (SELECT value FROM json_each(?)) AND kind = 'plain' ORDER BY id`, jsonArray(ids))
	if err != nil {
		return nil, fmt.Errorf("failed to list internal recipients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			return nil, fmt.Errorf("failed to read internal recipients: %w", err)
		}
		var list []string
		if json.Unmarshal([]byte(raw), &list) != nil {
			continue
		}
		for _, a := range list {
			if !slices.Contains(out[id], a) {
				out[id] = append(out[id], a)
			}
		}
	}
	return out, rows.Err()
}

// SpoolNeeded reports whether a pending row (waiting, queued or held)
// still needs the spool file name.
func SpoolNeeded(ctx context.Context, q database.Querier, name string) (bool, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbound WHERE spool = ? AND status IN ('waiting', 'queued', 'held')`, name).Scan(&n); err != nil {
		return false, fmt.Errorf("failed to check spool references: %w", err)
	}
	return n > 0, nil
}

// PendingSpools returns the spool files that pending rows need.
func PendingSpools(ctx context.Context, q database.Querier) (map[string]bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT spool FROM outbound WHERE spool IS NOT NULL AND status IN ('waiting', 'queued', 'held')`)
	if err != nil {
		return nil, fmt.Errorf("failed to list spool references: %w", err)
	}
	defer rows.Close()
	live := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("failed to list spool references: %w", err)
		}
		live[n] = true
	}
	return live, rows.Err()
}

// Rewrap re-wraps the rows' secrets and notice bodies from a retired
// master key epoch to to (a master key rotation: masterkey.Holder). The
// spool files are the gateway's.
func Rewrap(ctx context.Context, db *database.DB, from *crypto.Keyring, to *crypto.Epoch) (held, moved int, err error) {
	for _, col := range []string{"secret", "body"} {
		h, m, err := masterkey.RewrapColumn(ctx, db, masterkey.Column{Table: "outbound", Key: "id", Name: col}, from, to)
		held, moved = held+h, moved+m
		if err != nil {
			return held, moved, err
		}
	}
	return held, moved, nil
}

// Pending is the rows of one kind in one pending state (held, waiting or
// queued) and when the oldest of them was created.
type Pending struct {
	Kind, Status string
	Rows         int
	Oldest       time.Time
}

// PendingStats counts the pending rows by kind and state, for the
// metrics: what is still to be delivered, and how old it is.
func PendingStats(ctx context.Context, q database.Querier) ([]Pending, error) {
	rows, err := q.QueryContext(ctx, `SELECT kind, status, COUNT(*), MIN(created_at) FROM outbound
		WHERE status IN ('held', 'waiting', 'queued') GROUP BY kind, status`)
	if err != nil {
		return nil, fmt.Errorf("failed to count the outbound queue: %w", err)
	}
	defer rows.Close()
	var out []Pending
	for rows.Next() {
		var p Pending
		var oldest int64
		if err := rows.Scan(&p.Kind, &p.Status, &p.Rows, &oldest); err != nil {
			return nil, fmt.Errorf("failed to count the outbound queue: %w", err)
		}
		p.Oldest = time.UnixMilli(oldest)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to count the outbound queue: %w", err)
	}
	return out, nil
}

// ForgetExternalRecipients erases, in tx, the addresses the external
// deliveries of the messages ids name — rewritten copies and key notices,
// whatever their status — and their last errors (remote servers quote
// addresses): at contract end, when the counterparty's addresses are
// destroyed. Copies to internal recipients keep theirs.
func ForgetExternalRecipients(ctx context.Context, tx *database.Tx, ids []string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE outbound SET rcpts = '[]', last_error = ''
		WHERE kind IN ('copy', 'sealed', 'key') AND message_id IN (SELECT value FROM json_each(?))`, jsonArray(ids)); err != nil {
		return fmt.Errorf("failed to erase the recipients of external deliveries: %w", err)
	}
	return nil
}
