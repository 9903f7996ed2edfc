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
	"msg.locked":       {"パスフレーズの誤入力(ブラウザでの復号では入力)が上限に達したため、このリンクはロックされました。送信者に連絡して再送を依頼してください。", "This link is locked: too many wrong passphrases (in the browser: too many tries). Contact the sender to have the files sent again."},
	"msg.wrongpass":    {"パスフレーズが正しくありません。別のメールに記載されたパスフレーズを確認して、もう一度入力してください。", "The passphrase is not correct. Check the passphrase in the separate e-mail and try again."},
	"msg.ratelimited":  {"試行回数が多すぎます。1分ほど待ってからもう一度お試しください。", "Too many attempts. Wait a minute and try again."},
	"msg.nocount":      {"一時的な障害のため、いまは試行回数を数えられません。数えられない試行は受け付けていません。数分後にもう一度お試しください。", "Attempts cannot be counted right now because of a temporary problem, and an attempt that cannot be counted is not accepted. Please try again in a few minutes."},
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

	// The two ways of the download page (browser.go): the browser
	// decrypts (the page's script), or the server does (the form).
	"bd.noscript": {"JavaScript が無効なため、ブラウザでの復号は使えません。下の「サーバーで復号する」をお使いください(パスフレーズはサーバーに送られ、サーバーが復号します)。",
		"JavaScript is off, so your browser cannot decrypt here. Use “The server decrypts” below (the passphrase is sent to the server, which decrypts the file)."},
	"bd.heading": {"ブラウザで復号する(推奨)", "Your browser decrypts (recommended)"},
	"bd.explain": {"パスフレーズはこのブラウザの外に送られません。ブラウザが鍵ファイル key.age(パスフレーズでしか開けません)と暗号化されたファイルを受け取り、この端末の中で復号します。サーバーはパスフレーズを受け取らず、ファイルを復号しません。記録のため、復号したファイルの SHA-256 だけをサーバーに送ります。",
		"The passphrase does not leave this browser. The browser receives the key file key.age (which only the passphrase opens) and the encrypted file, and decrypts them on this device. The server receives neither the passphrase nor the decrypted file, and does not decrypt the file; for the record, the page sends it only the decrypted file's SHA-256."},
	"bd.button":      {"ブラウザで復号して保存", "Decrypt in the browser and save"},
	"bd.save.file":   {"保存先を選ぶ画面が開きます。ファイルは復号しながらそこへ直接保存されます。", "You will be asked where to save the file; it is decrypted straight into it."},
	"bd.save.memory": {"このブラウザでは、ファイルをメモリー上で復号してからダウンロードします(512 MiB まで)。それより大きいファイルには Chrome か Edge、下の「サーバーで復号する」、または age コマンドをお使いください。", "This browser decrypts the file in memory and then downloads it (up to 512 MiB). For larger files use Chrome or Edge, “The server decrypts” below, or the age command."},
	"bd.attempts": {"ここでのパスフレーズの入力は、正誤にかかわらず1回ごとに入力回数に数えられます(サーバーには正誤が分からないため)。ダウンロードが完了すると、その1回は戻されます。",
		"Each try of the passphrase here counts as one attempt, right or wrong (the server cannot tell which); a completed download gives it back."},
	"bd.msg.shape": {"パスフレーズの形式ではありません(英数字25文字、5文字ずつハイフン区切り)。別のメールに記載されたパスフレーズを確認してください。この入力は回数に数えていません。",
		"This is not a passphrase (25 letters and digits, in groups of five). Check the passphrase in the separate e-mail. This try was not counted."},
	"bd.msg.checking": {"パスフレーズを確認しています…", "Checking the passphrase…"},
	"bd.msg.wrongpass": {"パスフレーズが正しくありません。別のメールに記載されたパスフレーズを確認して、もう一度入力してください。残りの入力可能回数: {n}",
		"The passphrase is not correct. Check the passphrase in the separate e-mail and try again. Attempts left: {n}"},
	"bd.msg.nomore": {"パスフレーズが正しくありません。入力可能回数が残っていないため、次に入力するとこのリンクはロックされます。送信者に連絡してください。",
		"The passphrase is not correct, and no attempts are left: the next try locks this link. Contact the sender."},
	"bd.msg.cancelled":  {"保存先の選択が取り消されました。ダウンロードはしていません。", "Choosing where to save was cancelled. Nothing was downloaded."},
	"bd.msg.clickagain": {"保存先を選ぶには、もう一度ボタンを押してください。", "Press the button again to choose where to save the file."},
	"bd.msg.progress":   {"{name} を復号しています: {done} / {size} MiB", "Decrypting {name}: {done} of {size} MiB"},
	"bd.msg.done": {"{name} を復号して保存しました。SHA-256 は送信時に記録されたものと一致しています。",
		"{name} was decrypted and saved. Its SHA-256 matches the one recorded when it was sent."},
	"bd.msg.donememory": {"{name} を復号し、ブラウザのダウンロードに渡しました。SHA-256 は送信時に記録されたものと一致しています。",
		"{name} was decrypted and handed to the browser's downloads. Its SHA-256 matches the one recorded when it was sent."},
	"bd.msg.mismatch": {"復号した {name} が、送信時に記録された SHA-256 と一致しません。ファイルは保存していません。送信者に連絡してください。",
		"The decrypted {name} does not match the SHA-256 recorded when it was sent. It was not saved. Contact the sender."},
	"bd.msg.failed": {"{name} の受信または復号が途中で止まりました。ファイルは保存していません。もう一度お試しください。",
		"Receiving or decrypting {name} stopped before the end; the file was not saved. Please try again."},
	"bd.msg.toolarge": {"{name}({size} MiB)は、このブラウザがメモリー上で復号できる大きさ(512 MiB)を超えています。Chrome か Edge、下の「サーバーで復号する」、または age コマンドをお使いください。",
		"{name} ({size} MiB) is larger than this browser can decrypt in memory (512 MiB). Use Chrome or Edge, “The server decrypts” below, or the age command."},
	"bd.msg.unavailable": {"一時的な障害のためファイルを取り出せません。しばらくしてからもう一度お試しください。", "The file cannot be retrieved because of a temporary problem. Please try again later."},
	"sd.heading":         {"サーバーで復号する", "The server decrypts"},
	"sd.explain": {"パスフレーズをサーバーに送り、サーバーがファイルを復号して送ります。JavaScript なしで使えます。",
		"The passphrase is sent to the server, which decrypts the file and sends it to you. Works without JavaScript."},
}

// browserTexts are the texts of the page's script (bd.msg.<key>), put in
// the page for it: the script itself carries none.
var browserTexts = []string{"shape", "checking", "wrongpass", "nomore", "cancelled", "clickagain", "progress", "done", "donememory",
	"mismatch", "failed", "toolarge", "unavailable"}

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
