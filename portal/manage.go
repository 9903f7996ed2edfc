package portal

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/hold"
	"github.com/sealgate/sealgate/transfer"
)

// The information manager's pages (情報管理責任者): the contracts they
// manage, ending one (with confirmation) and its destruction certificate,
// the queue of held messages awaiting their approval, the ledger search
// and exports, the access review and the incident view of a transfer.
// Managers sign in with a second factor (TOTP); every page checks that the
// contract concerned is one they manage. Auditors read the ledger and
// incident views, nothing else.

type contractRow struct {
	*contract.Contract
	Active   int // transfers active
	Total    int
	Awaiting int // held messages awaiting approval
}

type contractsPage struct {
	Contracts []contractRow
}

// contractsPage is GET /manage/contracts.
func (s *Server) contractsPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	ctx := r.Context()
	cs, err := contract.List(ctx, s.DB.Read())
	if err != nil {
		s.failed(w, r, err)
		return
	}
	p := contractsPage{}
	for _, c := range cs {
		if !s.manages(a, c) {
			continue
		}
		n, err := transfer.CountTransfers(ctx, s.DB.Read(), c.ID)
		if err != nil {
			s.failed(w, r, err)
			return
		}
		row := contractRow{Contract: c, Total: n.Total, Active: n.Active}
		if row.Awaiting, err = hold.CountAwaiting(ctx, s.DB.Read(), c.ID); err != nil {
			s.failed(w, r, err)
			return
		}
		p.Contracts = append(p.Contracts, row)
	}
	s.page(w, r, http.StatusOK, "contracts.html", a, "", p)
}

type contractPage struct {
	C            *contract.Contract
	Defaults     contract.Defaults
	Transfers    []transfer.Transfer
	Certificates []destroy.CertRecord
	Confirm      string // what was typed to confirm the end
	Reason       string
	Ending       bool // the destruction started and is still running
}

// loadContract reads the contract of the request's {code} and checks that
// a manages it.
func (s *Server) loadContract(w http.ResponseWriter, r *http.Request, a *accountView) (*contract.Contract, bool) {
	c, err := contract.ByCode(r.Context(), s.DB.Read(), r.PathValue("code"))
	if err == nil && !s.manages(a, c) {
		err = contract.ErrNotFound
	}
	if errors.Is(err, contract.ErrNotFound) {
		s.staffMessage(w, r, a, http.StatusNotFound, "msg.nosuchcontract")
		return nil, false
	}
	if err != nil {
		s.failed(w, r, err)
		return nil, false
	}
	return c, true
}

func (s *Server) contractData(ctx context.Context, c *contract.Contract) (contractPage, error) {
	p := contractPage{C: c, Defaults: contract.DefaultsFrom(s.Config)}
	var err error
	if p.Transfers, err = transfer.List(ctx, s.DB.Read(), transfer.Filter{Contract: c.Code, Limit: 200}); err != nil {
		return p, err
	}
	p.Certificates, err = destroy.Certificates(ctx, s.DB.Read(), c.ID)
	return p, err
}

// contractPage is GET /manage/contracts/{code}.
func (s *Server) contractPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	s.showContract(w, r, a, "contract.html")
}

// endContractPage is GET /manage/contracts/{code}/end: what ending means,
// and a form that asks to type the contract code.
func (s *Server) endContractPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	s.showContract(w, r, a, "endcontract.html")
}

// showContract shows template tmpl about the contract of the request.
func (s *Server) showContract(w http.ResponseWriter, r *http.Request, a *accountView, tmpl string) {
	if p, ok := s.contractOf(w, r, a); ok {
		s.page(w, r, http.StatusOK, tmpl, a, "", p)
	}
}

// contractOf reads the contract of the request and what its pages show;
// false when it answered the request itself (no such contract, a failure).
func (s *Server) contractOf(w http.ResponseWriter, r *http.Request, a *accountView) (contractPage, bool) {
	c, ok := s.loadContract(w, r, a)
	if !ok {
		return contractPage{}, false
	}
	p, err := s.contractData(r.Context(), c)
	if err != nil {
		s.failed(w, r, err)
		return contractPage{}, false
	}
	return p, true
}

// endContractWait bounds how long the POST waits for the destruction; a
// longer one goes on in the background (and is resumed by the scheduler
// after a restart).
const endContractWait = 20 * time.Second

