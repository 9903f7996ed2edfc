package portal

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/transfer"
)

// An incident report (事故報告) needs, for a transfer: who received it,
// what each recipient did and when (notices delivered, page opened,
// downloads with address), whether each downloaded before the transfer
// was revoked, and what was destroyed. The export is one CSV row per
// recipient and file (Excel: UTF-8 with BOM, CRLF, bilingual header), or a
// JSON document with the same facts and the transfer's ledger events.

// Partial says "partial, n bytes" in l.
func (l lang) Partial(n int64) string {
	if l == langEN {
		return fmt.Sprintf("partial, %d bytes", n)
	}
	return fmt.Sprintf("一部、%d バイト", n)
}

func fmtTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	return t.In(loc).Format("2006-01-02 15:04:05 -07:00")
}

func yesNo(b bool) string {
	if b {
		return "はい / yes"
	}
	return "いいえ / no"
}

func incidentCSV(f *transferFacts, loc *time.Location) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("\ufeff")
	w := csv.NewWriter(&b)
	w.UseCRLF = true
	header := []string{"送付 / Transfer", "契約 / Contract", "件名 / Subject", "送信者 / Sender", "送信日時 / Sent", "状態 / Status",
		"終了日時 / Ended", "受信者 / Recipient", "受信者の状態 / Recipient status", "ファイル / File", "ダウンロード通知の配信 / Notice delivered",
		"鍵通知の配信 / Key notice delivered", "ページ表示(初回) / First viewed", "表示回数 / Views", "ダウンロード回数 / Downloads",
		"初回ダウンロード / First download", "ダウンロード元 / Download addresses", "取消し前にダウンロード / Downloaded before revocation",
		"取消し・終了日時 / Access ended", "鍵の消去 / Key destroyed", "パスフレーズ誤り / Wrong passphrases", "残り回数 / Downloads left",
		"途中で終わったダウンロード（得られた平文のバイト数） / Partial downloads (plaintext bytes delivered)"}
	if err := w.Write(header); err != nil {
		return nil, err
	}
	for _, r := range f.Recipients {
		files := r.Remaining
		if len(files) == 0 {
			files = []transfer.Remaining{{Left: -1}}
		}
		for _, rem := range files {
			var n int
			var first time.Time
			ips := map[string]bool{}
			var ipList []string
			before := false
			var partial []string
			for _, d := range r.Downloads {
				if rem.File != "" && d.File != rem.File {
					continue
				}
				n++
				if first.IsZero() {
					first = d.At
				}
				if !ips[d.IP] {
					ips[d.IP] = true
					ipList = append(ipList, d.IP)
				}
				if r.RevokedAt.IsZero() || d.At.Before(r.RevokedAt) {
					before = true
				}
				if d.Partial {
					partial = append(partial, strconv.FormatInt(d.Bytes, 10))
				}
			}
			left := "∞"
			if rem.Left >= 0 {
				left = strconv.Itoa(rem.Left)
			}
			row := []string{f.T.ID, f.T.Contract, f.T.Subject, f.T.Sender, fmtTime(f.T.CreatedAt, loc), f.T.Status,
				fmtTime(f.EndedAt, loc), r.Address, r.Status, rem.File, fmtTime(r.NoticeDelivered, loc),
				fmtTime(r.KeyNoticeDelivered, loc), fmtTime(r.FirstViewed, loc), strconv.Itoa(r.Views), strconv.Itoa(n),
				fmtTime(first, loc), strings.Join(ipList, " "), yesNo(before),
				fmtTime(r.RevokedAt, loc), fmtTime(r.KeyDestroyedAt, loc), strconv.Itoa(r.WrongPassphrases), left, strings.Join(partial, " ")}
			for i, c := range row {
				row[i] = csvSafe(c)
			}
			if err := w.Write(row); err != nil {
				return nil, err
			}
		}
	}
	w.Flush()
	return b.Bytes(), w.Error()
}

// csvSafe keeps a cell from being taken for a formula by a spreadsheet.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

type incidentDoc struct {
	Format      string              `json:"format"`
	GeneratedAt time.Time           `json:"generated_at"`
	Transfer    incidentTransfer    `json:"transfer"`
	Files       []incidentFile      `json:"files"`
	Recipients  []incidentRecipient `json:"recipients"`
	Events      []incidentEvent     `json:"events"`
}

type incidentTransfer struct {
	ID        string     `json:"id"`
	Message   string     `json:"message"`
	Contract  string     `json:"contract"`
	Subject   string     `json:"subject"`
	Sender    string     `json:"sender"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	Status    string     `json:"status"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	EndedBy   string     `json:"ended_by_event,omitempty"`
}

type incidentFile struct {
	Name      string     `json:"name"`
	Size      int64      `json:"size"`
	SHA256    string     `json:"sha256"`
	Status    string     `json:"status"`
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
	AbsentAt  *time.Time `json:"absent_at,omitempty"`
}

