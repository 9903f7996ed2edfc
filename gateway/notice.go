package gateway

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"

	"github.com/sealgate/sealgate/gateway/mimeseal"
)

// Notices are the texts that replace attachments and carry passphrases.
// They are bilingual (Japanese first, then English), plain text, quoted-
// printable, and carry nothing but what the recipient needs: the link
// notice has no passphrase, the key notice has no link.

type fileInfo struct {
	Index        int
	Name         string
	Size         int64
	SHA256       string
	ContentType  string
	CipherSHA256 string
}

type linkNotice struct {
	Link    string
	Expires time.Time
	File    fileInfo
	Loc     *time.Location
	// Registered is the fingerprint of the public key the recipient
	// registered, when their key.age is encrypted to it ("" otherwise).
	Registered string
	// Sealed is the placeholder's description of the sealed part: a text
	// part sealed whole for a file it hides gets a notice that says so.
	Sealed mimeseal.Attachment
}

// hiddenReason explains why a text part was sealed whole (mimeseal's
// Attachment.Reason), in Japanese ("…ため") and English ("because it …");
// false for anything else.
func hiddenReason(a mimeseal.Attachment) (why [2]string, ok bool) {
	if !a.Whole || !strings.HasPrefix(a.ContentType, "text/") {
		return why, false
	}
	format := ""
	switch a.Reason {
	case "uuencode", "btoa":
		format = a.Reason
	case "binhex":
		format = "BinHex"
	case "yenc":
		format = "yEnc"
	}
	if format != "" {
		return [2]string{format + " 形式で埋め込まれたファイルを含んでいた", "carried a file embedded as " + format}, true
	}
	switch a.Reason {
	case "pgp":
		return [2]string{"PGP 形式のデータを含んでいた", "carried PGP-armoured data"}, true
	case "data-uri":
		return [2]string{"HTML に埋め込まれたファイル (data: URI) を含んでいた", "carried a file embedded in its HTML (a data: URI)"}, true
	case "html-object":
		return [2]string{"HTML に埋め込まれたオブジェクト (object、embed、applet、srcdoc) を含んでいた", "carried an object embedded in its HTML (object, embed, applet or srcdoc)"}, true
	case "charset":
		return [2]string{"内容を検査できない文字コード (UTF-16 など) で書かれていた", "is written in a character set whose content cannot be inspected (such as UTF-16)"}, true
	case "large-text":
		return [2]string{"埋め込まれたファイルの有無を検査できない大きさだった", "is too large to be inspected for embedded files"}, true
	case "unparseable":
		return [2]string{"確実には読み取れない符号化で書かれていた", "is encoded in a way that cannot be read with certainty"}, true
	}
	return why, false
}

