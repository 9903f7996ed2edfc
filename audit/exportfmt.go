package audit

import (
	"bufio"
	"database/sql"
	"embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"slices"
	"strconv"
	"strings"
	"time"
)

// row is one event as CSV and HTML show it.
type row struct {
	Index        int64
	Time         string // in the export's location
	UTC          string // canonical
	ClauseJA     string
	ClauseEN     string
	Type         string
	TypeJA       string
	TypeEN       string
	Actor        string
	Contract     string
	Message      string
	Transfer     string
	Recipient    string
	File         string
	SHA256       string
	Size         string
	CipherSHA256 string
	CipherSize   string
	Object       string
	RemoteIP     string
	UserAgent    string
	Account      string
	Reason       string
	Result       string
	Details      string
	Warning      string // set when the record is not canonical (tampered)
}

const displayLayout = "2006-01-02 15:04:05.000"

// makeRow shows the record with its names revealed from names (loaded
// beforehand: no query runs while the records are read).
func makeRow(idx int64, data []byte, loc *time.Location, names *nameBook) row {
	ev, err := ParseRecord(data)
	r := row{Index: idx}
	if err != nil {
		r.Warning = "記録が正規形ではありません（改ざんの可能性）/ record is not canonical (possibly altered)"
		_ = json.Unmarshal(data, &ev) // show what can be shown
	} else {
		names.revealLoaded(&ev)
	}
	r.Time = ev.Time.In(loc).Format(displayLayout)
	r.UTC = ev.Time.UTC().Format(timeLayout)
	cja, cen := ClauseOf(ev.Type).Labels()
	r.ClauseJA, r.ClauseEN = cja, cen
	r.Type = ev.Type
	r.TypeJA, r.TypeEN = TypeLabels(ev.Type)
	r.Actor, r.Contract, r.Message, r.Transfer = ev.Actor, ev.Contract, ev.Message, ev.Transfer
	r.Recipient, r.File, r.SHA256, r.CipherSHA256 = ev.Recipient, ev.File, ev.SHA256, ev.CipherSHA256
	if ev.Size != 0 {
		r.Size = strconv.FormatInt(ev.Size, 10)
	}
	if ev.CipherSize != 0 {
		r.CipherSize = strconv.FormatInt(ev.CipherSize, 10)
	}
	r.Object, r.RemoteIP, r.UserAgent, r.Account = ev.Object, ev.RemoteIP, ev.UserAgent, ev.Account
	r.Reason, r.Result = ev.Reason, ev.Result
	keys := make([]string, 0, len(ev.Details))
	for k := range ev.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var d []string
	for _, k := range keys {
		d = append(d, k+"="+ev.Details[k])
	}
	r.Details = strings.Join(d, "; ")
	return r
}

// csvCell defuses spreadsheet formula injection (OWASP "CSV injection"): a
// cell that starts with = + - @ (or a tab or carriage return, which some
// spreadsheets skip before looking) is prefixed with a single quote.
func csvCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

func offsetLabel(loc *time.Location, at time.Time) string {
	return "UTC" + at.In(loc).Format("-07:00")
}

