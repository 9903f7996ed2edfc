package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/internal/devcert"
	"github.com/sealgate/sealgate/internal/logsafe"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/portal"
	"github.com/sealgate/sealgate/pubkey"
	"github.com/sealgate/sealgate/schedule"
)

// newLogger is the logger of sealgate's processes. Every value it writes
// passes through logsafe.ReplaceAttr, which redacts anything shaped like a
// token, a passphrase, a TOTP secret or a key (the net under call sites,
// which log request paths through logsafe.Path and never pass secrets).
func newLogger(c *config.Config, e *env) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: logsafe.ReplaceAttr}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(e.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(e.Stderr, opts))
}

func cmdServe(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	e.createKeys = true
	c, err := e.Config()
	if err != nil {
		return err
	}
	log := newLogger(c, e)
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("failed to create data directory: %w", err)
	}
	keys, err := e.Keys()
	if err != nil {
		return err
	}
	db, err := e.OpenDB(ctx)
	if err != nil {
		return err
	}
	st, err := e.OpenStore(ctx)
	if err != nil {
		return err
	}
	ledger, err := e.Ledger(ctx)
	if err != nil {
		return err
	}
	signer, err := e.LedgerSigner()
	if err != nil {
		return err
	}
	vkey, _ := e.LedgerVerifierKey()
	tlsConf, err := serverTLS(c, e)
	if err != nil {
		return err
	}
	gw, err := gateway.New(ctx, gateway.Deps{
		Config: c, DB: db, Store: st, Keys: keys, Ledger: ledger, Log: log.With("component", "gateway"),
		Now: e.Now, Rand: e.Rand, TLS: tlsConf,
	})
	if err != nil {
		return err
	}
	accts, err := e.accounts(ctx)
	if err != nil {
		return err
	}
	accts.Notices, accts.Log = gw, log.With("component", "accounts")
	lc, err := e.lifecycleDeps(ctx, log.With("component", "lifecycle"))
	if err != nil {
		return err
	}
	pubkeys := &pubkey.Service{DB: db, Ledger: ledger, Now: e.Now, Rand: e.Rand, Notices: gw,
		LinkExpiry: c.Transfer.PubKeyLinkExpiry.D(), IsInternal: c.IsInternal}
	web, err := portal.New(portal.Deps{Config: c, DB: db, Store: st, Keys: keys, Ledger: ledger, Log: log.With("component", "portal"), Now: e.Now,
		Accounts: accts, Notices: gw, Holds: gw.Holds, PubKeys: pubkeys, Transfers: lc, Signer: signer,
		EndContract: func(ctx context.Context, code, actor, reason string) (string, error) {
			iss, err := destroy.EndContract(ctx, lc, code, actor, reason)
			if err != nil {
				return "", err
			}
			return iss.ID, nil
		}})
	if err != nil {
		return err
	}

	smtpLn, err := net.Listen("tcp", c.SMTP.RelayAddr)
	if err != nil {
		return fmt.Errorf("failed to listen for SMTP on %s: %w", c.SMTP.RelayAddr, err)
	}
	httpLn, err := net.Listen("tcp", c.HTTP.Addr)
	if err != nil {
		smtpLn.Close()
		return fmt.Errorf("failed to listen for HTTP on %s: %w", c.HTTP.Addr, err)
	}
	relay := gw.NewRelayServer()
	var submit *smtp.Server
	var submitLn net.Listener
	if c.SMTP.SubmissionAddr != "" {
		submit = gw.NewSubmissionServer(smtpAuth{svc: accts})
		if submitLn, err = net.Listen("tcp", c.SMTP.SubmissionAddr); err != nil {
			smtpLn.Close()
			httpLn.Close()
			return fmt.Errorf("failed to listen for SMTP submission on %s: %w", c.SMTP.SubmissionAddr, err)
		}
	}
	var inbound *smtp.Server
	var inboundLn net.Listener
	if c.SMTP.InboundAddr != "" {
		inbound = gw.NewInboundServer()
		if inboundLn, err = net.Listen("tcp", c.SMTP.InboundAddr); err != nil {
			smtpLn.Close()
			httpLn.Close()
			if submitLn != nil {
				submitLn.Close()
			}
			return fmt.Errorf("failed to listen for inbound SMTP on %s: %w", c.SMTP.InboundAddr, err)
		}
	}
	// Every background loop: delivery, held messages, expiry, contract
	// end dates and destructions a crash left half-way (resumed at once),
	// checkpoints, the orphan sweep, the master key refresh.
	scheduler := schedule.New(schedule.Deps{
		Clock: e.clock(), Log: log.With("component", "schedule"),
		Delivery: gw, Discards: gw, Holds: gw.Holds, Destroy: &lc,
		Checkpoints: ledger.NewCheckpointer(db, signer, audit.CheckpointerOptions{
			Every: int64(c.Ledger.CheckpointEvery), Interval: c.Ledger.CheckpointAfter.D(),
			Logger: log.With("component", "ledger"),
		}),
		KeyRefresh: func(ctx context.Context) error { return masterkey.Refresh(ctx, db.Read(), keys) },
		Interval:   c.Lifecycle.Interval.D(),
	})
	httpSrv := &http.Server{
		Handler:           web.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

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
	start("smtp", func() error {
		if err := relay.Serve(smtpLn); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			return err
		}
		return nil
	})
	if submit != nil {
		start("submission", func() error {
			if err := submit.Serve(submitLn); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if inbound != nil {
		start("inbound", func() error {
			if err := inbound.Serve(inboundLn); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	start("http", func() error {
		var err error
		if c.HTTP.TLSCert != "" {
			err = httpSrv.ServeTLS(httpLn, c.HTTP.TLSCert, c.HTTP.TLSKey)
		} else {
			err = httpSrv.Serve(httpLn)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	start("schedule", func() error { return scheduler.Run(runCtx) })

	log.Info("sealgate is running",
		"smtp", smtpLn.Addr().String(), "submission", c.SMTP.SubmissionAddr, "portal", httpLn.Addr().String(), "public_url", c.PublicURL,
		"data_dir", c.DataDir, "storage", c.Storage.Type, "smarthost", orOutbox(c.Delivery.Smarthost, c.Path("outbox")),
		"internal_domains", strings.Join(c.InternalDomains, ","), "ledger_key", vkey, "inbound", c.SMTP.InboundAddr)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-errc:
		log.Error("component failed, shutting down", "error", err)
	}
	// Stop taking mail first; sessions in DATA finish (or their clients
	// retry), then delivery and the portal stop.
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer shutCancel()
	relay.Shutdown(shutCtx)
	if submit != nil {
		submit.Shutdown(shutCtx)
	}
	if inbound != nil {
		inbound.Shutdown(shutCtx)
	}
	httpSrv.Shutdown(shutCtx)
	cancel()
	wg.Wait()
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
func serverTLS(c *config.Config, e *env) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if c.SMTP.TLSCert != "" {
		cert, err = tls.LoadX509KeyPair(c.SMTP.TLSCert, c.SMTP.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("failed to load SMTP TLS certificate: %w", err)
		}
	} else {
		cert, err = devcert.New(e.Rand, c.Hostname, e.Now())
		if err != nil {
			return nil, err
		}
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