// writeLinkNotice writes the MIME entity that stands where a sealed
// attachment was: header fields, blank line, body.
func writeLinkNotice(w io.Writer, n linkNotice) error {
	var b strings.Builder
	exp := n.Expires.In(n.Loc)
	name := n.File.Name
	why, hidden := hiddenReason(n.Sealed)
	// A text part sealed whole: the notice stands where the text was.
	if hidden {
		fmt.Fprintf(&b, "■ 本文の一部は暗号化して保管されました (sealgate)\r\n")
		fmt.Fprintf(&b, "このメールの本文の一部は、%sため、その部分を丸ごと暗号化して保管しました。ダウンロードした .eml ファイルはメールソフトで開けます。\r\n", why[0])
	} else {
		fmt.Fprintf(&b, "■ 添付ファイルは暗号化して保管されました (sealgate)\r\n")
		fmt.Fprintf(&b, "このメールに添付されていたファイルは、情報漏えいを防ぐため暗号化して保管されました。\r\n")
	}
	if n.Registered != "" {
		fmt.Fprintf(&b, "鍵ファイル (key.age) はあなたが登録した公開鍵 (%s) で暗号化されています。下記のリンクから key.age と file.age をダウンロードし、対応する秘密鍵で復号してください:\r\n", n.Registered)
		fmt.Fprintf(&b, "  age -d -i <秘密鍵ファイル> key.age > t.key\r\n  age -d -i t.key file.age > file\r\n")
	} else {
		fmt.Fprintf(&b, "下記のリンクを開き、別のメールでお送りするパスフレーズを入力してダウンロードしてください。\r\n")
	}
	fmt.Fprintf(&b, "\r\n")
	if hidden {
		fmt.Fprintf(&b, "■ Part of the message text was encrypted and stored (sealgate)\r\n")
		fmt.Fprintf(&b, "Part of the text of this message was encrypted and stored, that part as a whole, because it %s. The downloaded .eml file opens in a mail program.\r\n", why[1])
	} else {
		fmt.Fprintf(&b, "■ The attachment was encrypted and stored (sealgate)\r\n")
		fmt.Fprintf(&b, "The file attached to this message was encrypted and stored to protect it.\r\n")
	}
	if n.Registered != "" {
		fmt.Fprintf(&b, "Its key file (key.age) is encrypted to the public key you registered (%s). Download key.age and file.age from the link below and decrypt them with your private key:\r\n", n.Registered)
		fmt.Fprintf(&b, "  age -d -i <your identity file> key.age > t.key\r\n  age -d -i t.key file.age > file\r\n")
	} else {
		fmt.Fprintf(&b, "Open the link below and enter the passphrase sent in a separate e-mail to download it.\r\n")
	}
	fmt.Fprintf(&b, "\r\n")
	fmt.Fprintf(&b, "ファイル名 / File name: %s\r\n", name)
	if ext := mimeseal.FinalExtension(name); ext != "" {
		fmt.Fprintf(&b, "種類 / Type: %s (%s)\r\n", ext, n.File.ContentType)
	}
	fmt.Fprintf(&b, "サイズ / Size: %s\r\n", humanSize(n.File.Size))
	fmt.Fprintf(&b, "SHA-256: %s\r\n", n.File.SHA256)
	fmt.Fprintf(&b, "有効期限 / Expires: %s\r\n", exp.Format("2006-01-02 15:04 MST (-07:00)"))
	fmt.Fprintf(&b, "\r\n")
	fmt.Fprintf(&b, "ダウンロード / Download:\r\n")
	fmt.Fprintf(&b, "%s\r\n", n.Link)
	fmt.Fprintf(&b, "\r\n")
	fmt.Fprintf(&b, "このリンクはあなた専用です。転送しないでください。\r\n")
	fmt.Fprintf(&b, "This link is for you alone; please do not forward it.\r\n")

	var hdr strings.Builder
	hdr.WriteString("Content-Type: text/plain; charset=UTF-8\r\n")
	hdr.WriteString("Content-Transfer-Encoding: quoted-printable\r\n")
	hdr.WriteString("Content-Disposition: inline\r\n")
	fmt.Fprintf(&hdr, "X-Sealgate-Sealed: %d\r\n\r\n", n.File.Index)
	if _, err := io.WriteString(w, hdr.String()); err != nil {
		return err
	}
	return writeQP(w, b.String())
}

type keyNotice struct {
	From        string // raw From header value of the original
	To          string
	Subject     string // decoded original subject
	Sent        time.Time
	Sender      string // decoded From for the text
	MessageID   string // Message-ID of the original, for References
	Passphrase  string
	Files       []fileInfo
	Hostname    string
	NoticeID    string
	Loc         *time.Location
	Date        time.Time
	MailboxOnly bool
	// Registered is the fingerprint of the recipient's registered public
	// key: the notice then says the files are encrypted to it and carries
	// no passphrase (there is none).
	Registered     string
	RegisteredKind string
	// HandOverTo is set under key delivery "manual": the notice goes to
	// the sender, who passes the passphrase to this recipient by another
	// channel (telephone, in person).
	HandOverTo string
}

