package gateway

import (
	"context"
	"errors"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/notice"
	"github.com/sealgate/sealgate/storage"
)

// tempError marks an error as transient: the sender's MTA should retry.
type tempError struct{ err error }

func (e *tempError) Error() string { return e.err.Error() }
func (e *tempError) Unwrap() error { return e.err }

func temporary(err error) error {
	if err == nil {
		return nil
	}
	return &tempError{err}
}

// rejectError is a refusal decided by policy, with the reply to give and
// the reason counted in the metrics (metrics.ReasonContract or
// metrics.ReasonSender).
type rejectError struct {
	reply  *smtp.SMTPError
	reason string
}

func (e *rejectError) Error() string { return e.reply.Message }

// reject refuses a message for its contract routing (route.go).
func reject(code int, enh smtp.EnhancedCode, ja, en string) error {
	return rejection(metrics.ReasonContract, code, enh, ja, en)
}

// rejectSender refuses a message for its sender (the From header).
func rejectSender(code int, enh smtp.EnhancedCode, ja, en string) error {
	return rejection(metrics.ReasonSender, code, enh, ja, en)
}

// rejection is a refusal counted under reason, with a reply in Japanese and English.
func rejection(reason string, code int, enh smtp.EnhancedCode, ja, en string) error {
	return &rejectError{reply: &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: ja + "\n" + en}, reason: reason}
}

var (
	replyTemporary = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "一時的な障害のため受け付けできませんでした。しばらくして再送されます。\nTemporary failure, message not accepted; please try again later"}
	// replyAuthUncounted refuses an AUTH when the failures of the
	// address and the account cannot be counted (the shared counters'
	// database is down): guessing is never let through uncounted.
	replyAuthUncounted = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "一時的な障害のため、いまはログインを受け付けられません。しばらくしてから再試行してください。\nTemporary failure: authentication cannot be accepted now; try again later"}
	replyScanUnavailable = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "ウイルス検査を完了できなかったため、いまは受け付けできませんでした。しばらくして再送されます。\nThe malware scan could not be completed; message not accepted now, please try again later"}
	replyMalformed = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "メッセージの形式を解析できないため送信しませんでした。添付ファイルを付け直して再送してください。\nMessage could not be parsed and was not sent; re-attach the files and send again"}
	replyLimit = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "メッセージの構造が制限(入れ子の深さ・パート数・ヘッダの大きさ)を超えたため送信しませんでした。\nMessage structure exceeds the gateway's limits (nesting, parts or header size) and was not sent"}
	replyTooBrokenToSeal = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "メッセージの構造を解析できず、全体を封印できる大きさ (limits.max_whole_seal) を超えているため送信しませんでした。メールソフトで作成し直して再送してください。\n" +
			"The message's structure cannot be parsed and it is larger than a message sealed whole may be (limits.max_whole_seal); it was not sent. Create it again in the mail client and send it again"}
	replyTooLarge = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: "メッセージが大きすぎます。サイズ上限を超えたため送信しませんでした。\nMessage too large; it exceeds the size limit and was not sent"}
	replyLineTooLong = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "1 行が長すぎる (2000 バイト超) ため送信しませんでした。メールソフトの設定を確認するか、ファイルを添付し直して再送してください。\nA line of the message is too long (over 2000 bytes) and the message was not sent; check the mail client or re-attach the files and send again"}
	replyRelayDenied = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "このネットワークからの中継は許可されていません（信頼されたネットワーク外で、STARTTLS で信頼されたクライアント証明書も提示されていません）。\n" +
			"Relay access denied: this client is not on a trusted network and presented no trusted client certificate after STARTTLS"}
	replySenderNotInternal = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "送信者アドレスが社内のドメインではないため中継しません。\nRelay access denied: the envelope sender is not an address of an internal domain"}
	replyNullSenderByCert = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "証明書で信頼された接続からは空の送信者（<>）のメールを中継しません。\nRelay access denied: no null sender (<>) from a client trusted by certificate"}
	errHeaderFromNotInternal = rejectSender(550, smtp.EnhancedCode{5, 7, 1},
		"From ヘッダのアドレスが社内のドメインではないため送信しませんでした。",
		"From header rejected: a client trusted by certificate may only send from addresses of internal domains; the message was not sent")
)

