package portal

import (
	"fmt"
	"net/http"

	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/store"
)

// downloadReceipt mails the sender, in the download's transaction, when a
// recipient downloads for the first time (transfer.download_receipt). It
// goes only to an address that may get system notices (an internal one,
// or an account's): relayed mail may carry any envelope sender.
func (s *Server) downloadReceipt(r *http.Request, tx *store.Tx, l *link, f file) error {
	if !s.Config.Transfer.DownloadReceipt || s.Notify == nil || l.Sender == "" {
		return nil
	}
	if !s.Config.IsInternal(l.Sender) {
		var n int
		if err := tx.QueryRowContext(r.Context(), `SELECT COUNT(*) FROM accounts WHERE email = ? AND status = 'active'`, l.Sender).Scan(&n); err != nil || n == 0 {
			return nil
		}
	}
	now := s.Now().In(s.loc).Format("2006-01-02 15:04 MST")
	ip := s.clientIP(r)
	text := fmt.Sprintf(`%[1]s がファイルを初めてダウンロードしました。

件名: %[2]s
ファイル: %[3]s
日時: %[4]s
接続元: %[5]s

%[1]s downloaded a file for the first time.

Subject: %[2]s
File: %[3]s
When: %[4]s
From address: %[5]s

心当たりのない相手やアドレスからのダウンロードであれば、すぐに取り消してください:
If you do not expect this recipient or address, revoke the transfer at once:
%[6]s
`, l.Address, l.Subject, f.Name, now, ip, s.Config.PublicURL+"/transfers/"+l.TransferID)
	return s.Notify(r.Context(), tx, gateway.Notice{To: []string{l.Sender},
		Subject: "【受領 / Downloaded】" + l.Subject + " — " + l.Address, Text: text, MessageID: l.MessageID})
}