// endContract is POST /manage/contracts/{code}/end: ends the contract,
// destroys everything under it and issues the certificate.
func (s *Server) endContract(w http.ResponseWriter, r *http.Request, a *accountView) {
	p, ok := s.contractOf(w, r, a)
	if !ok {
		return
	}
	c := p.C
	p.Confirm = strings.TrimSpace(r.PostFormValue("confirm"))
	p.Reason = strings.TrimSpace(r.PostFormValue("reason"))
	if p.Confirm != c.Code {
		s.page(w, r, http.StatusBadRequest, "endcontract.html", a, "msg.confirmcode", p)
		return
	}
	if p.Reason == "" {
		s.page(w, r, http.StatusBadRequest, "endcontract.html", a, "msg.reasonrequired", p)
		return
	}
	if c.Status == contract.StatusEnded || s.EndContract == nil {
		s.page(w, r, http.StatusConflict, "endcontract.html", a, "msg.notactive", p)
		return
	}
	type result struct {
		id  string
		err error
	}
	done := make(chan result, 1)
	// The destruction must not stop because the browser went away.
	ctx := context.WithoutCancel(r.Context())
	go func() {
		id, err := s.EndContract(ctx, c.Code, a.Name, p.Reason)
		done <- result{id, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			s.Log.Error("ending a contract failed (the scheduler resumes it)", "contract", c.Code, "error", res.err)
			p.Ending = true
			s.page(w, r, http.StatusAccepted, "contract.html", a, "msg.endincomplete", p)
			return
		}
		http.Redirect(w, r, "/manage/certificates/"+url.PathEscape(res.id), http.StatusSeeOther)
	case <-time.After(endContractWait):
		http.Redirect(w, r, "/manage/contracts/"+url.PathEscape(c.Code), http.StatusSeeOther)
	}
}

// certificate is GET /manage/certificates/{id}[?format=json]: the signed
// destruction certificate (JSON as issued, or its printable page).
func (s *Server) certificate(w http.ResponseWriter, r *http.Request, a *accountView) {
	ctx := r.Context()
	id := r.PathValue("id")
	rec, err := destroy.CertificateByID(ctx, s.DB.Read(), id)
	var c *contract.Contract
	if err == nil {
		c, err = contract.ByID(ctx, s.DB.Read(), rec.ContractID)
	}
	if err == nil && !s.manages(a, c) && !a.auditor {
		err = destroy.ErrNoCertificate
	}
	if errors.Is(err, destroy.ErrNoCertificate) {
		s.staffMessage(w, r, a, http.StatusNotFound, "msg.nosuchcertificate")
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	if r.URL.Query().Get("format") == "json" {
		ctype := "application/json"
		if audit.CertificateCompressed(rec.JSON) {
			ctype = "application/gzip"
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": id + audit.CertificateFileExt(rec.JSON)}))
		w.Write(rec.JSON)
		return
	}
	cert, err := audit.ParseCertificate(rec.JSON)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	// The certificate is a document of its own, styled inline.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.URL.Query().Get("download") == "1" {
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": id + ".html"}))
	}
	if err := audit.WriteCertificateHTML(w, cert, s.loc); err != nil {
		s.Log.Error("failed to render certificate", "id", id, "error", err)
	}
}

type approvalsPage struct {
	Awaiting []*hold.Held
	Recent   []*hold.Held
	Now      time.Time
}

// approvalsPage is GET /manage/approvals: held messages awaiting the
// signed-in manager's decision, oldest first, and recent decisions.
func (s *Server) approvalsPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	ctx := r.Context()
	scope, err := s.scope(r, a)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	p := approvalsPage{Now: s.Now()}
	if p.Awaiting, err = hold.List(ctx, s.DB.Read(), hold.Filter{Contracts: scope, AwaitingOnly: true}); err != nil {
		s.failed(w, r, err)
		return
	}
	all, err := hold.List(ctx, s.DB.Read(), hold.Filter{Contracts: scope, Limit: 50})
	if err != nil {
		s.failed(w, r, err)
		return
	}
	for _, h := range all {
		if h.Approval != "" && h.Approval != hold.ApprovalPending {
			p.Recent = append(p.Recent, h)
		}
	}
	s.page(w, r, http.StatusOK, "approvals.html", a, "", p)
}

type approvalPage struct {
	H      *hold.Held
	Now    time.Time
	Reason string
	Own    bool // the signed-in manager sent it: they may not approve it
}

