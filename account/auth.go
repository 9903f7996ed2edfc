package account

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/store"
)

// Login describes where a login attempt comes from.
type Login struct {
	Name      string
	Password  string
	RemoteIP  string
	UserAgent string
	Via       string // "portal" or "smtp"
}

// dummyHash is checked when the name is unknown, so that a wrong name and
// a wrong password take the same time.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$c2VhbGdhdGUtZHVtbXk$0AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// Authenticate checks a name (or e-mail address) and password. Every
// attempt is recorded: in the login history and as a login or login.failed
// ledger event. After MaxFailures consecutive failures the account is
// locked for LockFor and OnLock is called. A disabled or locked account is
// refused with ErrDisabled or ErrLocked whether the password is right or
// not; attempts on it do not count. Callers must show one answer for
// ErrBadCredentials, ErrDisabled and ErrLocked: telling them apart would
// tell which names exist.
func (s *Service) Authenticate(ctx context.Context, l Login) (*Account, error) {
	name := strings.ToLower(strings.TrimSpace(l.Name))
	a, err := get(ctx, s.DB.Read(), `name = ?1 OR email = ?1`, name)
	var hash string
	if err == nil {
		if qerr := s.DB.Read().QueryRowContext(ctx, `SELECT password_hash FROM accounts WHERE id = ?`, a.ID).Scan(&hash); qerr != nil {
			return nil, fmt.Errorf("failed to read account: %w", qerr)
		}
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	} else {
		hash = dummyHash
	}
	ok, cerr := checkPassword(hash, l.Password)
	if cerr != nil && a != nil {
		return nil, cerr
	}
	now := s.Now()
	// The state of the account is decided before the password counts: a
	// disabled or locked account gets the same answer with a right or a
	// wrong password (no password oracle), after the same argon2id work.
	var result error
	switch {
	case a == nil:
		result = ErrBadCredentials
	case a.Status != "active":
		result = ErrDisabled
	case !a.LockedUntil.IsZero() && now.Before(a.LockedUntil):
		result = ErrLocked
	case !ok:
		result = ErrBadCredentials
	}
	locked := false
	err = s.DB.Write(ctx, func(tx *store.Tx) error {
		var id any
		if a != nil {
			id = a.ID
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO logins(account_id, name, at, ok, via, remote_ip) VALUES (?, ?, ?, ?, ?, ?)`,
			id, audit.Sanitize(name), now.UnixMilli(), result == nil, l.Via, l.RemoteIP); err != nil {
			return err
		}
		ev := audit.Event{Type: audit.TypeLogin, Actor: actorName(a, name), RemoteIP: l.RemoteIP, UserAgent: l.UserAgent,
			Details: map[string]string{"via": l.Via}}
		if a != nil {
			ev.Account = a.Name
		}
		if result == nil {
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET failed_logins = 0, locked_until = NULL, last_login_at = ? WHERE id = ?`, now.UnixMilli(), a.ID); err != nil {
				return err
			}
			_, err := s.Ledger.Append(ctx, tx, ev)
			return err
		}
		ev.Type = audit.TypeLoginFailed
		ev.Reason = reasonOf(result)
		if a != nil && errors.Is(result, ErrBadCredentials) {
			var failed int
			if err := tx.QueryRowContext(ctx, `UPDATE accounts SET failed_logins = failed_logins + 1 WHERE id = ? RETURNING failed_logins`, a.ID).Scan(&failed); err != nil {
				return err
			}
			if failed >= s.maxFailures() && (a.LockedUntil.IsZero() || !now.Before(a.LockedUntil)) {
				until := now.Add(s.lockFor())
				if _, err := tx.ExecContext(ctx, `UPDATE accounts SET locked_until = ?, failed_logins = 0 WHERE id = ?`, until.UnixMilli(), a.ID); err != nil {
					return err
				}
				a.LockedUntil = until
				locked = true
				ev.Result = "locked"
			}
		}
		if _, err := s.Ledger.Append(ctx, tx, ev); err != nil {
			return err
		}
		if locked {
			_, err := s.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeAccountChanged, Actor: "system", Account: a.Name, RemoteIP: l.RemoteIP,
				Reason:  fmt.Sprintf("locked after %d failed logins", s.maxFailures()),
				Details: map[string]string{"change": "locked", "until": a.LockedUntil.UTC().Format(time.RFC3339)}})
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to record login: %w", err)
	}
	if locked && s.OnLock != nil {
		s.OnLock(a, l.RemoteIP)
	}
	if result != nil {
		return nil, result
	}
	return a, nil
}

