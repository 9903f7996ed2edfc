package main

import (
	"context"
	"io"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/internal/clock"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/server"
	"github.com/sealgate/sealgate/storage"
)

// env is what every subcommand gets: its output streams and the system
// of the configured installation (package server), opened lazily.
// Subcommands live in cmd_<name>.go files as
// func(ctx context.Context, e *env, args []string) error; they parse flags,
// call packages and print, nothing more.
type env struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	// IsTerminal reports whether Stderr is a terminal (show progress).
	IsTerminal bool
	Now        func() time.Time
	// Clock runs serve's background jobs (nil: the system clock); give
	// it with Now from the same clock.
	Clock  clock.Clock
	Rand   io.Reader
	Getenv func(string) string

	// ConfigPath is the --config flag ("" = embedded defaults + env).
	ConfigPath string

	// Config loads the configuration (once).
	Config func() (*config.Config, error)
	// System opens the installation (once): its parts open when first
	// asked for.
	System func() (*server.System, error)

	// The parts of the system the subcommands use (wire sets them to the
	// System's; tests may set their own).
	//
	// Keys loads the master key. Commands other than serve and init
	// never create it.
	Keys func() (*crypto.Keyring, error)
	// OpenDB opens the metadata database of the configured data directory.
	OpenDB func(ctx context.Context) (*database.DB, error)
	// OpenStore opens the configured object store.
	OpenStore func(ctx context.Context) (storage.Store, error)
	// Ledger returns the ledger (with the object store for checkpoints).
	Ledger func(ctx context.Context) (*audit.Ledger, error)
	// LedgerSigner returns the ledger signing key (decrypted with the master key).
	LedgerSigner func() (note.Signer, error)
	// LedgerVerifierKey returns the public verifier key of this gateway's ledger.
	LedgerVerifierKey func() (string, error)
	// LedgerOrigin is the checkpoint origin line (e.g. "sealgate.example.com/ledger").
	LedgerOrigin func() string

	// createKeys lets serve and init create missing keys on a fresh data
	// directory; set it before the first use of System.
	createKeys bool
	closers    []func() error
}

func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// wire fills the lazy loaders from the configuration.
func (e *env) wire() {
	e.Config = sync.OnceValues(func() (*config.Config, error) {
		c, err := config.Load(e.ConfigPath, e.Getenv)
		if err != nil {
			return nil, err
		}
		return &c, nil
	})
	e.System = sync.OnceValues(func() (*server.System, error) {
		c, err := e.Config()
		if err != nil {
			return nil, err
		}
		sys := server.Open(c, server.Options{Now: e.Now, Clock: e.Clock, Rand: e.Rand, Getenv: e.Getenv, Stderr: e.Stderr, CreateKeys: e.createKeys, ConfigFile: e.ConfigPath})
		e.closers = append(e.closers, sys.Close)
		return sys, nil
	})
	e.Keys = func() (*crypto.Keyring, error) { return part(e, (*server.System).Keys) }
	e.OpenDB = func(context.Context) (*database.DB, error) { return part(e, (*server.System).DB) }
	e.OpenStore = func(context.Context) (storage.Store, error) { return part(e, (*server.System).Objects) }
	e.Ledger = func(context.Context) (*audit.Ledger, error) { return part(e, (*server.System).Ledger) }
	e.LedgerSigner = func() (note.Signer, error) { return part(e, (*server.System).Signer) }
	e.LedgerVerifierKey = func() (string, error) { return part(e, (*server.System).VerifierKey) }
	e.LedgerOrigin = func() string {
		c, err := e.Config()
		if err != nil {
			return "sealgate/ledger"
		}
		return c.Ledger.Origin
	}
}

// part opens the system and returns one of its parts.
func part[T any](e *env, get func(*server.System) (T, error)) (T, error) {
	sys, err := e.System()
	if err != nil {
		var zero T
		return zero, err
	}
	return get(sys)
}

// accounts returns the account service (CLI commands queue no mail).
func (e *env) accounts(context.Context) (*account.Service, error) {
	sys, err := e.System()
	if err != nil {
		return nil, err
	}
	return sys.Accounts(nil)
}

// destroyDeps returns what revocation, expiry and destruction need;
// progress, if set, is told how far each phase has got.
func (e *env) destroyDeps(progress func(destroy.Phase, int64, int64)) (destroy.Deps, error) {
	sys, err := e.System()
	if err != nil {
		return destroy.Deps{}, err
	}
	return sys.Destroy(progress)
}

// rotateKey rotates the master key, with a progress line on a terminal.
func (e *env) rotateKey(ctx context.Context, cause masterkey.Cause, allStopped bool) (*masterkey.Rotation, error) {
	sys, err := e.System()
	if err != nil {
		return nil, err
	}
	p := newProgress(e, "鍵の再暗号化 / re-wrapping secrets")
	defer p.done()
	step := int64(0)
	return sys.RotateKey(ctx, cause, allStopped, func(string, int, int) { step++; p.update(step, 4) })
}
