package server

import (
	"context"
	"log/slog"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/notice"
	"github.com/sealgate/sealgate/witness/client"
)

// noticeQueue queues a system notice in a transaction (gateway.Gateway).
type noticeQueue interface {
	QueueNotice(ctx context.Context, tx *database.Tx, m notice.Mail) error
}

// witnessAlerts mails each witness alert to the active administrators, as
// a locked account is (the client has logged it already).
func witnessAlerts(db *database.DB, q noticeQueue, log *slog.Logger) func(context.Context, client.Alert) {
	return func(ctx context.Context, a client.Alert) {
		err := db.Write(ctx, func(tx *database.Tx) error {
			admins, err := account.ActiveEmails(ctx, tx, account.RoleAdmin, "")
			if err != nil {
				return err
			}
			if len(admins) == 0 {
				log.Warn("no active administrator to alert about a witness", "witness", a.Witness, "problem", a.Problem.String())
				return nil
			}
			return q.QueueNotice(ctx, tx, notice.Mail{To: admins, Notice: notice.WitnessAlert{
				Problem: a.Problem.String(), Witness: a.Witness, URL: a.URL, Key: a.Key, Size: a.Size,
				Since: a.Since, Failures: a.Failures, Detail: a.Detail,
			}})
		})
		if err != nil {
			log.Error("failed to queue the witness alert to the administrators", "witness", a.Witness, "error", err)
		}
	}
}
