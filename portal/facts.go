package portal

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/hold"
	"github.com/sealgate/sealgate/transfer"
)

// The facts of a transfer — what the sender's "my transfers" page and the
// manager's incident view show, and what an incident report exports — are
// read from the ledger (every delivery, page view and download is an event
// there, with its time and address) and from the transfer's records
// (remaining downloads, key destruction).

// transferFacts is everything known about one transfer.
type transferFacts struct {
	T          *transfer.Transfer
	Contract   *contract.Contract
	Limit      int       // downloads per recipient and file (0: unlimited)
	MaxExpiry  time.Time // the latest the expiry may be extended to
	Recipients []*recipientFacts
	Held       *hold.Held // nil if the message was never held
	EndedAt    time.Time  // revoked / expired / destroyed at
	EndedHow   string     // the ledger event that ended it
	Objects    []objectFacts
	Timeline   []audit.Found // every event of the transfer, oldest first
}

// recipientFacts is what happened for one recipient.
type recipientFacts struct {
	ID                 int64
	Address            string
	Status             string
	NoticeDelivered    time.Time
	KeyNoticeDelivered time.Time
	DeliveryFailed     string
	FirstViewed        time.Time
	Views              int
	Downloads          []downloadFact
	WrongPassphrases   int
	Locked             bool
	RevokedAt          time.Time // this recipient's access ended (revocation, expiry, destruction)
	KeyDestroyedAt     time.Time
	RegisteredKey      string // fingerprint, when file.age was encrypted to their registered key
	Remaining          []remainingFact
}

// DownloadedBeforeRevocation reports whether a download — complete or
// partial — happened before the recipient's access ended (or at all, while
// it has not).
func (r *recipientFacts) DownloadedBeforeRevocation() bool {
	for _, d := range r.Downloads {
		if r.RevokedAt.IsZero() || d.At.Before(r.RevokedAt) {
			return true
		}
	}
	return false
}

// FirstDownload is the time of the first download (complete or partial),
// or zero.
func (r *recipientFacts) FirstDownload() time.Time {
	if len(r.Downloads) == 0 {
		return time.Time{}
	}
	return r.Downloads[0].At
}

type downloadFact struct {
	At        time.Time
	IP        string
	UserAgent string
	File      string
	Format    string // plain | age | key
	// Partial: the download stopped part-way; Bytes of plaintext are what
	// the recipient can have from the Sent bytes (of file.age for format
	// age).
	Partial bool
	Bytes   int64
	Sent    int64
}

// Partial says "partial, n bytes" in l.
func (l lang) Partial(n int64) string {
	if l == langEN {
		return fmt.Sprintf("partial, %d bytes", n)
	}
	return fmt.Sprintf("一部、%d バイト", n)
}

type remainingFact struct {
	File      string
	Downloads int
	Left      int // -1: unlimited
}

type objectFacts struct {
	Name      string
	Size      int64
	SHA256    string
	Status    string
	DeletedAt time.Time
	AbsentAt  time.Time
}

