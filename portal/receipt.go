package portal

import (
	"context"
	"net/http"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/notice"
)

// Notifier queues a system notice in the caller's transaction (the
// gateway's QueueNotice). It mails a message's sender only where
// notice.Policy allows: an internal address, or an active account's.
type Notifier interface {
	QueueNotice(ctx context.Context, tx *database.Tx, m notice.Mail) error
}

// downloadReceipt mails the sender, in the download's transaction, when a
// recipient downloads for the first time (transfer.download_receipt);
// relayed mail may carry any envelope sender, so the queue mails only a
// sender the policy allows. A partial first download (p not nil) is told
// as such, with what was sent.
func (s *Server) downloadReceipt(ctx context.Context, r *http.Request, tx *database.Tx, l *link, f file, p *partialDownload) error {
	if !s.Config.Transfer.DownloadReceipt || s.Notices == nil || l.Sender == "" {
		return nil
	}
	n := notice.DownloadReceipt{Recipient: l.Address, Subject: l.Subject, File: f.Name, Size: f.Size, At: s.Now(),
		IP: s.clientIP(r), Transfer: l.TransferID}
	if p != nil {
		n.Partial = &notice.Partial{Age: p.format == "age", Sent: p.sent, Plaintext: p.plaintext}
	}
	return s.Notices.QueueNotice(ctx, tx, notice.Mail{To: []string{l.Sender}, About: l.MessageID, Notice: n})
}
