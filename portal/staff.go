package portal

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/hold"
	"github.com/sealgate/sealgate/internal/linktoken"
	"github.com/sealgate/sealgate/internal/logsafe"
	"github.com/sealgate/sealgate/transfer"
)

// The staff pages: "my transfers" (what was sealed, who got the notices,
// who opened and downloaded what, when and from where), revoking a whole
// transfer or one recipient, extending the expiry within the contract's
// maximum, and cancelling a held message. Every change is a POST with the
// CSRF token, made through package transfer or hold, which record it in
// the ledger in the same transaction; GETs only read. After a change the
// browser is redirected (POST/redirect/GET) with a done= key naming what
// happened.

// doneKeys are the confirmations a redirect may name.
var doneKeys = map[string]bool{"revoked": true, "extended": true, "cancelled": true, "approved": true, "refused": true,
	"reviewed": true, "disabled": true, "enabled": true, "apprevoked": true}

func doneKey(r *http.Request) string {
	if d := r.URL.Query().Get("done"); doneKeys[d] {
		return "done." + d
	}
	return ""
}

// page renders a signed-in page.
func (s *Server) page(w http.ResponseWriter, r *http.Request, code int, name string, a *accountView, errKey string, data any) {
	s.renderAuth(w, r, code, name, authData{Account: a.Account, View: a, Error: errKey, Done: doneKey(r), Data: data})
}

// staff wraps a handler for any signed-in account.
func (s *Server) staff(h func(w http.ResponseWriter, r *http.Request, a *accountView), roles ...string) http.HandlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request, a *account.Account) { h(w, r, viewOf(a)) }, roles...)
}

// transferFacts are the facts of a transfer (transfer.ReadFacts: the same
// that `sealgate transfer show` prints) and the hold of its message.
type transferFacts struct {
	*transfer.Facts
	Held *hold.Held // nil if the message was never held
}

// facts reads everything about the transfer id.
func (s *Server) facts(ctx context.Context, id string) (*transferFacts, error) {
	f, err := transfer.ReadFacts(ctx, s.DB.Read(), id, contract.DefaultsFrom(s.Config))
	if err != nil {
		return nil, err
	}
	tf := &transferFacts{Facts: f}
	if h, err := hold.Get(ctx, s.DB.Read(), f.T.MessageID); err == nil {
		tf.Held = h
	}
	return tf, nil
}

// canSee reports whether account a may see transfer t: its sender (by
// address or as the account that sent it), a manager of its contract, or
// an auditor.
func (s *Server) canSee(a *accountView, t *transfer.Transfer, c *contract.Contract) bool {
	return isSender(a, t) || a.auditor || s.manages(a, c)
}

// isSender reports whether account a sent transfer t (only the sender
// revokes and extends from the "my transfers" pages).
func isSender(a *accountView, t *transfer.Transfer) bool {
	return strings.EqualFold(t.Sender, a.Email) || (t.Actor != "" && t.Actor == a.Name)
}

type transferRow struct {
	transfer.Transfer
	Recipients int
	Downloaded int
}

type transfersPage struct {
	Transfers []transferRow
	Held      []*hold.Held
}

// myTransfers is GET /transfers: the signed-in sender's transfers, newest
// first, and their messages still held.
func (s *Server) myTransfers(w http.ResponseWriter, r *http.Request, a *accountView) {
	ctx := r.Context()
	ts, err := transfer.List(ctx, s.DB.Read(), transfer.Filter{Sender: a.Email, Limit: 200})
	if err != nil {
		s.failed(w, r, err)
		return
	}
	p := transfersPage{}
	reach, err := transfer.ReachBySender(ctx, s.DB.Read(), a.Email)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	for _, t := range ts {
		n := reach[t.ID]
		p.Transfers = append(p.Transfers, transferRow{Transfer: t, Recipients: n.Recipients, Downloaded: n.Downloaded})
	}
	if p.Held, err = hold.List(ctx, s.DB.Read(), hold.Filter{Status: hold.StatusHeld, Sender: a.Email, Actor: a.Name}); err != nil {
		s.failed(w, r, err)
		return
	}
	s.page(w, r, http.StatusOK, "transfers.html", a, "", p)
}

type transferPage struct {
	F        *transferFacts
	IsSender bool // may revoke and extend
	Manager  bool // may open the incident view
	Now      time.Time
	// Extend form.
	Until    string // datetime-local value
	MinUntil string
	MaxUntil string
	// Revoke confirmation.
	Recipient string // "" = the whole transfer
	Reason    string
}

// loadTransfer reads the transfer of the request's {id} and checks that a
// may see it; it answers the request itself when not.
func (s *Server) loadTransfer(w http.ResponseWriter, r *http.Request, a *accountView) (*transferFacts, bool) {
	f, err := s.facts(r.Context(), r.PathValue("id"))
	if err == nil && !s.canSee(a, f.T, f.Contract) {
		// Not found rather than forbidden: ids of others' transfers are
		// not confirmed to exist.
		err = transfer.ErrNotFound
	}
	return f, s.found(w, r, a, err, transfer.ErrNotFound, "msg.nosuchtransfer")
}

