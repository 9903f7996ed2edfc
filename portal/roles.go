package portal

import (
	"net/http"
	"strings"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/contract"
)

// accountView is the signed-in account with its roles worked out once.
type accountView struct {
	*account.Account
	sender, manager, admin, auditor bool
	// managerAll: a manager of every contract (a grant not bound to one).
	managerAll bool
}

func viewOf(a *account.Account) *accountView {
	v := &accountView{Account: a,
		sender: a.Has(account.RoleSender, ""), manager: a.Has(account.RoleManager, ""),
		admin: a.Has(account.RoleAdmin, ""), auditor: a.Has(account.RoleAuditor, "")}
	for _, g := range a.Grants {
		if g.Role == account.RoleManager && g.Contract == "" {
			v.managerAll = true
		}
	}
	return v
}

// IsSender and the others are for templates (menus).
func (v *accountView) IsSender() bool  { return v.sender }
func (v *accountView) IsManager() bool { return v.manager }
func (v *accountView) IsAdmin() bool   { return v.admin }
func (v *accountView) IsAuditor() bool { return v.auditor }

// CanReadLedger: managers and auditors search and export the ledger.
func (v *accountView) CanReadLedger() bool { return v.manager || v.auditor }

// CanReview: managers and admins run the access review.
func (v *accountView) CanReview() bool { return v.manager || v.admin }

// manages reports whether a is an information manager of c: a manager of
// every contract, a manager of this one (manager:<CODE>), or a manager
// named in the contract's register (its manager field). Managers have
// passed the second factor (TOTP) to be signed in at all.
func (s *Server) manages(a *accountView, c *contract.Contract) bool {
	if !a.manager {
		return false
	}
	if a.managerAll || a.Has(account.RoleManager, c.Code) {
		return true
	}
	m := strings.TrimSpace(c.Manager)
	return m != "" && (strings.EqualFold(m, a.Name) || strings.EqualFold(m, a.Email))
}

// scope returns the contract codes a's searches are limited to: nil for
// all (auditors and managers of every contract).
func (s *Server) scope(r *http.Request, a *accountView) ([]string, error) {
	if a.auditor || a.managerAll {
		return nil, nil
	}
	cs, err := contract.List(r.Context(), s.DB.Read())
	if err != nil {
		return nil, err
	}
	codes := []string{}
	for _, c := range cs {
		if s.manages(a, c) {
			codes = append(codes, c.Code)
		}
	}
	return codes, nil
}