// Replies to an address refused at MAIL or RCPT (package address says
// why). Routing syntax and domains that are not host names get 550 (the
// address is refused by policy, not misspelt), other syntax errors 553,
// and a non-ASCII local part 553 5.6.7 (RFC 6531: sealgate does not offer
// SMTPUTF8).
var (
	replyRcptRouting = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
		Message: "宛先アドレスに経路指定（%、!、二つ目の @、ソースルート）が含まれているため受け付けません。宛先を確認してください。\n" +
			"Recipient address refused: it carries routing syntax (%, !, a second @ or a source route); check the recipient"}
	replyRcptDomain = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
		Message: "宛先のドメインが正しいホスト名ではないため受け付けません。宛先を確認してください。\n" +
			"Recipient address refused: its domain is not a valid host name; check the recipient"}
	replyRcptSyntax = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
		Message: "宛先アドレスの形式が正しくありません。\nRecipient address is not valid"}
	replyRcptUTF8 = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
		Message: "ASCII 以外の文字を含むローカル部（@ の前）の宛先には送信できません。\n" +
			"Recipient refused: addresses with non-ASCII characters before the @ are not supported"}
	replyFromRouting = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 7},
		Message: "送信者アドレスに経路指定（%、!、二つ目の @、ソースルート）が含まれているため受け付けません。\n" +
			"Sender address refused: it carries routing syntax (%, !, a second @ or a source route)"}
	replyFromDomain = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 7},
		Message: "送信者アドレスのドメインが正しいホスト名ではないため受け付けません。\n" +
			"Sender address refused: its domain is not a valid host name"}
	replyFromSyntax = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7},
		Message: "送信者アドレスの形式が正しくありません。\nSender address is not valid"}
	replyFromUTF8 = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
		Message: "ASCII 以外の文字を含むローカル部（@ の前）の送信者アドレスは使用できません。\n" +
			"Sender refused: addresses with non-ASCII characters before the @ are not supported"}
)

// errRoutingRecipient fails, at delivery, a queued recipient that does not
// parse (package address): queued by an older version, routing syntax
// included. It is the reason recorded and bounced to the sender.
var errRoutingRecipient = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
	Message: "宛先アドレスに経路指定が含まれているか形式が正しくないため配送しませんでした。\n" +
		"Recipient address carries routing syntax or is not valid; the message was not delivered to it"}

// addressReply is the reply to an address that address.Parse refused, as
// a recipient (rcpt) or as the envelope sender.
func addressReply(err error, rcpt bool) *smtp.SMTPError {
	switch {
	case errors.Is(err, address.ErrRouting) && rcpt:
		return replyRcptRouting
	case errors.Is(err, address.ErrRouting):
		return replyFromRouting
	case errors.Is(err, address.ErrDomain) && rcpt:
		return replyRcptDomain
	case errors.Is(err, address.ErrDomain):
		return replyFromDomain
	case errors.Is(err, address.ErrNonASCII) && rcpt:
		return replyRcptUTF8
	case errors.Is(err, address.ErrNonASCII):
		return replyFromUTF8
	case rcpt:
		return replyRcptSyntax
	}
	return replyFromSyntax
}

// policyReply is the reply to a message a policy rule refused: the rule's own reason, in
// Japanese and English, as the policy file states it (one line each).
func policyReply(r *mimeseal.Refusal) *smtp.SMTPError {
	ja, en := replyLine(r.Reason.JA), replyLine(r.Reason.EN)
	return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "ポリシーにより送信しませんでした: " + ja + "\nNot sent by policy: " + en}
}

