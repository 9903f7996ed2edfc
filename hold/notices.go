package hold

import (
	"context"
	"time"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/notice"
)

// The notices of this package — the approval request to the managers, the
// receipt to the sender (with the cancel link) and the decision — are
// written by package notice; this file says what they are about.

// Notifier queues a system notice in the caller's transaction (the
// gateway's QueueNotice). It mails a message's sender only where
// notice.Policy allows.
type Notifier interface {
	QueueNotice(ctx context.Context, tx *database.Tx, m notice.Mail) error
}

func (s *Service) notify(ctx context.Context, tx *database.Tx, to []string, about string, n notice.Notice) error {
	if s.d.Notices == nil {
		return nil
	}
	return s.d.Notices.QueueNotice(ctx, tx, notice.Mail{To: to, About: about, Notice: n})
}

// endedAs is how a notice names the way a hold ended (StatusRefused,
// StatusExpired, StatusCancelled).
func endedAs(status string) notice.Decision {
	switch status {
	case StatusRefused:
		return notice.Refused
	case StatusExpired:
		return notice.Expired
	case StatusCancelled:
		return notice.Cancelled
	}
	return ""
}

func noticeFiles(files []File) []notice.File {
	out := make([]notice.File, len(files))
	for i, f := range files {
		out[i] = notice.File{Index: i, Name: f.Name, Size: f.Size, SHA256: f.SHA256}
	}
	return out
}

// request asks the managers to decide.
func request(sp Spec) notice.ApprovalRequest {
	return notice.ApprovalRequest{Message: specMessage(sp), Expires: sp.ApprovalExpiresAt, Expired: sp.Expired}
}

// receipt tells the sender that the message is held, and how to cancel.
func receipt(sp Spec) notice.HoldReceipt {
	return notice.HoldReceipt{Message: specMessage(sp), Approval: sp.Approval, Expired: sp.Expired,
		ApprovalExpires: sp.ApprovalExpiresAt, ReleaseAt: sp.ReleaseAt, CancelToken: sp.CancelToken}
}

func specMessage(sp Spec) notice.Message {
	return notice.Message{ID: sp.MessageID, Contract: sp.Contract, Sender: sp.Sender, Subject: sp.Subject,
		Received: sp.ReceivedAt, Recipients: sp.Recipients, Files: noticeFiles(sp.Files)}
}

// decision tells the sender what became of a held message.
func decision(h *Held, d notice.Decision, by, reason string, at time.Time) notice.HoldDecision {
	return notice.HoldDecision{Message: notice.Message{ID: h.MessageID, Contract: h.Contract, Sender: h.Sender, Subject: h.Subject,
		Received: h.ReceivedAt, Recipients: h.Recipients, Files: noticeFiles(h.Files)},
		Decision: d, By: by, Reason: reason, At: at, ReleaseAt: h.ReleaseAt, ApprovalExpires: h.ApprovalExpiresAt}
}
