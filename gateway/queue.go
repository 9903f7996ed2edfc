package gateway

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/notice"
	"github.com/sealgate/sealgate/store"
)

// The outbound queue lives in the database (table outbound), so that
// queueing a copy is part of the same transaction as the records and the
// ledger events; bodies live in the encrypted spool. Each row is one
// delivery attempt target: a plain copy to internal recipients, a rewritten
// copy (with link notices) to one external recipient, a key notice, or a
// bounce. Delivery is at least once: a crash between the next hop's 250
// and the database update delivers that row again after restart.

type queue struct {
	g        *Gateway
	wake     chan struct{}
	mu       sync.Mutex
	inflight map[int64]bool
}

func newQueue(g *Gateway) *queue {
	return &queue{g: g, wake: make(chan struct{}, 1), inflight: map[int64]bool{}}
}

func (q *queue) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

type outRow struct {
	id          int64
	messageID   string
	kind        string
	recipientID sql.NullInt64
	mailFrom    string
	rcpts       []string
	spool       sql.NullString
	secret      []byte
	refID       sql.NullInt64
	attempts    int
	createdAt   time.Time
}

// run is the scheduler: it hands due rows to the workers and sleeps until
// the next one is due or new mail is queued.
func (q *queue) run(ctx context.Context) error {
	work := make(chan outRow)
	var wg sync.WaitGroup
	for i := 0; i < q.g.Config.Delivery.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for row := range work {
				q.deliver(ctx, row)
				q.mu.Lock()
				delete(q.inflight, row.id)
				q.mu.Unlock()
				q.kick()
			}
		}()
	}
	defer func() {
		close(work)
		wg.Wait()
	}()
	for {
		rows, next, err := q.due(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			q.g.Log.Error("failed to read the outbound queue", "error", err)
			next = q.g.Now().Add(5 * time.Second)
		}
		for _, row := range rows {
			select {
			case work <- row:
			case <-ctx.Done():
				return nil
			}
		}
		wait := time.Minute
		if !next.IsZero() {
			if d := next.Sub(q.g.Now()); d < wait {
				wait = d
			}
		}
		if len(rows) > 0 {
			wait = 0 // more may be due
		}
		if wait < 0 {
			wait = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-q.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// due claims rows that are due and not in flight; next is when the next
// row that is not due yet will be.
func (q *queue) due(ctx context.Context) ([]outRow, time.Time, error) {
	now := q.g.Now().UnixMilli()
	db := q.g.DB.Read()
	limit := q.g.Config.Delivery.Workers * 2
	rs, err := db.QueryContext(ctx, `SELECT id, COALESCE(message_id, ''), kind, recipient_id, mail_from, rcpts, spool, secret, ref_id, attempts, created_at
		FROM outbound WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`, now, limit+len(q.inflightIDs()))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("failed to query outbound queue: %w", err)
	}
	var rows []outRow
	q.mu.Lock()
	for rs.Next() {
		var r outRow
		var rcpts string
		var created int64
		if err := rs.Scan(&r.id, &r.messageID, &r.kind, &r.recipientID, &r.mailFrom, &rcpts, &r.spool, &r.secret, &r.refID, &r.attempts, &created); err != nil {
			q.mu.Unlock()
			rs.Close()
			return nil, time.Time{}, fmt.Errorf("failed to read outbound row: %w", err)
		}
		if q.inflight[r.id] || len(rows) >= limit {
			continue
		}
		if err := json.Unmarshal([]byte(rcpts), &r.rcpts); err != nil {
			q.g.Log.Error("corrupt outbound row", "id", r.id, "error", err)
			continue
		}
		r.createdAt = time.UnixMilli(created)
		q.inflight[r.id] = true
		rows = append(rows, r)
	}
	q.mu.Unlock()
	rs.Close()
	if err := rs.Err(); err != nil {
		return rows, time.Time{}, err
	}
	var next sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MIN(next_attempt_at) FROM outbound WHERE status = 'queued' AND next_attempt_at > ?`, now).Scan(&next); err != nil {
		return rows, time.Time{}, fmt.Errorf("failed to query outbound queue: %w", err)
	}
	if next.Valid {
		return rows, time.UnixMilli(next.Int64), nil
	}
	return rows, time.Time{}, nil
}

// stillDue re-reads the row just before an attempt. due() hands out rows
// from a read snapshot taken before it scans them, and a worker takes its
// row off the in-flight set only after recording the outcome; a row whose
// outcome was recorded between that snapshot and the scan would otherwise
// be attempted again — a duplicate delivery with no crash to excuse it.
// This read starts after the recording committed, so it sees it.
func (q *queue) stillDue(ctx context.Context, row outRow) (bool, error) {
	var n int
	err := q.g.DB.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM outbound WHERE id = ? AND status = 'queued' AND attempts = ? AND next_attempt_at <= ?`,
		row.id, row.attempts, q.g.Now().UnixMilli()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("failed to check outbound row: %w", err)
	}
	return n == 1, nil
}

