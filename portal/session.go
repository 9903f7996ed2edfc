package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/internal/logsafe"
)

// Sessions: the cookie holds 256 random bits; the database keeps only their
// SHA-256, so a copy of the database opens no session. Cookies are HttpOnly,
// SameSite=Strict, and Secure whenever the portal is reached over HTTPS.
// A new token is issued after the password and again after the second
// factor (no fixation). A session ends after IdleTimeout without a
// request, after 12 hours in any case, at logout, and when the account is
// disabled, its password, roles or TOTP secret change. A session waiting
// for its second factor ends after 5 minutes, and when the account gets
// locked.

const (
	sessionCookie = "sg_session"
	csrfCookie    = "sg_csrf"
	csrfField     = "csrf"
	maxSession    = 12 * time.Hour
	// pendingMFA is how long a session that passed the password waits
	// for its second factor.
	pendingMFA = 5 * time.Minute
)

type session struct {
	hash     []byte
	account  *account.Account
	mfaDone  bool
	created  time.Time
	lastSeen time.Time
}

type ctxKey int

const (
	ctxSession ctxKey = iota
	ctxCSRF
)

func (s *Server) secureCookies() bool { return strings.HasPrefix(s.Config.PublicURL, "https://") }

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("failed to generate token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashToken(t string) []byte {
	h := sha256.Sum256([]byte(t))
	return h[:]
}

// csrf wraps the handler with double-submit CSRF protection: every response
// makes sure the browser holds a random csrf cookie (SameSite=Strict,
// HttpOnly) and every POST must carry the same value in its form. This is on
// top of net/http's CrossOriginProtection (Origin / Sec-Fetch-Site).
func (s *Server) csrf(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := ""
		if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
			token = c.Value
		} else {
			t, err := randomToken()
			if err != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			token = t
			http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: token, Path: "/", HttpOnly: true,
				Secure: s.secureCookies(), SameSite: http.SameSiteStrictMode})
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			got := r.PostFormValue(csrfField)
			c, err := r.Cookie(csrfCookie)
			if err != nil || got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(c.Value)) != 1 {
				s.Log.Warn("POST without a valid CSRF token refused", "path", logsafe.Path(r.URL.Path), "ip", s.clientIP(r))
				s.message(w, r, http.StatusForbidden, "msg.forbidden", nil)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxCSRF, token)))
	})
}

// csrfToken returns the token to put in forms of this response.
func csrfToken(r *http.Request) string {
	t, _ := r.Context().Value(ctxCSRF).(string)
	return t
}

// newSession starts a session for a after the password check.
func (s *Server) newSession(ctx context.Context, w http.ResponseWriter, r *http.Request, a *account.Account, mfaDone bool) error {
	token, err := randomToken()
	if err != nil {
		return err
	}
	now := s.Now()
	// One session per login; old sessions of the account stay valid until
	// they expire (several devices), except this browser's.
	var replaces []byte
	if old, err := r.Cookie(sessionCookie); err == nil {
		replaces = hashToken(old.Value)
	}
	err = s.Accounts.Sessions().Start(ctx, account.Session{TokenHash: hashToken(token), AccountID: a.ID, MFADone: mfaDone,
		CreatedAt: now, LastSeen: now, RemoteIP: s.clientIP(r), UserAgent: userAgent(r)}, replaces)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true,
		Secure: s.secureCookies(), SameSite: http.SameSiteStrictMode})
	// A fresh CSRF token too: one planted before sign-in (a cookie set
	// from a sibling host) is not the signed-in session's.
	csrf, err := randomToken()
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: csrf, Path: "/", HttpOnly: true,
		Secure: s.secureCookies(), SameSite: http.SameSiteStrictMode})
	return nil
}

var errNoSession = errors.New("portal: no session")

// SweepSessions deletes the sessions currentSession would refuse at now
// (the scheduler runs it: a session whose browser never returns is not
// left behind).
func (s *Server) SweepSessions(ctx context.Context, now time.Time) error {
	n, err := s.Accounts.Sessions().SweepExpired(ctx, now.Add(-maxSession), now.Add(-s.Config.HTTP.SessionIdle.D()), now.Add(-pendingMFA))
	if n > 0 {
		s.Log.Debug("expired sessions deleted", "sessions", n)
	}
	return err
}