func (s *Server) loadHeld(w http.ResponseWriter, r *http.Request, a *accountView) (*hold.Held, bool) {
	ctx := r.Context()
	h, err := hold.Get(ctx, s.DB.Read(), r.PathValue("id"))
	if err == nil {
		c, cerr := contract.ByID(ctx, s.DB.Read(), h.ContractID)
		if cerr != nil {
			err = cerr
		} else if !s.manages(a, c) {
			err = hold.ErrNotFound
		}
	}
	return h, s.found(w, r, a, err, hold.ErrNotFound, "msg.nosuchheld")
}

func ownMessage(h *hold.Held, a *accountView) bool {
	return (h.Actor != "" && h.Actor == a.Name) || strings.EqualFold(h.Sender, a.Email)
}

// approvalPage is GET /manage/approvals/{id}.
func (s *Server) approvalPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	h, ok := s.loadHeld(w, r, a)
	if !ok {
		return
	}
	s.page(w, r, http.StatusOK, "approval.html", a, "", approvalPage{H: h, Now: s.Now(), Own: ownMessage(h, a)})
}

// decide is POST /manage/approvals/{id}: action=approve (with an optional
// note) or action=refuse (with a reason).
func (s *Server) decide(w http.ResponseWriter, r *http.Request, a *accountView) {
	h, ok := s.loadHeld(w, r, a)
	if !ok {
		return
	}
	p := approvalPage{H: h, Now: s.Now(), Own: ownMessage(h, a), Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	if len(p.Reason) > 1000 {
		p.Reason = p.Reason[:1000]
	}
	by := hold.Decider{Name: a.Name, Email: a.Email, RemoteIP: s.clientIP(r), UserAgent: userAgent(r)}
	var err error
	action := r.PostFormValue("action")
	switch action {
	case "approve":
		err = s.Holds.Approve(r.Context(), h.MessageID, by, p.Reason)
	case "refuse":
		err = s.Holds.Refuse(r.Context(), h.MessageID, by, p.Reason)
	default:
		s.page(w, r, http.StatusBadRequest, "approval.html", a, "msg.badrequest", p)
		return
	}
	if s.errorPage(w, r, "approval.html", a, p, err,
		on(http.StatusBadRequest, "msg.reasonrequired", hold.ErrReasonRequired),
		on(http.StatusForbidden, "msg.selfapproval", hold.ErrSelfApproval),
		on(http.StatusConflict, "msg.contractclosed", hold.ErrContractClosed),
		on(http.StatusConflict, "msg.decided", hold.ErrNotPending, hold.ErrNotHeld)) {
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	done := "approved"
	if action == "refuse" {
		done = "refused"
	}
	http.Redirect(w, r, "/manage/approvals?done="+done, http.StatusSeeOther)
}

type ledgerPage struct {
	Contracts []string // the contracts in scope (nil: all)
	Q         ledgerQuery
	Types     []typeOption
	Results   []audit.Found
	More      int64 // index to page from, 0 if no more
	Searched  bool
}

type typeOption struct {
	Type     string
	Selected bool
}

type ledgerQuery struct {
	Contract, Type, Recipient, Transfer, From, To string
}

func (q ledgerQuery) Encode() string {
	v := url.Values{}
	for k, s := range map[string]string{"contract": q.Contract, "type": q.Type, "recipient": q.Recipient, "transfer": q.Transfer, "from": q.From, "to": q.To} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v.Encode()
}

// parseDay reads a date input (yyyy-mm-dd) as the start of that day in loc.
func parseDay(s string, loc *time.Location) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.ParseInLocation("2006-01-02", s, loc)
}

func (s *Server) ledgerQuery(r *http.Request, a *accountView, vals url.Values) (ledgerPage, audit.Query, string) {
	scope, err := s.scope(r, a)
	p := ledgerPage{Contracts: scope}
	if err != nil {
		return p, audit.Query{}, "msg.unavailable"
	}
	p.Q = ledgerQuery{Contract: strings.TrimSpace(vals.Get("contract")), Type: vals.Get("type"), Recipient: strings.TrimSpace(vals.Get("recipient")),
		Transfer: strings.TrimSpace(vals.Get("transfer")), From: vals.Get("from"), To: vals.Get("to")}
	for _, t := range audit.AllTypes() {
		p.Types = append(p.Types, typeOption{Type: t, Selected: t == p.Q.Type})
	}
	q := audit.Query{Contracts: scope, Contract: p.Q.Contract, Recipient: p.Q.Recipient, Transfer: p.Q.Transfer}
	if p.Q.Type != "" {
		if !audit.KnownType(p.Q.Type) {
			return p, q, "msg.badrequest"
		}
		q.Types = []string{p.Q.Type}
	}
	from, err1 := parseDay(p.Q.From, s.loc)
	to, err2 := parseDay(p.Q.To, s.loc)
	if err1 != nil || err2 != nil {
		return p, q, "msg.baddate"
	}
	q.From = from
	if !to.IsZero() {
		q.To = to.AddDate(0, 0, 1) // the "to" day is included
	}
	if scope != nil && p.Q.Contract != "" && !contains(scope, p.Q.Contract) {
		return p, q, "msg.nosuchcontract"
	}
	return p, q, ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

const ledgerPageSize = 200

// ledgerPage is GET /manage/ledger: the search form and its results (read
// from the records, newest first).
func (s *Server) ledgerPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	vals := r.URL.Query()
	p, q, errKey := s.ledgerQuery(r, a, vals)
	p.Searched = len(vals) > 0
	if errKey == "" && p.Searched {
		q.Limit = ledgerPageSize + 1
		if b, err := strconv.ParseInt(vals.Get("before"), 10, 64); err == nil && b > 0 {
			q.Before = b
		}
		res, err := audit.Search(r.Context(), s.DB.Read(), q)
		if err != nil {
			s.failed(w, r, err)
			return
		}
		if len(res) > ledgerPageSize {
			res = res[:ledgerPageSize]
			p.More = res[len(res)-1].Index
		}
		p.Results = res
	}
	code := http.StatusOK
	if errKey != "" {
		code = http.StatusBadRequest
	}
	s.page(w, r, code, "ledger.html", a, errKey, p)
}

// ledgerExport is POST /manage/ledger: an export of the contract and
// period searched (audit.Export: a signed, verifiable JSON bundle, CSV for
// Excel, or a printable HTML report). Exports select by contract and
// period only, so that a bundle stays complete and verifiable; the type
// and recipient filters are for the search. The export is recorded
// (export.made).
func (s *Server) ledgerExport(w http.ResponseWriter, r *http.Request, a *accountView) {
	p, q, errKey := s.ledgerQuery(r, a, r.PostForm)
	if errKey == "" && p.Contracts != nil && q.Contract == "" {
		errKey = "msg.contractrequired"
	}
	format := audit.Format(r.PostFormValue("format"))
	switch format {
	case audit.FormatJSON, audit.FormatCSV, audit.FormatHTML:
	default:
		errKey = "msg.badrequest"
	}
	if errKey == "" && s.Signer == nil {
		errKey = "msg.unavailable"
	}
	if errKey != "" {
		s.page(w, r, http.StatusBadRequest, "ledger.html", a, errKey, p)
		return
	}
	name := "sealgate-ledger"
	if q.Contract != "" {
		name += "-" + q.Contract
	}
	ctype := map[audit.Format]string{audit.FormatJSON: "application/json", audit.FormatCSV: "text/csv; charset=utf-8", audit.FormatHTML: "text/html; charset=utf-8"}[format]
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name + "." + string(format)}))
	w.Header().Set("Cache-Control", "no-store")
	err := s.Ledger.Export(r.Context(), s.DB, audit.ExportOptions{Contract: q.Contract, From: q.From, To: q.To, Format: format,
		Signer: s.Signer, Actor: a.Name, Location: s.loc}, w, nil)
	if err != nil {
		s.Log.Error("ledger export failed", "error", err)
		panic(http.ErrAbortHandler) // the client must not take a cut export for a whole one
	}
}