func (q *queue) inflightIDs() []int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := make([]int64, 0, len(q.inflight))
	for id := range q.inflight {
		ids = append(ids, id)
	}
	return ids
}

// deliver makes one attempt for one row and records the outcome.
func (q *queue) deliver(ctx context.Context, row outRow) {
	g := q.g
	if due, err := q.stillDue(ctx, row); err != nil || !due {
		if err != nil {
			g.Log.Error("failed to read the outbound queue", "id", row.id, "error", err)
		}
		return
	}
	body, err := q.renderer(ctx, row)
	if err != nil {
		if errors.Is(err, errCancelled) {
			q.finish(ctx, row, "cancelled", nil, "")
			return
		}
		g.Log.Error("failed to prepare outbound message", "id", row.id, "kind", row.kind, "error", err)
		q.retry(ctx, row, err, row.rcpts)
		return
	}
	// Rows are written with canonical recipients; one that does not parse
	// (queued by an older version, routing syntax included) is never
	// handed to the next hop, which could route it outside.
	rcpts := row.rcpts
	if bad := slices.DeleteFunc(slices.Clone(rcpts), func(r string) bool { _, err := address.Parse(r); return err == nil }); len(bad) > 0 {
		q.fail(ctx, row, bad, errRoutingRecipient)
		if rcpts = slices.DeleteFunc(slices.Clone(rcpts), func(r string) bool { return slices.Contains(bad, r) }); len(rcpts) == 0 {
			return
		}
	}
	// Copies and notices that carry a link or a passphrase ask for bounces
	// without the content; an internal copy may come back whole.
	env := Envelope{From: row.mailFrom, Rcpts: rcpts, HeadersOnlyDSN: row.kind != "plain"}
	results, err := g.Transport.Send(ctx, env, body)
	if err != nil {
		if permanent(err) {
			q.fail(ctx, row, rcpts, err)
			return
		}
		q.retry(ctx, row, err, rcpts)
		return
	}
	var ok, failed, deferred []string
	var failErr, deferErr error
	for i, rerr := range results {
		switch {
		case rerr == nil:
			ok = append(ok, rcpts[i])
		case permanent(rerr):
			failed = append(failed, rcpts[i])
			failErr = rerr
		default:
			deferred = append(deferred, rcpts[i])
			deferErr = rerr
		}
	}
	if len(ok) > 0 {
		q.delivered(ctx, row, ok)
	}
	if len(failed) > 0 {
		q.fail(ctx, row, failed, failErr)
	}
	if len(deferred) > 0 {
		q.retry(ctx, row, deferErr, deferred)
	}
}

var errCancelled = errors.New("delivery cancelled")

func permanent(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500
}

func (q *queue) backoff(attempts int) time.Duration {
	d := q.g.Config.Delivery.RetryMin.D()
	for i := 0; i < attempts && d < q.g.Config.Delivery.RetryMax.D(); i++ {
		d *= 2
	}
	if max := q.g.Config.Delivery.RetryMax.D(); d > max {
		d = max
	}
	return d
}

