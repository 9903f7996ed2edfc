// Package account keeps the people who use sealgate: one account per person
// (no shared accounts), roles with least privilege (sender; manager of a
// contract; admin; auditor with read-only access to the ledger), argon2id
// passwords, a TOTP second factor (required for managers and admins),
// disabling, and the login history that the periodic access review reads.
// Every change is a ledger event in the same transaction.
package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/notice"
)

// Roles.
const (
	RoleSender  = "sender"
	RoleManager = "manager"
	RoleAdmin   = "admin"
	RoleAuditor = "auditor"
)

// Errors.
var (
	ErrNotFound       = errors.New("account: not found")
	ErrExists         = errors.New("account: already exists")
	ErrBadCredentials = errors.New("account: wrong name or password")
	ErrDisabled       = errors.New("account: disabled")
	ErrLocked         = errors.New("account: locked after too many failed logins")
	ErrWeakPassword   = errors.New("account: password too weak")
	ErrBadTOTP        = errors.New("account: wrong one-time code")
	ErrTOTPRequired   = errors.New("account: a second factor (TOTP) is required for this role")
	ErrInvalid        = errors.New("account: invalid value")
	ErrLastAdmin      = errors.New("account: cannot disable or demote the last admin")
)

// Grant is one role, possibly limited to a contract (managers).
type Grant struct {
	Role     string
	Contract string // "" = not bound to a contract
}

func (g Grant) String() string {
	if g.Contract != "" {
		return g.Role + ":" + g.Contract
	}
	return g.Role
}

// ParseGrant parses "sender", "manager:C-2026-001", "admin", "auditor".
func ParseGrant(s string) (Grant, error) {
	role, contract, _ := strings.Cut(strings.TrimSpace(s), ":")
	switch role {
	case RoleSender, RoleManager, RoleAdmin, RoleAuditor:
	default:
		return Grant{}, fmt.Errorf("%w: role %q (sender, manager[:CONTRACT], admin, auditor)", ErrInvalid, role)
	}
	if contract != "" && role != RoleManager {
		return Grant{}, fmt.Errorf("%w: only the manager role is per contract", ErrInvalid)
	}
	return Grant{Role: role, Contract: contract}, nil
}

// Account is one person.
type Account struct {
	ID           int64
	Name         string
	Email        string
	DisplayName  string
	Grants       []Grant
	Status       string
	TOTP         bool
	CreatedAt    time.Time
	LastLogin    time.Time // zero: never
	LockedUntil  time.Time
	FailedLogins int
}

// Has reports whether the account holds role (for any contract when
// contract is "", else for that contract or unbound).
func (a *Account) Has(role, contract string) bool {
	for _, g := range a.Grants {
		if g.Role == role && (contract == "" || g.Contract == "" || g.Contract == contract) {
			return true
		}
	}
	return false
}

// NeedsTOTP reports whether the account's roles require a second factor:
// every role that reads more than its own mail (managers, admins, and
// auditors, who search and export the ledger of every contract).
func (a *Account) NeedsTOTP() bool {
	return a.Has(RoleManager, "") || a.Has(RoleAdmin, "") || a.Has(RoleAuditor, "")
}

// Service manages accounts.
type Service struct {
	DB     *database.DB
	Keys   *crypto.Keyring
	Ledger *audit.Ledger
	Now    func() time.Time
	Rand   io.Reader
	// MaxFailures locks an account after that many consecutive failed
	// logins (default 10) for LockFor (default 30 minutes).
	MaxFailures int
	LockFor     time.Duration
	// Notices queues the alert to the administrators when an account gets
	// locked (nil: no alert).
	Notices Notifier
	// Log is where a lock is logged (nil: nowhere).
	Log *slog.Logger
	// AppPasswordsOnly makes SMTP AUTH accept only app passwords for
	// every account (privileged accounts always need one).
	AppPasswordsOnly bool
}

// Notifier queues a system notice in the caller's transaction (the
// gateway's QueueNotice).
type Notifier interface {
	QueueNotice(ctx context.Context, tx *database.Tx, m notice.Mail) error
}

func (s *Service) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Service) maxFailures() int {
	if s.MaxFailures <= 0 {
		return 10
	}
	return s.MaxFailures
}

