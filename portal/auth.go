package portal

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/sealgate/sealgate/account"
)

// authData is what the login and account pages render.
type authData struct {
	L       lang
	CSRF    string
	Error   string
	Next    string
	Account *account.Account
	// View is the signed-in account with its roles (menus), nil on the
	// sign-in pages and public pages.
	View *accountView
	// Done names what the previous POST did (a confirmation shown once).
	Done string
	Path string
	Data any // page-specific
}

func (s *Server) renderAuth(w http.ResponseWriter, r *http.Request, code int, name string, d authData) {
	d.L = pickLang(w, r)
	d.CSRF = csrfToken(r)
	d.Path = r.URL.Path
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := s.tmpl.ExecuteTemplate(w, name, d); err != nil {
		s.Log.Error("failed to render page", "page", name, "error", err)
	}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if sess, err := s.currentSession(r); err == nil && sess.mfaDone {
		http.Redirect(w, r, "/home", http.StatusSeeOther)
		return
	}
	s.renderAuth(w, r, http.StatusOK, "login.html", authData{Next: safeNext(r.URL.Query().Get("next"))})
}

// login is POST /login: name and password; then the second factor when the
// account's roles need it.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.PostFormValue("next"))
	ip := s.clientIP(r)
	// Failed sign-ins are limited per client address (on top of the
	// per-account lockout); successful ones are not counted (given back),
	// so that a whole office behind one address can sign in.
	if key, code := s.loginAttempt(r.Context(), w, ip, "auth.ratelimited"); key != "" {
		s.renderAuth(w, r, code, "login.html", authData{Error: key, Next: next})
		return
	}
	a, err := s.Accounts.Authenticate(r.Context(), account.Login{Name: r.PostFormValue("name"), Password: r.PostFormValue("password"),
		RemoteIP: ip, UserAgent: userAgent(r), Via: account.ViaPortal})
	if err != nil {
		// One answer for an unknown name, a wrong password and a locked
		// or disabled account, whatever the password: anything else
		// would tell which names exist or whether a password is right.
		// The text says what a locked-out person can do.
		key, code := "auth.bad", http.StatusUnauthorized
		if !isSignInRefusal(err) {
			s.Log.Error("login failed", "error", err)
			key, code = "msg.unavailable", http.StatusServiceUnavailable
		}
		s.renderAuth(w, r, code, "login.html", authData{Error: key, Next: next})
		return
	}
	s.loginNotFailed(r.Context(), ip)
	if a.NeedsTOTP() && !a.TOTP {
		s.renderAuth(w, r, http.StatusForbidden, "login.html", authData{Error: "auth.totpmissing", Next: next})
		return
	}
	if err := s.newSession(r.Context(), w, r, a, !a.NeedsTOTP()); err != nil {
		s.Log.Error("failed to start session", "error", err)
		s.message(w, r, http.StatusServiceUnavailable, "msg.unavailable", nil)
		return
	}
	if a.NeedsTOTP() {
		http.Redirect(w, r, "/login/totp?next="+url.QueryEscape(next), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) totpPage(w http.ResponseWriter, r *http.Request) {
	sess, err := s.currentSession(r)
	if err != nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	s.renderAuth(w, r, http.StatusOK, "totp.html", authData{Account: sess.account, Next: safeNext(r.URL.Query().Get("next"))})
}

// totp is POST /login/totp: the one-time code completes the login.
func (s *Server) totp(w http.ResponseWriter, r *http.Request) {
	sess, err := s.currentSession(r)
	if err != nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	next := safeNext(r.PostFormValue("next"))
	ip := s.clientIP(r)
	if key, code := s.loginAttempt(r.Context(), w, ip, "auth.ratelimited"); key != "" {
		s.renderAuth(w, r, code, "totp.html", authData{Account: sess.account, Error: key, Next: next})
		return
	}
	err = s.Accounts.CheckTOTP(r.Context(), sess.account, r.PostFormValue("code"), ip, userAgent(r))
	if !errors.Is(err, account.ErrBadTOTP) {
		s.loginNotFailed(r.Context(), ip) // only a wrong code counts
	}
	if err != nil {
		switch {
		case errors.Is(err, account.ErrBadTOTP):
			s.renderAuth(w, r, http.StatusUnauthorized, "totp.html", authData{Account: sess.account, Error: "auth.badtotp", Next: next})
		case errors.Is(err, account.ErrLocked), errors.Is(err, account.ErrDisabled):
			// Locked (by these codes or meanwhile) or disabled: this
			// login cannot complete; it starts again from the password.
			s.endSession(r.Context(), sess.hash)
			s.renderAuth(w, r, http.StatusUnauthorized, "login.html", authData{Error: "auth.cannotcomplete", Next: next})
		default:
			s.Log.Error("TOTP check failed", "error", err)
			s.renderAuth(w, r, http.StatusServiceUnavailable, "totp.html", authData{Account: sess.account, Error: "msg.unavailable", Next: next})
		}
		return
	}
	// A fresh session token after the second factor (no fixation).
	s.endSession(r.Context(), sess.hash)
	if err := s.newSession(r.Context(), w, r, sess.account, true); err != nil {
		s.message(w, r, http.StatusServiceUnavailable, "msg.unavailable", nil)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout is POST /logout.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if sess, err := s.currentSession(r); err == nil {
		s.endSession(r.Context(), sess.hash)
		// A login that never passed its second factor was not recorded
		// as a login; its end is no logout either.
		if sess.mfaDone {
			if err := s.Accounts.Logout(r.Context(), sess.account, s.clientIP(r), userAgent(r)); err != nil {
				s.Log.Error("failed to record logout", "error", err)
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// isSignInRefusal reports whether err is one of the refusals that all get
// the same answer.
func isSignInRefusal(err error) bool {
	return errors.Is(err, account.ErrBadCredentials) || errors.Is(err, account.ErrDisabled) || errors.Is(err, account.ErrLocked)
}

// homePage is the signed-in start page: what this account may do.
func (s *Server) homePage(w http.ResponseWriter, r *http.Request, a *account.Account) {
	v := viewOf(a)
	s.renderAuth(w, r, http.StatusOK, "home.html", authData{Account: a, View: v, Done: doneKey(r)})
}