// retry reschedules the row (for the given recipients), or gives up and
// bounces once the message has been queued longer than max_queue_time.
func (q *queue) retry(ctx context.Context, row outRow, cause error, rcpts []string) {
	g := q.g
	now := g.Now()
	if now.Sub(row.createdAt) > g.Config.Delivery.MaxQueueTime.D() {
		q.fail(ctx, row, rcpts, fmt.Errorf("gave up after %s: %w", g.Config.Delivery.MaxQueueTime.D(), cause))
		return
	}
	next := now.Add(q.backoff(row.attempts))
	g.Log.Info("delivery deferred", "id", row.id, "kind", row.kind, "attempt", row.attempts+1, "next", next, "error", cause)
	var info msgInfo
	if row.attempts == 0 && row.messageID != "" {
		info, _ = q.messageInfo(ctx, row.messageID)
	}
	err := q.record(ctx, "deferral", row, func(tx *store.Tx) error {
		// The first deferral of a distribution is evidence (the next hop
		// was down when it should have left); later retries are only logged.
		if row.attempts == 0 && row.messageID != "" && row.kind != "bounce" {
			for _, r := range rcpts {
				if _, err := g.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeDeliveryDeferred, Actor: "system", Message: row.messageID,
					Contract: info.contract, Transfer: info.transfer, Recipient: r, Reason: oneLine(cause.Error()),
					Details: map[string]string{"kind": row.kind, "next_attempt": next.UTC().Format(time.RFC3339)}}); err != nil {
					return err
				}
			}
		}
		if len(rcpts) == len(row.rcpts) {
			_, err := tx.ExecContext(ctx, `UPDATE outbound SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?`,
				next.UnixMilli(), oneLine(cause.Error()), row.id)
			return err
		}
		// Some recipients were accepted or failed: the rest continue in a new row.
		_, err := tx.ExecContext(ctx, `INSERT INTO outbound(message_id, kind, recipient_id, mail_from, rcpts, spool, secret, ref_id, status, attempts, next_attempt_at, created_at, last_error)
			SELECT message_id, kind, recipient_id, mail_from, ?, spool, secret, ref_id, 'queued', attempts + 1, ?, created_at, ? FROM outbound WHERE id = ?`,
			jsonList(rcpts...), next.UnixMilli(), oneLine(cause.Error()), row.id)
		return err
	})
	if err != nil {
		g.Log.Error("failed to reschedule delivery", "id", row.id, "error", err)
	}
}

// delivered records that the next hop accepted the row (for rcpts).
func (q *queue) delivered(ctx context.Context, row outRow, rcpts []string) {
	g := q.g
	var evType string
	switch row.kind {
	case "sealed", "copy":
		evType = audit.TypeNoticeDelivered
	case "key":
		evType = audit.TypeKeyNoticeDelivered
	case "plain":
		evType = audit.TypePlainDelivered
	case "bounce":
		evType = audit.TypeBounceSent
	}
	info, _ := q.messageInfo(ctx, row.messageID)
	err := q.record(ctx, "delivery", row, func(tx *store.Tx) error {
		now := g.Now()
		// Secrets (wrapped link token, wrapped passphrase) are erased as
		// soon as they have done their job.
		if _, err := tx.ExecContext(ctx, `UPDATE outbound SET status = 'delivered', delivered_at = ?, secret = NULL, body = NULL, attempts = attempts + 1, last_error = '' WHERE id = ?`,
			now.UnixMilli(), row.id); err != nil {
			return err
		}
		if row.kind == "sealed" {
			// The key notice follows once the link notice is accepted.
			if _, err := tx.ExecContext(ctx, `UPDATE outbound SET status = 'queued', next_attempt_at = ? + delay_ms WHERE after_id = ? AND status = 'waiting'`,
				now.UnixMilli(), row.id); err != nil {
				return err
			}
		}
		for _, r := range rcpts {
			ev := audit.Event{Type: evType, Actor: "system", Message: row.messageID, Contract: info.contract, Transfer: info.transfer, Recipient: r}
			if row.kind == "key" && strings.EqualFold(r, row.mailFrom) {
				// Under key delivery "manual" the notice went to the sender
				// for the recipient: record both.
				var address string
				if err := tx.QueryRowContext(ctx, `SELECT address FROM recipients WHERE id = ?`, row.recipientID.Int64).Scan(&address); err != nil {
					return fmt.Errorf("failed to read recipient: %w", err)
				}
				if !strings.EqualFold(address, r) {
					ev.Recipient = address
					ev.Details = map[string]string{"handed_to": r}
				}
			}
			if row.kind == "bounce" {
				ev.Details = map[string]string{"to": r}
				ev.Recipient = ""
			}
			if evType == "" {
				continue // system notices are not distributions
			}
			if _, err := g.Ledger.Append(ctx, tx, ev); err != nil {
				return err
			}
		}
		tx.AfterCommit(func() { q.releaseSpool(row) })
		return nil
	})
	if err != nil {
		g.Log.Error("failed to record delivery (it will be delivered again)", "id", row.id, "error", err)
	}
}