func (s *Service) lockFor() time.Duration {
	if s.LockFor <= 0 {
		return 30 * time.Minute
	}
	return s.LockFor
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,62}$`)

const selectAccount = `SELECT id, name, email, display_name, status, totp_wrapped IS NOT NULL, created_at, COALESCE(last_login_at, 0), COALESCE(locked_until, 0), failed_logins FROM accounts`

func scanAccount(row interface{ Scan(...any) error }) (*Account, error) {
	a := &Account{}
	var created, last, locked int64
	if err := row.Scan(&a.ID, &a.Name, &a.Email, &a.DisplayName, &a.Status, &a.TOTP, &created, &last, &locked, &a.FailedLogins); err != nil {
		return nil, err
	}
	a.CreatedAt = time.UnixMilli(created)
	if last > 0 {
		a.LastLogin = time.UnixMilli(last)
	}
	if locked > 0 {
		a.LockedUntil = time.UnixMilli(locked)
	}
	return a, nil
}

func loadGrants(ctx context.Context, q database.Querier, a *Account) error {
	rows, err := q.QueryContext(ctx, `SELECT role, contract FROM account_roles WHERE account_id = ? ORDER BY role, contract`, a.ID)
	if err != nil {
		return fmt.Errorf("failed to read roles: %w", err)
	}
	defer rows.Close()
	a.Grants = nil
	for rows.Next() {
		var g Grant
		if err := rows.Scan(&g.Role, &g.Contract); err != nil {
			return fmt.Errorf("failed to read roles: %w", err)
		}
		a.Grants = append(a.Grants, g)
	}
	return rows.Err()
}

func get(ctx context.Context, q database.Querier, where string, arg any) (*Account, error) {
	a, err := scanAccount(q.QueryRowContext(ctx, selectAccount+` WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read account: %w", err)
	}
	return a, loadGrants(ctx, q, a)
}

// ByName returns the account with the login name.
func (s *Service) ByName(ctx context.Context, name string) (*Account, error) {
	return get(ctx, s.DB.Read(), `name = ?`, strings.ToLower(name))
}

// ByEmail returns the account whose address is email.
func (s *Service) ByEmail(ctx context.Context, email string) (*Account, error) {
	return get(ctx, s.DB.Read(), `email = ?`, email)
}

// ByID returns the account.
func (s *Service) ByID(ctx context.Context, id int64) (*Account, error) {
	return get(ctx, s.DB.Read(), `id = ?`, id)
}

