package audit

// Clause is the part of the confidentiality agreement an event gives
// evidence for; exports are laid out by clause.
type Clause int

// Clauses, in the order exports show them.
const (
	ClauseReceived    Clause = iota // 受領/作成: received or created
	ClauseDistributed               // 配布: distributed, to whom, and their use of it
	ClauseTakenOut                  // 持出し: taken out, with the manager's approval
	ClauseDestroyed                 // 返却/破棄: returned, revoked, expired, destroyed
	ClauseAccess                    // アクセス/アカウント: logins, accounts, reviews
	ClauseAdmin                     // 管理: contracts and the ledger itself
	numClauses
)

// Clauses returns every clause in display order.
func Clauses() []Clause {
	cs := make([]Clause, numClauses)
	for i := range cs {
		cs[i] = Clause(i)
	}
	return cs
}

// Labels returns the clause's Japanese and English headings.
func (c Clause) Labels() (ja, en string) {
	switch c {
	case ClauseReceived:
		return "受領・作成", "Received / created"
	case ClauseDistributed:
		return "配布", "Distributed"
	case ClauseTakenOut:
		return "持出し（承認）", "Taken out (approvals)"
	case ClauseDestroyed:
		return "返却・破棄", "Returned / destroyed"
	case ClauseAccess:
		return "アクセス・アカウント", "Access and accounts"
	case ClauseAdmin:
		return "契約・記録の管理", "Contracts and ledger"
	}
	return "不明", "Unknown"
}

// Types returns the event types of the clause.
func (c Clause) Types() []string {
	var ts []string
	for _, t := range allTypes() {
		if ClauseOf(t) == c {
			ts = append(ts, t)
		}
	}
	return ts
}

// AllTypes returns every event type, in the order of the Type* constants.
func AllTypes() []string { return allTypes() }

func allTypes() []string {
	return []string{
		TypeMessageReceived, TypeMessageRefused, TypeFileSealed, TypeFileReceived, TypeNoticeQueued,
		TypeNoticeDelivered, TypeKeyNoticeDelivered, TypePlainDelivered,
		TypeDeliveryDeferred, TypeDeliveryFailed, TypeBounceSent, TypePageViewed,
		TypePassphraseFailed, TypeLinkLocked, TypeFileDownloaded, TypeTransferRevoked,
		TypeRecipientRevoked, TypeExpiryExtended, TypeTransferExpired,
		TypeApprovalRequested, TypeApprovalGranted, TypeApprovalRefused, TypeLogin,
		TypeLogout, TypeLoginFailed, TypeAccountCreated, TypeAccountChanged,
		TypeAccountDisabled, TypeAccountEnabled, TypeContractCreated,
		TypeContractChanged, TypeContractEnded, TypeKeyDestroyed, TypeObjectDeleted,
		TypeObjectAbsent, TypeCheckpointSigned, TypeExportMade, TypeReviewDone,
		TypeCertificateIssued, TypeApprovalExpired, TypeMessageHeld, TypeMessageReleased,
		TypeMessageCancelled, TypePubKeyRequested, TypePubKeyRegistered, TypeKeyRotated,
		TypeDestructionNoted, TypePolicyChanged, TypePolicyShadow, TypeFileDecrypted,
	}
}

// KnownType reports whether t is one of the Type* constants.
func KnownType(t string) bool {
	ja, _ := TypeLabels(t)
	return ja != ""
}

// ClauseOf returns the clause an event type belongs to.
func ClauseOf(t string) Clause {
	switch t {
	case TypeMessageReceived, TypeMessageRefused, TypeFileSealed, TypeFileReceived:
		return ClauseReceived
	case TypeNoticeQueued, TypeNoticeDelivered, TypeKeyNoticeDelivered, TypePlainDelivered,
		TypeDeliveryDeferred, TypeDeliveryFailed, TypeBounceSent, TypePageViewed,
		TypePassphraseFailed, TypeLinkLocked, TypeFileDownloaded, TypeFileDecrypted, TypeExpiryExtended,
		TypePubKeyRequested, TypePubKeyRegistered:
		return ClauseDistributed
	case TypeApprovalRequested, TypeApprovalGranted, TypeApprovalRefused, TypeApprovalExpired,
		TypeMessageHeld, TypeMessageReleased, TypeMessageCancelled:
		return ClauseTakenOut
	case TypeTransferRevoked, TypeRecipientRevoked, TypeTransferExpired, TypeKeyDestroyed,
		TypeObjectDeleted, TypeObjectAbsent, TypeContractEnded, TypeCertificateIssued, TypeKeyRotated,
		TypeDestructionNoted:
		return ClauseDestroyed
	case TypeLogin, TypeLogout, TypeLoginFailed, TypeAccountCreated, TypeAccountChanged,
		TypeAccountDisabled, TypeAccountEnabled, TypeReviewDone:
		return ClauseAccess
	}
	return ClauseAdmin
}