func actorName(a *Account, name string) string {
	if a != nil {
		return a.Name
	}
	// An unknown name is recorded as typed (sanitized), marked as such.
	return "unknown:" + audit.Sanitize(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, truncate(name, 64)))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, ErrBadCredentials):
		return "bad credentials"
	case errors.Is(err, ErrDisabled):
		return "account disabled"
	case errors.Is(err, ErrLocked):
		return "account locked"
	case errors.Is(err, ErrBadTOTP):
		return "wrong one-time code"
	}
	return err.Error()
}

// Logout records the end of a portal session.
func (s *Service) Logout(ctx context.Context, a *Account, ip, ua string) error {
	return s.DB.Write(ctx, func(tx *store.Tx) error {
		_, err := s.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeLogout, Actor: a.Name, Account: a.Name, RemoteIP: ip, UserAgent: ua})
		return err
	})
}

// EnrollTOTP gives the account a new TOTP secret and returns the otpauth://
// URL to show as a QR code or type into an authenticator app. The secret is
// stored wrapped to the master key.
func (s *Service) EnrollTOTP(ctx context.Context, actor, name, issuer string) (string, error) {
	a, err := s.ByName(ctx, name)
	if err != nil {
		return "", err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: a.Email, Rand: s.Rand, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", fmt.Errorf("failed to generate TOTP secret: %w", err)
	}
	wrapped, err := s.Keys.Wrap([]byte(key.Secret()))
	if err != nil {
		return "", err
	}
	err = s.change(ctx, actor, name, audit.TypeAccountChanged, map[string]string{"change": "totp enrolled"}, func(tx *store.Tx, a *Account) error {
		_, err := tx.ExecContext(ctx, `UPDATE accounts SET totp_wrapped = ? WHERE id = ?`, wrapped, a.ID)
		return err
	})
	if err != nil {
		return "", err
	}
	return key.URL(), nil
}

// CheckTOTP verifies a one-time code for the account (±1 period of clock
// skew). A wrong code counts as a failed login.
func (s *Service) CheckTOTP(ctx context.Context, a *Account, code, ip, ua string) error {
	var wrapped []byte
	if err := s.DB.Read().QueryRowContext(ctx, `SELECT totp_wrapped FROM accounts WHERE id = ?`, a.ID).Scan(&wrapped); err != nil {
		return fmt.Errorf("failed to read account: %w", err)
	}
	if len(wrapped) == 0 {
		return ErrTOTPRequired
	}
	secret, err := s.Keys.Unwrap(wrapped)
	if err != nil {
		return err
	}
	ok, err := totp.ValidateCustom(strings.TrimSpace(code), string(secret), s.Now(), totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err == nil && ok {
		return nil
	}
	werr := s.DB.Write(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO logins(account_id, name, at, ok, via, remote_ip) VALUES (?, ?, ?, 0, 'portal', ?)`,
			a.ID, a.Name, s.Now().UnixMilli(), ip); err != nil {
			return err
		}
		_, err := s.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeLoginFailed, Actor: a.Name, Account: a.Name, RemoteIP: ip, UserAgent: ua,
			Reason: "wrong one-time code"})
		return err
	})
	if werr != nil {
		return werr
	}
	return ErrBadTOTP
}

// TOTPCode returns the current code for a raw secret (tests and tools).
func TOTPCode(secret string, t time.Time) (string, error) { return totp.GenerateCode(secret, t) }