type reviewPage struct {
	R    *account.Review
	Note string
}

func (s *Server) reviewOptions() account.ReviewOptions {
	rc := s.Config.Review
	return account.ReviewOptions{DormantAfter: rc.DormantAfter.D(), Window: rc.Window.D(), BurstCount: rc.BurstCount,
		BurstWithin: rc.BurstWithin.D(), OfficeStart: rc.OfficeStart, OfficeEnd: rc.OfficeEnd, Location: s.loc}
}

// reviewPage is GET /manage/review: the access review report (dormant
// accounts, failed-login bursts, logins from new addresses, downloads
// outside office hours).
func (s *Server) reviewPage(w http.ResponseWriter, r *http.Request, a *accountView) {
	rev, err := s.Accounts.BuildReview(r.Context(), s.reviewOptions())
	if err != nil {
		s.failed(w, r, err)
		return
	}
	s.page(w, r, http.StatusOK, "review.html", a, "", reviewPage{R: rev})
}

// reviewDone is POST /manage/review: marks the review done (review.done,
// with the counts of what the report listed and the reviewer's note).
func (s *Server) reviewDone(w http.ResponseWriter, r *http.Request, a *accountView) {
	rev, err := s.Accounts.BuildReview(r.Context(), s.reviewOptions())
	if err != nil {
		s.failed(w, r, err)
		return
	}
	note := strings.TrimSpace(r.PostFormValue("note"))
	if len(note) > 1000 {
		note = note[:1000]
	}
	if err := s.Accounts.MarkReviewed(r.Context(), a.Name, rev, note); err != nil {
		s.failed(w, r, err)
		return
	}
	http.Redirect(w, r, "/manage/review?done=reviewed", http.StatusSeeOther)
}