// currentSession loads and refreshes the request's session.
func (s *Server) currentSession(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, errNoSession
	}
	h := hashToken(c.Value)
	stored, err := s.Accounts.Sessions().Get(r.Context(), h)
	if errors.Is(err, account.ErrNoSession) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	now := s.Now()
	sess := &session{hash: h, mfaDone: stored.MFADone, created: stored.CreatedAt, lastSeen: stored.LastSeen}
	if now.Sub(sess.lastSeen) > s.Config.HTTP.SessionIdle.D() || now.Sub(sess.created) > maxSession ||
		(!sess.mfaDone && now.Sub(sess.created) > pendingMFA) {
		s.endSession(r.Context(), h)
		return nil, errNoSession
	}
	a, err := s.Accounts.ByID(r.Context(), stored.AccountID)
	if err != nil || a.Status != "active" || (!sess.mfaDone && now.Before(a.LockedUntil)) {
		// Disabled: every session ends. Locked: a login still waiting
		// for its second factor cannot complete (signed-in sessions go
		// on, so that guessing someone's password cannot sign them out).
		s.endSession(r.Context(), h)
		return nil, errNoSession
	}
	sess.account = a
	if now.Sub(sess.lastSeen) > time.Minute { // refresh at most once a minute
		if err := s.Accounts.Sessions().Touch(r.Context(), h, now); err != nil {
			s.Log.Warn("failed to refresh a session", "error", err)
		}
	}
	return sess, nil
}

func (s *Server) endSession(ctx context.Context, h []byte) {
	if err := s.Accounts.Sessions().End(ctx, h); err != nil {
		s.Log.Error("failed to end session", "error", err)
	}
}

// authed wraps a handler that needs a logged-in account (second factor
// done) holding one of roles (any role when none given).
func (s *Server) authed(h func(w http.ResponseWriter, r *http.Request, a *account.Account), roles ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		sess, err := s.currentSession(r)
		if err != nil {
			if !errors.Is(err, errNoSession) {
				s.Log.Error("session lookup failed", "error", err)
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(safeNext(r.URL.RequestURI())), http.StatusSeeOther)
			return
		}
		if !sess.mfaDone {
			http.Redirect(w, r, "/login/totp", http.StatusSeeOther)
			return
		}
		if len(roles) > 0 {
			ok := false
			for _, role := range roles {
				ok = ok || sess.account.Has(role, "")
			}
			if !ok {
				s.message(w, r, http.StatusForbidden, "msg.norole", nil)
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxSession, sess)), sess.account)
	}
}

// maxNext bounds the length of a redirect target.
const maxNext = 2048

// safeNext returns p if it is a local path of this portal to redirect to
// after sign-in, re-serialized from its parsed form; anything else gives
// "/". Refused: a scheme, a host, user info, any control character, space
// or backslash (raw or percent-encoded: browsers drop tabs and newlines
// inside URLs and read "\" as "/"), a path that is not absolute, an empty
// segment ("//" anywhere: "//host" is a network-path reference, and
// "/%2F/host" becomes one once decoded), dot segments ("/.//host" resolves
// to "//host"), and any non-ASCII character in the path (full-width
// solidus and other look-alikes; portal paths are ASCII). The query is
// kept, re-encoded; a fragment is dropped.
func safeNext(p string) string {
	const fallback = "/"
	if p == "" || len(p) > maxNext || !strings.HasPrefix(p, "/") {
		return fallback
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f || c == '\\' || c >= 0x80 {
			return fallback
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return fallback
	}
	if !localPath(u.Path) || !localPath(u.EscapedPath()) {
		return fallback
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fallback
	}
	out := (&url.URL{Path: u.Path, RawQuery: q.Encode()}).String()
	// Belt and braces: what is returned must parse back to a bare local
	// path.
	if v, err := url.Parse(out); err != nil || v.Scheme != "" || v.Host != "" || v.User != nil || !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") {
		return fallback
	}
	return out
}

// localPath reports whether the (decoded or escaped) path is absolute, of
// printable ASCII without space or backslash, with no empty segment and no
// dot segment.
func localPath(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	segs := strings.Split(path[1:], "/")
	if len(segs) > 1 && segs[len(segs)-1] == "" {
		segs = segs[:len(segs)-1] // a trailing slash
	}
	if len(segs) == 1 && segs[0] == "" {
		return true // "/"
	}
	for _, seg := range segs {
		switch strings.ToLower(seg) {
		case "", ".", "..", "%2e", "%2e%2e", ".%2e", "%2e.":
			return false
		}
	}
	return true
}
