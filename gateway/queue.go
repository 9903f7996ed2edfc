package gateway

import (
	"context"
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
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/notice"
	"github.com/sealgate/sealgate/outbox"
	"github.com/sealgate/sealgate/pubkey"
	"github.com/sealgate/sealgate/transfer"
)

// The outbound queue lives in the database (package outbox), so that
// queueing a copy is part of the same transaction as the records and the
// ledger events; bodies live in the encrypted spool. Each row is one
// delivery attempt target: a plain copy to internal recipients, a rewritten
// copy (with link notices) to one external recipient, a key notice, or a
// bounce. This file delivers the rows — renders them, hands them to the
// transport, retries — and records each outcome through package outbox.
// Delivery is at least once: a crash between the next hop's 250 and the
// database update delivers that row again after restart.

type queue struct {
	g        *Gateway
	wake     chan struct{}
	mu       sync.Mutex
	inflight map[int64]bool
	running  sync.WaitGroup // deliveries under way
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

// DeliverDue starts, each on its own goroutine, the deliveries due at now,
// as many as delivery.workers allows beside those under way, and returns
// when the next row falls due: now if it may have left due rows behind,
// zero if it knows of none or every worker is busy (a delivery that
// finishes signals DeliveryWake). The scheduler (package schedule) calls
// it.
func (g *Gateway) DeliverDue(ctx context.Context, now time.Time) (time.Time, error) {
	q := g.queue
	free := g.Config.Delivery.Workers - len(q.inflightIDs())
	if free <= 0 {
		return time.Time{}, nil
	}
	rows, next, err := q.due(ctx, now, free)
	for _, row := range rows {
		q.running.Add(1)
		go func() {
			defer q.running.Done()
			q.deliver(ctx, row)
			q.mu.Lock()
			delete(q.inflight, row.ID)
			q.mu.Unlock()
			q.kick()
		}()
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("failed to read the outbound queue: %w", err)
	}
	if len(rows) == free {
		return now, nil // more may be due
	}
	return next, nil
}

// DeliveryWake is signalled when mail was queued (Kick) or a delivery
// finished.
func (g *Gateway) DeliveryWake() <-chan struct{} { return g.queue.wake }

// StopDelivery waits for the deliveries under way — they stop early once
// the context DeliverDue was given is done — and closes the transport
// (cached smarthost sessions say QUIT). Call it once DeliverDue is no
// longer called.
func (g *Gateway) StopDelivery() {
	g.queue.running.Wait()
	if c, ok := g.Transport.(io.Closer); ok {
		c.Close()
	}
}

// due claims up to limit rows that are due at now and not in flight; next
// is when the next row that is not due yet will be. On PostgreSQL the rows
// are leased to this instance (outbox.Claim): a row in flight here is not
// due for the others, nor for this instance, until its lease ends.
func (q *queue) due(ctx context.Context, at time.Time, limit int) ([]outbox.Row, time.Time, error) {
	db := q.g.DB.Read()
	want := limit + len(q.inflightIDs())
	if q.g.DB.Dialect() == database.Postgres {
		want = limit // claimed rows are this instance's: none to skip
	}
	// The lease (delivery.lease, default 10 minutes) is how long a row
	// claimed from a queue shared with other instances (PostgreSQL) stays
	// this instance's: longer than the longest attempt — connecting (2.5
	// minutes), sending (the transport's 5) and recording the outcome
	// (recordPatience, 2) — and the delay before another instance takes
	// over the rows of one that died.
	// What is delivered leaves the machine: read only rows already on
	// disk (SQLite's pipelined commit lets a reader see a batch a moment
	// before its fsync; a power cut then would erase a message, and its
	// ledger events, that was already sent).
	if err := q.g.DB.WaitDurable(ctx); err != nil {
		return nil, time.Time{}, err
	}
	rs, err := outbox.Claim(ctx, q.g.DB, at, at.Add(q.g.Config.Delivery.Lease.D()), want)
	var rows []outbox.Row
	q.mu.Lock()
	for _, r := range rs {
		if (r.Lease.IsZero() && q.inflight[r.ID]) || len(rows) >= limit {
			continue
		}
		if r.Err != nil {
			q.g.Log.Error("corrupt outbound row", "id", r.ID, "error", r.Err)
			continue
		}
		q.inflight[r.ID] = true
		rows = append(rows, r)
	}
	q.mu.Unlock()
	if err != nil {
		return rows, time.Time{}, err
	}
	next, err := outbox.NextDue(ctx, db, at)
	return rows, next, err
}

// stillDue re-reads the row just before an attempt. due() hands out rows
// from a read snapshot taken before it scans them, and a worker takes its
// row off the in-flight set only after recording the outcome; a row whose
// outcome was recorded between that snapshot and the scan would otherwise
// be attempted again — a duplicate delivery with no crash to excuse it.
// This read starts after the recording committed, so it sees it.
func (q *queue) stillDue(ctx context.Context, row outbox.Row) (bool, error) {
	return outbox.StillDue(ctx, q.g.DB.Read(), row, q.g.Now())
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
func (q *queue) deliver(ctx context.Context, row outbox.Row) {
	g := q.g
	if due, err := q.stillDue(ctx, row); err != nil || !due {
		if err != nil {
			g.Log.Error("failed to read the outbound queue", "id", row.ID, "error", err)
		}
		return
	}
	body, err := q.renderer(ctx, row)
	if err != nil {
		if errors.Is(err, errCancelled) {
			q.cancel(ctx, row)
			return
		}
		g.Log.Error("failed to prepare outbound message", "id", row.ID, "kind", row.Kind, "error", err)
		q.retry(ctx, row, err, row.Rcpts)
		return
	}
	// Rows are written with canonical recipients; one that does not parse
	// (queued by an older version, routing syntax included) is never
	// handed to the next hop, which could route it outside.
	rcpts := row.Rcpts
	if bad := slices.DeleteFunc(slices.Clone(rcpts), func(r string) bool { _, err := address.Parse(r); return err == nil }); len(bad) > 0 {
		q.fail(ctx, row, bad, errRoutingRecipient)
		if rcpts = slices.DeleteFunc(slices.Clone(rcpts), func(r string) bool { return slices.Contains(bad, r) }); len(rcpts) == 0 {
			return
		}
	}
	// Copies and notices that carry a link or a passphrase ask for bounces
	// without the content; an internal copy may come back whole.
	env := Envelope{From: row.MailFrom, Rcpts: rcpts, HeadersOnlyDSN: row.Kind != outbox.KindPlain}
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
func (q *queue) retry(ctx context.Context, row outbox.Row, cause error, rcpts []string) {
	g := q.g
	now := g.Now()
	if now.Sub(row.CreatedAt) > g.Config.Delivery.MaxQueueTime.D() {
		q.fail(ctx, row, rcpts, fmt.Errorf("gave up after %s: %w", g.Config.Delivery.MaxQueueTime.D(), cause))
		return
	}
	g.Metrics.Delivery(row.Kind, metrics.DeliveryDeferred, len(rcpts))
	next := now.Add(q.backoff(row.Attempts))
	g.Log.Info("delivery deferred", "id", row.ID, "kind", row.Kind, "attempt", row.Attempts+1, "next", next, "error", cause)
	var info msgInfo
	if row.Attempts == 0 && row.MessageID != "" {
		info, _ = q.messageInfo(ctx, row.MessageID)
	}
	err := q.record(ctx, "deferral", row, func(tx *database.Tx) error {
		// The first deferral of a distribution is evidence (the next hop
		// was down when it should have left); later retries are only logged.
		if row.Attempts == 0 && row.MessageID != "" && row.Kind != outbox.KindBounce {
			for _, r := range rcpts {
				if _, err := g.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeDeliveryDeferred, Actor: "system", Message: row.MessageID,
					Contract: info.contract, Transfer: info.transfer, Recipient: r, Reason: oneLine(cause.Error()),
					Details: map[string]string{"kind": row.Kind, "next_attempt": next.UTC().Format(time.RFC3339)}}); err != nil {
					return err
				}
			}
		}
		// When some recipients were accepted or failed, the rest continue
		// in a new row.
		return outbox.Defer(ctx, tx, row, rcpts, next, oneLine(cause.Error()))
	})
	if err != nil {
		g.Log.Error("failed to reschedule delivery", "id", row.ID, "error", err)
	}
}

// delivered records that the next hop accepted the row (for rcpts).
func (q *queue) delivered(ctx context.Context, row outbox.Row, rcpts []string) {
	g := q.g
	g.Metrics.Delivery(row.Kind, metrics.DeliveryDelivered, len(rcpts))
	var evType string
	switch row.Kind {
	case outbox.KindSealed, outbox.KindCopy:
		evType = audit.TypeNoticeDelivered
	case outbox.KindKey:
		evType = audit.TypeKeyNoticeDelivered
	case outbox.KindPlain:
		evType = audit.TypePlainDelivered
	case outbox.KindBounce:
		evType = audit.TypeBounceSent
	}
	info, _ := q.messageInfo(ctx, row.MessageID)
	var spoolLeft bool
	err := q.record(ctx, "delivery", row, func(tx *database.Tx) (err error) {
		// Secrets (wrapped link token, wrapped passphrase) are erased as
		// soon as they have done their job; a link notice's key notice
		// follows once it is accepted.
		if err := outbox.Delivered(ctx, tx, row, g.Now()); err != nil {
			return err
		}
		if spoolLeft, err = q.releaseSpoolTx(ctx, tx, row); err != nil {
			return err
		}
		for _, r := range rcpts {
			ev := audit.Event{Type: evType, Actor: "system", Message: row.MessageID, Contract: info.contract, Transfer: info.transfer, Recipient: r}
			if row.Kind == outbox.KindKey && strings.EqualFold(r, row.MailFrom) {
				// Under key delivery "manual" the notice went to the sender
				// for the recipient: record both.
				rec, err := transfer.RecipientByID(ctx, tx, row.RecipientID)
				if err != nil {
					return fmt.Errorf("failed to read recipient: %w", err)
				}
				if !strings.EqualFold(rec.Address, r) {
					ev.Recipient = rec.Address
					ev.Details = map[string]string{"handed_to": r}
				}
			}
			if row.Kind == outbox.KindBounce {
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
		return nil
	})
	if err != nil {
		g.Log.Error("failed to record delivery (it will be delivered again)", "id", row.ID, "error", err)
		return
	}
	if spoolLeft {
		q.releaseSpool(row)
	}
}

// fail records a permanent failure for rcpts, cancels what depends on the
// row and queues a bounce to the sender.
func (q *queue) fail(ctx context.Context, row outbox.Row, rcpts []string, cause error) {
	g := q.g
	g.Metrics.Delivery(row.Kind, metrics.DeliveryFailed, len(rcpts))
	info, _ := q.messageInfo(ctx, row.MessageID)
	g.Log.Warn("delivery failed permanently", "id", row.ID, "kind", row.Kind, "rcpts", rcpts, "error", cause)
	var spoolLeft bool
	err := q.record(ctx, "delivery failure", row, func(tx *database.Tx) error {
		now := g.Now()
		// A link notice's waiting key notice is cancelled with it.
		failedID, err := outbox.Fail(ctx, tx, row, rcpts, now, oneLine(cause.Error()))
		if err != nil {
			return err
		}
		spoolLeft = false
		if len(rcpts) == len(row.Rcpts) {
			if spoolLeft, err = q.releaseSpoolTx(ctx, tx, row); err != nil {
				return err
			}
		}
		for _, r := range rcpts {
			if _, err := g.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeDeliveryFailed, Actor: "system", Message: row.MessageID,
				Contract: info.contract, Transfer: info.transfer, Recipient: r, Reason: oneLine(cause.Error()),
				Details: map[string]string{"kind": row.Kind}}); err != nil {
				return err
			}
		}
		// Bounce to the sender, unless this is a bounce or the sender is null.
		if row.Kind != outbox.KindBounce && row.MailFrom != "" {
			if err := outbox.InsertBounce(ctx, tx, outbox.Bounce{MessageID: row.MessageID, To: row.MailFrom, Failed: failedID, At: now}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		g.Log.Error("failed to record delivery failure", "id", row.ID, "error", err)
		return
	}
	if spoolLeft {
		q.releaseSpool(row)
	}
}

// cancel records that the row will not be sent.
func (q *queue) cancel(ctx context.Context, row outbox.Row) {
	q.g.Metrics.Delivery(row.Kind, metrics.DeliveryCancelled, len(row.Rcpts))
	var spoolLeft bool
	err := q.record(ctx, "outcome", row, func(tx *database.Tx) (err error) {
		if err := outbox.CancelOne(ctx, tx, row.ID, ""); err != nil {
			return err
		}
		spoolLeft, err = q.releaseSpoolTx(ctx, tx, row)
		return err
	})
	if err != nil {
		q.g.Log.Error("failed to update outbound row", "id", row.ID, "error", err)
		return
	}
	if spoolLeft {
		q.releaseSpool(row)
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
func (q *queue) record(ctx context.Context, what string, row outbox.Row, fn func(tx *database.Tx) error) error {
	deadline := time.Now().Add(recordPatience)
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := q.g.DB.Write(ctx, fn)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		if attempt == 1 {
			q.g.Log.Warn("failed to record the "+what+" of a delivery attempt, retrying", "id", row.ID, "kind", row.Kind, "error", err)
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

// releaseSpoolTx runs in the transaction that records a row's outcome:
// once no pending row needs the row's spool file, a file kept as a row of
// the database (DBSpool: every spool file up to 256 KiB) is deleted in that
// transaction, which saves a write transaction of its own per message.
// spoolLeft reports a spool file still to be released after the commit
// (releaseSpool): one kept in a directory or the bucket.
func (q *queue) releaseSpoolTx(ctx context.Context, tx *database.Tx, row outbox.Row) (spoolLeft bool, err error) {
	if row.Spool == "" {
		return false, nil
	}
	needed, err := outbox.SpoolNeeded(ctx, tx, row.Spool)
	if err != nil || needed {
		return false, err
	}
	deleted, err := q.g.spool.deleteRowTx(ctx, tx, row.Spool)
	if err != nil {
		return false, fmt.Errorf("failed to remove spool file %s: %w", row.Spool, err)
	}
	return !deleted, nil
}

// releaseSpool removes the row's spool file once no pending row needs it:
// what releaseSpoolTx left, a file of the spool directory or the bucket.
// The delivery worker calls it once the outcome is committed: not as an
// AfterCommit function, which would run on the database's writer
// goroutine, where the unlink held up every other write (a tenth of the
// writer's time under load).
func (q *queue) releaseSpool(row outbox.Row) {
	if row.Spool == "" {
		return
	}
	if needed, err := outbox.SpoolNeeded(context.Background(), q.g.DB.Read(), row.Spool); err != nil || needed {
		return
	}
	if err := q.g.spool.remove(row.Spool); err != nil {
		q.g.Log.Warn("failed to remove spool file", "spool", row.Spool, "error", err)
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
	m, err := transfer.MessageByID(ctx, q.g.DB.Read(), id)
	if err != nil {
		return msgInfo{}, err
	}
	// receivedAt in the process's zone, as the bounce's Arrival-Date has
	// always shown it.
	return msgInfo{contract: m.Contract, transfer: m.TransferID, subject: m.Subject, headerFrom: m.HeaderFrom,
		messageID: m.MessageID, receivedAt: m.ReceivedAt.Local()}, nil
}

// renderer prepares the function that writes the row's message.
func (q *queue) renderer(ctx context.Context, row outbox.Row) (func(io.Writer) error, error) {
	g := q.g
	switch row.Kind {
	case outbox.KindPlain:
		return func(w io.Writer) error {
			r, err := g.spool.open(ctx, row.Spool)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(w, r)
			return err
		}, nil
	case outbox.KindCopy, outbox.KindSealed:
		var link func(io.Writer, mimeseal.Attachment) error
		if row.Kind == outbox.KindSealed {
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
			r, err := g.spool.open(ctx, row.Spool)
			if err != nil {
				return err
			}
			defer r.Close()
			return mimeseal.Render(w, r, link)
		}, nil
	case outbox.KindKey:
		return q.keyNotice(ctx, row)
	case outbox.KindBounce:
		return q.bounce(ctx, row)
	case outbox.KindNotice:
		return q.systemNotice(ctx, row)
	}
	return nil, fmt.Errorf("gateway: unknown outbound kind %q", row.Kind)
}

func (q *queue) linkNotices(ctx context.Context, row outbox.Row) (func(io.Writer, mimeseal.Attachment) error, error) {
	g := q.g
	if len(row.Secret) == 0 {
		return nil, errors.New("gateway: link token missing for a queued copy")
	}
	token, err := g.Keys.Unwrap(row.Secret)
	if err != nil {
		return nil, err
	}
	rec, err := transfer.RecipientByID(ctx, g.DB.Read(), row.RecipientID)
	if err != nil {
		return nil, fmt.Errorf("failed to read transfer: %w", err)
	}
	fingerprint, _, err := q.registeredKey(ctx, rec.PublicKeyID)
	if err != nil {
		return nil, err
	}
	files, err := q.files(ctx, rec.TransferID)
	if err != nil {
		return nil, err
	}
	return func(w io.Writer, a mimeseal.Attachment) error {
		f, ok := files[a.Index]
		if !ok {
			return fmt.Errorf("gateway: no sealed file %d in transfer %s", a.Index, rec.TransferID)
		}
		l := notice.Link{Token: string(token), Expires: rec.ExpiresAt, File: f, Registered: fingerprint, Message: a.Message, Scanned: a.Scanned}
		if a.Whole && strings.HasPrefix(a.ContentType, "text/") {
			l.Hidden = a.Reason // a text part sealed whole for a file it hid
		}
		return g.notices.WriteLink(w, l)
	}, nil
}

// registeredKey returns the fingerprint and kind of the public key a
// recipient's key.age is encrypted to (package pubkey); "" for a
// passphrase.
func (q *queue) registeredKey(ctx context.Context, id int64) (fingerprint, kind string, err error) {
	if id == 0 {
		return "", "", nil
	}
	k, err := pubkey.ByID(ctx, q.g.DB.Read(), id)
	if errors.Is(err, pubkey.ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("failed to read the recipient's key: %w", err)
	}
	return k.Fingerprint, k.Kind, nil
}

// files returns the files of a transfer by their index in the message.
func (q *queue) files(ctx context.Context, transferID string) (map[int]notice.File, error) {
	fs, err := transfer.Files(ctx, q.g.DB.Read(), transferID)
	if err != nil {
		return nil, err
	}
	out := make(map[int]notice.File, len(fs))
	for _, f := range fs {
		out[f.Index] = notice.File{Index: f.Index, Name: f.Name, Size: f.Size, SHA256: f.SHA256, ContentType: f.ContentType}
	}
	return out, nil
}

func (q *queue) keyNotice(ctx context.Context, row outbox.Row) (func(io.Writer) error, error) {
	g := q.g
	rec, err := transfer.RecipientByID(ctx, g.DB.Read(), row.RecipientID)
	if err != nil {
		return nil, fmt.Errorf("failed to read recipient: %w", err)
	}
	fingerprint, keyKind, err := q.registeredKey(ctx, rec.PublicKeyID)
	if err != nil {
		return nil, err
	}
	if rec.Status != transfer.StatusActive || (len(row.Secret) == 0 && fingerprint == "") {
		return nil, errCancelled // revoked before the key left: never send it
	}
	var pass []byte
	if fingerprint == "" {
		p, err := g.Keys.Unwrap(row.Secret)
		if err != nil {
			return nil, err
		}
		pass = p
	}
	info, err := q.messageInfo(ctx, row.MessageID)
	if err != nil {
		return nil, fmt.Errorf("failed to read message: %w", err)
	}
	files, err := q.files(ctx, rec.TransferID)
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
		From: row.MailFrom, Subject: oneLine(info.subject), Sent: info.receivedAt,
		Sender: oneLine(senderName(info.headerFrom, row.MailFrom)), References: info.messageID, Passphrase: string(pass),
		Files: list, Registered: fingerprint, RegisteredKind: keyKind,
	}
	if !strings.EqualFold(row.Rcpts[0], rec.Address) {
		n.HandOverTo = rec.Address // key delivery "manual": the notice goes to the sender
	}
	h := notice.Header{To: row.Rcpts[:1], ID: noticeID, Date: g.Now()}
	return func(w io.Writer) error { return g.notices.Write(w, h, n) }, nil
}

func senderName(headerFrom, envelope string) string {
	if strings.TrimSpace(headerFrom) != "" {
		return headerFrom
	}
	return envelope
}

func (q *queue) bounce(ctx context.Context, row outbox.Row) (func(io.Writer) error, error) {
	g := q.g
	failed, err := outbox.Get(ctx, g.DB.Read(), row.RefID)
	if err != nil {
		return nil, fmt.Errorf("failed to read failed delivery: %w", err)
	}
	info, err := q.messageInfo(ctx, row.MessageID)
	if err != nil {
		return nil, fmt.Errorf("failed to read message: %w", err)
	}
	noticeID, err := newID(g.Rand, "b")
	if err != nil {
		return nil, err
	}
	status := "5.0.0"
	if m := enhancedStatus(failed.LastError); m != "" {
		status = m
	}
	n := notice.Bounce{Arrival: info.receivedAt, Recipients: failed.Rcpts, Status: status, Diagnostic: failed.LastError,
		Subject: oneLine(info.subject), References: info.messageID, KeyNotice: failed.Kind == outbox.KindKey}
	h := notice.Header{To: row.Rcpts[:1], ID: noticeID, Date: g.Now()}
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