// TypeLabels returns the Japanese and English labels of an event type, or
// two empty strings for an unknown type.
func TypeLabels(t string) (ja, en string) {
	switch t {
	case TypeMessageReceived:
		return "メール受信", "Message received"
	case TypeMessageRefused:
		return "メール拒否", "Message refused"
	case TypeFileSealed:
		return "ファイル暗号化・保管", "File sealed"
	case TypeFileReceived:
		return "受領ファイル（受信）", "File received (inbound)"
	case TypeNoticeQueued:
		return "通知の送信待ち", "Notice queued"
	case TypeNoticeDelivered:
		return "ダウンロード通知の配信", "Download notice delivered"
	case TypeKeyNoticeDelivered:
		return "鍵通知の配信", "Key notice delivered"
	case TypePlainDelivered:
		return "社内宛て配信（無変更）", "Delivered unchanged (internal)"
	case TypeDeliveryDeferred:
		return "配信保留（再試行）", "Delivery deferred"
	case TypeDeliveryFailed:
		return "配信失敗", "Delivery failed"
	case TypeBounceSent:
		return "不達通知の送信", "Bounce sent"
	case TypePageViewed:
		return "ダウンロードページ閲覧", "Download page viewed"
	case TypePassphraseFailed:
		return "パスフレーズ誤り", "Wrong passphrase"
	case TypeLinkLocked:
		return "リンクのロック", "Link locked"
	case TypeFileDownloaded:
		return "ファイルのダウンロード", "File downloaded"
	case TypeFileDecrypted:
		return "ブラウザでの復号（受信者のページの報告）", "Decrypted in the browser (reported by the recipient's page)"
	case TypeTransferRevoked:
		return "送付の取消し", "Transfer revoked"
	case TypeRecipientRevoked:
		return "受信者の取消し", "Recipient revoked"
	case TypeExpiryExtended:
		return "有効期限の延長", "Expiry extended"
	case TypeTransferExpired:
		return "期限切れによる削除", "Transfer expired"
	case TypeApprovalRequested:
		return "持出し承認の申請", "Approval requested"
	case TypeApprovalGranted:
		return "持出しの承認", "Approval granted"
	case TypeApprovalRefused:
		return "持出しの却下", "Approval refused"
	case TypeLogin:
		return "ログイン", "Login"
	case TypeLogout:
		return "ログアウト", "Logout"
	case TypeLoginFailed:
		return "ログイン失敗", "Login failed"
	case TypeAccountCreated:
		return "アカウント作成", "Account created"
	case TypeAccountChanged:
		return "アカウント変更", "Account changed"
	case TypeAccountDisabled:
		return "アカウント無効化", "Account disabled"
	case TypeAccountEnabled:
		return "アカウント有効化", "Account enabled"
	case TypeContractCreated:
		return "契約の登録", "Contract created"
	case TypeContractChanged:
		return "契約の変更", "Contract changed"
	case TypeContractEnded:
		return "契約の終了", "Contract ended"
	case TypeKeyDestroyed:
		return "鍵の消去（暗号学的消去）", "Key destroyed (crypto-shredding)"
	case TypeObjectDeleted:
		return "保管ファイルの削除", "Object deleted"
	case TypeObjectAbsent:
		return "削除の確認", "Object confirmed absent"
	case TypeCheckpointSigned:
		return "チェックポイント署名", "Checkpoint signed"
	case TypeExportMade:
		return "記録の出力", "Ledger exported"
	case TypeReviewDone:
		return "アクセスレビュー実施", "Access review done"
	case TypeCertificateIssued:
		return "破棄証明書の発行", "Destruction certificate issued"
	case TypeApprovalExpired:
		return "持出し承認の期限切れ", "Approval expired"
	case TypeMessageHeld:
		return "送信の保留", "Message held"
	case TypeMessageReleased:
		return "保留の解除（送信）", "Held message released"
	case TypeMessageCancelled:
		return "送信者による送信取消し", "Message cancelled by the sender"
	case TypePubKeyRequested:
		return "公開鍵登録の申請", "Public key registration requested"
	case TypePubKeyRegistered:
		return "公開鍵の登録", "Public key registered"
	case TypeKeyRotated:
		return "マスター鍵の更新（旧鍵の消去）", "Master key rotated (old key erased)"
	case TypeDestructionNoted:
		return "削除手順の例外", "Destruction step noted"
	case TypePolicyChanged:
		return "ポリシーの変更", "Policy changed"
	case TypePolicyShadow:
		return "候補ポリシーの試行（実施なし）", "Candidate policy evaluated (not acted on)"
	}
	return "", ""
}