// writeKeyNotice writes the separate mail that carries the passphrase. It
// names the message it belongs to and contains no link.
func writeKeyNotice(w io.Writer, n keyNotice) error {
	if n.Registered != "" {
		return writeRegisteredKeyNotice(w, n)
	}
	if n.HandOverTo != "" {
		return writeHandOverKeyNotice(w, n)
	}
	var b strings.Builder
	sent := n.Sent.In(n.Loc).Format("2006-01-02 15:04 MST")
	fmt.Fprintf(&b, "■ パスフレーズのお知らせ (sealgate)\r\n")
	fmt.Fprintf(&b, "%s に %s から送信されたメール「%s」の添付ファイルを開くためのパスフレーズです。\r\n", sent, n.Sender, n.Subject)
	fmt.Fprintf(&b, "ダウンロードページでこのパスフレーズを入力してください。\r\n")
	fmt.Fprintf(&b, "\r\n")
	fmt.Fprintf(&b, "■ Your passphrase (sealgate)\r\n")
	fmt.Fprintf(&b, "This is the passphrase for the attachments of the message \"%s\" sent by %s on %s.\r\n", n.Subject, n.Sender, sent)
	fmt.Fprintf(&b, "Enter it on the download page.\r\n")
	fmt.Fprintf(&b, "\r\n")
	fmt.Fprintf(&b, "パスフレーズ: %s\r\n", n.Passphrase)
	fmt.Fprintf(&b, "Passphrase: %s\r\n", n.Passphrase)
	fmt.Fprintf(&b, "\r\n")
	writeFileList(&b, n.Files)
	fmt.Fprintf(&b, "age コマンドで復号する場合は、ハイフンを含めて表示のとおりに入力してください:\r\n")
	fmt.Fprintf(&b, "To decrypt with the age command, type it exactly as shown, hyphens included:\r\n")
	fmt.Fprintf(&b, "  age -d -i key.age file.age > file\r\n")
	fmt.Fprintf(&b, "\r\n")
	fmt.Fprintf(&b, "このメールはダウンロードのお知らせとは別にお送りしています。両方を同じ相手に転送しないでください。\r\n")
	fmt.Fprintf(&b, "This mail is sent separately from the download notice. Never forward both to anyone.\r\n")

	return writeKeyNoticeMail(w, n, "【パスフレーズ / Passphrase】", b.String())
}

// writeFileList lists the files a key notice is for.
func writeFileList(b *strings.Builder, files []fileInfo) {
	if len(files) == 0 {
		return
	}
	fmt.Fprintf(b, "対象ファイル / Files:\r\n")
	for _, f := range files {
		fmt.Fprintf(b, "  - %s (%s)\r\n", f.Name, humanSize(f.Size))
	}
	fmt.Fprintf(b, "\r\n")
}

// writeHandOverKeyNotice is the key notice under key delivery "manual":
// it goes to the sender, names the recipient, and asks for the passphrase
// to be passed on by another channel, never by mail.
func writeHandOverKeyNotice(w io.Writer, n keyNotice) error {
	var b strings.Builder
	sent := n.Sent.In(n.Loc).Format("2006-01-02 15:04 MST")
	fmt.Fprintf(&b, "■ 受信者に伝えるパスフレーズ (sealgate)\r\n")
	fmt.Fprintf(&b, "%s に送信したメール「%s」の添付ファイルを %s が開くためのパスフレーズです。\r\n", sent, n.Subject, n.HandOverTo)
	fmt.Fprintf(&b, "この契約ではパスフレーズをメールで送りません。電話や対面など、メール以外の方法で本人に伝えてください。\r\n")
	fmt.Fprintf(&b, "\r\n")
	fmt.Fprintf(&b, "■ A passphrase for you to hand over (sealgate)\r\n")
	fmt.Fprintf(&b, "This is the passphrase %s needs to open the attachments of the message \"%s\" you sent on %s.\r\n", n.HandOverTo, n.Subject, sent)
	fmt.Fprintf(&b, "Under this contract passphrases are not mailed: give it to the recipient by another channel (telephone, in person).\r\n")
	fmt.Fprintf(&b, "\r\n")
	fmt.Fprintf(&b, "受信者 / Recipient: %s\r\n", n.HandOverTo)
	fmt.Fprintf(&b, "パスフレーズ: %s\r\n", n.Passphrase)
	fmt.Fprintf(&b, "Passphrase: %s\r\n", n.Passphrase)
	fmt.Fprintf(&b, "\r\n")
	writeFileList(&b, n.Files)
	fmt.Fprintf(&b, "このメールを受信者に転送しないでください。\r\n")
	fmt.Fprintf(&b, "Do not forward this mail to the recipient.\r\n")
	return writeKeyNoticeMail(w, n, "【パスフレーズの手渡し / Passphrase to hand over】", b.String())
}