type transferSearchPage struct {
	Contracts []string
	Contract  string
	Recipient string
	Transfers []transfer.Transfer
	Searched  bool
}

// transferSearch is GET /manage/transfers: finds transfers by contract or
// recipient, for the incident view.
func (s *Server) transferSearch(w http.ResponseWriter, r *http.Request, a *accountView) {
	ctx := r.Context()
	scope, err := s.scope(r, a)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	p := transferSearchPage{Contracts: scope, Contract: strings.TrimSpace(r.URL.Query().Get("contract")), Recipient: strings.TrimSpace(r.URL.Query().Get("recipient"))}
	p.Searched = p.Contract != "" || p.Recipient != ""
	if !p.Searched {
		s.page(w, r, http.StatusOK, "transfersearch.html", a, "", p)
		return
	}
	if scope != nil && p.Contract != "" && !contains(scope, p.Contract) {
		s.page(w, r, http.StatusNotFound, "transfersearch.html", a, "msg.nosuchcontract", p)
		return
	}
	ts, err := transfer.List(ctx, s.DB.Read(), transfer.Filter{Contract: p.Contract, Recipient: p.Recipient, Limit: 200})
	if err != nil {
		s.failed(w, r, err)
		return
	}
	for _, t := range ts {
		if p.Contract != "" && !strings.EqualFold(t.Contract, p.Contract) {
			continue
		}
		if scope == nil || contains(scope, t.Contract) {
			p.Transfers = append(p.Transfers, t)
		}
	}
	s.page(w, r, http.StatusOK, "transfersearch.html", a, "", p)
}

// incident is GET /manage/transfers/{id}: the facts an incident report
// needs — who received the transfer, what each recipient did and when,
// whether they downloaded before it was revoked, and what was destroyed.
func (s *Server) incident(w http.ResponseWriter, r *http.Request, a *accountView) {
	f, ok := s.loadIncident(w, r, a)
	if !ok {
		return
	}
	s.page(w, r, http.StatusOK, "incident.html", a, "", transferPage{F: f, Now: s.Now(), Manager: true})
}

func (s *Server) loadIncident(w http.ResponseWriter, r *http.Request, a *accountView) (*transferFacts, bool) {
	f, err := s.facts(r.Context(), r.PathValue("id"))
	if err == nil && !s.manages(a, f.Contract) && !a.auditor {
		err = transfer.ErrNotFound
	}
	return f, s.found(w, r, a, err, transfer.ErrNotFound, "msg.nosuchtransfer")
}

// incidentExport is POST /manage/transfers/{id}: the incident facts as CSV
// (UTF-8 with BOM, for Excel) or JSON, recorded as an export (export.made).
func (s *Server) incidentExport(w http.ResponseWriter, r *http.Request, a *accountView) {
	f, ok := s.loadIncident(w, r, a)
	if !ok {
		return
	}
	format := r.PostFormValue("format")
	var body []byte
	var err error
	switch format {
	case "csv":
		body, err = incidentCSV(f, s.loc)
	case "json":
		body, err = incidentJSON(f, s.Now())
	default:
		s.page(w, r, http.StatusBadRequest, "incident.html", a, "msg.badrequest", transferPage{F: f, Now: s.Now(), Manager: true})
		return
	}
	if err == nil {
		err = s.recordExport(r, a, f, format, len(body))
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	ctype := map[string]string{"csv": "text/csv; charset=utf-8", "json": "application/json"}[format]
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "incident-" + f.T.ID + "." + format}))
	w.Header().Set("Cache-Control", "no-store")
	w.Write(body)
}
