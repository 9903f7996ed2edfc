// Package portal is sealgate's web side: the recipient's download page
// (link → passphrase → stream-decrypt → download) and public key
// registration; the staff pages (my transfers: deliveries, views,
// downloads, revocation, extension, cancelling a held message); the
// information manager's pages (contracts and their end with the
// destruction certificate, approvals of held messages, ledger search and
// exports, the access review, the incident view of a transfer); the
// administrator's account list; and the health endpoints. Templates and
// assets are embedded in the binary. Pages are in Japanese and English and
// work without JavaScript. The one script, on the download page, decrypts
// in the recipient's browser (browser.go); that page's CSP allows exactly
// it, by its hash, and every other page's CSP allows no script at all.
//
// Security stance: a GET never changes state (mail security scanners open
// links before people do) — only a deliberate POST spends a passphrase
// attempt or counts a download. Every POST is checked against cross-origin
// forgery. Pages that carry a link token are never cached and never leak
// the token in a Referer. Files are decrypted only through package crypto,
// and the stored ciphertext's SHA-256, recorded at sealing, is checked while
// serving: the last bytes are held back until it matches.
package portal

import (
	"context"
	"embed"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/hold"
	"github.com/sealgate/sealgate/internal/ratelimit"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/pubkey"
	"github.com/sealgate/sealgate/storage"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Deps are the portal's dependencies.
type Deps struct {
	Config *config.Config
	DB     *database.DB
	Store  storage.Store
	Keys   *crypto.Keyring
	Ledger *audit.Ledger
	Log    *slog.Logger
	Now    func() time.Time
	// Accounts signs staff in; nil disables the staff pages.
	Accounts *account.Service
	// Notices queues the download receipt to the sender (nil: none).
	Notices Notifier
	// Holds keeps held messages (approval, send delay); nil disables the
	// approval and cancel pages.
	Holds *hold.Service
	// PubKeys registers recipients' public keys; nil disables /keys.
	PubKeys *pubkey.Service
	// Transfers revokes and extends transfers from the staff pages.
	Transfers destroy.Deps
	// EndContract ends a contract, destroys everything under it and
	// returns the id of the destruction certificate (destroy.EndContract).
	EndContract func(ctx context.Context, code, actor, reason string) (certificateID string, err error)
	// Signer signs ledger exports (and the checkpoint they are taken
	// against).
	Signer note.Signer
	// Metrics counts downloads and wrong passphrases; nil counts nothing.
	Metrics *metrics.Metrics
	// Limits makes the rate limits' counters (nil: in this process,
	// ratelimit.InMemory): with several instances, counters shared through
	// the database (ratelimit.Store).
	Limits ratelimit.Maker
	// StallTimeout cuts a download whose client has accepted nothing for
	// that long (0: DefaultStallTimeout); it is then recorded as partial
	// or aborted.
	StallTimeout time.Duration
}

// DefaultStallTimeout is how long a download waits for a client that has
// stopped reading: each write to the connection (at most 128 KiB) must
// complete within it, so a client must accept about 1 KiB/s or more.
// Without it, such a client would keep a download's goroutines and its
// buffers (about 2 MiB) for as long as it kept the connection open.
const DefaultStallTimeout = 2 * time.Minute

// Server is the portal.
type Server struct {
	Deps
	tmpl   *template.Template
	script script
	loc    *time.Location
	limits limits
}

// New parses the embedded templates.
func New(d Deps) (*Server, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	loc, err := time.LoadLocation(d.Config.Timezone)
	if err != nil {
		return nil, err
	}
	s := &Server{Deps: d, loc: loc}
	if d.Transfers.DB == nil {
		d.Transfers = destroy.Deps{DB: d.DB, Store: d.Store, Ledger: d.Ledger, Now: d.Now, Log: d.Log}
		s.Deps = d
	}
	s.tmpl, err = template.New("").Funcs(template.FuncMap{
		"size": humanSize,
		"time": func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04 MST") },
		// when is time, or a dash for "not yet / never".
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.In(loc).Format("2006-01-02 15:04 MST")
		},
		"seconds": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.In(loc).Format("2006-01-02 15:04:05 MST")
		},
		"join": strings.Join,
		// named shows a name (file name, subject, address) of a transfer, or
		// that it was destroyed: at contract end the rows keep only the
		// ledger's commitments to the names.
		"named":   audit.ShownName,
		"bdTexts": func() []string { return browserTexts },
		"dict": func(kv ...any) map[string]any {
			m := map[string]any{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		},
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	if s.script, err = loadScript(static); err != nil {
		return nil, err
	}
	if d.Limits == nil {
		d.Limits = ratelimit.InMemory(d.Now)
		s.Deps.Limits = d.Limits
	}
	s.limits = newLimits(d.Limits, d.Config.Transfer.PerIPAttemptsPerMin, d.Config.Transfer.PerLinkAttemptsPerMin)
	return s, nil
}

// Handler returns the portal's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.ready)
	mux.HandleFunc("GET /t/{token}", s.linkPage)
	mux.HandleFunc("POST /t/{token}/download", s.download)
	mux.HandleFunc("POST /t/{token}/age", s.downloadAge)
	mux.HandleFunc("POST /t/{token}/key", s.browserKey)
	mux.HandleFunc("POST /t/{token}/decrypted", s.browserDecrypted)
	mux.HandleFunc("GET /{$}", s.home)
	if s.Accounts != nil {
		mux.HandleFunc("GET /login", s.loginPage)
		mux.HandleFunc("POST /login", s.login)
		mux.HandleFunc("GET /login/totp", s.totpPage)
		mux.HandleFunc("POST /login/totp", s.totp)
		mux.HandleFunc("POST /logout", s.logout)
		mux.HandleFunc("GET /home", s.authed(s.homePage))
		mux.HandleFunc("GET /account/app-passwords", s.staff(s.appPasswordsPage))
		mux.HandleFunc("POST /account/app-passwords", s.staff(s.appPasswordsAction))

		// Staff: my transfers.
		mux.HandleFunc("GET /transfers", s.staff(s.myTransfers))
		mux.HandleFunc("GET /transfers/{id}", s.staff(s.transferPage))
		mux.HandleFunc("GET /transfers/{id}/revoke", s.staff(s.revokePage))
		mux.HandleFunc("POST /transfers/{id}/revoke", s.staff(s.revoke))
		mux.HandleFunc("GET /transfers/{id}/extend", s.staff(s.extendPage))
		mux.HandleFunc("POST /transfers/{id}/extend", s.staff(s.extend))

		// Information managers (second factor required to sign in).
		mux.HandleFunc("GET /manage/contracts", s.staff(s.contractsPage, account.RoleManager))
		mux.HandleFunc("GET /manage/contracts/{code}", s.staff(s.contractPage, account.RoleManager))
		mux.HandleFunc("GET /manage/contracts/{code}/end", s.staff(s.endContractPage, account.RoleManager))
		mux.HandleFunc("POST /manage/contracts/{code}/end", s.staff(s.endContract, account.RoleManager))
		mux.HandleFunc("GET /manage/certificates/{id}", s.staff(s.certificate, account.RoleManager, account.RoleAuditor))
		mux.HandleFunc("GET /manage/ledger", s.staff(s.ledgerPage, account.RoleManager, account.RoleAuditor))
		mux.HandleFunc("POST /manage/ledger", s.staff(s.ledgerExport, account.RoleManager, account.RoleAuditor))
		mux.HandleFunc("GET /manage/review", s.staff(s.reviewPage, account.RoleManager, account.RoleAdmin))
		mux.HandleFunc("POST /manage/review", s.staff(s.reviewDone, account.RoleManager, account.RoleAdmin))
		mux.HandleFunc("GET /manage/transfers", s.staff(s.transferSearch, account.RoleManager, account.RoleAuditor))
		mux.HandleFunc("GET /manage/transfers/{id}", s.staff(s.incident, account.RoleManager, account.RoleAuditor))
		mux.HandleFunc("POST /manage/transfers/{id}", s.staff(s.incidentExport, account.RoleManager, account.RoleAuditor))

		// Administrators.
		mux.HandleFunc("GET /admin/accounts", s.staff(s.accountsPage, account.RoleAdmin))
		mux.HandleFunc("POST /admin/accounts", s.staff(s.accountAction, account.RoleAdmin))

		if s.Holds != nil {
			mux.HandleFunc("GET /held/{id}/cancel", s.staff(s.heldCancelPage))
			mux.HandleFunc("POST /held/{id}/cancel", s.staff(s.heldCancel))
			mux.HandleFunc("GET /manage/approvals", s.staff(s.approvalsPage, account.RoleManager))
			mux.HandleFunc("GET /manage/approvals/{id}", s.staff(s.approvalPage, account.RoleManager))
			mux.HandleFunc("POST /manage/approvals/{id}", s.staff(s.decide, account.RoleManager))
		}
	}
	if s.Holds != nil {
		// The cancel link of a held message's receipt (no sign-in: the
		// token is the sender's).
		mux.HandleFunc("GET /c/{token}", s.cancelLinkPage)
		mux.HandleFunc("POST /c/{token}", s.cancelLink)
	}
	if s.PubKeys != nil {
		mux.HandleFunc("GET /keys", s.keysPage)
		mux.HandleFunc("POST /keys", s.keysRequest)
		mux.HandleFunc("GET /keys/verify/{token}", s.keysVerifyPage)
		mux.HandleFunc("POST /keys/verify/{token}", s.keysVerify)
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.message(w, r, http.StatusForbidden, "msg.forbidden", nil)
	}))
	return s.headers(cop.Handler(s.csrf(mux)))
}

