// Package pubkey keeps the public keys recipients register for their own
// address, so that later transfers to them are encrypted to their key and
// need no passphrase (DESIGN.md, "Keys").
//
// # Registration
//
// Anyone may ask, on the portal's /keys page, to register an age X25519
// ("age1…") or SSH (ssh-ed25519, ssh-rsa) public key for an external
// address. Nothing changes until the owner of the address confirms: a link
// is mailed to the address, its token stored only as a SHA-256; opening it
// (GET) shows the key's fingerprint and a button, and only that POST makes
// the key active, replacing the address's previous key. Both steps are
// ledger events (pubkey.requested, pubkey.registered) in the transaction
// that makes them.
//
// # What a registered key changes
//
// The gateway adds the key as a recipient of file.age for that address
// (Active), generates no transfer identity and no passphrase for it, and
// its key notice says that the files are encrypted to the registered key
// (naming its fingerprint) instead of carrying a passphrase. The recipient
// still gets the link notice: the portal serves file.age for the stock age
// CLI (`age -d -i <identity> file.age > file`). The portal cannot decrypt
// it for them — it never holds their private key — and revocation stops the
// link and deletes the object, but a copy already downloaded stays readable
// with their key, as a downloaded plaintext would.
package pubkey

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/notice"
)

// Key states.
const (
	StatusPending   = "pending"
	StatusActive    = "active"
	StatusReplaced  = "replaced"
	StatusWithdrawn = "withdrawn"
)

// Errors; test with errors.Is.
var (
	ErrInvalid  = errors.New("pubkey: invalid request")
	ErrNotFound = errors.New("pubkey: no such registration link")
	ErrExpired  = errors.New("pubkey: the registration link has expired")
	ErrUsed     = errors.New("pubkey: the registration link was already used")
	ErrTooMany  = errors.New("pubkey: too many pending registrations for this address")
)

// maxPending bounds the registrations awaiting confirmation per address
// within an hour, so that the page cannot be used to flood an address.
const maxPending = 3

// Key is one registered (or pending) public key.
type Key struct {
	ID          int64
	Address     string
	Kind        string // crypto.PublicKeyAge | crypto.PublicKeySSH
	PublicKey   string // canonical text
	Fingerprint string
	Status      string
	RequestedAt time.Time
	ExpiresAt   time.Time // of the confirmation link
	VerifiedAt  time.Time // zero until confirmed
}

// Notifier queues a system notice in the caller's transaction (the
// gateway's QueueNotice).
type Notifier interface {
	QueueNotice(ctx context.Context, tx *database.Tx, m notice.Mail) error
}

// Service registers and confirms keys.
type Service struct {
	DB     *database.DB
	Ledger *audit.Ledger
	Now    func() time.Time
	Rand   io.Reader
	// Notices mails the confirmation link.
	Notices Notifier
	// LinkExpiry is how long a confirmation link works (default 24h).
	LinkExpiry time.Duration
	// IsInternal reports whether an address is the company's own: those
	// receive mail unsealed and cannot register a key.
	IsInternal func(addr string) bool
}

// Request describes a registration request from the portal.
type Request struct {
	Address   string
	PublicKey string
	RemoteIP  string
	UserAgent string
}

// NormalizeAddress returns the canonical comparison form of a bare address
// (package address: Key — the form the gateway looks keys up by), or
// ErrInvalid; routing syntax is invalid.
func NormalizeAddress(s string) (string, error) {
	canon, err := address.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("%w: not an e-mail address", ErrInvalid)
	}
	return canon.Key(), nil
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func (s *Service) linkExpiry() time.Duration {
	if s.LinkExpiry <= 0 {
		return 24 * time.Hour
	}
	return s.LinkExpiry
}

