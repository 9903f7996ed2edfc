package account

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/notice"
)

// Where a login comes from.
const (
	ViaPortal = "portal"
	ViaSMTP   = "smtp"
)

// Login describes where a login attempt comes from.
type Login struct {
	Name      string
	Password  string
	RemoteIP  string
	UserAgent string
	Via       string // ViaPortal or ViaSMTP: set by Authenticate and AuthenticateSMTP
}

// dummyHash is checked when the name is unknown, so that a wrong name and
// a wrong password take the same time.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$c2VhbGdhdGUtZHVtbXk$0AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// Authenticate checks a name (or e-mail address) and password for the
// portal. Every attempt is recorded: in the login history and as a login
// or login.failed ledger event. After MaxFailures consecutive failures
// (wrong passwords, wrong one-time codes and wrong SMTP credentials
// together) the account is locked for LockFor and the administrators are
// alerted (a notice queued in the same transaction). A
// disabled or locked account is refused with ErrDisabled or ErrLocked
// whether the password is right or not; attempts on it do not count.
// Callers must show one answer for ErrBadCredentials, ErrDisabled and
// ErrLocked: telling them apart would tell which names exist.
//
// For an account that needs a second factor, a right password is only
// the first step: it neither resets the failure count nor is recorded as
// a login; CheckTOTP completes the login.
func (s *Service) Authenticate(ctx context.Context, l Login) (*Account, error) {
	l.Via = ViaPortal
	a, _, err := s.authenticate(ctx, l)
	return a, err
}

// SMTPLogin is a successful SMTP AUTH: the account and the credential it
// used, for StillValid.
type SMTPLogin struct {
	Account     *Account
	AppPassword int64 // the app password used; 0: the sign-in password
	At          time.Time
}

// AuthenticateSMTP checks SMTP AUTH credentials: the account's sign-in
// password or one of its app passwords. A privileged account (manager,
// admin, auditor), or every account when AppPasswordsOnly is set, is
// accepted only with an app password: its sign-in password is refused
// with ErrAppPasswordRequired (not counted toward the lockout: it is most
// likely the person's own mail client, and the answer is the same as for a
// wrong password, so it tells nobody the password was right). An account
// with no role that sends mail is refused with ErrNoSendingRole. The
// sign-in password is hashed and the app passwords looked up on every
// attempt, whatever the account, so the time taken tells nothing either.
// Callers must give every refusal the same answer.
func (s *Service) AuthenticateSMTP(ctx context.Context, l Login) (*SMTPLogin, error) {
	l.Via = ViaSMTP
	a, app, err := s.authenticate(ctx, l)
	if err != nil {
		return nil, err
	}
	return &SMTPLogin{Account: a, AppPassword: app, At: s.Now()}, nil
}

