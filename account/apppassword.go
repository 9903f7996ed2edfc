package account

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
)

// App passwords are what a mail client uses for SMTP AUTH instead of the
// account's sign-in password. Privileged accounts (manager, admin,
// auditor) sign in to the portal with a second factor, which SMTP AUTH
// cannot ask for: there, they may use only an app password, so their
// sign-in password can neither be used nor tested over SMTP.
//
// An app password is 160 random bits, shown once as 8 groups of 4
// base32 characters. Only its SHA-256 is stored. A slow hash (argon2id)
// protects guessable secrets; with 160 random bits there is nothing to
// guess (a stolen database gives 2^160 candidates per hash), and a slow
// hash would cost every SMTP AUTH attempt tens of milliseconds and 19 MiB
// — a lever for denial of service. A server-side key (pepper) would
// likewise add nothing at this entropy, and would have to follow every
// master-key rotation. The hash also serves as the lookup key.
//
// Every creation, revocation and use is a ledger event; a password reset
// revokes the account's app passwords.

// MaxAppPasswords is how many unrevoked app passwords an account may hold.
const MaxAppPasswords = 20

// appPasswordBytes is the secret's size: 160 bits.
const appPasswordBytes = 20

var appPasswordEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Errors.
var (
	// ErrAppPasswordRequired refuses an account's sign-in password over
	// SMTP where only an app password is accepted.
	ErrAppPasswordRequired = errors.New("account: this account may use SMTP AUTH only with an app password")
	// ErrNoSendingRole refuses SMTP AUTH to an account that sends no mail.
	ErrNoSendingRole = errors.New("account: this account has no role that sends mail")
	// ErrLoginRevoked is returned by StillValid for a login whose
	// credential changed or was revoked since.
	ErrLoginRevoked = errors.New("account: the credential of this login was changed or revoked")
)

// AppPassword is one app password of an account (never its secret).
type AppPassword struct {
	ID         int64
	Label      string
	CreatedAt  time.Time
	CreatedBy  string
	LastUsed   time.Time // zero: never
	LastUsedIP string
	RevokedAt  time.Time // zero: in use
	RevokedBy  string
}

// Active reports whether the app password is not revoked.
func (p *AppPassword) Active() bool { return p.RevokedAt.IsZero() }

// Privileged reports whether the account holds a role whose portal
// sign-in needs more than a password, or reads every contract's ledger
// (manager, admin, auditor): over SMTP it may use only app passwords.
func (a *Account) Privileged() bool {
	return a.Has(RoleManager, "") || a.Has(RoleAdmin, "") || a.Has(RoleAuditor, "")
}

// MaySend reports whether the account holds a role that sends mail.
func (a *Account) MaySend() bool {
	return a.Has(RoleSender, "") || a.Has(RoleManager, "") || a.Has(RoleAdmin, "")
}

// newAppPassword returns a fresh secret in its display form.
func newAppPassword(rand io.Reader) (string, error) {
	b := make([]byte, appPasswordBytes)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("failed to generate app password: %w", err)
	}
	s := appPasswordEncoding.EncodeToString(b) // 32 characters
	groups := make([]string, 0, 8)
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:i+4])
	}
	return strings.Join(groups, "-"), nil
}

// appPasswordHash hashes what was typed, normalised (case, hyphens and
// spaces do not matter). Anything may be hashed: a sign-in password typed
// where an app password was expected simply matches nothing.
func appPasswordHash(typed string) []byte {
	norm := strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToLower(strings.TrimSpace(typed)))
	h := sha256.Sum256([]byte("sealgate app password\x00" + norm))
	return h[:]
}

func checkLabel(label string) (string, error) {
	label = strings.TrimSpace(label)
	if label == "" || utf8.RuneCountInString(label) > 64 || !utf8.ValidString(label) || strings.IndexFunc(label, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		return "", fmt.Errorf("%w: ラベル(用途、例: iPhone)は1〜64文字で指定してください / give a label of 1-64 characters (what it is for, e.g. iPhone)", ErrInvalid)
	}
	return label, nil
}

// AddAppPassword creates an app password labelled label for the account
// and returns its secret, which is not kept and cannot be shown again.
func (s *Service) AddAppPassword(ctx context.Context, actor, name, label string) (string, *AppPassword, error) {
	label, err := checkLabel(label)
	if err != nil {
		return "", nil, err
	}
	secret, err := newAppPassword(s.Rand)
	if err != nil {
		return "", nil, err
	}
	now := s.Now()
	var id int64
	err = s.DB.Write(ctx, func(tx *database.Tx) error {
		a, err := get(ctx, tx, `name = ?`, strings.ToLower(strings.TrimSpace(name)))
		if err != nil {
			return err
		}
		if !a.MaySend() {
			return fmt.Errorf("%w: このアカウントはメールを送信する役割を持たないため、アプリパスワードは使えません / this account has no role that sends mail, so app passwords are of no use to it", ErrInvalid)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM app_passwords WHERE account_id = ? AND revoked_at IS NULL`, a.ID).Scan(&n); err != nil {
			return err
		}
		if n >= MaxAppPasswords {
			return fmt.Errorf("%w: アプリパスワードは%d個までです。使っていないものを取り消してください / an account may hold %d app passwords; revoke one that is not in use", ErrInvalid, MaxAppPasswords, MaxAppPasswords)
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO app_passwords(account_id, label, hash, created_at, created_by) VALUES (?, ?, ?, ?, ?) RETURNING id`,
			a.ID, label, appPasswordHash(secret), now.UnixMilli(), actor).Scan(&id); err != nil {
			return fmt.Errorf("failed to create app password: %w", err)
		}
		_, err = s.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeAccountChanged, Actor: actor, Account: a.Name,
			Details: map[string]string{"change": "app password added", "app_password": strconv.FormatInt(id, 10), "label": audit.Sanitize(label)}})
		return err
	})
	if err != nil {
		return "", nil, err
	}
	return secret, &AppPassword{ID: id, Label: label, CreatedAt: now, CreatedBy: actor}, nil
}