// Request records a pending registration and mails the confirmation link
// to the address. Its key is checked (crypto.ParsePublicKey) first.
func (s *Service) Request(ctx context.Context, req Request) (*Key, error) {
	addr, err := NormalizeAddress(req.Address)
	if err != nil {
		return nil, err
	}
	if s.IsInternal != nil && s.IsInternal(addr) {
		return nil, fmt.Errorf("%w: internal addresses receive mail unsealed and need no key", ErrInvalid)
	}
	pk, err := crypto.ParsePublicKey(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	kind, canonical := pk.Kind, pk.Canonical
	b := make([]byte, 32)
	if _, err := io.ReadFull(s.Rand, b); err != nil {
		return nil, fmt.Errorf("failed to generate token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	now := s.Now()
	k := &Key{Address: addr, Kind: kind, PublicKey: canonical, Fingerprint: crypto.PublicKeyFingerprint(canonical),
		Status: StatusPending, RequestedAt: now, ExpiresAt: now.Add(s.linkExpiry())}
	err = s.DB.Write(ctx, func(tx *database.Tx) error {
		var recent int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM recipient_keys WHERE address = ? AND status = 'pending' AND requested_at > ?`,
			addr, now.Add(-time.Hour).UnixMilli()).Scan(&recent); err != nil {
			return fmt.Errorf("failed to read registrations: %w", err)
		}
		if recent >= maxPending {
			return ErrTooMany
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO recipient_keys(address, kind, public_key, fingerprint, status, token_hash, requested_at, token_expires_at, remote_ip)
			VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?) RETURNING id`, addr, kind, canonical, k.Fingerprint, tokenHash(token), now.UnixMilli(), k.ExpiresAt.UnixMilli(), req.RemoteIP).Scan(&k.ID); err != nil {
			return fmt.Errorf("failed to record registration: %w", err)
		}
		if _, err := s.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypePubKeyRequested, Actor: "recipient:" + addr, Recipient: addr,
			RemoteIP: req.RemoteIP, UserAgent: req.UserAgent,
			Details: map[string]string{"kind": kind, "fingerprint": k.Fingerprint, "link_expires_at": k.ExpiresAt.UTC().Format(time.RFC3339)}}); err != nil {
			return err
		}
		if s.Notices == nil {
			return errors.New("pubkey: no way to mail the confirmation link")
		}
		return s.Notices.QueueNotice(ctx, tx, notice.Mail{To: []string{addr}, Notice: notice.KeyRegistration{Address: addr, Kind: kind,
			Fingerprint: k.Fingerprint, PublicKey: canonical, RequestedBy: req.RemoteIP, Expires: k.ExpiresAt, Token: token}})
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

const keyColumns = `id, address, kind, public_key, fingerprint, status, requested_at, token_expires_at, verified_at`

func scanKey(row interface{ Scan(...any) error }) (*Key, error) {
	k := &Key{}
	var req, exp int64
	var ver sql.NullInt64
	if err := row.Scan(&k.ID, &k.Address, &k.Kind, &k.PublicKey, &k.Fingerprint, &k.Status, &req, &exp, &ver); err != nil {
		return nil, err
	}
	k.RequestedAt, k.ExpiresAt = time.UnixMilli(req).UTC(), time.UnixMilli(exp).UTC()
	if ver.Valid {
		k.VerifiedAt = time.UnixMilli(ver.Int64).UTC()
	}
	return k, nil
}

// Pending returns the registration a confirmation link opens, changing
// nothing (the GET of the link).
func (s *Service) Pending(ctx context.Context, token string) (*Key, error) {
	return s.pending(ctx, s.DB.Read(), token)
}

func (s *Service) pending(ctx context.Context, q database.Querier, token string) (*Key, error) {
	if token == "" || len(token) > 128 {
		return nil, ErrNotFound
	}
	k, err := scanKey(q.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM recipient_keys WHERE token_hash = ?`, tokenHash(token)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read registration: %w", err)
	}
	if k.Status != StatusPending {
		return k, ErrUsed
	}
	if !s.Now().Before(k.ExpiresAt) {
		return k, ErrExpired
	}
	return k, nil
}

// Confirm activates the registration the link opens (the POST of the
// link), replacing the address's previous key.
func (s *Service) Confirm(ctx context.Context, token, ip, ua string) (*Key, error) {
	var out *Key
	err := s.DB.Write(ctx, func(tx *database.Tx) error {
		out = nil // the function may run more than once (database.DB.Write)
		k, err := s.pending(ctx, tx, token)
		if err != nil {
			return err
		}
		now := s.Now()
		var old sql.NullString
		if err := tx.QueryRowContext(ctx, `UPDATE recipient_keys SET status = 'replaced', ended_at = ? WHERE address = ? AND status = 'active' RETURNING fingerprint`,
			now.UnixMilli(), k.Address).Scan(&old); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("failed to replace the previous key: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE recipient_keys SET status = 'active', verified_at = ? WHERE id = ? AND status = 'pending'`,
			now.UnixMilli(), k.ID); err != nil {
			return fmt.Errorf("failed to activate key: %w", err)
		}
		details := map[string]string{"kind": k.Kind, "fingerprint": k.Fingerprint}
		if old.Valid {
			details["replaced_fingerprint"] = old.String
		}
		if _, err := s.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypePubKeyRegistered, Actor: "recipient:" + k.Address, Recipient: k.Address,
			RemoteIP: ip, UserAgent: ua, Details: details}); err != nil {
			return err
		}
		k.Status, k.VerifiedAt = StatusActive, now.UTC()
		out = k
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Active returns the active keys of the given addresses (lower-cased), by
// address. Addresses without one are absent from the map.
func Active(ctx context.Context, q database.Querier, addrs []string) (map[string]*Key, error) {
	out := map[string]*Key{}
	if len(addrs) == 0 {
		return out, nil
	}
	args := make([]any, len(addrs))
	marks := make([]string, len(addrs))
	for i, a := range addrs {
		args[i], marks[i] = strings.ToLower(a), "?"
	}
	rows, err := q.QueryContext(ctx, `SELECT `+keyColumns+` FROM recipient_keys WHERE status = 'active' AND address IN (`+strings.Join(marks, ",")+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to read registered keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("failed to read registered keys: %w", err)
		}
		out[k.Address] = k
	}
	return out, rows.Err()
}

// ByID returns one key.
func ByID(ctx context.Context, q database.Querier, id int64) (*Key, error) {
	k, err := scanKey(q.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM recipient_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read key: %w", err)
	}
	return k, nil
}