// StillValid reports whether an SMTP login still holds: the account is
// active and still may send, and its credential was not changed or revoked
// since (the app password, or for the sign-in password: not changed, and
// still allowed over SMTP for the account's roles). A lock does not end a
// login made before it (guessing someone's password must not stop their
// mail). It returns ErrDisabled, ErrNoSendingRole or ErrLoginRevoked, or a
// database error.
func (s *Service) StillValid(ctx context.Context, sl *SMTPLogin) error {
	a, err := s.ByID(ctx, sl.Account.ID)
	if errors.Is(err, ErrNotFound) {
		return ErrDisabled
	}
	if err != nil {
		return err
	}
	if a.Status != "active" {
		return ErrDisabled
	}
	if !a.MaySend() {
		return ErrNoSendingRole
	}
	if sl.AppPassword != 0 {
		var n int
		if err := s.DB.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM app_passwords WHERE id = ? AND account_id = ? AND revoked_at IS NULL`,
			sl.AppPassword, a.ID).Scan(&n); err != nil {
			return fmt.Errorf("failed to read app passwords: %w", err)
		}
		if n == 0 {
			return ErrLoginRevoked
		}
		return nil
	}
	var changed int64
	if err := s.DB.Read().QueryRowContext(ctx, `SELECT password_changed_at FROM accounts WHERE id = ?`, a.ID).Scan(&changed); err != nil {
		return fmt.Errorf("failed to read account: %w", err)
	}
	if changed > sl.At.UnixMilli() || a.Privileged() || s.AppPasswordsOnly {
		return ErrLoginRevoked
	}
	return nil
}

// authenticate is Authenticate and AuthenticateSMTP: it returns the
// account and, over SMTP, the app password used (0: the password).
func (s *Service) authenticate(ctx context.Context, l Login) (*Account, int64, error) {
	name := strings.ToLower(strings.TrimSpace(l.Name))
	a, err := get(ctx, s.DB.Read(), `name = ?1 OR email = ?1`, name)
	var hash string
	var accountID int64
	if err == nil {
		accountID = a.ID
		if qerr := s.DB.Read().QueryRowContext(ctx, `SELECT password_hash FROM accounts WHERE id = ?`, a.ID).Scan(&hash); qerr != nil {
			return nil, 0, fmt.Errorf("failed to read account: %w", qerr)
		}
	} else if !errors.Is(err, ErrNotFound) {
		return nil, 0, err
	} else {
		a = nil
		hash = dummyHash
	}
	// Both checks, always: the time taken does not depend on which
	// credential the account may use, or on whether it exists.
	ok, cerr := checkPassword(hash, l.Password)
	if cerr != nil && a != nil {
		return nil, 0, cerr
	}
	var appID int64
	var appLabel string
	if l.Via == ViaSMTP {
		if appID, appLabel, err = s.matchAppPassword(ctx, accountID, l.Password); err != nil {
			return nil, 0, err
		}
	}
	now := s.Now()
	// The state of the account is decided before the password counts: a
	// disabled or locked account gets the same answer with a right or a
	// wrong password (no password oracle), after the same argon2id work.
	at := attempt{a: a, name: name, l: l, factor: "password"}
	switch {
	case a == nil:
		at.result = ErrBadCredentials
	case a.Status != "active":
		at.result = ErrDisabled
	case a.locked(now):
		at.result = ErrLocked
	case appID != 0:
		at.factor = "app password"
		at.details = map[string]string{"app_password": strconv.FormatInt(appID, 10), "label": audit.Sanitize(appLabel)}
		at.success = func(tx *database.Tx) error {
			res, err := tx.ExecContext(ctx, `UPDATE app_passwords SET last_used_at = ?, last_used_ip = ? WHERE id = ? AND revoked_at IS NULL`,
				now.UnixMilli(), l.RemoteIP, appID)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return errRefused // revoked meanwhile
			}
			return nil
		}
		at.refused = ErrBadCredentials
	case !ok:
		at.result, at.count = ErrBadCredentials, true
	case l.Via == ViaSMTP && (a.Privileged() || s.AppPasswordsOnly):
		at.result = ErrAppPasswordRequired
	case l.Via == ViaPortal && a.NeedsTOTP():
		at.notALogin = true
	}
	if at.result == nil && l.Via == ViaSMTP && !a.MaySend() {
		at.result, at.success = ErrNoSendingRole, nil
	}
	if err := s.record(ctx, &at); err != nil {
		return nil, 0, err
	}
	if at.result != nil {
		return nil, 0, at.result
	}
	return a, appID, nil
}

// ConfirmPassword checks the sign-in password of a signed-in account
// again before a sensitive change (creating an app password). A wrong
// password counts toward the lockout like a failed sign-in; a right one
// is not recorded as a login.
func (s *Service) ConfirmPassword(ctx context.Context, a *Account, password, ip, ua string) error {
	fresh, err := get(ctx, s.DB.Read(), `id = ?`, a.ID)
	if err != nil {
		return err
	}
	var hash string
	if err := s.DB.Read().QueryRowContext(ctx, `SELECT password_hash FROM accounts WHERE id = ?`, a.ID).Scan(&hash); err != nil {
		return fmt.Errorf("failed to read account: %w", err)
	}
	ok, err := checkPassword(hash, password)
	if err != nil {
		return err
	}
	at := attempt{a: fresh, name: fresh.Name, l: Login{RemoteIP: ip, UserAgent: ua, Via: ViaPortal}, factor: "password",
		details: map[string]string{"step": "confirmation"}, notALogin: true}
	switch {
	case fresh.Status != "active":
		at.result = ErrDisabled
	case fresh.locked(s.Now()):
		at.result = ErrLocked
	case !ok:
		at.result, at.count = ErrBadCredentials, true
	}
	if err := s.record(ctx, &at); err != nil {
		return err
	}
	return at.result
}

// locked reports whether the account is locked at now.
func (a *Account) locked(now time.Time) bool {
	return !a.LockedUntil.IsZero() && now.Before(a.LockedUntil)
}

// attempt is one sign-in step and its outcome.
type attempt struct {
	a         *Account // nil: unknown name
	name      string   // as typed (normalised), recorded for unknown names
	l         Login
	factor    string // "password", "totp", "app password"
	result    error  // nil: accepted
	count     bool   // a failure that counts toward the lockout
	notALogin bool   // accepted, but not a login by itself (a second factor follows)
	// success, when set, runs in the transaction before an accepted step
	// is recorded; it may still refuse the step: errRefused (then the
	// result is refused, a failure that counts), ErrDisabled or ErrLocked
	// (the state changed since).
	success func(tx *database.Tx) error
	refused error
	details map[string]string
	locked  bool // this attempt locked the account
}

// record writes the attempt to the login history and the ledger in one
// transaction, counts a failure toward the lockout and locks the account
// when the count reaches MaxFailures, with the alert to the
// administrators. A lock also ends the account's sessions that are still
// waiting for their second factor.
func (s *Service) record(ctx context.Context, at *attempt) error {
	now := s.Now()
	// The function may run more than once (database.DB.Write): each run
	// starts from the attempt as it came.
	result, count := at.result, at.count
	var lockedUntil time.Time
	if at.a != nil {
		lockedUntil = at.a.LockedUntil
	}
	err := s.DB.Write(ctx, func(tx *database.Tx) error {
		at.locked, at.result, at.count = false, result, count
		if at.a != nil {
			at.a.LockedUntil = lockedUntil
		}
		if at.result == nil && at.success != nil {
			switch err := at.success(tx); {
			case err == nil:
			case errors.Is(err, errRefused):
				at.result, at.count = at.refused, true
			case errors.Is(err, ErrDisabled), errors.Is(err, ErrLocked):
				at.result = err
			default:
				return err
			}
		}
		if at.notALogin && at.result == nil {
			return nil // recorded when the second factor completes the login
		}
		var id any
		name := typedName(at.name)
		if at.a != nil {
			id, name = at.a.ID, at.a.Name
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO logins(account_id, name, at, ok, via, remote_ip) VALUES (?, ?, ?, ?, ?, ?)`,
			id, name, now.UnixMilli(), at.result == nil, at.l.Via, at.l.RemoteIP); err != nil {
			return err
		}
		details := map[string]string{"via": at.l.Via}
		for k, v := range at.details {
			details[k] = v
		}
		ev := audit.Event{Type: audit.TypeLogin, Actor: actorName(at.a, at.name), RemoteIP: at.l.RemoteIP, UserAgent: at.l.UserAgent, Details: details}
		if at.a != nil {
			ev.Account = at.a.Name
		}
		if at.result == nil {
			details["factor"] = at.factor
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET failed_logins = 0, locked_until = NULL, last_login_at = ? WHERE id = ?`, now.UnixMilli(), at.a.ID); err != nil {
				return err
			}
			_, err := s.Ledger.Append(ctx, tx, ev)
			return err
		}
		ev.Type = audit.TypeLoginFailed
		ev.Reason = reasonOf(at.result)
		if at.a != nil && at.count {
			var failed int
			var lockedUntil int64
			if err := tx.QueryRowContext(ctx, `UPDATE accounts SET failed_logins = failed_logins + 1 WHERE id = ? RETURNING failed_logins, COALESCE(locked_until, 0)`, at.a.ID).
				Scan(&failed, &lockedUntil); err != nil {
				return err
			}
			if failed >= s.maxFailures() && (lockedUntil == 0 || now.UnixMilli() >= lockedUntil) {
				until := now.Add(s.lockFor())
				if _, err := tx.ExecContext(ctx, `UPDATE accounts SET locked_until = ?, failed_logins = 0 WHERE id = ?`, until.UnixMilli(), at.a.ID); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE account_id = ? AND mfa_done = 0`, at.a.ID); err != nil {
					return err
				}
				at.a.LockedUntil = until
				at.locked = true
				ev.Result = "locked"
			}
		}
		if _, err := s.Ledger.Append(ctx, tx, ev); err != nil {
			return err
		}
		if at.locked {
			if _, err := s.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeAccountChanged, Actor: "system", Account: at.a.Name, RemoteIP: at.l.RemoteIP,
				Reason:  fmt.Sprintf("locked after %d failed logins", s.maxFailures()),
				Details: map[string]string{"change": "locked", "until": at.a.LockedUntil.UTC().Format(time.RFC3339)}}); err != nil {
				return err
			}
			return s.alertLocked(ctx, tx, at.a, at.l.RemoteIP)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failed to record login: %w", err)
	}
	if at.locked {
		s.log().Warn("account locked after repeated failed logins", "account", at.a.Name, "ip", at.l.RemoteIP, "until", at.a.LockedUntil)
	}
	return nil
}