// headers sets the security headers every response carries.
func (s *Server) headers(next http.Handler) http.Handler {
	tls := strings.HasPrefix(s.Config.PublicURL, "https://")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if tls || r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.DB.Read().PingContext(ctx); err != nil {
		http.Error(w, "database unavailable", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ready\n")
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	s.message(w, r, http.StatusOK, "msg.home", nil)
}

// clientIP is the address rate limits and the ledger use. Behind a
// trusted proxy it is the last X-Forwarded-For entry — the one the proxy
// appended — over all header lines (a proxy may append to the client's
// line or add a line of its own; everything before it is the client's to
// choose); an entry that is not an address is not used.
func (s *Server) clientIP(r *http.Request) string {
	if s.Config.HTTP.TrustProxy {
		if vs := r.Header.Values("X-Forwarded-For"); len(vs) > 0 {
			parts := strings.Split(vs[len(vs)-1], ",")
			last := strings.TrimSpace(parts[len(parts)-1])
			if a, err := netip.ParseAddr(last); err == nil {
				return a.Unmap().String()
			}
			if ap, err := netip.ParseAddrPort(last); err == nil {
				return ap.Addr().Unmap().String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func userAgent(r *http.Request) string {
	ua := r.UserAgent()
	if len(ua) > 256 {
		ua = ua[:256]
	}
	return strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return -1
		}
		return c
	}, ua)
}
