package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"time"

	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/store"
)

// Notice is a short system mail: an alert to administrators, an approval
// request to a manager, a download receipt to a sender. It carries no
// attachment and no secret.
type Notice struct {
	To      []string
	Subject string // Japanese / English
	Text    string // plain text, Japanese then English
	// MessageID is the gateway message the notice is about ("" if none).
	MessageID string
}

// QueueNotice queues a notice in the caller's transaction; it is delivered
// by the outbound queue like any mail, from the null sender (no bounces of
// bounces), its rendered body kept wrapped to the master key until then.
//
// Recipients go in canonical form; one that does not parse (an account or
// register entry with routing syntax, which the next hop could deliver
// elsewhere) is left out and logged, so that the others still get the
// notice and the caller's transaction is not failed by a bad entry.
func (g *Gateway) QueueNotice(ctx context.Context, tx *store.Tx, n Notice) error {
	var rcpts []string
	for _, to := range n.To {
		a, err := address.Parse(to)
		if err != nil {
			g.Log.Warn("notice recipient left out: not a valid address", "recipient", to, "subject", oneLine(n.Subject), "error", err)
			continue
		}
		rcpts = append(rcpts, a.String())
	}
	if len(rcpts) == 0 {
		return nil
	}
	id, err := newID(g.Rand, "n")
	if err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: sealgate <%s>\r\n", g.Config.Delivery.NoticeFrom)
	for i, to := range rcpts {
		if i == 0 {
			fmt.Fprintf(&b, "To: <%s>", to)
		} else {
			fmt.Fprintf(&b, ",\r\n <%s>", to)
		}
	}
	b.WriteString("\r\n")
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.BEncoding.Encode("UTF-8", oneLine(n.Subject)))
	fmt.Fprintf(&b, "Date: %s\r\n", g.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", id, g.Config.Hostname)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n")
	b.WriteString("Auto-Submitted: auto-generated\r\nX-Sealgate-Notice: system\r\n\r\n")
	if err := writeQP(&b, crlf(n.Text)); err != nil {
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
	now := g.Now().UnixMilli()
	var msgID any
	if n.MessageID != "" {
		msgID = n.MessageID
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbound(message_id, kind, mail_from, rcpts, body, status, next_attempt_at, created_at)
		VALUES (?, 'notice', '', ?, ?, 'queued', ?, ?)`, msgID, jsonList(rcpts...), body, now, now); err != nil {
		return fmt.Errorf("failed to queue notice: %w", err)
	}
	tx.AfterCommit(g.Kick)
	return nil
}

func (q *queue) systemNotice(ctx context.Context, row outRow) (func(io.Writer) error, error) {
	var wrapped []byte
	if err := q.g.DB.Read().QueryRowContext(ctx, `SELECT body FROM outbound WHERE id = ?`, row.id).Scan(&wrapped); err != nil {
		return nil, fmt.Errorf("failed to read notice: %w", err)
	}
	body, err := q.g.Keys.Unwrap(wrapped)
	if err != nil {
		return nil, err
	}
	return func(w io.Writer) error { _, err := w.Write(body); return err }, nil
}

// crlf turns bare LF line ends into CRLF.
func crlf(s string) string {
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' && (i == 0 || s[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
