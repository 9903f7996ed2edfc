package transfer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/pubkey"
)

// The facts of a transfer — what the sender's "my transfers" page, the
// manager's incident view and its export, and `sealgate transfer show`
// tell — are read here, in one place, from the ledger (every delivery,
// page view and download is an event there, with its time and address)
// and from the transfer's records (remaining downloads, key destruction).

// Facts is everything known about one transfer.
type Facts struct {
	T          *Transfer
	Contract   *contract.Contract
	Limit      int       // downloads per recipient and file (0: unlimited)
	MaxExpiry  time.Time // the latest the expiry may be extended to
	Recipients []*RecipientFacts
	EndedAt    time.Time // revoked / expired / destroyed at
	EndedHow   string    // the ledger event that ended it
	// Downloads are every download of a file (complete, or partial with
	// something usable delivered) and of a key.age, oldest first.
	Downloads []Download
	Timeline  []audit.Found // every event of the transfer, oldest first
}

// RecipientFacts is what happened for one recipient.
type RecipientFacts struct {
	ID                 int64
	Address            string
	Status             string
	NoticeDelivered    time.Time
	KeyNoticeDelivered time.Time
	DeliveryFailed     string
	FirstViewed        time.Time
	Views              int
	Downloads          []Download
	WrongPassphrases   int
	Locked             bool
	RevokedAt          time.Time // this recipient's access ended (revocation, expiry, destruction)
	KeyDestroyedAt     time.Time
	RegisteredKey      string // fingerprint, when file.age was encrypted to their registered key
	Remaining          []Remaining
}

// DownloadedBeforeRevocation reports whether a download — complete or
// partial — happened before the recipient's access ended (or at all, while
// it has not).
func (r *RecipientFacts) DownloadedBeforeRevocation() bool {
	for _, d := range r.Downloads {
		if r.RevokedAt.IsZero() || d.At.Before(r.RevokedAt) {
			return true
		}
	}
	return false
}

// FirstDownload is the time of the first download (complete or partial),
// or zero.
func (r *RecipientFacts) FirstDownload() time.Time {
	if len(r.Downloads) == 0 {
		return time.Time{}
	}
	return r.Downloads[0].At
}

// Download is one download, from its ledger event.
type Download struct {
	At        time.Time
	Recipient string
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

// Remaining is how often a recipient downloaded one file, and may still.
type Remaining struct {
	File      string
	Downloads int
	Left      int // -1: unlimited
}

// ReadFacts reads everything about the transfer id; d are the configured
// contract defaults (download limit, maximum expiry).
func ReadFacts(ctx context.Context, q database.Querier, id string, d contract.Defaults) (*Facts, error) {
	t, err := Get(ctx, q, id)
	if err != nil {
		return nil, err
	}
	c, err := contract.ByID(ctx, q, t.ContractID)
	if err != nil {
		return nil, err
	}
	f := &Facts{T: t, Contract: c, Limit: c.DownloadLimitOr(d), MaxExpiry: c.LatestExpiry(t.CreatedAt, d)}
	byAddr := map[string]*RecipientFacts{}
	byID := map[int64]*RecipientFacts{}
	for _, r := range t.Recipients {
		rf := &RecipientFacts{ID: r.ID, Address: r.Address, Status: r.Status, Locked: r.Locked, KeyDestroyedAt: r.KeyDestroyedAt}
		if r.PublicKeyID != 0 {
			switch k, err := pubkey.ByID(ctx, q, r.PublicKeyID); {
			case err == nil:
				rf.RegisteredKey = k.Fingerprint
			case !errors.Is(err, pubkey.ErrNotFound):
				return nil, err
			}
		}
		f.Recipients = append(f.Recipients, rf)
		byAddr[strings.ToLower(r.Address)] = rf
		byID[r.ID] = rf
	}
	if err := remaining(ctx, q, f, byID); err != nil {
		return nil, err
	}
	f.Timeline, err = audit.Search(ctx, q, audit.Query{Transfer: id, Oldest: true, Limit: 5000})
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
		case audit.TypeFileDownloaded:
			// Complete downloads, and partial ones that delivered
			// something usable.
			n := audit.PartialBytes(ev)
			if ev.Result == "ok" || n > 0 {
				sent, _ := strconv.ParseInt(ev.Details["bytes"], 10, 64)
				dl := Download{At: ev.Time, Recipient: ev.Recipient, IP: ev.RemoteIP, UserAgent: ev.UserAgent, File: ev.File, Format: ev.Details["format"],
					Partial: n > 0, Bytes: n, Sent: sent}
				f.Downloads = append(f.Downloads, dl)
				if rf != nil {
					rf.Downloads = append(rf.Downloads, dl)
				}
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
		case audit.TypeRecipientRevoked, audit.TypeKeyDestroyed:
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

// remaining fills each recipient's downloads left per file.
func remaining(ctx context.Context, q database.Querier, f *Facts, byID map[int64]*RecipientFacts) error {
	rows, err := q.QueryContext(ctx, `SELECT r.id, f.name, COALESCE(rf.downloads, 0) FROM recipients r JOIN files f ON f.transfer_id = r.transfer_id
		LEFT JOIN recipient_files rf ON rf.recipient_id = r.id AND rf.file_id = f.id WHERE r.transfer_id = ? ORDER BY r.id, f.idx`, f.T.ID)
	if err != nil {
		return fmt.Errorf("failed to read downloads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var rem Remaining
		if err := rows.Scan(&id, &rem.File, &rem.Downloads); err != nil {
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
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read downloads: %w", err)
	}
	return nil
}