// writeRegisteredKeyNotice is the key notice of a recipient whose key.age
// is encrypted to the public key they registered: it says so, with the
// key's fingerprint, and carries no passphrase.
func writeRegisteredKeyNotice(w io.Writer, n keyNotice) error {
	var b strings.Builder
	sent := n.Sent.In(n.Loc).Format("2006-01-02 15:04 MST")
	fmt.Fprintf(&b, "■ 登録済みの公開鍵で暗号化しました (sealgate)\r\n")
	fmt.Fprintf(&b, "%s に %s から送信されたメール「%s」の添付ファイルの鍵ファイル (key.age) は、あなたが登録した公開鍵で暗号化されています。パスフレーズはありません。\r\n", sent, n.Sender, n.Subject)
	fmt.Fprintf(&b, "ダウンロードのお知らせのリンクから key.age と file.age を取得し、対応する秘密鍵で復号してください。\r\n")
	fmt.Fprintf(&b, "\r\n")
	fmt.Fprintf(&b, "■ Encrypted to your registered public key (sealgate)\r\n")
	fmt.Fprintf(&b, "The key file (key.age) of the attachments of the message \"%s\" sent by %s on %s is encrypted to the public key you registered. There is no passphrase.\r\n", n.Subject, n.Sender, sent)
	fmt.Fprintf(&b, "Get key.age and file.age from the link in the download notice and decrypt them with your private key.\r\n")
	fmt.Fprintf(&b, "\r\n")
	fmt.Fprintf(&b, "公開鍵 / Public key: %s %s\r\n", n.RegisteredKind, n.Registered)
	fmt.Fprintf(&b, "\r\n")
	writeFileList(&b, n.Files)
	fmt.Fprintf(&b, "  age -d -i <秘密鍵ファイル / your identity file> key.age > t.key\r\n")
	fmt.Fprintf(&b, "  age -d -i t.key file.age > file\r\n")
	fmt.Fprintf(&b, "\r\n")
	fmt.Fprintf(&b, "この鍵に心当たりがない場合は、送信者に連絡してください。\r\n")
	fmt.Fprintf(&b, "If you do not recognise this key, contact the sender.\r\n")
	return writeKeyNoticeMail(w, n, "【登録済みの鍵で暗号化 / Encrypted to your key】", b.String())
}

// writeKeyNoticeMail writes the header of a key notice and its body.
func writeKeyNoticeMail(w io.Writer, n keyNotice, tag, body string) error {
	var hdr strings.Builder
	from := n.From
	if from == "" {
		from = "<" + n.Sender + ">"
	}
	fmt.Fprintf(&hdr, "From: %s\r\n", from)
	fmt.Fprintf(&hdr, "To: <%s>\r\n", n.To)
	fmt.Fprintf(&hdr, "Subject: %s\r\n", mime.BEncoding.Encode("UTF-8", tag+n.Subject))
	fmt.Fprintf(&hdr, "Date: %s\r\n", n.Date.Format(time.RFC1123Z))
	fmt.Fprintf(&hdr, "Message-ID: <%s@%s>\r\n", n.NoticeID, n.Hostname)
	if id := strings.TrimSpace(n.MessageID); id != "" && validMessageID(id) {
		fmt.Fprintf(&hdr, "References: %s\r\n", id)
	}
	hdr.WriteString("MIME-Version: 1.0\r\n")
	hdr.WriteString("Content-Type: text/plain; charset=UTF-8\r\n")
	hdr.WriteString("Content-Transfer-Encoding: quoted-printable\r\n")
	hdr.WriteString("Auto-Submitted: auto-generated\r\n")
	hdr.WriteString("X-Sealgate-Notice: key\r\n\r\n")
	if _, err := io.WriteString(w, hdr.String()); err != nil {
		return err
	}
	return writeQP(w, body)
}

