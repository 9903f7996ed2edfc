package portal

import (
	"errors"
	"net/http"
	"strings"

	"github.com/sealgate/sealgate/account"
)

// The signed-in person's own app passwords (/account/app-passwords): the
// secrets mail clients use for SMTP AUTH. Managers, admins and auditors
// may use SMTP AUTH only with one of these. Creating one asks for the
// sign-in password again (a session left open does not mint long-lived
// credentials), and shows the secret once, in the response to that POST
// (never in a URL, never stored). Creation and revocation are ledger
// events (package account).

type appPasswordsPage struct {
	List      []account.AppPassword
	MaySend   bool
	NeedsApp  bool   // the account may use SMTP AUTH only with an app password
	Secret    string // just created: shown once
	NewLabel  string
	Label     string // the label typed, on an error
	AppPwOnly bool
}

// appPasswordsPage is GET /account/app-passwords.
func (s *Server) appPasswordsPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	s.renderAppPasswords(w, r, a, http.StatusOK, "", appPasswordsPage{})
}

func (s *Server) renderAppPasswords(w http.ResponseWriter, r *http.Request, a *accountView, code int, errKey string, p appPasswordsPage) {
	list, err := s.Accounts.AppPasswords(r.Context(), a.Name)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	p.List = list
	p.MaySend = a.MaySend()
	p.AppPwOnly = s.Config.SMTP.SubmissionAppPasswordsOnly
	p.NeedsApp = a.Privileged() || p.AppPwOnly
	s.page(w, r, code, "apppasswords.html", a, errKey, p)
}

// appPasswordsAction is POST /account/app-passwords: action=add (label,
// password) or action=revoke (id).
func (s *Server) appPasswordsAction(w http.ResponseWriter, r *http.Request, a *accountView) {
	ctx := r.Context()
	switch r.PostFormValue("action") {
	case "add":
		label := strings.TrimSpace(r.PostFormValue("label"))
		p := appPasswordsPage{Label: label}
		ip := s.clientIP(r)
		if key, code := s.loginAttempt(ctx, w, ip, "auth.ratelimited"); key != "" {
			s.renderAppPasswords(w, r, a, code, key, p)
			return
		}
		err := s.Accounts.ConfirmPassword(ctx, a.Account, r.PostFormValue("password"), ip, userAgent(r))
		if !isSignInRefusal(err) {
			s.loginNotFailed(ctx, ip) // only a refused password counts
		}
		switch {
		case err == nil:
		case isSignInRefusal(err):
			s.renderAppPasswords(w, r, a, http.StatusUnauthorized, "apppw.badpassword", p)
			return
		default:
			s.failed(w, r, err)
			return
		}
		secret, created, err := s.Accounts.AddAppPassword(ctx, a.Name, a.Name, label)
		if errors.Is(err, account.ErrInvalid) {
			key := "apppw.badlabel"
			if !a.MaySend() {
				key = "apppw.nosend"
			} else if label != "" && len([]rune(label)) <= 64 {
				key = "apppw.toomany"
			}
			s.renderAppPasswords(w, r, a, http.StatusBadRequest, key, p)
			return
		}
		if err != nil {
			s.failed(w, r, err)
			return
		}
		s.renderAppPasswords(w, r, a, http.StatusOK, "", appPasswordsPage{Secret: secret, NewLabel: created.Label})
	case "revoke":
		_, err := s.Accounts.RevokeAppPassword(ctx, a.Name, a.Name, r.PostFormValue("id"))
		if errors.Is(err, account.ErrNotFound) {
			s.renderAppPasswords(w, r, a, http.StatusNotFound, "apppw.notfound", appPasswordsPage{})
			return
		}
		if err != nil {
			s.failed(w, r, err)
			return
		}
		http.Redirect(w, r, "/account/app-passwords?done=apprevoked", http.StatusSeeOther)
	default:
		s.renderAppPasswords(w, r, a, http.StatusBadRequest, "msg.badrequest", appPasswordsPage{})
	}
}
