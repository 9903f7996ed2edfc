// Package portal is sealgate's web side: the recipient's download page
// (link → passphrase → stream-decrypt → download), and the health endpoints.
// Templates and assets are embedded in the binary.
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
	"strings"
	"time"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/internal/ratelimit"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Deps are the portal's dependencies.
type Deps struct {
	Config *config.Config
	DB     *store.DB
	Store  storage.Store
	Keys   *crypto.Keyring
	Ledger *audit.Ledger
	Log    *slog.Logger
	Now    func() time.Time
	// Accounts signs staff in; nil disables the staff pages.
	Accounts *account.Service
}

// Server is the portal.
type Server struct {
	Deps
	tmpl       *template.Template
	loc        *time.Location
	ipLimit    *ratelimit.Limiter
	lnLimit    *ratelimit.Limiter
	loginLimit *ratelimit.Limiter
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
	s.tmpl, err = template.New("").Funcs(template.FuncMap{
		"size": humanSize,
		"time": func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04 MST") },
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	perMin := d.Config.Transfer.PerIPAttemptsPerMin
	s.ipLimit = ratelimit.New(perMin, time.Minute, d.Now)
	s.loginLimit = ratelimit.New(20, 10*time.Minute, d.Now)                                // sign-in attempts per client address
	s.lnLimit = ratelimit.New(d.Config.Transfer.PerLinkAttemptsPerMin, time.Minute, d.Now) // on top of the lock after N failures
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
	mux.HandleFunc("GET /{$}", s.home)
	if s.Accounts != nil {
		mux.HandleFunc("GET /login", s.loginPage)
		mux.HandleFunc("POST /login", s.login)
		mux.HandleFunc("GET /login/totp", s.totpPage)
		mux.HandleFunc("POST /login/totp", s.totp)
		mux.HandleFunc("POST /logout", s.logout)
		mux.HandleFunc("GET /home", s.authed(s.homePage))
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

// clientIP is the address rate limits and the ledger use.
func (s *Server) clientIP(r *http.Request) string {
	if s.Config.HTTP.TrustProxy {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			return strings.TrimSpace(parts[len(parts)-1])
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
