package portal

import (
	"errors"
	"net/http"
	"strings"

	"github.com/sealgate/sealgate/account"
)

// The administrator's page: every account with its roles, state, last
// login and lock, and disabling or enabling one (account.Disable ends its
// sessions at once; SMTP AUTH refuses it from then on). Both are ledger
// events. Creating accounts, roles and TOTP enrolment stay on the CLI
// (`sealgate user …`), where the one-time secrets are shown.

type accountsPage struct {
	Accounts []*account.Account
	Name     string // the account a failed action was about
	Reason   string
}

// accountsPage is GET /admin/accounts.
func (s *Server) accountsPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	s.renderAccounts(w, r, a, http.StatusOK, "", accountsPage{})
}

func (s *Server) renderAccounts(w http.ResponseWriter, r *http.Request, a *accountView, code int, errKey string, p accountsPage) {
	list, err := s.Accounts.List(r.Context())
	if err != nil {
		s.failed(w, r, err)
		return
	}
	p.Accounts = list
	s.page(w, r, code, "accounts.html", a, errKey, p)
}

// accountAction is POST /admin/accounts: action=disable (reason required)
// or action=enable, for the account name.
func (s *Server) accountAction(w http.ResponseWriter, r *http.Request, a *accountView) {
	p := accountsPage{Name: strings.TrimSpace(r.PostFormValue("name")), Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	var err error
	var done string
	switch r.PostFormValue("action") {
	case "disable":
		if p.Reason == "" {
			s.renderAccounts(w, r, a, http.StatusBadRequest, "msg.reasonrequired", p)
			return
		}
		if strings.EqualFold(p.Name, a.Name) {
			s.renderAccounts(w, r, a, http.StatusBadRequest, "msg.disableself", p)
			return
		}
		err, done = s.Accounts.Disable(r.Context(), a.Name, p.Name, p.Reason), "disabled"
	case "enable":
		err, done = s.Accounts.Enable(r.Context(), a.Name, p.Name), "enabled"
	default:
		s.renderAccounts(w, r, a, http.StatusBadRequest, "msg.badrequest", p)
		return
	}
	switch {
	case errors.Is(err, account.ErrNotFound):
		s.renderAccounts(w, r, a, http.StatusNotFound, "msg.nosuchaccount", p)
		return
	case errors.Is(err, account.ErrLastAdmin):
		s.renderAccounts(w, r, a, http.StatusConflict, "msg.lastadmin", p)
		return
	case err != nil:
		s.failed(w, r, err)
		return
	}
	http.Redirect(w, r, "/admin/accounts?done="+done, http.StatusSeeOther)
}
