package hold

import (
	"fmt"
	"strings"
	"time"
)

// The notices of this package are bilingual (Japanese first), plain text,
// and carry no secret but the sender's own cancel link.

type mailText struct{ subject, text string }

func (s *Service) url(path string) string { return strings.TrimRight(s.d.PublicURL, "/") + path }

func (s *Service) when(t time.Time) string { return t.In(s.d.Location).Format("2006-01-02 15:04 MST") }

func writeSummary(b *strings.Builder, s *Service, contract, sender, subject string, received time.Time, rcpts []string, files []File) {
	fmt.Fprintf(b, "件名 / Subject: %s\n", subject)
	fmt.Fprintf(b, "送信者 / Sender: %s\n", sender)
	fmt.Fprintf(b, "契約 / Contract: %s\n", contract)
	fmt.Fprintf(b, "受付 / Received: %s\n", s.when(received))
	fmt.Fprintf(b, "宛先 / Recipients: %s\n", strings.Join(rcpts, ", "))
	if len(files) > 0 {
		fmt.Fprintf(b, "ファイル / Files:\n")
		for _, f := range files {
			fmt.Fprintf(b, "  - %s (%d bytes, SHA-256 %s)\n", f.Name, f.Size, f.SHA256)
		}
	}
}

// requestMail asks the managers to decide.
func (s *Service) requestMail(sp Spec) mailText {
	var b strings.Builder
	if sp.Expired {
		fmt.Fprintf(&b, "契約 %s は終了日を過ぎていますが、その相手先宛てのメールが届きました。次のメールが承認を待っています。\n", sp.Contract)
		fmt.Fprintf(&b, "送信してよい場合は、契約の終了日を延長してから承認してください（延長しないと承認できません）。そうでなければ却下してください。%s までに判断がない場合、このメールは送信されずに破棄されます。契約が終了すると、このメールも契約の他の情報とともに破棄されます。\n\n", s.when(sp.ApprovalExpiresAt))
		fmt.Fprintf(&b, "Contract %s is past its end date, and a message to its counterparty came in. It awaits your approval.\n", sp.Contract)
		fmt.Fprintf(&b, "If it may be sent, extend the contract's end date, then approve it (it cannot be approved before); otherwise refuse it. Without a decision by %s it is destroyed unsent; when the contract ends, it is destroyed with the rest of the contract's information.\n\n", s.when(sp.ApprovalExpiresAt))
	} else {
		fmt.Fprintf(&b, "契約 %s では社外への送信（持出し）に情報管理責任者の承認が必要です。次のメールが承認を待っています。\n", sp.Contract)
		fmt.Fprintf(&b, "ポータルで内容を確認し、承認または却下してください。%s までに判断がない場合、このメールは送信されずに破棄されます。\n\n", s.when(sp.ApprovalExpiresAt))
		fmt.Fprintf(&b, "Under contract %s, mail leaving the company needs the information manager's approval. This message awaits yours.\n", sp.Contract)
		fmt.Fprintf(&b, "Review it in the portal and approve or refuse it. Without a decision by %s it is destroyed unsent.\n\n", s.when(sp.ApprovalExpiresAt))
	}
	writeSummary(&b, s, sp.Contract, sp.Sender, sp.Subject, sp.ReceivedAt, sp.Recipients, sp.Files)
	fmt.Fprintf(&b, "\n承認・却下 / Approve or refuse:\n%s\n", s.url("/manage/approvals/"+sp.MessageID))
	return mailText{subject: "【承認依頼 / Approval request】" + sp.Subject, text: b.String()}
}