// fail records a permanent failure for rcpts, cancels what depends on the
// row and queues a bounce to the sender.
func (q *queue) fail(ctx context.Context, row outRow, rcpts []string, cause error) {
	g := q.g
	info, _ := q.messageInfo(ctx, row.messageID)
	g.Log.Warn("delivery failed permanently", "id", row.id, "kind", row.kind, "rcpts", rcpts, "error", cause)
	err := q.record(ctx, "delivery failure", row, func(tx *store.Tx) error {
		now := g.Now().UnixMilli()
		failedID := row.id
		if len(rcpts) == len(row.rcpts) {
			if _, err := tx.ExecContext(ctx, `UPDATE outbound SET status = 'failed', secret = NULL, attempts = attempts + 1, last_error = ? WHERE id = ?`,
				oneLine(cause.Error()), row.id); err != nil {
				return err
			}
		} else {
			res, err := tx.ExecContext(ctx, `INSERT INTO outbound(message_id, kind, recipient_id, mail_from, rcpts, ref_id, status, attempts, next_attempt_at, created_at, last_error)
				SELECT message_id, kind, recipient_id, mail_from, ?, ref_id, 'failed', attempts + 1, ?, created_at, ? FROM outbound WHERE id = ?`,
				jsonList(rcpts...), now, oneLine(cause.Error()), row.id)
			if err != nil {
				return err
			}
			failedID, _ = res.LastInsertId()
		}
		if row.kind == "sealed" {
			if _, err := tx.ExecContext(ctx, `UPDATE outbound SET status = 'cancelled', secret = NULL, last_error = 'link notice failed' WHERE after_id = ? AND status = 'waiting'`, row.id); err != nil {
				return err
			}
		}
		for _, r := range rcpts {
			if _, err := g.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeDeliveryFailed, Actor: "system", Message: row.messageID,
				Contract: info.contract, Transfer: info.transfer, Recipient: r, Reason: oneLine(cause.Error()),
				Details: map[string]string{"kind": row.kind}}); err != nil {
				return err
			}
		}
		// Bounce to the sender, unless this is a bounce or the sender is null.
		if row.kind != "bounce" && row.mailFrom != "" {
			if _, err := tx.ExecContext(ctx, `INSERT INTO outbound(message_id, kind, mail_from, rcpts, ref_id, status, next_attempt_at, created_at)
				VALUES (?, 'bounce', '', ?, ?, 'queued', ?, ?)`, row.messageID, jsonList(row.mailFrom), failedID, now, now); err != nil {
				return err
			}
		}
		if len(rcpts) == len(row.rcpts) {
			tx.AfterCommit(func() { q.releaseSpool(row) })
		}
		return nil
	})
	if err != nil {
		g.Log.Error("failed to record delivery failure", "id", row.id, "error", err)
	}
}