// List returns every account, by name.
func (s *Service) List(ctx context.Context) ([]*Account, error) {
	rows, err := s.DB.Read().QueryContext(ctx, selectAccount+` ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("failed to list accounts: %w", err)
	}
	var out []*Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to list accounts: %w", err)
		}
		out = append(out, a)
	}
	rows.Close()
	for _, a := range out {
		if err := loadGrants(ctx, s.DB.Read(), a); err != nil {
			return nil, err
		}
	}
	return out, rows.Err()
}

// NewAccount is what Create needs.
type NewAccount struct {
	Name        string
	Email       string
	DisplayName string
	Password    string
	Grants      []Grant
}

// Create adds an account. actor is who does it (for the ledger).
func (s *Service) Create(ctx context.Context, actor string, n NewAccount) (*Account, error) {
	n.Name = strings.ToLower(strings.TrimSpace(n.Name))
	if !nameRE.MatchString(n.Name) {
		return nil, fmt.Errorf("%w: ログイン名は英小文字・数字・. _ - の2〜63文字です / login names are 2–63 of a-z 0-9 . _ -", ErrInvalid)
	}
	addr, err := mail.ParseAddress(n.Email)
	if err != nil || addr.Name != "" || strings.ContainsAny(addr.Address, " <>") {
		return nil, fmt.Errorf("%w: メールアドレスが正しくありません / not an e-mail address: %q", ErrInvalid, n.Email)
	}
	// Stored in its canonical form (IDNA A-label, lower-case domain): the
	// form the gateway compares senders and transfers in. Routing tricks
	// (%, !, a quoted @) are no one's address.
	canon, err := address.Parse(addr.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: メールアドレスが正しくありません / not an e-mail address: %q (%v)", ErrInvalid, n.Email, err)
	}
	addr.Address = canon.String()
	if err := checkPasswordPolicy(n.Password); err != nil {
		return nil, err
	}
	if len(n.Grants) == 0 {
		n.Grants = []Grant{{Role: RoleSender}}
	}
	hash, err := hashPassword(s.Rand, n.Password)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	var id int64
	err = s.DB.Write(ctx, func(tx *database.Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO accounts(name, email, display_name, password_hash, created_at, password_changed_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			n.Name, addr.Address, n.DisplayName, hash, now.UnixMilli(), now.UnixMilli()).Scan(&id)
		if err != nil {
			if database.IsUniqueViolation(err) {
				return fmt.Errorf("%w: %s / %s", ErrExists, n.Name, addr.Address)
			}
			return fmt.Errorf("failed to create account: %w", err)
		}
		if err := setGrants(ctx, tx, id, n.Grants); err != nil {
			return err
		}
		_, err = s.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeAccountCreated, Actor: actor, Account: n.Name,
			Details: map[string]string{"email": addr.Address, "roles": grantsString(n.Grants)}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.ByID(ctx, id)
}

func setGrants(ctx context.Context, tx *database.Tx, id int64, grants []Grant) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM account_roles WHERE account_id = ?`, id); err != nil {
		return fmt.Errorf("failed to set roles: %w", err)
	}
	for _, g := range grants {
		if _, err := tx.ExecContext(ctx, `INSERT INTO account_roles(account_id, role, contract) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, id, g.Role, g.Contract); err != nil {
			return fmt.Errorf("failed to set roles: %w", err)
		}
	}
	return nil
}

func grantsString(gs []Grant) string {
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = g.String()
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

// change runs fn on the named account in a write transaction and records an
// event of type typ.
func (s *Service) change(ctx context.Context, actor, name, typ string, details map[string]string, fn func(tx *database.Tx, a *Account) error) error {
	return s.DB.Write(ctx, func(tx *database.Tx) error {
		a, err := get(ctx, tx, `name = ?`, strings.ToLower(name))
		if err != nil {
			return err
		}
		if err := fn(tx, a); err != nil {
			return err
		}
		_, err = s.Ledger.Append(ctx, tx, audit.Event{Type: typ, Actor: actor, Account: a.Name, Details: details})
		return err
	})
}

// Disable disables an account at once: its sessions end and it can no
// longer log in or send.
func (s *Service) Disable(ctx context.Context, actor, name, reason string) error {
	return s.change(ctx, actor, name, audit.TypeAccountDisabled, map[string]string{"reason": reason}, func(tx *database.Tx, a *Account) error {
		if a.Has(RoleAdmin, "") {
			if err := notLastAdmin(ctx, tx, a.ID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET status = 'disabled' WHERE id = ?`, a.ID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE account_id = ?`, a.ID)
		return err
	})
}

func notLastAdmin(ctx context.Context, tx *database.Tx, id int64) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts a JOIN account_roles r ON r.account_id = a.id
		WHERE r.role = 'admin' AND a.status = 'active' AND a.id != ?`, id).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return ErrLastAdmin
	}
	return nil
}

// Enable re-enables an account and clears its lock.
func (s *Service) Enable(ctx context.Context, actor, name string) error {
	return s.change(ctx, actor, name, audit.TypeAccountEnabled, nil, func(tx *database.Tx, a *Account) error {
		_, err := tx.ExecContext(ctx, `UPDATE accounts SET status = 'active', failed_logins = 0, locked_until = NULL WHERE id = ?`, a.ID)
		return err
	})
}

// SetPassword replaces the password, ends every session of the account
// and revokes its app passwords (a reset often follows a suspected
// compromise: an app password made with the old password must not
// outlive it).
func (s *Service) SetPassword(ctx context.Context, actor, name, password string) error {
	if err := checkPasswordPolicy(password); err != nil {
		return err
	}
	hash, err := hashPassword(s.Rand, password)
	if err != nil {
		return err
	}
	return s.change(ctx, actor, name, audit.TypeAccountChanged, map[string]string{"change": "password"}, func(tx *database.Tx, a *Account) error {
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET password_hash = ?, password_changed_at = ?, failed_logins = 0, locked_until = NULL WHERE id = ?`,
			hash, s.Now().UnixMilli(), a.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE account_id = ?`, a.ID); err != nil {
			return err
		}
		return s.revokeAllAppPasswords(ctx, tx, actor, a, "password reset")
	})
}

// SetGrants replaces the account's roles.
func (s *Service) SetGrants(ctx context.Context, actor, name string, grants []Grant) error {
	return s.change(ctx, actor, name, audit.TypeAccountChanged, map[string]string{"change": "roles", "roles": grantsString(grants)}, func(tx *database.Tx, a *Account) error {
		wasAdmin := a.Has(RoleAdmin, "")
		isAdmin := false
		for _, g := range grants {
			isAdmin = isAdmin || g.Role == RoleAdmin
		}
		if wasAdmin && !isAdmin {
			if err := notLastAdmin(ctx, tx, a.ID); err != nil {
				return err
			}
		}
		if err := setGrants(ctx, tx, a.ID, grants); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE account_id = ?`, a.ID)
		return err
	})
}