// found answers the request itself when a lookup failed — 404 with the
// message msgKey when err is notFound, 500 otherwise — and reports
// whether it succeeded.
func (s *Server) found(w http.ResponseWriter, r *http.Request, a *accountView, err, notFound error, msgKey string) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, notFound):
		s.staffMessage(w, r, a, http.StatusNotFound, msgKey)
	default:
		s.failed(w, r, err)
	}
	return false
}

// senderTransfer loads the transfer of the request for a page only its
// sender may use (revoke, extend), answering 404 or 403 itself.
func (s *Server) senderTransfer(w http.ResponseWriter, r *http.Request, a *accountView) (*transferFacts, transferPage, bool) {
	f, ok := s.loadTransfer(w, r, a)
	if !ok {
		return nil, transferPage{}, false
	}
	p := s.transferData(r, a, f)
	if !p.IsSender {
		s.staffMessage(w, r, a, http.StatusForbidden, "msg.notsender")
		return nil, transferPage{}, false
	}
	return f, p, true
}

// transferData is the page data of transfer f as account a sees it.
func (s *Server) transferData(r *http.Request, a *accountView, f *transferFacts) transferPage {
	p := transferPage{F: f, IsSender: isSender(a, f.T), Manager: s.manages(a, f.Contract) || a.auditor, Now: s.Now()}
	p.MinUntil = localInput(f.T.ExpiresAt.Add(time.Minute), s.loc)
	p.MaxUntil = localInput(f.MaxExpiry, s.loc)
	p.Until = p.MaxUntil
	return p
}

// transferPage is GET /transfers/{id}.
func (s *Server) transferPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	f, ok := s.loadTransfer(w, r, a)
	if !ok {
		return
	}
	s.page(w, r, http.StatusOK, "transfer.html", a, "", s.transferData(r, a, f))
}

// revokePage is GET /transfers/{id}/revoke[?recipient=]: the confirmation.
func (s *Server) revokePage(w http.ResponseWriter, r *http.Request, a *accountView) {
	_, p, ok := s.senderTransfer(w, r, a)
	if !ok {
		return
	}
	p.Recipient = r.URL.Query().Get("recipient")
	s.page(w, r, http.StatusOK, "revoke.html", a, "", p)
}

// revoke is POST /transfers/{id}/revoke: revokes the whole transfer or the
// recipient named, destroying the revoked keys at once (transfer.Revoke).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request, a *accountView) {
	f, p, ok := s.senderTransfer(w, r, a)
	if !ok {
		return
	}
	p.Recipient = strings.TrimSpace(r.PostFormValue("recipient"))
	p.Reason = strings.TrimSpace(r.PostFormValue("reason"))
	if len(p.Reason) > 500 {
		p.Reason = p.Reason[:500]
	}
	reason := p.Reason
	if reason == "" {
		reason = "revoked by the sender"
	}
	_, err := destroy.Revoke(r.Context(), s.Transfers, f.T.ID, p.Recipient, a.Name, reason)
	if s.errorPage(w, r, "revoke.html", a, p, err,
		on(http.StatusConflict, "msg.notactive", transfer.ErrNotActive),
		on(http.StatusBadRequest, "msg.norecipient", transfer.ErrNotFound)) {
		return
	}
	if err != nil {
		// If the revocation committed and only deleting the objects
		// failed, the scheduler finishes that (it resumes revoked
		// transfers); if nothing committed, say so.
		s.Log.Error("revocation failed or incomplete", "transfer", f.T.ID, "error", err)
		if t, gerr := transfer.Get(r.Context(), s.DB.Read(), f.T.ID); gerr != nil || !revoked(t, p.Recipient) {
			s.failed(w, r, err)
			return
		}
	}
	http.Redirect(w, r, "/transfers/"+f.T.ID+"?done=revoked", http.StatusSeeOther)
}

// revoked reports whether recipient (or, if "", the whole transfer) is
// no longer active.
func revoked(t *transfer.Transfer, recipient string) bool {
	if recipient == "" {
		return t.Status != transfer.StatusActive
	}
	for _, r := range t.Recipients {
		if strings.EqualFold(r.Address, recipient) {
			return r.Status != "active"
		}
	}
	return false
}

// extendPage is GET /transfers/{id}/extend.
func (s *Server) extendPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	_, p, ok := s.senderTransfer(w, r, a)
	if !ok {
		return
	}
	s.page(w, r, http.StatusOK, "extend.html", a, "", p)
}