func (q *queue) finish(ctx context.Context, row outRow, status string, _ error, reason string) {
	err := q.record(ctx, "outcome", row, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE outbound SET status = ?, secret = NULL, last_error = ? WHERE id = ?`, status, reason, row.id)
		tx.AfterCommit(func() { q.releaseSpool(row) })
		return err
	})
	if err != nil {
		q.g.Log.Error("failed to update outbound row", "id", row.id, "error", err)
	}
}

// recordPatience bounds how long a worker keeps retrying to record the
// outcome of an attempt while the database cannot be written.
const recordPatience = 2 * time.Minute

// record writes the outcome of a delivery attempt, retrying with backoff
// while the database cannot take it (disk full, locked by another process,
// busy). Until it is recorded the outcome exists only in memory, and the
// row stays in flight: giving up at once would hand the row to the next
// worker right away — delivering it again after the next hop's 250 (a
// duplicate), or hammering a next hop that is down. It gives up after
// recordPatience or when ctx ends (shutdown); the row is then attempted
// again, which is at-least-once delivery as after a crash.
func (q *queue) record(ctx context.Context, what string, row outRow, fn func(tx *store.Tx) error) error {
	deadline := time.Now().Add(recordPatience)
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := q.g.DB.Write(ctx, fn)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		if attempt == 1 {
			q.g.Log.Warn("failed to record the "+what+" of a delivery attempt, retrying", "id", row.id, "kind", row.kind, "error", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// releaseSpool removes the row's spool file once no pending row needs it.
func (q *queue) releaseSpool(row outRow) {
	if !row.spool.Valid {
		return
	}
	var n int
	err := q.g.DB.Read().QueryRow(`SELECT COUNT(*) FROM outbound WHERE spool = ? AND status IN ('waiting', 'queued', 'held')`, row.spool.String).Scan(&n)
	if err != nil || n > 0 {
		return
	}
	if err := q.g.spool.remove(row.spool.String); err != nil {
		q.g.Log.Warn("failed to remove spool file", "spool", row.spool.String, "error", err)
	}
}

type msgInfo struct {
	contract   string
	transfer   string
	subject    string
	headerFrom string
	messageID  string
	receivedAt time.Time
}

func (q *queue) messageInfo(ctx context.Context, id string) (msgInfo, error) {
	var mi msgInfo
	var received int64
	var transfer sql.NullString
	err := q.g.DB.Read().QueryRowContext(ctx, `SELECT COALESCE(c.code, ''), t.id, m.subject, m.header_from, m.message_id, m.received_at
		FROM messages m LEFT JOIN contracts c ON c.id = m.contract_id LEFT JOIN transfers t ON t.message_id = m.id WHERE m.id = ?`, id).
		Scan(&mi.contract, &transfer, &mi.subject, &mi.headerFrom, &mi.messageID, &received)
	mi.transfer = transfer.String
	mi.receivedAt = time.UnixMilli(received)
	return mi, err
}

// renderer prepares the function that writes the row's message.
func (q *queue) renderer(ctx context.Context, row outRow) (func(io.Writer) error, error) {
	g := q.g
	switch row.kind {
	case "plain":
		return func(w io.Writer) error {
			r, err := g.spool.open(row.spool.String)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(w, r)
			return err
		}, nil
	case "copy", "sealed":
		var link func(io.Writer, mimeseal.Attachment) error
		if row.kind == "sealed" {
			n, err := q.linkNotices(ctx, row)
			if err != nil {
				return nil, err
			}
			link = n
		} else {
			link = func(io.Writer, mimeseal.Attachment) error {
				return errors.New("gateway: skeleton without transfer has a placeholder")
			}
		}
		return func(w io.Writer) error {
			r, err := g.spool.open(row.spool.String)
			if err != nil {
				return err
			}
			defer r.Close()
			return mimeseal.Render(w, r, link)
		}, nil
	case "key":
		return q.keyNotice(ctx, row)
	case "bounce":
		return q.bounce(ctx, row)
	case "notice":
		return q.systemNotice(ctx, row)
	}
	return nil, fmt.Errorf("gateway: unknown outbound kind %q", row.kind)
}

func (q *queue) linkNotices(ctx context.Context, row outRow) (func(io.Writer, mimeseal.Attachment) error, error) {
	g := q.g
	if len(row.secret) == 0 {
		return nil, errors.New("gateway: link token missing for a queued copy")
	}
	token, err := g.Keys.Unwrap(row.secret)
	if err != nil {
		return nil, err
	}
	var transferID, fingerprint string
	var expires int64
	if err := g.DB.Read().QueryRowContext(ctx, `SELECT t.id, t.expires_at, COALESCE(k.fingerprint, '') FROM recipients r JOIN transfers t ON t.id = r.transfer_id
		LEFT JOIN recipient_keys k ON k.id = r.public_key_id WHERE r.id = ?`,
		row.recipientID.Int64).Scan(&transferID, &expires, &fingerprint); err != nil {
		return nil, fmt.Errorf("failed to read transfer: %w", err)
	}
	files, err := q.files(ctx, transferID)
	if err != nil {
		return nil, err
	}
	return func(w io.Writer, a mimeseal.Attachment) error {
		f, ok := files[a.Index]
		if !ok {
			return fmt.Errorf("gateway: no sealed file %d in transfer %s", a.Index, transferID)
		}
		l := notice.Link{Token: string(token), Expires: time.UnixMilli(expires), File: f, Registered: fingerprint, Message: a.Message, Scanned: a.Scanned}
		if a.Whole && strings.HasPrefix(a.ContentType, "text/") {
			l.Hidden = a.Reason // a text part sealed whole for a file it hid
		}
		return g.notices.WriteLink(w, l)
	}, nil
}

func (q *queue) files(ctx context.Context, transferID string) (map[int]notice.File, error) {
	rs, err := q.g.DB.Read().QueryContext(ctx, `SELECT idx, name, size, sha256, content_type FROM files WHERE transfer_id = ? ORDER BY idx`, transferID)
	if err != nil {
		return nil, fmt.Errorf("failed to read files: %w", err)
	}
	defer rs.Close()
	out := map[int]notice.File{}
	for rs.Next() {
		var f notice.File
		if err := rs.Scan(&f.Index, &f.Name, &f.Size, &f.SHA256, &f.ContentType); err != nil {
			return nil, fmt.Errorf("failed to read files: %w", err)
		}
		out[f.Index] = f
	}
	return out, rs.Err()
}

func (q *queue) keyNotice(ctx context.Context, row outRow) (func(io.Writer) error, error) {
	g := q.g
	var status, transferID, address, fingerprint, keyKind string
	if err := g.DB.Read().QueryRowContext(ctx, `SELECT r.status, r.transfer_id, r.address, COALESCE(k.fingerprint, ''), COALESCE(k.kind, '') FROM recipients r
		LEFT JOIN recipient_keys k ON k.id = r.public_key_id WHERE r.id = ?`, row.recipientID.Int64).Scan(&status, &transferID, &address, &fingerprint, &keyKind); err != nil {
		return nil, fmt.Errorf("failed to read recipient: %w", err)
	}
	if status != "active" || (len(row.secret) == 0 && fingerprint == "") {
		return nil, errCancelled // revoked before the key left: never send it
	}
	var pass []byte
	if fingerprint == "" {
		p, err := g.Keys.Unwrap(row.secret)
		if err != nil {
			return nil, err
		}
		pass = p
	}
	info, err := q.messageInfo(ctx, row.messageID)
	if err != nil {
		return nil, fmt.Errorf("failed to read message: %w", err)
	}
	files, err := q.files(ctx, transferID)
	if err != nil {
		return nil, err
	}
	var list []notice.File
	for i := 0; i < len(files)+64 && len(list) < len(files); i++ {
		if f, ok := files[i]; ok {
			list = append(list, f)
		}
	}
	noticeID, err := newID(g.Rand, "k")
	if err != nil {
		return nil, err
	}
	n := notice.Key{
		From: row.mailFrom, Subject: oneLine(info.subject), Sent: info.receivedAt,
		Sender: oneLine(senderName(info.headerFrom, row.mailFrom)), References: info.messageID, Passphrase: string(pass),
		Files: list, Registered: fingerprint, RegisteredKind: keyKind,
	}
	if !strings.EqualFold(row.rcpts[0], address) {
		n.HandOverTo = address // key delivery "manual": the notice goes to the sender
	}
	h := notice.Header{To: row.rcpts[:1], ID: noticeID, Date: g.Now()}
	return func(w io.Writer) error { return g.notices.Write(w, h, n) }, nil
}

func senderName(headerFrom, envelope string) string {
	if strings.TrimSpace(headerFrom) != "" {
		return headerFrom
	}
	return envelope
}

func (q *queue) bounce(ctx context.Context, row outRow) (func(io.Writer) error, error) {
	g := q.g
	var kind, rcpts, lastError string
	if err := g.DB.Read().QueryRowContext(ctx, `SELECT kind, rcpts, last_error FROM outbound WHERE id = ?`, row.refID.Int64).Scan(&kind, &rcpts, &lastError); err != nil {
		return nil, fmt.Errorf("failed to read failed delivery: %w", err)
	}
	var failed []string
	json.Unmarshal([]byte(rcpts), &failed)
	info, err := q.messageInfo(ctx, row.messageID)
	if err != nil {
		return nil, fmt.Errorf("failed to read message: %w", err)
	}
	noticeID, err := newID(g.Rand, "b")
	if err != nil {
		return nil, err
	}
	status := "5.0.0"
	if m := enhancedStatus(lastError); m != "" {
		status = m
	}
	n := notice.Bounce{Arrival: info.receivedAt, Recipients: failed, Status: status, Diagnostic: lastError,
		Subject: oneLine(info.subject), References: info.messageID, KeyNotice: kind == "key"}
	h := notice.Header{To: row.rcpts[:1], ID: noticeID, Date: g.Now()}
	return func(w io.Writer) error { return g.notices.Write(w, h, n) }, nil
}

// enhancedStatus extracts "5.1.1" from an SMTP error text.
func enhancedStatus(s string) string {
	for _, f := range strings.Fields(s) {
		p := strings.Split(strings.TrimRight(f, ":,"), ".")
		if len(p) == 3 && len(p[0]) == 1 && (p[0] == "4" || p[0] == "5") {
			return strings.Join(p, ".")
		}
	}
	return ""
}