type incidentRecipient struct {
	Address                    string             `json:"address"`
	Status                     string             `json:"status"`
	RegisteredKey              string             `json:"registered_key,omitempty"`
	NoticeDelivered            *time.Time         `json:"notice_delivered,omitempty"`
	KeyNoticeDelivered         *time.Time         `json:"key_notice_delivered,omitempty"`
	DeliveryFailed             string             `json:"delivery_failed,omitempty"`
	FirstViewed                *time.Time         `json:"first_viewed,omitempty"`
	Views                      int                `json:"views"`
	WrongPassphrases           int                `json:"wrong_passphrases"`
	Locked                     bool               `json:"locked"`
	Downloads                  []incidentDownload `json:"downloads"`
	DownloadedBeforeRevocation bool               `json:"downloaded_before_revocation"`
	AccessEnded                *time.Time         `json:"access_ended,omitempty"`
	KeyDestroyed               *time.Time         `json:"key_destroyed,omitempty"`
	Remaining                  map[string]int     `json:"downloads_left,omitempty"` // -1: unlimited
}

type incidentDownload struct {
	At        time.Time `json:"at"`
	File      string    `json:"file"`
	Format    string    `json:"format"`
	IP        string    `json:"ip"`
	UserAgent string    `json:"user_agent,omitempty"`
	// A download that stopped part-way: the plaintext bytes the recipient
	// can have, and the bytes sent (of file.age for format age).
	Partial   bool  `json:"partial,omitempty"`
	Bytes     int64 `json:"plaintext_bytes,omitempty"`
	SentBytes int64 `json:"sent_bytes,omitempty"`
}

type incidentEvent struct {
	Index int64       `json:"index"`
	Event audit.Event `json:"event"`
}

func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func incidentJSON(f *transferFacts, now time.Time) ([]byte, error) {
	doc := incidentDoc{Format: "sealgate-incident/1", GeneratedAt: now.UTC(),
		Transfer: incidentTransfer{ID: f.T.ID, Message: f.T.MessageID, Contract: f.T.Contract, Subject: f.T.Subject, Sender: f.T.Sender,
			CreatedAt: f.T.CreatedAt.UTC(), ExpiresAt: f.T.ExpiresAt.UTC(), Status: f.T.Status, EndedAt: tp(f.EndedAt), EndedBy: f.EndedHow},
		Files: []incidentFile{}, Recipients: []incidentRecipient{}, Events: []incidentEvent{}}
	for _, o := range f.T.Files {
		doc.Files = append(doc.Files, incidentFile{Name: o.Name, Size: o.Size, SHA256: o.SHA256, Status: o.Status, DeletedAt: tp(o.DeletedAt), AbsentAt: tp(o.AbsentAt)})
	}
	for _, r := range f.Recipients {
		ir := incidentRecipient{Address: r.Address, Status: r.Status, RegisteredKey: r.RegisteredKey, NoticeDelivered: tp(r.NoticeDelivered),
			KeyNoticeDelivered: tp(r.KeyNoticeDelivered), DeliveryFailed: r.DeliveryFailed, FirstViewed: tp(r.FirstViewed), Views: r.Views,
			WrongPassphrases: r.WrongPassphrases, Locked: r.Locked, Downloads: []incidentDownload{},
			DownloadedBeforeRevocation: r.DownloadedBeforeRevocation(), AccessEnded: tp(r.RevokedAt), KeyDestroyed: tp(r.KeyDestroyedAt),
			Remaining: map[string]int{}}
		for _, d := range r.Downloads {
			ir.Downloads = append(ir.Downloads, incidentDownload{At: d.At.UTC(), File: d.File, Format: d.Format, IP: d.IP, UserAgent: d.UserAgent,
				Partial: d.Partial, Bytes: d.Bytes, SentBytes: d.Sent})
		}
		for _, rem := range r.Remaining {
			ir.Remaining[rem.File] = rem.Left
		}
		doc.Recipients = append(doc.Recipients, ir)
	}
	for _, e := range f.Timeline {
		doc.Events = append(doc.Events, incidentEvent{Index: e.Index, Event: e.Event})
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode incident report: %w", err)
	}
	return append(b, '\n'), nil
}

// recordExport records the incident export in the ledger (export.made).
func (s *Server) recordExport(r *http.Request, a *accountView, f *transferFacts, format string, size int) error {
	return s.DB.Write(r.Context(), func(tx *database.Tx) error {
		_, err := s.Ledger.Append(r.Context(), tx, audit.Event{Type: audit.TypeExportMade, Actor: a.Name, Contract: f.T.Contract,
			Message: f.T.MessageID, Transfer: f.T.ID, RemoteIP: s.clientIP(r), UserAgent: userAgent(r),
			Details: map[string]string{"kind": "incident", "format": format, "bytes": strconv.Itoa(size), "recipients": strconv.Itoa(len(f.Recipients))}})
		return err
	})
}