// alertLocked queues the alert to the active administrators that a has
// been locked (the ledger has the events).
func (s *Service) alertLocked(ctx context.Context, tx *database.Tx, a *Account, ip string) error {
	if s.Notices == nil {
		return nil
	}
	admins, err := ActiveEmails(ctx, tx, RoleAdmin, "")
	if err != nil {
		return err
	}
	if len(admins) == 0 {
		s.log().Warn("no active administrator to alert of a locked account", "account", a.Name)
		return nil
	}
	return s.Notices.QueueNotice(ctx, tx, notice.Mail{To: admins,
		Notice: notice.AccountLocked{Name: a.Name, Email: a.Email, Until: a.LockedUntil, LastIP: ip}})
}

func actorName(a *Account, name string) string {
	if a != nil {
		return a.Name
	}
	// An unknown name is recorded as typed, marked as such, if it could be
	// a name or an address (typedName).
	return "unknown:" + typedName(name)
}

// typedName is what the login history and the ledger keep of a name that
// matches no account: the name as typed when it has the shape of an
// account name or an e-mail address, and otherwise only its length —
// people type their password into the name field, and the ledger is
// append-only and exported to auditors.
func typedName(name string) string {
	name = truncate(name, 64)
	if nameRE.MatchString(name) || emailShaped(name) {
		return audit.Sanitize(name)
	}
	return fmt.Sprintf("(not a name: %d characters)", utf8.RuneCountInString(name))
}

