package gateway

import (
	"bytes"
	"context"
	"io"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/notice"
	"github.com/sealgate/sealgate/outbox"
)

// QueueNotice queues a system notice (package notice: an approval request,
// a receipt, a decision, a download receipt, a key-registration
// confirmation, an alert) in the caller's transaction: the one way into the
// outbound queue for a mail the gateway writes on its own. It is delivered
// like any mail, from the null sender (no bounces of bounces), its rendered
// body kept wrapped to the master key until then.
//
// Recipients go in canonical form, as notice.Policy allows: a message's
// sender only at an internal address or an account's (otherwise the notice
// is not queued, and that is no error); an address that does not parse (an
// account or register entry with routing syntax, which the next hop could
// deliver elsewhere) is left out and logged, so that the others still get
// the notice and the caller's transaction is not failed by a bad entry.
func (g *Gateway) QueueNotice(ctx context.Context, tx *database.Tx, m notice.Mail) error {
	rcpts, bad := g.policy.Recipients(ctx, tx, m)
	for _, to := range bad {
		g.Log.Warn("notice recipient left out: not a valid address", "recipient", to, "notice", notice.Kind(m.Notice))
	}
	if len(rcpts) == 0 {
		return nil
	}
	id, err := newID(g.Rand, "n")
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := g.notices.Write(&b, notice.Header{To: rcpts, ID: id, Date: g.Now()}, m.Notice); err != nil {
		return err
	}
	ep := g.Keys.Current()
	body, err := ep.WrapTransient(b.Bytes())
	if err != nil {
		return err
	}
	if err := masterkey.Fence(ctx, tx, ep); err != nil {
		return err
	}
	if err := outbox.InsertNotice(ctx, tx, outbox.Notice{About: m.About, To: rcpts, Body: body, At: g.Now()}); err != nil {
		return err
	}
	tx.AfterCommit(g.Kick)
	return nil
}

func (q *queue) systemNotice(ctx context.Context, row outbox.Row) (func(io.Writer) error, error) {
	wrapped, err := outbox.Body(ctx, q.g.DB.Read(), row.ID)
	if err != nil {
		return nil, err
	}
	body, err := q.g.Keys.Unwrap(wrapped)
	if err != nil {
		return nil, err
	}
	return func(w io.Writer) error { _, err := w.Write(body); return err }, nil
}

// oneLine makes s fit on one line of a header field, a log or a column.
func oneLine(s string) string { return notice.OneLine(s) }