// receiptMail tells the sender that the message is held, and how to cancel.
func (s *Service) receiptMail(sp Spec) mailText {
	var b strings.Builder
	fmt.Fprintf(&b, "次のメールの社外宛の送信を保留しています。\n")
	if sp.Expired {
		fmt.Fprintf(&b, "契約 %s は終了日を過ぎているため、送信には情報管理責任者が契約を延長して承認する必要があります。承認されると送信され、却下されるか %s までに承認されない場合、または契約が終了した場合は送信されずに破棄されます。結果はメールでお知らせします。\n", sp.Contract, s.when(sp.ApprovalExpiresAt))
	} else if sp.Approval {
		fmt.Fprintf(&b, "契約 %s では情報管理責任者の承認が必要です。承認されると送信され、却下されるか %s までに承認されない場合は送信されずに破棄されます。結果はメールでお知らせします。\n", sp.Contract, s.when(sp.ApprovalExpiresAt))
	}
	if sp.ReleaseAt.After(sp.ReceivedAt) {
		fmt.Fprintf(&b, "送信は %s 以降に行われます。それまでは取り消すことができます。\n", s.when(sp.ReleaseAt))
	}
	fmt.Fprintf(&b, "\nThe copies of this message to recipients outside the company are held.\n")
	if sp.Expired {
		fmt.Fprintf(&b, "Contract %s is past its end date: to be sent, the information manager must extend the contract and approve. Once approved it is sent; if refused, not approved by %s, or if the contract ends, it is destroyed unsent. You will be told by mail.\n", sp.Contract, s.when(sp.ApprovalExpiresAt))
	} else if sp.Approval {
		fmt.Fprintf(&b, "Contract %s needs the information manager's approval: once approved it is sent; if refused, or not approved by %s, it is destroyed unsent. You will be told by mail.\n", sp.Contract, s.when(sp.ApprovalExpiresAt))
	}
	if sp.ReleaseAt.After(sp.ReceivedAt) {
		fmt.Fprintf(&b, "It leaves at %s at the earliest; until then you can cancel it.\n", s.when(sp.ReleaseAt))
	}
	b.WriteString("\n")
	writeSummary(&b, s, sp.Contract, sp.Sender, sp.Subject, sp.ReceivedAt, sp.Recipients, sp.Files)
	if sp.CancelToken != "" {
		fmt.Fprintf(&b, "\n送信を取り消す / Cancel sending (the page asks you to confirm):\n%s\n", s.url("/c/"+sp.CancelToken))
		fmt.Fprintf(&b, "このリンクは送信を取り消せるため、転送しないでください。 / This link can cancel the message: do not forward it.\n")
	}
	fmt.Fprintf(&b, "\n送信の状況 / Your transfers: %s\n", s.url("/transfers"))
	return mailText{subject: "【送信保留 / Held】" + sp.Subject, text: b.String()}
}

// decisionMail tells the sender what became of a held message.
func (s *Service) decisionMail(h *Held, what, by, reason string, at time.Time) mailText {
	var b strings.Builder
	var tag string
	switch what {
	case "granted":
		tag = "【承認 / Approved】"
		fmt.Fprintf(&b, "次のメールの送信は %s により承認されました。", by)
		if h.ReleaseAt.After(at) {
			fmt.Fprintf(&b, "%s 以降に送信されます。\n", s.when(h.ReleaseAt))
		} else {
			b.WriteString("まもなく送信されます。\n")
		}
		fmt.Fprintf(&b, "Sending this message was approved by %s.", by)
		if h.ReleaseAt.After(at) {
			fmt.Fprintf(&b, " It leaves at %s.\n", s.when(h.ReleaseAt))
		} else {
			b.WriteString(" It leaves now.\n")
		}
	case StatusRefused:
		tag = "【却下 / Refused】"
		fmt.Fprintf(&b, "次のメールの送信は %s により却下されました。社外には送信されず、保管されたファイルは破棄されます。\n", by)
		fmt.Fprintf(&b, "Sending this message was refused by %s. Nothing was sent outside the company and the stored files are destroyed.\n", by)
	case StatusExpired:
		tag = "【期限切れ / Expired】"
		fmt.Fprintf(&b, "次のメールは期限 (%s) までに承認されなかったため、送信されずに破棄されました。必要であれば送り直してください。\n", s.when(h.ApprovalExpiresAt))
		fmt.Fprintf(&b, "This message was not approved in time (by %s); it was destroyed unsent. Send it again if it is still needed.\n", s.when(h.ApprovalExpiresAt))
	case StatusCancelled:
		tag = "【取消し / Cancelled】"
		b.WriteString("次のメールの送信を取り消しました。社外には送信されず、保管されたファイルは破棄されます。\n")
		b.WriteString("This message was cancelled. Nothing was sent outside the company and the stored files are destroyed.\n")
	}
	if reason != "" && (what == StatusRefused || what == "granted") {
		fmt.Fprintf(&b, "\n理由・コメント / Reason: %s\n", reason)
	}
	b.WriteString("\n")
	writeSummary(&b, s, h.Contract, h.Sender, h.Subject, h.ReceivedAt, h.Recipients, h.Files)
	return mailText{subject: tag + h.Subject, text: b.String()}
}