// emailShaped reports whether s looks like local@domain with no spaces or
// control characters.
func emailShaped(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || !strings.Contains(s[at+1:], ".") {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
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
	case errors.Is(err, ErrAppPasswordRequired):
		return "app password required"
	case errors.Is(err, ErrNoSendingRole):
		return "no sending role"
	}
	return err.Error()
}

// Logout records the end of a portal session.
func (s *Service) Logout(ctx context.Context, a *Account, ip, ua string) error {
	return s.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := s.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeLogout, Actor: a.Name, Account: a.Name, RemoteIP: ip, UserAgent: ua})
		return err
	})
}

// EnrollTOTP gives the account a new TOTP secret and returns the otpauth://
// URL to show as a QR code or type into an authenticator app. The secret is
// stored wrapped to the master key. The account's sessions end.
func (s *Service) EnrollTOTP(ctx context.Context, actor, name, issuer string) (string, error) {
	a, err := s.ByName(ctx, name)
	if err != nil {
		return "", err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: a.Email, Rand: s.Rand, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", fmt.Errorf("failed to generate TOTP secret: %w", err)
	}
	ep := s.Keys.Current()
	wrapped, err := ep.Wrap([]byte(key.Secret()))
	if err != nil {
		return "", err
	}
	err = s.change(ctx, actor, name, audit.TypeAccountChanged, map[string]string{"change": "totp enrolled"}, func(tx *database.Tx, a *Account) error {
		if err := masterkey.Fence(ctx, tx, ep); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET totp_wrapped = ? WHERE id = ?`, wrapped, a.ID); err != nil {
			return err
		}
		// A new secret usually means a lost or replaced phone: sessions
		// signed in with the old one end. totp_last_step is kept (steps
		// only move forward).
		_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE account_id = ?`, a.ID)
		return err
	})
	if err != nil {
		return "", err
	}
	return key.URL(), nil
}