// writeCSV writes a CSV file that Excel opens correctly in Japanese: UTF-8
// with a byte-order mark, CRLF line ends, a bilingual header.
func (e *exporter) writeCSV(w *bufio.Writer) error {
	if _, err := w.WriteString("\uFEFF"); err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	zone := offsetLabel(e.opts.Location, e.l.now())
	header := []string{
		"番号 / No.",
		"日時 (" + zone + ") / Time (" + zone + ")",
		"日時 (UTC) / Time (UTC)",
		"区分 / Clause",
		"種別 / Type",
		"種別名 / Type name",
		"実行者 / Actor",
		"契約 / Contract",
		"メッセージ / Message",
		"送付 / Transfer",
		"宛先 / Recipient",
		"ファイル名 / File name",
		"SHA-256",
		"サイズ (バイト) / Size (bytes)",
		"暗号文 SHA-256 / Ciphertext SHA-256",
		"暗号文サイズ / Ciphertext size",
		"保管キー / Object key",
		"接続元 IP / Remote IP",
		"ユーザーエージェント / User agent",
		"対象アカウント / Account",
		"理由 / Reason",
		"結果 / Result",
		"詳細 / Details",
		"警告 / Warning",
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	names, err := e.names()
	if err != nil {
		return err
	}
	where, args := e.f.where()
	rows, err := e.tx.QueryContext(e.ctx, `SELECT idx, data FROM ledger_records WHERE `+where+` ORDER BY idx`, args...)
	if err != nil {
		return fmt.Errorf("failed to read ledger records: %w", err)
	}
	defer rows.Close()
	rec := make([]string, len(header))
	for rows.Next() {
		var idx int64
		var data sql.RawBytes
		if err := rows.Scan(&idx, &data); err != nil {
			return fmt.Errorf("failed to read ledger record: %w", err)
		}
		r := makeRow(idx, data, e.opts.Location, names)
		vals := []string{
			strconv.FormatInt(r.Index, 10), r.Time, r.UTC, r.ClauseJA + " / " + r.ClauseEN,
			r.Type, r.TypeJA + " / " + r.TypeEN, r.Actor, r.Contract, r.Message, r.Transfer,
			r.Recipient, r.File, r.SHA256, r.Size, r.CipherSHA256, r.CipherSize, r.Object,
			r.RemoteIP, r.UserAgent, r.Account, r.Reason, r.Result, r.Details, r.Warning,
		}
		for i, v := range vals {
			rec[i] = csvCell(v)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
		e.tick()
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read ledger records: %w", err)
	}
	cw.Flush()
	return cw.Error()
}

//go:embed templates/export.html
var templateFS embed.FS

type htmlHeader struct {
	Origin     string
	Contract   string
	From, To   string
	Zone       string
	Created    string
	Total      int64
	Checkpoint string
	Size       int64
	Root       string
	Key        string
}

type htmlSection struct {
	Number   int
	JA, EN   string
	Types    []string // "label (type)"
	Expected string   // what the agreement asks this section to show
}

// clauseNote says, per clause, what the agreement asks for.
func clauseNote(c Clause) string {
	switch c {
	case ClauseReceived:
		return "機密情報の受領・作成の記録（受信したメールと暗号化保管したファイル）/ Records of receipt and creation: messages received and files sealed."
	case ClauseDistributed:
		return "配布の記録：誰に、いつ通知・鍵を送り、誰がダウンロードしたか / Distribution: to whom and when notices and keys went, and who downloaded."
	case ClauseTakenOut:
		return "持出しと情報管理責任者の承認 / Taking out, with the information manager's approval."
	case ClauseDestroyed:
		return "返却・破棄：取消し、期限切れ、鍵の消去、保管ファイルの削除と確認、破棄証明書 / Return and destruction: revocations, expiry, key destruction, deletion and its confirmation, certificates."
	case ClauseAccess:
		return "ログイン・ログアウト、アカウントの作成・変更・無効化、アクセスレビュー / Logins and logouts, account changes, access reviews."
	case ClauseAdmin:
		return "契約の登録・変更と、記録そのものの署名・出力 / Contract administration and the ledger's own checkpoints and exports."
	}
	return ""
}

// writeHTML writes a printable page: one section per clause of the
// agreement, then the checkpoint and how to verify.
func (e *exporter) writeHTML(w *bufio.Writer) error {
	t, err := template.ParseFS(templateFS, "templates/export.html")
	if err != nil {
		return fmt.Errorf("failed to parse export template: %w", err)
	}
	key := keyID(e.opts.Signer.Name(), e.opts.Signer.KeyHash())
	hdr := htmlHeader{
		Origin: e.cp.Origin, Contract: e.f.contract,
		Zone: offsetLabel(e.opts.Location, e.l.now()), Created: e.l.now().In(e.opts.Location).Format(displayLayout),
		Total: e.total, Checkpoint: string(e.cp.Note), Size: e.cp.Size, Root: e.cp.Root.String(), Key: key,
	}
	if !e.f.from.IsZero() {
		hdr.From = e.f.from.In(e.opts.Location).Format(displayLayout)
	}
	if !e.f.to.IsZero() {
		hdr.To = e.f.to.In(e.opts.Location).Format(displayLayout)
	}
	names, err := e.names()
	if err != nil {
		return err
	}
	if err := t.ExecuteTemplate(w, "head", hdr); err != nil {
		return err
	}
	where, args := e.f.where()
	for i, c := range Clauses() {
		ja, en := c.Labels()
		sec := htmlSection{Number: i + 1, JA: ja, EN: en, Expected: clauseNote(c)}
		types := c.Types()
		ph := make([]string, len(types))
		targs := slices.Clone(args)
		for j, typ := range types {
			tja, _ := TypeLabels(typ)
			sec.Types = append(sec.Types, tja+" ("+typ+")")
			ph[j] = "?"
			targs = append(targs, typ)
		}
		if err := t.ExecuteTemplate(w, "section", sec); err != nil {
			return err
		}
		rows, err := e.tx.QueryContext(e.ctx, `SELECT idx, data FROM ledger_records WHERE `+where+
			` AND type IN (`+strings.Join(ph, ",")+`) ORDER BY idx`, targs...)
		if err != nil {
			return fmt.Errorf("failed to read ledger records: %w", err)
		}
		n := 0
		for rows.Next() {
			var idx int64
			var data sql.RawBytes
			if err := rows.Scan(&idx, &data); err != nil {
				rows.Close()
				return fmt.Errorf("failed to read ledger record: %w", err)
			}
			if err := t.ExecuteTemplate(w, "row", makeRow(idx, data, e.opts.Location, names)); err != nil {
				rows.Close()
				return err
			}
			n++
			e.tick()
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("failed to read ledger records: %w", err)
		}
		if err := t.ExecuteTemplate(w, "section_end", n); err != nil {
			return err
		}
	}
	return t.ExecuteTemplate(w, "foot", hdr)
}
