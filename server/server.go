package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/internal/devcert"
	"github.com/sealgate/sealgate/internal/ratelimit"
	"github.com/sealgate/sealgate/internal/servelock"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/outbox"
	"github.com/sealgate/sealgate/portal"
	"github.com/sealgate/sealgate/preflight"
	"github.com/sealgate/sealgate/pubkey"
	"github.com/sealgate/sealgate/schedule"
)

// Server is `sealgate serve`: the SMTP listeners (relay, submission,
// inbound), the portal, the admin listener of the metrics and the
// scheduler of every background job, built over one System.
type Server struct {
	sys       *System
	log       *slog.Logger
	gateway   *gateway.Gateway
	scheduler *schedule.Scheduler
	web       *http.Server
	admin     *http.Server // /metrics; nil when metrics.listen is off

	relay, submit, inbound       *smtp.Server
	relayLn, submitLn, inboundLn net.Listener
	httpLn                       net.Listener
	adminLn                      net.Listener
	lock                         *servelock.Lock // the data directory's serve mark
}

// New builds the server and opens its listeners (so that a port in use
// is an error now, not after start-up). Run serves; if New fails, nothing
// is left listening.
func New(ctx context.Context, sys *System) (_ *Server, err error) {
	c := sys.Config
	log := sys.log
	// The configuration checks of `sealgate check`: errors stop here,
	// warnings (and servers that do not answer now) are logged.
	report := sys.Check(ctx, preflight.Start)
	for _, r := range report {
		if r.Level == preflight.Warn || (r.Level == preflight.Error && r.Transient) {
			log.Warn("configuration check: "+r.EN, "check", r.Check)
		}
	}
	if blocking := report.Blocking(); len(blocking) > 0 {
		var b strings.Builder
		blocking.Write(&b)
		return nil, fmt.Errorf("設定の確認でエラーが見つかりました (sealgate check で全項目を表示します) / the configuration check found errors (sealgate check shows every check):\n%s", strings.TrimRight(b.String(), "\n"))
	}
	log.Info("configuration checked", "errors", report.Count(preflight.Error), "warnings", report.Count(preflight.Warn))
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create data directory: %w", err)
	}
	// The mark that this data directory serves (sealgate migrate refuses
	// to copy it meanwhile), held until the process ends.
	lock, err := servelock.Shared(c.DataDir)
	if errors.Is(err, servelock.ErrBusy) {
		return nil, errors.New("このデータディレクトリは移行中です (sealgate migrate)。移行が終わってから起動してください / a migration (sealgate migrate) is copying this data directory: start serve when it has finished")
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Release()
		}
	}()
	keys, err := sys.Keys()
	if err != nil {
		return nil, err
	}
	db, err := sys.DB()
	if err != nil {
		return nil, err
	}
	st, err := sys.Objects()
	if err != nil {
		return nil, err
	}
	ledger, err := sys.Ledger()
	if err != nil {
		return nil, err
	}
	signer, err := sys.Signer()
	if err != nil {
		return nil, err
	}
	tlsConf, err := serverTLS(sys)
	if err != nil {
		return nil, err
	}
	spool, err := sys.Spool()
	if err != nil {
		return nil, err
	}
	o := sys.opts
	m := sys.Metrics()
	// The rate limits: in this process on SQLite (one process; counting
	// in memory costs ~0.1 µs, in the database ~0.2 ms); on PostgreSQL in
	// the database, shared by every instance (ratelimit.Store).
	limits := ratelimit.InMemory(o.Now)
	var counters *ratelimit.Store
	if db.Dialect() == database.Postgres {
		counters = &ratelimit.Store{DB: db, Now: o.Now, Key: func() ([]byte, error) { return keys.Current().CounterKey() }}
		limits = counters.Maker()
	}
	gw, err := gateway.New(ctx, gateway.Deps{
		Config: c, DB: db, Store: st, Keys: keys, Ledger: ledger, Log: log.With("component", "gateway"),
		Now: o.Now, Rand: o.Rand, TLS: tlsConf, Metrics: m, Limits: limits, Spool: spool,
	})
	if err != nil {
		return nil, err
	}
	accts, err := sys.Accounts(gw)
	if err != nil {
		return nil, err
	}
	sys.OnWitnessAlert(witnessAlerts(db, gw, log.With("component", "witness")))
	dd, err := sys.Destroy(nil)
	if err != nil {
		return nil, err
	}
	pubkeys := &pubkey.Service{DB: db, Ledger: ledger, Now: o.Now, Rand: o.Rand, Notices: gw,
		LinkExpiry: c.Transfer.PubKeyLinkExpiry.D(), IsInternal: c.IsInternal}
	web, err := portal.New(portal.Deps{Config: c, DB: db, Store: st, Keys: keys, Ledger: ledger, Log: log.With("component", "portal"), Now: o.Now,
		Accounts: accts, Notices: gw, Holds: gw.Holds, PubKeys: pubkeys, Transfers: dd, Signer: signer, Metrics: m, Limits: limits,
		EndContract: func(ctx context.Context, code, actor, reason string) (string, error) {
			iss, err := destroy.EndContract(ctx, dd, code, actor, reason)
			if err != nil {
				return "", err
			}
			return iss.ID, nil
		}})
	if err != nil {
		return nil, err
	}
	s := &Server{sys: sys, log: log, gateway: gw, lock: lock}
	defer func() {
		if err != nil {
			s.closeListeners()
		}
	}()
	if s.relayLn, err = net.Listen("tcp", c.SMTP.RelayAddr); err != nil {
		return nil, fmt.Errorf("failed to listen for SMTP on %s: %w", c.SMTP.RelayAddr, err)
	}
	if s.httpLn, err = net.Listen("tcp", c.HTTP.Addr); err != nil {
		return nil, fmt.Errorf("failed to listen for HTTP on %s: %w", c.HTTP.Addr, err)
	}
	if m != nil {
		// The queue and the ledger are read when Prometheus scrapes.
		m.Watch(metrics.State{
			Queue:     func(ctx context.Context) ([]outbox.Pending, error) { return outbox.PendingStats(ctx, db.Read()) },
			Ledger:    func(ctx context.Context) (audit.Status, error) { return ledger.Status(ctx, db.Read()) },
			Now:       o.Now,
			Witnesses: witnessState(sys),
		})
		if s.adminLn, err = net.Listen("tcp", c.Metrics.Listen); err != nil {
			return nil, fmt.Errorf("failed to listen for metrics on %s: %w", c.Metrics.Listen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler(log.With("component", "metrics")))
		s.admin = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second, // a GET has no body
			WriteTimeout:      30 * time.Second, // longer than the collector's 10 s reads
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	s.relay = gw.NewRelayServer()
	if c.SMTP.SubmissionAddr != "" {
		s.submit = gw.NewSubmissionServer(smtpAuth{svc: accts})
		if s.submitLn, err = net.Listen("tcp", c.SMTP.SubmissionAddr); err != nil {
			return nil, fmt.Errorf("failed to listen for SMTP submission on %s: %w", c.SMTP.SubmissionAddr, err)
		}
	}
	if c.SMTP.InboundAddr != "" {
		s.inbound = gw.NewInboundServer()
		if s.inboundLn, err = net.Listen("tcp", c.SMTP.InboundAddr); err != nil {
			return nil, fmt.Errorf("failed to listen for inbound SMTP on %s: %w", c.SMTP.InboundAddr, err)
		}
	}
	// Every background loop: delivery, held messages, expiry, contract
	// end dates and destructions a crash left half-way (resumed at once),
	// checkpoints, the orphan sweep, the master key refresh, expired
	// portal sessions.
	sd := schedule.Deps{
		Clock: o.Clock, Log: log.With("component", "schedule"),
		Delivery: gw, Discards: gw, Holds: gw.Holds, Destroy: &dd, Spool: gw, Sessions: web,
		Checkpoints: ledger.NewCheckpointer(db, signer, audit.CheckpointerOptions{
			Every: int64(c.Ledger.CheckpointEvery), Interval: c.Ledger.CheckpointAfter.D(),
			Logger: log.With("component", "ledger"),
		}),
		KeyRefresh: func(ctx context.Context) error { return masterkey.Refresh(ctx, db.Read(), keys) },
		Interval:   c.Lifecycle.Interval.D(),
		// On PostgreSQL the fleet's jobs run on one instance at a time.
		Lock: db.TryLock,
	}
	if counters != nil {
		sd.Counters = counters
	}
	s.scheduler = schedule.New(sd)
	s.web = &http.Server{
		Handler:           web.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

func (s *Server) closeListeners() {
	for _, ln := range []net.Listener{s.relayLn, s.submitLn, s.inboundLn, s.httpLn, s.adminLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// Run serves until ctx is done or a component fails, then stops taking
// mail first — sessions in DATA finish, or their clients retry — and then
// the portal and the background jobs. It returns the failure, if any.
func (s *Server) Run(ctx context.Context) error {
	c := s.sys.Config
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	start := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	serveSMTP := func(srv *smtp.Server, ln net.Listener) func() error {
		return func() error {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
				return err
			}
			return nil
		}
	}
	start("smtp", serveSMTP(s.relay, s.relayLn))
	if s.submit != nil {
		start("submission", serveSMTP(s.submit, s.submitLn))
	}
	if s.inbound != nil {
		start("inbound", serveSMTP(s.inbound, s.inboundLn))
	}
	start("http", func() error {
		var err error
		if c.HTTP.TLSCert != "" {
			err = s.web.ServeTLS(s.httpLn, c.HTTP.TLSCert, c.HTTP.TLSKey)
		} else {
			err = s.web.Serve(s.httpLn)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if s.admin != nil {
		start("metrics", func() error {
			if err := s.admin.Serve(s.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	start("schedule", func() error { return s.scheduler.Run(runCtx) })

	vkey, _ := s.sys.VerifierKey()
	s.log.Info("sealgate is running",
		"smtp", s.relayLn.Addr().String(), "submission", c.SMTP.SubmissionAddr, "portal", s.httpLn.Addr().String(), "public_url", c.PublicURL,
		"data_dir", c.DataDir, "storage", c.Storage.Type, "smarthost", orOutbox(c.Delivery.Smarthost, c.Path("outbox")),
		"internal_domains", strings.Join(c.InternalDomains, ","), "ledger_key", vkey, "inbound", c.SMTP.InboundAddr, "metrics", c.Metrics.Listen)

	var err error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down")
	case err = <-errc:
		s.log.Error("component failed, shutting down", "error", err)
	}
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer shutCancel()
	for _, srv := range []*smtp.Server{s.relay, s.submit, s.inbound} {
		if srv != nil {
			srv.Shutdown(shutCtx)
		}
	}
	s.web.Shutdown(shutCtx)
	if s.admin != nil {
		s.admin.Shutdown(shutCtx)
	}
	cancel()
	wg.Wait()
	// Every component has returned: nothing writes any more.
	s.lock.Release()
	return err
}

func orOutbox(smarthost, outbox string) string {
	if smarthost != "" {
		return smarthost
	}
	return "maildir:" + outbox
}

// serverTLS loads the configured certificate or makes an in-memory
// development one for STARTTLS.
func serverTLS(sys *System) (*tls.Config, error) {
	c := sys.Config
	var cert tls.Certificate
	var err error
	if c.SMTP.TLSCert != "" {
		cert, err = tls.LoadX509KeyPair(c.SMTP.TLSCert, c.SMTP.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("failed to load SMTP TLS certificate: %w", err)
		}
	} else {
		cert, err = devcert.New(sys.opts.Rand, c.Hostname, sys.opts.Now())
		if err != nil {
			return nil, err
		}
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// smtpAuth adapts the account service to the gateway's Authenticator.
type smtpAuth struct {
	svc *account.Service
}

func (a smtpAuth) AuthenticateSMTP(ctx context.Context, username, password, ip string) (gateway.SMTPUser, error) {
	l, err := a.svc.AuthenticateSMTP(ctx, account.Login{Name: username, Password: password, RemoteIP: ip})
	if err != nil {
		return gateway.SMTPUser{}, smtpAuthError(err)
	}
	return gateway.SMTPUser{Name: l.Account.Name, Email: strings.ToLower(l.Account.Email), Valid: func(ctx context.Context) error {
		return smtpAuthError(a.svc.StillValid(ctx, l))
	}}, nil
}

// smtpAuthError marks the account's refusals as such for the gateway
// (which gives them all the same reply); other errors are failures.
func smtpAuthError(err error) error {
	for _, refusal := range []error{account.ErrBadCredentials, account.ErrDisabled, account.ErrLocked, account.ErrAppPasswordRequired,
		account.ErrNoSendingRole, account.ErrLoginRevoked} {
		if errors.Is(err, refusal) {
			return fmt.Errorf("%w: %w", gateway.ErrAuthDisabled, err)
		}
	}
	return err
}

// witnessState reads the ledger's witnesses for the metrics (nil: none
// configured).
func witnessState(sys *System) func() []metrics.Witness {
	wc, err := sys.Witnesses()
	if err != nil || wc == nil {
		return nil
	}
	return func() []metrics.Witness {
		var out []metrics.Witness
		for _, st := range wc.Status() {
			out = append(out, metrics.Witness{Failing: st.ConsecutiveFailures > 0, Failures: st.Failures, Refusals: st.Refusals})
		}
		return out
	}
}