// errRefused makes record refuse a step that looked right (a replayed
// code).
var errRefused = errors.New("account: refused")

// totpPeriod is the TOTP time step (RFC 6238's default, what every
// authenticator app uses).
const totpPeriod = 30

// CheckTOTP verifies a one-time code for a (the second step of a portal
// login) and completes the login: the failure count is reset and the
// login recorded. ±1 step of clock skew is accepted, and each code works
// once: the last accepted time step is recorded with the check, in one
// transaction, and a code of that step or an earlier one is refused. A
// wrong or replayed code counts toward the lockout like a wrong password;
// a disabled or locked account is refused whatever the code.
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
	fresh, err := get(ctx, s.DB.Read(), `id = ?`, a.ID) // the lock or status may have changed since the password step
	if err != nil {
		return err
	}
	now := s.Now()
	steps := matchingSteps(string(secret), strings.Join(strings.Fields(code), ""), now)
	at := attempt{a: fresh, name: fresh.Name, l: Login{RemoteIP: ip, UserAgent: ua, Via: ViaPortal}, factor: "totp"}
	switch {
	case fresh.Status != "active":
		at.result = ErrDisabled
	case fresh.locked(now):
		at.result = ErrLocked
	case len(steps) == 0:
		at.result, at.count = ErrBadTOTP, true
	default:
		at.refused = ErrBadTOTP
		at.success = func(tx *database.Tx) error {
			var status string
			var lockedUntil int64
			if err := tx.QueryRowContext(ctx, `SELECT status, COALESCE(locked_until, 0) FROM accounts WHERE id = ?`, a.ID).Scan(&status, &lockedUntil); err != nil {
				return err
			}
			if status != "active" {
				return ErrDisabled
			}
			if now.UnixMilli() < lockedUntil {
				return ErrLocked
			}
			// The earliest matching step after the last one used; the
			// update is conditional, so two uses of one code cannot both
			// pass even on a database with concurrent writers.
			for _, step := range steps {
				res, err := tx.ExecContext(ctx, `UPDATE accounts SET totp_last_step = ? WHERE id = ? AND COALESCE(totp_last_step, -1) < ?`, step, a.ID, step)
				if err != nil {
					return err
				}
				if n, _ := res.RowsAffected(); n == 1 {
					return nil
				}
			}
			return errRefused
		}
	}
	if err := s.record(ctx, &at); err != nil {
		return err
	}
	return at.result
}

// matchingSteps returns, in increasing order, the time steps within ±1 of
// now whose code is code (compared in constant time).
func matchingSteps(secret, code string, now time.Time) []int64 {
	if len(code) != 6 {
		return nil
	}
	cur := now.Unix() / totpPeriod
	var out []int64
	for step := cur - 1; step <= cur+1; step++ {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0), totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return nil
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			out = append(out, step)
		}
	}
	return out
}

// TOTPCode returns the current code for a raw secret (tests and tools).
func TOTPCode(secret string, t time.Time) (string, error) { return totp.GenerateCode(secret, t) }
