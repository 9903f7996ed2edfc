package portal

import (
	"context"
	"fmt"
	"net/http"

	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/store"
)

// downloadReceipt mails the sender, in the download's transaction, when a
// recipient downloads for the first time (transfer.download_receipt). It
// goes only to an address that may get system notices (an internal one,
// or an account's): relayed mail may carry any envelope sender. A partial
// first download (p not nil) is told as such, with what was sent.
func (s *Server) downloadReceipt(ctx context.Context, r *http.Request, tx *store.Tx, l *link, f file, p *partialDownload) error {
	if !s.Config.Transfer.DownloadReceipt || s.Notify == nil || l.Sender == "" {
		return nil
	}
	if !s.Config.IsInternal(l.Sender) {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts WHERE email = ? AND status = 'active'`, l.Sender).Scan(&n); err != nil || n == 0 {
			return nil
		}
	}
	now := s.Now().In(s.loc).Format("2006-01-02 15:04 MST")
	ip := s.clientIP(r)
	subject := "【受領 / Downloaded】"
	didJA, didEN, partJA, partEN := "ファイルを初めてダウンロードしました", "downloaded a file for the first time", "", ""
	if p != nil {
		subject = "【一部受領 / Partly downloaded】"
		didJA, didEN = "ファイルの一部を初めてダウンロードしました", "downloaded part of a file for the first time"
		partJA = fmt.Sprintf("送信済み: %d / %d バイト（途中で接続が終了）\n", p.sent, f.Size)
		partEN = fmt.Sprintf("Sent: %d of %d bytes (the connection ended part-way)\n", p.sent, f.Size)
		if p.format == "age" {
			partJA = fmt.Sprintf("送信済み: 暗号化ファイル（file.age）の %d バイト（途中で接続が終了。復号できる内容: %d / %d バイト）\n", p.sent, p.plaintext, f.Size)
			partEN = fmt.Sprintf("Sent: %d bytes of the encrypted file.age (the connection ended part-way; decryptable: %d of %d bytes)\n", p.sent, p.plaintext, f.Size)
		}
	}
	text := fmt.Sprintf(`%[1]s が%[7]s。

件名: %[2]s
ファイル: %[3]s
%[9]s日時: %[4]s
接続元: %[5]s

%[1]s %[8]s.

Subject: %[2]s
File: %[3]s
%[10]sWhen: %[4]s
From address: %[5]s

心当たりのない相手やアドレスからのダウンロードであれば、すぐに取り消してください:
If you do not expect this recipient or address, revoke the transfer at once:
%[6]s
`, l.Address, l.Subject, f.Name, now, ip, s.Config.PublicURL+"/transfers/"+l.TransferID, didJA, didEN, partJA, partEN)
	return s.Notify(ctx, tx, gateway.Notice{To: []string{l.Sender},
		Subject: subject + l.Subject + " — " + l.Address, Text: text, MessageID: l.MessageID})
}