// extend is POST /transfers/{id}/extend: a new expiry, no later than the
// contract allows (transfer.Extend).
func (s *Server) extend(w http.ResponseWriter, r *http.Request, a *accountView) {
	f, p, ok := s.senderTransfer(w, r, a)
	if !ok {
		return
	}
	p.Until = r.PostFormValue("until")
	until, err := time.ParseInLocation("2006-01-02T15:04", p.Until, s.loc)
	if err != nil {
		s.page(w, r, http.StatusBadRequest, "extend.html", a, "msg.baddate", p)
		return
	}
	_, err = transfer.Extend(r.Context(), s.DB, s.Ledger, contract.DefaultsFrom(s.Config), f.T.ID, until, a.Name, s.Now())
	if s.errorPage(w, r, "extend.html", a, p, err,
		on(http.StatusBadRequest, "msg.toolate", transfer.ErrTooLate),
		on(http.StatusBadRequest, "msg.notlater", transfer.ErrInvalid),
		on(http.StatusConflict, "msg.notactive", transfer.ErrNotActive, contract.ErrNotActive, contract.ErrExpired)) {
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	http.Redirect(w, r, "/transfers/"+f.T.ID+"?done=extended", http.StatusSeeOther)
}

type cancelPage struct {
	H     *hold.Held
	Token string // the cancel link's token (public page)
	Now   time.Time
}

// heldCancelPage is GET /held/{id}/cancel: the sender confirms cancelling
// a held message.
func (s *Server) heldCancelPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	h, ok := s.ownHeld(w, r, a)
	if !ok {
		return
	}
	s.page(w, r, http.StatusOK, "cancel.html", a, "", cancelPage{H: h, Now: s.Now()})
}

// heldCancel is POST /held/{id}/cancel.
func (s *Server) heldCancel(w http.ResponseWriter, r *http.Request, a *accountView) {
	h, ok := s.ownHeld(w, r, a)
	if !ok {
		return
	}
	err := s.Holds.Cancel(r.Context(), h.MessageID, hold.Decider{Name: a.Name, Email: a.Email, RemoteIP: s.clientIP(r), UserAgent: userAgent(r)})
	if errors.Is(err, hold.ErrNotHeld) {
		s.page(w, r, http.StatusConflict, "cancel.html", a, "msg.alreadysent", cancelPage{H: h, Now: s.Now()})
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	http.Redirect(w, r, "/transfers?done=cancelled", http.StatusSeeOther)
}

func (s *Server) ownHeld(w http.ResponseWriter, r *http.Request, a *accountView) (*hold.Held, bool) {
	h, err := hold.Get(r.Context(), s.DB.Read(), r.PathValue("id"))
	if err == nil && !ownMessage(h, a) {
		err = hold.ErrNotFound
	}
	return h, s.found(w, r, a, err, hold.ErrNotFound, "msg.nosuchheld")
}

// cancelLinkPage is GET /c/{token}: the cancel link of a held message's
// receipt. It only shows what the link would cancel and a button.
func (s *Server) cancelLinkPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	token := r.PathValue("token")
	h, ok := s.heldByToken(w, r, token)
	if !ok {
		return
	}
	s.renderAuth(w, r, http.StatusOK, "cancellink.html", authData{Data: cancelPage{H: h, Token: token, Now: s.Now()}})
}

// cancelLink is POST /c/{token}: cancels the held message.
func (s *Server) cancelLink(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	token := r.PathValue("token")
	if key, code := s.allowed(r.Context(), w, s.ipCount(r)); key != "" {
		s.message(w, r, code, key, nil)
		return
	}
	h, ok := s.heldByToken(w, r, token)
	if !ok {
		return
	}
	by := hold.Decider{Name: h.Actor, Email: h.Sender, RemoteIP: s.clientIP(r), UserAgent: userAgent(r)}
	if by.Name == "" {
		by.Name = "sender:" + h.Sender
	}
	err := s.Holds.Cancel(r.Context(), h.MessageID, by)
	if errors.Is(err, hold.ErrNotHeld) {
		s.renderAuth(w, r, http.StatusConflict, "cancellink.html", authData{Error: "msg.alreadysent", Data: cancelPage{H: h, Token: token, Now: s.Now()}})
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	h.Status = hold.StatusCancelled
	s.renderAuth(w, r, http.StatusOK, "cancellink.html", authData{Done: "done.cancelled", Data: cancelPage{H: h, Now: s.Now()}})
}

func (s *Server) heldByToken(w http.ResponseWriter, r *http.Request, token string) (*hold.Held, bool) {
	if !linktoken.Valid(token) {
		s.message(w, r, http.StatusNotFound, "msg.notfound", nil)
		return nil, false
	}
	h, err := hold.ByCancelToken(r.Context(), s.DB.Read(), token)
	if errors.Is(err, hold.ErrNotFound) {
		s.message(w, r, http.StatusNotFound, "msg.notfound", nil)
		return nil, false
	}
	if err != nil {
		s.failed(w, r, err)
		return nil, false
	}
	return h, true
}

// staffMessage shows a message page to a signed-in account.
func (s *Server) staffMessage(w http.ResponseWriter, r *http.Request, a *accountView, code int, key string) {
	s.page(w, r, code, "staffmsg.html", a, key, nil)
}

// failed answers an unexpected failure (logged; the page says to retry).
func (s *Server) failed(w http.ResponseWriter, r *http.Request, err error) {
	s.Log.Error("portal request failed", "path", logsafe.Path(r.URL.Path), "error", err)
	s.message(w, r, http.StatusServiceUnavailable, "msg.unavailable", nil)
}

// localInput formats t for an <input type="datetime-local"> in loc.
func localInput(t time.Time, loc *time.Location) string {
	return t.In(loc).Format("2006-01-02T15:04")
}