// malwareReply is the reply to a message in which the scanner found malware.
func malwareReply(m *mimeseal.Malware) *smtp.SMTPError {
	sig := replyLine(m.Signature)
	return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "添付ファイルからマルウェア (" + sig + ") が検出されたため送信しませんでした。ファイルを確認してください。\n" +
			"Malware (" + sig + ") was found in the message, which was not sent; check the files"}
}

// replyLine makes s fit in one line of an SMTP reply: no control characters, at most 400
// bytes (a policy's reason, a signature name).
func replyLine(s string) string {
	s = notice.OneLine(s)
	if len(s) > 400 {
		s = strings.ToValidUTF8(s[:400], "")
	}
	return s
}

// smtpReply turns any error from receiving a message into the reply the
// client gets. It is the only place where that happens; session methods
// return its result, because go-smtp answers 451 to any error that is not
// an *smtp.SMTPError. The text is generic:
// it says what happened and what to do, and leaks no configuration; the
// detailed error goes to the log.
func smtpReply(err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	var rej *rejectError
	var me *mimeseal.Error
	var te *tempError
	var ref *mimeseal.Refusal
	var mal *mimeseal.Malware
	switch {
	case errors.As(err, &rej):
		return rej.reply
	case errors.As(err, &ref):
		return policyReply(ref)
	case errors.As(err, &mal):
		return malwareReply(mal)
	case errors.As(err, &me) && me.Kind == mimeseal.ScanFailed:
		// clamd unreachable, too slow, or over its stream limit: fail closed, the
		// sender's MTA retries (scan.on_unavailable = "hold" accepts and holds instead).
		return replyScanUnavailable
	case errors.Is(err, smtp.ErrDataTooLarge):
		return replyTooLarge
	case errors.Is(err, smtp.ErrTooLongLine):
		// go-smtp limits DATA lines to its MaxLineLength; the limit does
		// not go away on a retry, so the refusal is permanent (a 4xx would
		// make the sender's MTA retry for days). go-smtp closes the
		// connection after the reply: the rest of the line is never read
		// as commands.
		return replyLineTooLong
	case errors.Is(err, errTooLargeToSealWhole):
		return replyTooBrokenToSeal
	case errors.As(err, &me) && me.Kind == mimeseal.LimitExceeded:
		return replyLimit
	case errors.As(err, &me) && me.Kind == mimeseal.Malformed:
		return replyMalformed
	case errors.As(err, &se):
		return se
	case errors.As(err, &te), errors.Is(err, storage.ErrUnavailable), errors.Is(err, database.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), database.IsTransient(err):
		return replyTemporary
	}
	// Unknown errors are treated as transient: the sender's MTA keeps the
	// message and retries, which loses nothing.
	return replyTemporary
}

// refusalReason is the reason counted in the metrics for a message that
// err refused or deferred (smtpReply gives the reply); metrics.Other when
// none of the known causes applies.
func refusalReason(err error) string {
	var rej *rejectError
	var me *mimeseal.Error
	var ref *mimeseal.Refusal
	var mal *mimeseal.Malware
	switch {
	case errors.As(err, &rej):
		return rej.reason
	case errors.As(err, &ref):
		return metrics.ReasonPolicy
	case errors.As(err, &mal):
		return metrics.ReasonMalware
	case errors.As(err, &me) && me.Kind == mimeseal.ScanFailed:
		return metrics.ReasonScanUnavailable
	case errors.Is(err, smtp.ErrDataTooLarge), errors.Is(err, smtp.ErrTooLongLine), errors.Is(err, errTooLargeToSealWhole),
		errors.As(err, &me) && me.Kind == mimeseal.LimitExceeded:
		return metrics.ReasonLimit
	case errors.As(err, &me) && me.Kind == mimeseal.Malformed:
		return metrics.ReasonMalformed
	case smtpReply(err).Code < 500:
		return metrics.ReasonTransient
	}
	return metrics.Other
}
