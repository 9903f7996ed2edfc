package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/internal/clock"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/fs"
	"github.com/sealgate/sealgate/storage/s3"
	"github.com/sealgate/sealgate/store"
)

// env is what every subcommand gets: its output streams and lazily opened
// dependencies. Subcommands live in cmd_<name>.go files as
// func(ctx context.Context, e *env, args []string) error; they parse flags
// and call library code, nothing more.
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
	// Keys loads the master key (once). Commands other than serve and
	// init never create it.
	Keys func() (*crypto.Keyring, error)
	// OpenDB opens the metadata database of the configured data directory.
	OpenDB func(ctx context.Context) (*store.DB, error)
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

	// createKeys lets serve create missing keys on a fresh data directory.
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
	e.Keys = sync.OnceValues(func() (*crypto.Keyring, error) {
		c, err := e.Config()
		if err != nil {
			return nil, err
		}
		db, err := e.OpenDB(context.Background())
		if err != nil {
			return nil, err
		}
		k, created, err := masterkey.Open(context.Background(), db, e.MasterKeySource(), e.createKeys, e.Now)
		if created {
			fmt.Fprintf(e.Stderr, "sealgate: 新しいマスター鍵を生成しました / generated a new master key: %s (back it up)\n", c.MasterKeyFile)
		}
		return k, err
	})
	ledgerKeys := sync.OnceValues(func() ([2]string, error) {
		c, err := e.Config()
		if err != nil {
			return [2]string{}, err
		}
		k, err := e.Keys()
		if err != nil {
			return [2]string{}, err
		}
		sk, vk, err := masterkey.LedgerKey{Dir: c.Path("keys")}.Load(k, e.Rand, c.Ledger.Origin, e.createKeys)
		return [2]string{sk, vk}, err
	})
	e.LedgerSigner = func() (note.Signer, error) {
		k, err := ledgerKeys()
		if err != nil {
			return nil, err
		}
		return audit.NewSigner(k[0])
	}
	e.LedgerVerifierKey = func() (string, error) {
		if c, err := e.Config(); err == nil {
			if b, err := os.ReadFile(c.Path("keys", "ledger.pub")); err == nil {
				return string(trimNL(b)), nil
			}
		}
		k, err := ledgerKeys()
		return k[1], err
	}
	e.LedgerOrigin = func() string {
		c, err := e.Config()
		if err != nil {
			return "sealgate/ledger"
		}
		return c.Ledger.Origin
	}
	var dbOnce sync.Mutex
	var db *store.DB
	e.OpenDB = func(ctx context.Context) (*store.DB, error) {
		dbOnce.Lock()
		defer dbOnce.Unlock()
		if db != nil {
			return db, nil
		}
		c, err := e.Config()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create data directory: %w", err)
		}
		d, err := store.Open(ctx, c.Path("sealgate.db"), store.Options{})
		if err != nil {
			return nil, err
		}
		db = d
		e.closers = append(e.closers, d.Close)
		return db, nil
	}
	var stOnce sync.Mutex
	var st storage.Store
	e.OpenStore = func(ctx context.Context) (storage.Store, error) {
		stOnce.Lock()
		defer stOnce.Unlock()
		if st != nil {
			return st, nil
		}
		c, err := e.Config()
		if err != nil {
			return nil, err
		}
		s, err := openStore(ctx, c, c.Storage.S3.ObjectLock && c.Storage.S3.LedgerBucket == "")
		if err != nil {
			return nil, err
		}
		st = s
		return st, nil
	}
	var ledOnce sync.Mutex
	var led *audit.Ledger
	e.Ledger = func(ctx context.Context) (*audit.Ledger, error) {
		ledOnce.Lock()
		defer ledOnce.Unlock()
		if led != nil {
			return led, nil
		}
		c, err := e.Config()
		if err != nil {
			return nil, err
		}
		st, err := e.OpenStore(ctx)
		if err != nil {
			return nil, err
		}
		if c.Storage.Type == "s3" && c.Storage.S3.LedgerBucket != "" {
			// Checkpoints go to their own bucket (which may use Object Lock).
			lc := *c
			lc.Storage.S3.Bucket = c.Storage.S3.LedgerBucket
			if st, err = openStore(ctx, &lc, c.Storage.S3.ObjectLock); err != nil {
				return nil, err
			}
		}
		opts := audit.Options{Origin: c.Ledger.Origin, Now: e.Now, Store: st}
		if c.Storage.Type == "s3" && c.Storage.S3.ObjectLock {
			opts.Retention = time.Duration(c.Storage.S3.LockDays) * 24 * time.Hour
		}
		l, err := audit.New(opts)
		if err != nil {
			return nil, err
		}
		led = l
		return led, nil
	}
}

// MasterKeySource says where the master key is: the configured file, or
// $SEALGATE_MASTER_KEY.
func (e *env) MasterKeySource() masterkey.Source {
	c, err := e.Config()
	if err != nil {
		return masterkey.Source{Env: e.Getenv("SEALGATE_MASTER_KEY")}
	}
	return masterkey.Source{Path: c.MasterKeyFile, Env: e.Getenv("SEALGATE_MASTER_KEY")}
}

// openStore opens the configured store; lock asks for an Object Lock bucket
// (ledger checkpoints are then written with retention).
func openStore(ctx context.Context, c *config.Config, lock bool) (storage.Store, error) {
	switch c.Storage.Type {
	case "fs":
		return fs.Open(c.Storage.Dir)
	case "s3":
		sc := c.Storage.S3
		st, err := s3.Open(ctx, s3.Config{
			Endpoint: sc.Endpoint, Region: sc.Region, Bucket: sc.Bucket,
			AccessKey: sc.AccessKey, SecretKey: sc.SecretKey,
			Insecure: sc.Insecure, PathStyle: sc.PathStyle, PartSize: int64(sc.PartSize),
			ObjectLock: s3.ObjectLock{Enabled: lock},
		})
		if err != nil {
			return nil, fmt.Errorf("オブジェクトストレージに接続できません / cannot use the S3 store: %w", err)
		}
		return st, nil
	}
	return nil, errors.New("unknown storage type " + c.Storage.Type)
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// clock returns the clock of the background jobs.
func (e *env) clock() clock.Clock {
	if e.Clock == nil {
		return clock.Real()
	}
	return e.Clock
}
