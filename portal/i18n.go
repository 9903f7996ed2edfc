package portal

import (
	"net/http"
	"strings"
)

// Pages are in Japanese or English, chosen by ?lang=, then the lang cookie,
// then Accept-Language; Japanese is the default. Every page has a switch.

type lang string

const (
	langJA lang = "ja"
	langEN lang = "en"
)

func pickLang(w http.ResponseWriter, r *http.Request) lang {
	if q := r.URL.Query().Get("lang"); q == "ja" || q == "en" {
		http.SetCookie(w, &http.Cookie{Name: "lang", Value: q, Path: "/", MaxAge: 365 * 24 * 3600, SameSite: http.SameSiteLaxMode, HttpOnly: true})
		return lang(q)
	}
	if c, err := r.Cookie("lang"); err == nil && (c.Value == "ja" || c.Value == "en") {
		return lang(c.Value)
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		switch {
		case strings.HasPrefix(tag, "ja"):
			return langJA
		case strings.HasPrefix(tag, "en"):
			return langEN
		}
	}
	return langJA
}

// texts is the message catalog: key → [ja, en].
var texts = map[string][2]string{
	"title":            {"sealgate セキュアファイル受け渡し", "sealgate secure file exchange"},
	"switch":           {"English", "日本語"},
	"switch.lang":      {"en", "ja"},
	"link.heading":     {"暗号化されたファイルの受け取り", "Receive encrypted files"},
	"link.from":        {"送信者", "From"},
	"link.subject":     {"件名", "Subject"},
	"link.to":          {"宛先", "To"},
	"link.expires":     {"有効期限", "Expires"},
	"link.files":       {"ファイル", "Files"},
	"link.name":        {"ファイル名", "File name"},
	"link.size":        {"サイズ", "Size"},
	"link.passphrase":  {"パスフレーズ(別のメールでお送りしています)", "Passphrase (sent to you in a separate e-mail)"},
	"link.download":    {"ダウンロード", "Download"},
	"link.attempts":    {"残りの入力可能回数", "Attempts left"},
	"link.age.heading": {"age コマンドで復号する(上級者向け)", "Decrypt with the age command (advanced)"},
	"link.age.text":    {"暗号化されたファイル (file.age) と鍵ファイル (key.age) をダウンロードし、次のコマンドで復号できます。パスフレーズはハイフンを含めて表示のとおり入力してください。", "Download the encrypted file (file.age) and the key file (key.age), then decrypt with the command below. Type the passphrase exactly as shown, hyphens included."},
	"link.age.key":     {"鍵ファイル key.age", "Key file key.age"},
	"link.age.file":    {"暗号化ファイル", "Encrypted file"},
	"link.note":        {"このページを開いただけではダウンロードとして記録されません。", "Opening this page is not counted as a download."},
	"msg.home":         {"sealgate はメールの添付ファイルを暗号化して受け渡すゲートウェイです。受け取ったメールに記載されたリンクを開いてください。", "sealgate is a gateway that delivers e-mail attachments encrypted. Open the link in the message you received."},
	"msg.notfound":     {"このリンクは無効です。受け取ったメールのリンクを、途中で切れていないか確認してください。", "This link is not valid. Check that the link from your message was copied in full."},
	"msg.expired":      {"このリンクの有効期限が切れています。ファイルは削除されました。まだ必要な場合は、下記の送信者または情報管理責任者にお問い合わせください。", "This link has expired and the files have been deleted. If you still need them, ask the sender or the information manager below."},
	"msg.revoked":      {"このリンクは取り消されました。ファイルは提供できません。心当たりがない場合は、下記の送信者または情報管理責任者にお問い合わせください。", "This link has been revoked; the files are no longer available. If you did not expect this, contact the sender or the information manager below."},
	"msg.destroyed":    {"このファイルは契約終了に伴い破棄されました。", "These files were destroyed at the end of the contract."},
	"msg.locked":       {"パスフレーズの誤入力が続いたため、このリンクはロックされました。送信者に連絡して再送を依頼してください。", "This link is locked after too many wrong passphrases. Contact the sender to have the files sent again."},
	"msg.wrongpass":    {"パスフレーズが正しくありません。別のメールに記載されたパスフレーズを確認して、もう一度入力してください。", "The passphrase is not correct. Check the passphrase in the separate e-mail and try again."},
	"msg.ratelimited":  {"試行回数が多すぎます。1分ほど待ってからもう一度お試しください。", "Too many attempts. Wait a minute and try again."},
	"msg.forbidden":    {"この操作は受け付けられませんでした。ページを開き直してからもう一度お試しください。", "This request was refused. Reload the page and try again."},
	"msg.unavailable":  {"一時的な障害のためファイルを取り出せません。しばらくしてからもう一度お試しください。", "The file cannot be retrieved because of a temporary problem. Please try again later."},
	"msg.integrity":    {"保管されたファイルの整合性を確認できないため、提供を中止しました。送信者に連絡してください。", "The stored file failed its integrity check and was not served. Please contact the sender."},
	"msg.badrequest":   {"リクエストが正しくありません。", "The request is not valid."},
	"msg.limit":        {"このファイルのダウンロード回数の上限に達しました。さらに必要な場合は、下記の送信者または情報管理責任者にお問い合わせください。", "You have reached the download limit for this file. If you need it again, contact the sender or the information manager below."},
	"contact.heading":  {"お問い合わせ先", "Whom to ask"},
	"contact.sender":   {"送信者", "Sender"},
	"contact.manager":  {"情報管理責任者", "Information manager"},
	"link.remaining":   {"残りダウンロード回数", "Downloads left"},
	"link.limit.done":  {"上限に達しました", "Limit reached"},
	"msg.back":         {"戻る", "Back"},
}

// T returns the text for key in l.
func (l lang) T(key string) string {
	t, ok := texts[key]
	if !ok {
		if t, ok = staffTexts[key]; !ok {
			return key
		}
	}
	if l == langEN {
		return t[1]
	}
	return t[0]
}