// AppPasswords lists the account's app passwords, revoked ones included,
// oldest first.
func (s *Service) AppPasswords(ctx context.Context, name string) ([]AppPassword, error) {
	a, err := s.ByName(ctx, name)
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.Read().QueryContext(ctx, `SELECT id, label, created_at, created_by, COALESCE(last_used_at, 0), last_used_ip, COALESCE(revoked_at, 0), revoked_by
		FROM app_passwords WHERE account_id = ? ORDER BY id`, a.ID)
	if err != nil {
		return nil, fmt.Errorf("failed to list app passwords: %w", err)
	}
	defer rows.Close()
	var out []AppPassword
	for rows.Next() {
		var p AppPassword
		var created, used, revoked int64
		if err := rows.Scan(&p.ID, &p.Label, &created, &p.CreatedBy, &used, &p.LastUsedIP, &revoked, &p.RevokedBy); err != nil {
			return nil, fmt.Errorf("failed to list app passwords: %w", err)
		}
		p.CreatedAt = time.UnixMilli(created)
		if used > 0 {
			p.LastUsed = time.UnixMilli(used)
		}
		if revoked > 0 {
			p.RevokedAt = time.UnixMilli(revoked)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// RevokeAppPassword revokes the account's app password named by which:
// its number or its label. A mail client using it is refused from its
// next message on.
func (s *Service) RevokeAppPassword(ctx context.Context, actor, name, which string) (*AppPassword, error) {
	which = strings.TrimSpace(which)
	var p AppPassword
	err := s.DB.Write(ctx, func(tx *database.Tx) error {
		a, err := get(ctx, tx, `name = ?`, strings.ToLower(strings.TrimSpace(name)))
		if err != nil {
			return err
		}
		// By number, else by label (a label may look like a number).
		err = sql.ErrNoRows
		if id, perr := strconv.ParseInt(which, 10, 64); perr == nil {
			err = tx.QueryRowContext(ctx, `SELECT id, label FROM app_passwords WHERE account_id = ? AND revoked_at IS NULL AND id = ?`, a.ID, id).Scan(&p.ID, &p.Label)
		}
		if errors.Is(err, sql.ErrNoRows) {
			err = tx.QueryRowContext(ctx, `SELECT id, label FROM app_passwords WHERE account_id = ? AND revoked_at IS NULL AND label = ? ORDER BY id LIMIT 1`, a.ID, which).Scan(&p.ID, &p.Label)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: アプリパスワード %q (使用中のもの) / no app password %q in use", ErrNotFound, which, which)
		}
		if err != nil {
			return err
		}
		return s.revokeAppPassword(ctx, tx, actor, a, p.ID, p.Label, "")
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

func (s *Service) revokeAppPassword(ctx context.Context, tx *database.Tx, actor string, a *Account, id int64, label, reason string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE app_passwords SET revoked_at = ?, revoked_by = ? WHERE id = ?`, s.Now().UnixMilli(), actor, id); err != nil {
		return fmt.Errorf("failed to revoke app password: %w", err)
	}
	_, err := s.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeAccountChanged, Actor: actor, Account: a.Name, Reason: reason,
		Details: map[string]string{"change": "app password revoked", "app_password": strconv.FormatInt(id, 10), "label": audit.Sanitize(label)}})
	return err
}

// revokeAllAppPasswords revokes every app password of a still in use.
func (s *Service) revokeAllAppPasswords(ctx context.Context, tx *database.Tx, actor string, a *Account, reason string) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, label FROM app_passwords WHERE account_id = ? AND revoked_at IS NULL ORDER BY id`, a.ID)
	if err != nil {
		return fmt.Errorf("failed to list app passwords: %w", err)
	}
	type ap struct {
		id    int64
		label string
	}
	var list []ap
	for rows.Next() {
		var p ap
		if err := rows.Scan(&p.id, &p.label); err != nil {
			rows.Close()
			return fmt.Errorf("failed to list app passwords: %w", err)
		}
		list = append(list, p)
	}
	rows.Close()
	for _, p := range list {
		if err := s.revokeAppPassword(ctx, tx, actor, a, p.id, p.label, reason); err != nil {
			return err
		}
	}
	return nil
}

// matchAppPassword returns the id and label of the account's app password
// typed, or 0. It is asked for unknown names too (accountID 0), so that
// every SMTP AUTH does the same work.
func (s *Service) matchAppPassword(ctx context.Context, accountID int64, typed string) (int64, string, error) {
	var id int64
	var label string
	err := s.DB.Read().QueryRowContext(ctx, `SELECT id, label FROM app_passwords WHERE hash = ? AND account_id = ? AND revoked_at IS NULL`,
		appPasswordHash(typed), accountID).Scan(&id, &label)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("failed to read app passwords: %w", err)
	}
	return id, label, nil
}