type bounceNotice struct {
	To         string // the original sender
	From       string // postmaster address
	Hostname   string
	NoticeID   string
	Date       time.Time
	Arrival    time.Time
	Recipients []string
	Status     string // e.g. 5.1.1
	Diagnostic string // remote reply
	Subject    string
	MessageID  string
	What       string // "the message" / "the key notice"
	Loc        *time.Location
}

// writeBounce writes a delivery status notification (RFC 3464).
func writeBounce(w io.Writer, n bounceNotice) error {
	boundary := "sealgate-dsn-" + n.NoticeID
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Mail Delivery System <%s>\r\n", n.From)
	fmt.Fprintf(&b, "To: <%s>\r\n", n.To)
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.BEncoding.Encode("UTF-8", "配信できませんでした / Undelivered mail: "+n.Subject))
	fmt.Fprintf(&b, "Date: %s\r\n", n.Date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", n.NoticeID, n.Hostname)
	b.WriteString("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=delivery-status; boundary=\"%s\"\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", boundary)
	var t strings.Builder
	rcpts := strings.Join(n.Recipients, ", ")
	fmt.Fprintf(&t, "%s 宛の%sを配信できませんでした。宛先アドレスを確認してください。\r\n", rcpts, jaWhat(n.What))
	fmt.Fprintf(&t, "%s to %s could not be delivered. Please check the address.\r\n\r\n", capitalize(n.What), rcpts)
	fmt.Fprintf(&t, "件名 / Subject: %s\r\n", n.Subject)
	fmt.Fprintf(&t, "受付日時 / Received: %s\r\n", n.Arrival.In(n.Loc).Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&t, "相手サーバの応答 / Remote server said: %s\r\n", n.Diagnostic)
	if err := writeQP(&b, t.String()); err != nil {
		return err
	}
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary)
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\r\nArrival-Date: %s\r\n\r\n", n.Hostname, n.Arrival.Format(time.RFC1123Z))
	for i, r := range n.Recipients {
		if i > 0 {
			b.WriteString("\r\n")
		}
		fmt.Fprintf(&b, "Final-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n", r, n.Status)
		fmt.Fprintf(&b, "Diagnostic-Code: smtp; %s\r\n", oneLine(n.Diagnostic))
	}
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary)
	if n.MessageID != "" && validMessageID(n.MessageID) {
		fmt.Fprintf(&b, "Message-ID: %s\r\n", n.MessageID)
	}
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.BEncoding.Encode("UTF-8", n.Subject))
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	_, err := w.Write(b.Bytes())
	return err
}

func jaWhat(what string) string {
	if strings.Contains(what, "key") {
		return "パスフレーズのお知らせ"
	}
	return "メール"
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 900 {
		s = s[:900]
	}
	return s
}

func validMessageID(id string) bool {
	return strings.HasPrefix(id, "<") && strings.HasSuffix(id, ">") && len(id) < 998 && !strings.ContainsAny(id, "\r\n")
}

func writeQP(w io.Writer, text string) error {
	qw := quotedprintable.NewWriter(w)
	if _, err := io.WriteString(qw, text); err != nil {
		return err
	}
	return qw.Close()
}

func humanSize(n int64) string {
	s := fmt.Sprintf("%d bytes", n)
	switch {
	case n >= 1<<30:
		s += fmt.Sprintf(" (%.1f GiB)", float64(n)/(1<<30))
	case n >= 1<<20:
		s += fmt.Sprintf(" (%.1f MiB)", float64(n)/(1<<20))
	case n >= 1<<10:
		s += fmt.Sprintf(" (%.1f KiB)", float64(n)/(1<<10))
	}
	return s
}