// facts reads everything about the transfer id.
func (s *Server) facts(ctx context.Context, id string) (*transferFacts, error) {
	db := s.DB.Read()
	t, err := transfer.Get(ctx, db, id)
	if err != nil {
		return nil, err
	}
	c, err := contract.ByID(ctx, db, t.ContractID)
	if err != nil {
		return nil, err
	}
	defaults := contract.DefaultsFrom(s.Config)
	f := &transferFacts{T: t, Contract: c, Limit: c.DownloadLimitOr(defaults), MaxExpiry: c.LatestExpiry(t.CreatedAt, defaults)}
	if h, err := hold.Get(ctx, db, t.MessageID); err == nil {
		f.Held = h
	}
	byAddr := map[string]*recipientFacts{}
	byID := map[int64]*recipientFacts{}
	for _, r := range t.Recipients {
		rf := &recipientFacts{ID: r.ID, Address: r.Address, Status: r.Status, Locked: r.Locked, KeyDestroyedAt: r.KeyDestroyedAt}
		f.Recipients = append(f.Recipients, rf)
		byAddr[strings.ToLower(r.Address)] = rf
		byID[r.ID] = rf
	}
	for _, file := range t.Files {
		f.Objects = append(f.Objects, objectFacts{Name: file.Name, Size: file.Size, SHA256: file.SHA256, Status: file.Status,
			DeletedAt: file.DeletedAt, AbsentAt: file.AbsentAt})
	}
	if err := s.remaining(ctx, f, byID); err != nil {
		return nil, err
	}
	f.Timeline, err = audit.Search(ctx, db, audit.Query{Transfer: id, Oldest: true, Limit: 5000})
	if err != nil {
		return nil, err
	}
	for _, fd := range f.Timeline {
		ev := fd.Event
		rf := byAddr[strings.ToLower(ev.Recipient)]
		switch ev.Type {
		case audit.TypeTransferRevoked, audit.TypeTransferExpired, audit.TypeContractEnded:
			if f.EndedAt.IsZero() {
				f.EndedAt, f.EndedHow = ev.Time, ev.Type
			}
		}
		if rf == nil {
			continue
		}
		switch ev.Type {
		case audit.TypeNoticeDelivered:
			if rf.NoticeDelivered.IsZero() {
				rf.NoticeDelivered = ev.Time
			}
		case audit.TypeKeyNoticeDelivered:
			if rf.KeyNoticeDelivered.IsZero() {
				rf.KeyNoticeDelivered = ev.Time
			}
		case audit.TypeDeliveryFailed:
			rf.DeliveryFailed = ev.Reason
		case audit.TypePageViewed:
			rf.Views++
			if rf.FirstViewed.IsZero() {
				rf.FirstViewed = ev.Time
			}
		case audit.TypePassphraseFailed:
			rf.WrongPassphrases++
		case audit.TypeFileDownloaded:
			// Complete downloads, and partial ones that delivered
			// something usable.
			n := audit.PartialBytes(ev)
			if ev.Result == "ok" || n > 0 {
				sent, _ := strconv.ParseInt(ev.Details["bytes"], 10, 64)
				rf.Downloads = append(rf.Downloads, downloadFact{At: ev.Time, IP: ev.RemoteIP, UserAgent: ev.UserAgent, File: ev.File, Format: ev.Details["format"],
					Partial: n > 0, Bytes: n, Sent: sent})
			}
		case audit.TypeRecipientRevoked:
			if rf.RevokedAt.IsZero() {
				rf.RevokedAt = ev.Time
			}
		case audit.TypeKeyDestroyed:
			if rf.RevokedAt.IsZero() {
				rf.RevokedAt = ev.Time
			}
		}
	}
	for _, rf := range f.Recipients {
		if rf.RevokedAt.IsZero() && !f.EndedAt.IsZero() {
			rf.RevokedAt = f.EndedAt
		}
	}
	return f, nil
}

// remaining fills each recipient's downloads left per file and registered
// key.
func (s *Server) remaining(ctx context.Context, f *transferFacts, byID map[int64]*recipientFacts) error {
	db := s.DB.Read()
	rows, err := db.QueryContext(ctx, `SELECT r.id, f.name, COALESCE(rf.downloads, 0) FROM recipients r JOIN files f ON f.transfer_id = r.transfer_id
		LEFT JOIN recipient_files rf ON rf.recipient_id = r.id AND rf.file_id = f.id WHERE r.transfer_id = ? ORDER BY r.id, f.idx`, f.T.ID)
	if err != nil {
		return fmt.Errorf("failed to read downloads: %w", err)
	}
	for rows.Next() {
		var id int64
		var rem remainingFact
		if err := rows.Scan(&id, &rem.File, &rem.Downloads); err != nil {
			rows.Close()
			return fmt.Errorf("failed to read downloads: %w", err)
		}
		rem.Left = -1
		if f.Limit > 0 {
			rem.Left = max(0, f.Limit-rem.Downloads)
		}
		if rf := byID[id]; rf != nil {
			rf.Remaining = append(rf.Remaining, rem)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read downloads: %w", err)
	}
	rows, err = db.QueryContext(ctx, `SELECT r.id, k.fingerprint FROM recipients r JOIN recipient_keys k ON k.id = r.public_key_id WHERE r.transfer_id = ?`, f.T.ID)
	if err != nil {
		return fmt.Errorf("failed to read registered keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var fp string
		if err := rows.Scan(&id, &fp); err != nil {
			return fmt.Errorf("failed to read registered keys: %w", err)
		}
		if rf := byID[id]; rf != nil {
			rf.RegisteredKey = fp
		}
	}
	return rows.Err()
}

// canSee reports whether account a may see transfer t: its sender (by
// address or as the account that sent it), a manager of its contract, or
// an auditor.
func (s *Server) canSee(ctx context.Context, a *accountView, t *transfer.Transfer, c *contract.Contract) bool {
	if strings.EqualFold(t.Sender, a.Email) || a.auditor || s.manages(a, c) {
		return true
	}
	var actor sql.NullString
	s.DB.Read().QueryRowContext(ctx, `SELECT actor FROM messages WHERE id = ?`, t.MessageID).Scan(&actor)
	return actor.Valid && actor.String != "" && actor.String == a.Name
}

// isSender reports whether account a sent transfer t (only the sender
// revokes and extends from the "my transfers" pages).
func (s *Server) isSender(ctx context.Context, a *accountView, t *transfer.Transfer) bool {
	if strings.EqualFold(t.Sender, a.Email) {
		return true
	}
	var actor sql.NullString
	s.DB.Read().QueryRowContext(ctx, `SELECT actor FROM messages WHERE id = ?`, t.MessageID).Scan(&actor)
	return actor.Valid && actor.String != "" && actor.String == a.Name
}
