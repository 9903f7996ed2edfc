// Package server is sealgate's composition root: it builds every part of
// the gateway from the configuration — the metadata database, the object
// store, the master key, the ledger, the accounts, the destruction
// engine — and, for `sealgate serve`, the SMTP listeners, the portal and
// the scheduler, and supervises them until they stop. The CLI (package
// main in cmd/sealgate) parses flags and calls it; tests and tools build
// the system through the same constructors.
//
// A System opens each part when it is first asked for, once: a command
// that only verifies an export opens nothing, `sealgate contract add`
// opens the database, the keys and the ledger, and `serve` everything.
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/internal/clock"
	"github.com/sealgate/sealgate/internal/logsafe"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/fs"
	"github.com/sealgate/sealgate/storage/s3"
	"github.com/sealgate/sealgate/witness/client"
)

// Options are what the process gives the system: its clock, randomness,
// environment and where it reports.
type Options struct {
	// Now is the clock of records (default time.Now); Clock runs the
	// background jobs (default the real clock).
	Now   func() time.Time
	Clock clock.Clock
	// Rand is the source of keys, tokens and passphrases (default
	// crypto/rand).
	Rand io.Reader
	// Getenv reads the environment: SEALGATE_MASTER_KEY and the crash
	// hook of the tests (default os.Getenv).
	Getenv func(string) string
	// Stderr receives the log (the configured format and level) and
	// one-line reports such as a newly generated key (default os.Stderr).
	Stderr io.Writer
	// CreateKeys lets a fresh data directory get its master key and
	// ledger key (serve and init); other commands refuse to run without.
	CreateKeys bool
	// ConfigFile is the configuration file the system was loaded from
	// ("" = defaults and environment), for the configuration checks.
	ConfigFile string
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Clock == nil {
		o.Clock = clock.Real()
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	return o
}

// System is one installation: its configuration and its parts.
type System struct {
	Config *config.Config
	opts   Options
	log    *slog.Logger
	// metrics is nil unless metrics.listen is set: then the database and
	// the object stores report their failures to it.
	metrics *metrics.Metrics

	db      func() (*database.DB, error)
	objects func() (storage.Store, error)
	// ledgerStore is where the ledger writes checkpoints and
	// certificates: objects, or the ledger's own bucket.
	ledgerStore func() (storage.Store, error)
	keys        func() (*crypto.Keyring, error)
	ledger      func() (*audit.Ledger, error)
	ledgerKey   func() ([2]string, error) // signer key, verifier key
	witnesses   func() (*client.Client, error)

	mu      sync.Mutex
	closers []func() error
	// alerts receives the witnesses' alerts besides the log (serve sets
	// it to mail the administrators); guarded by mu.
	alerts func(ctx context.Context, a client.Alert)
}

// Open returns the system of configuration c. Nothing is opened yet.
func Open(c *config.Config, o Options) *System {
	s := &System{Config: c, opts: o.withDefaults()}
	s.log = NewLogger(c, s.opts.Stderr)
	var dbFailed, storeFailed func(op string)
	if c.Metrics.Listen != "" {
		s.metrics = metrics.New()
		dbFailed, storeFailed = s.metrics.DatabaseError, s.metrics.StoreError
	}
	// The parts are opened once, when first needed, with a background
	// context: they outlive the command or request that first asks.
	ctx := context.Background()
	s.db = sync.OnceValues(func() (*database.DB, error) {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create data directory: %w", err)
		}
		db, err := database.Open(ctx, databaseTarget(c), database.Options{Failed: dbFailed})
		if err != nil {
			return nil, err
		}
		s.onClose(db.Close)
		return db, nil
	})
	s.objects = sync.OnceValues(func() (storage.Store, error) {
		return openStore(ctx, c, c.Storage.S3.ObjectLock && c.Storage.S3.LedgerBucket == "", storeFailed)
	})
	s.keys = sync.OnceValues(func() (*crypto.Keyring, error) {
		db, err := s.db()
		if err != nil {
			return nil, err
		}
		k, created, err := masterkey.Open(ctx, db, s.MasterKeySource(), s.opts.CreateKeys, s.opts.Now)
		if created {
			fmt.Fprintf(s.opts.Stderr, "sealgate: 新しいマスター鍵を生成しました / generated a new master key: %s (back it up)\n", c.MasterKeyFile)
		}
		return k, err
	})
	s.ledgerKey = sync.OnceValues(func() ([2]string, error) {
		k, err := s.keys()
		if err != nil {
			return [2]string{}, err
		}
		sk, vk, err := masterkey.LedgerKey{Dir: c.Path("keys")}.Load(k, s.opts.Rand, c.Ledger.Origin, s.opts.CreateKeys)
		return [2]string{sk, vk}, err
	})
	s.witnesses = sync.OnceValues(func() (*client.Client, error) {
		var ws []client.Witness
		for _, w := range c.Ledger.Witnesses {
			ws = append(ws, client.Witness{Name: w.Name, URL: w.URL, Key: w.Key})
		}
		return client.New(client.Options{Witnesses: ws, Timeout: c.Ledger.WitnessTimeout.D(), Now: s.opts.Now,
			Log: s.log.With("component", "witness"), Alert: s.witnessAlert, Quorum: c.Ledger.Quorum()})
	})
	s.ledgerStore = sync.OnceValues(func() (storage.Store, error) {
		if c.Storage.Type == "s3" && c.Storage.S3.LedgerBucket != "" {
			// Checkpoints go to their own bucket (which may use Object Lock).
			lc := *c
			lc.Storage.S3.Bucket = c.Storage.S3.LedgerBucket
			return openStore(ctx, &lc, c.Storage.S3.ObjectLock, storeFailed)
		}
		return s.objects()
	})
	s.ledger = sync.OnceValues(func() (*audit.Ledger, error) {
		st, err := s.ledgerStore()
		if err != nil {
			return nil, err
		}
		opts := audit.Options{Origin: c.Ledger.Origin, Now: s.opts.Now, Store: st, Names: true}
		if len(c.Ledger.Witnesses) > 0 {
			wc, err := s.witnesses()
			if err != nil {
				return nil, err
			}
			opts.Cosigner = wc
		}
		opts.Retention = ledgerRetention(c)
		return audit.New(opts)
	})
	return s
}

func (s *System) onClose(f func() error) {
	s.mu.Lock()
	s.closers = append(s.closers, f)
	s.mu.Unlock()
}

// Close closes what was opened, last first.
func (s *System) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// Log is the system's logger (the configured format and level, secrets
// redacted).
func (s *System) Log() *slog.Logger { return s.log }

// Metrics returns the process's metrics (nil: metrics.listen is off).
func (s *System) Metrics() *metrics.Metrics { return s.metrics }

// Options returns the options the system was opened with.
func (s *System) Options() Options { return s.opts }

// DB returns the metadata database.
func (s *System) DB() (*database.DB, error) { return s.db() }

// Objects returns the object store.
func (s *System) Objects() (storage.Store, error) { return s.objects() }

// Keys returns the master keyring.
func (s *System) Keys() (*crypto.Keyring, error) { return s.keys() }

// Ledger returns the ledger (with the object store its checkpoints go to).
func (s *System) Ledger() (*audit.Ledger, error) { return s.ledger() }

// Spool returns where the spool files of messages in flight are kept:
// in the database up to gateway.DefaultSpoolInDB bytes each (most mail,
// once its attachments are sealed), and the larger ones with PostgreSQL
// under spool/ in the object store (S3, which PostgreSQL requires), which
// every instance of a fleet reads, so that a message one instance
// accepted is delivered by another if it dies; with SQLite, in the
// directory <data_dir>/spool.
func (s *System) Spool() (gateway.SpoolStore, error) {
	db, err := s.db()
	if err != nil {
		return nil, err
	}
	if s.Config.Database.IsPostgres() {
		st, err := s.objects()
		if err != nil {
			return nil, err
		}
		return &gateway.DBSpool{DB: db, Next: gateway.BucketSpool{Store: st}, Now: s.opts.Now}, nil
	}
	return &gateway.DBSpool{DB: db, Next: gateway.NewDirSpool(s.Config.Path("spool")), Now: s.opts.Now}, nil
}

// Witnesses returns the client of the ledger's witnesses, whose Status
// says how each is doing (nil when none is configured).
func (s *System) Witnesses() (*client.Client, error) {
	if len(s.Config.Ledger.Witnesses) == 0 {
		return nil, nil
	}
	return s.witnesses()
}

// OnWitnessAlert makes f receive the witnesses' alerts as well as the log.
func (s *System) OnWitnessAlert(f func(ctx context.Context, a client.Alert)) {
	s.mu.Lock()
	s.alerts = f
	s.mu.Unlock()
}

func (s *System) witnessAlert(ctx context.Context, a client.Alert) {
	s.mu.Lock()
	f := s.alerts
	s.mu.Unlock()
	if f != nil {
		f(ctx, a)
	}
}

// Signer returns the ledger signing key.
func (s *System) Signer() (note.Signer, error) {
	k, err := s.ledgerKey()
	if err != nil {
		return nil, err
	}
	return audit.NewSigner(k[0])
}

// VerifierKey returns the public key that verifies the ledger: the
// keys/ledger.pub file when it exists (no master key needed), else the
// key pair's.
func (s *System) VerifierKey() (string, error) {
	if b, err := os.ReadFile(s.Config.Path("keys", "ledger.pub")); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	k, err := s.ledgerKey()
	return k[1], err
}

// MasterKeySource says where the master key is: the configured file, or
// $SEALGATE_MASTER_KEY.
func (s *System) MasterKeySource() masterkey.Source {
	return masterkey.Source{Path: s.Config.MasterKeyFile, Env: s.opts.Getenv("SEALGATE_MASTER_KEY")}
}

// core are the parts nearly everything needs.
type core struct {
	db     *database.DB
	keys   *crypto.Keyring
	ledger *audit.Ledger
}

// core opens the database, the master keyring and the ledger.
func (s *System) core() (core, error) {
	var c core
	var err error
	if c.db, err = s.db(); err != nil {
		return c, err
	}
	if c.keys, err = s.keys(); err != nil {
		return c, err
	}
	c.ledger, err = s.ledger()
	return c, err
}

// Accounts returns the account service. Its lock alerts are queued
// through notices (nil: none are sent, as for CLI commands that do not
// deliver mail).
func (s *System) Accounts(notices account.Notifier) (*account.Service, error) {
	c, err := s.core()
	if err != nil {
		return nil, err
	}
	return &account.Service{DB: c.db, Keys: c.keys, Ledger: c.ledger, Now: s.opts.Now, Rand: s.opts.Rand,
		AppPasswordsOnly: s.Config.SMTP.SubmissionAppPasswordsOnly, Notices: notices, Log: s.log.With("component", "accounts")}, nil
}

// crashHookEnv names the fault-injection hook of the crash tests: the
// process exits (status 3, no clean-up) once this many objects have been
// deleted during a destruction. Never set it in production.
const crashHookEnv = "SEALGATE_TEST_CRASH_AFTER_OBJECTS"

// Destroy returns what revocation, expiry and destruction need. progress,
// if set, is told how far each phase of a destruction has got.
func (s *System) Destroy(progress func(phase destroy.Phase, done, total int64)) (destroy.Deps, error) {
	var d destroy.Deps
	c := s.Config
	db, err := s.db()
	if err != nil {
		return d, err
	}
	st, err := s.objects()
	if err != nil {
		return d, err
	}
	led, err := s.ledger()
	if err != nil {
		return d, err
	}
	signer, err := s.Signer()
	if err != nil {
		return d, err
	}
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		return d, fmt.Errorf("failed to load time zone %q: %w", c.Timezone, err)
	}
	spool, err := s.Spool()
	if err != nil {
		return d, err
	}
	host, _ := os.Hostname()
	d = destroy.Deps{
		DB: db, Store: st, Ledger: led, Now: s.opts.Now, Log: s.log.With("component", "destroy"), Workers: c.Lifecycle.DeleteWorkers,
		RemoveSpool: gateway.SpoolRemover(spool),
		Signer:      signer,
		Defaults:    contract.DefaultsFrom(c),
		CertDir:     c.Path("certificates"),
		Location:    loc,
		Storage:     storageDescription(c),
		Database:    databaseDescription(c),
		Owner:       host + "/" + strconv.Itoa(os.Getpid()),
		OwnerAlive:  func(owner string) bool { return ownerAlive(host, owner) },
		Lease:       c.Lifecycle.Lease.D(),
		Progress:    progress,
	}
	switch {
	case !c.Lifecycle.RotateMasterKey:
		d.RotateOff = destroy.RotateOffConfig
	case c.Database.IsPostgres():
		// The instances of a fleet share the master key (and keys/): one
		// rotating it at a contract end would leave the others with a
		// retired key. The certificate says so; the operator rotates
		// with every instance stopped (`sealgate key rotate`).
		d.RotateOff = destroy.RotateOffFleet
	default:
		d.Rotate = func(ctx context.Context, code, reason, actor string) error {
			_, err := s.RotateKey(ctx, masterkey.Cause{Actor: actor, Reason: reason, Contract: code}, false, nil)
			return err
		}
	}
	if v := s.opts.Getenv(crashHookEnv); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return d, fmt.Errorf("%s must be a positive number", crashHookEnv)
		}
		d.AfterDelete = func(done int64) {
			if done >= n {
				fmt.Fprintf(s.opts.Stderr, "\nsealgate: %s=%d: exiting as if the process had crashed\n", crashHookEnv, n)
				os.Exit(3)
			}
		}
	}
	return d, nil
}

// ErrFleetRunning is returned by RotateKey on PostgreSQL unless the
// operator says that every instance is stopped: the instances of a fleet
// share the master key and keys/ledger.key.age, and an instance still
// running with the old key could no longer open what the rotation
// re-wrapped, nor start again.
var ErrFleetRunning = errors.New("PostgreSQL では、マスター鍵と keys/ledger.key.age をフリートの全インスタンスが共有しています。" +
	"1 台だけで更新すると、ほかのインスタンスは消去された旧鍵のままになり、動作も再起動もできなくなります。手順: " +
	"(1) すべてのインスタンスの sealgate serve を停止する " +
	"(2) 1 台で、鍵ファイル（master_key_file）に旧鍵を置き SEALGATE_MASTER_KEY を設定せずに sealgate key rotate --all-stopped を実行する " +
	"(3) 新しい鍵ファイルと keys/ledger.key.age をほかのすべてのインスタンスにコピーする（SEALGATE_MASTER_KEY で与えている場合は新しい鍵の内容に置き換える） " +
	"(4) 起動する / " +
	"on PostgreSQL the master key and keys/ledger.key.age are shared by every instance of the fleet: " +
	"rotated on one instance alone, the others keep a retired key and can neither work nor start again. Steps: " +
	"(1) stop sealgate serve on every instance; " +
	"(2) on one of them, with the old key in the key file (master_key_file) and SEALGATE_MASTER_KEY unset, run sealgate key rotate --all-stopped; " +
	"(3) copy the new key file and keys/ledger.key.age to every other instance (where the key is given in SEALGATE_MASTER_KEY, set it to the new key); " +
	"(4) start them")

// RotateKey rotates the master key with every holder of wrapped secrets;
// progress, if set, is told each holder as it is done. On PostgreSQL it
// refuses (ErrFleetRunning) unless allStopped says that every instance of
// the fleet is stopped.
func (s *System) RotateKey(ctx context.Context, cause masterkey.Cause, allStopped bool, progress func(holder string, held, moved int)) (*masterkey.Rotation, error) {
	if s.Config.Database.IsPostgres() && !allStopped {
		return nil, ErrFleetRunning
	}
	c, err := s.core()
	if err != nil {
		return nil, err
	}
	db := c.db
	accts, err := s.Accounts(nil)
	if err != nil {
		return nil, err
	}
	spool, err := s.Spool()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return masterkey.Rotate(ctx, masterkey.RotateDeps{
		DB: db, Ledger: c.ledger, Keys: c.keys, Source: s.MasterKeySource(), Now: s.opts.Now, Log: s.log.With("component", "masterkey"),
		Holders: []masterkey.Holder{
			contract.KEKs{DB: db}, accts, gateway.Queue{DB: db, Spool: spool}, masterkey.LedgerKey{Dir: s.Config.Path("keys")},
		},
		Owner:    host + "/" + strconv.Itoa(os.Getpid()),
		Progress: progress,
	}, cause)
}

// NewLogger is the logger of sealgate's processes, in the configured
// format and level. Every value it writes passes through
// logsafe.ReplaceAttr, which redacts anything shaped like a token, a
// passphrase, a TOTP secret or a key (the net under call sites, which log
// request paths through logsafe.Path and never pass secrets).
func NewLogger(c *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: logsafe.ReplaceAttr}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// openStore opens the configured store; lock asks for an Object Lock
// bucket (ledger checkpoints are then written with retention). With failed
// set, the store reports its failures to it (storage.Observe).
func openStore(ctx context.Context, c *config.Config, lock bool, failed func(op string)) (storage.Store, error) {
	st, err := openBackend(ctx, c, lock)
	if err != nil || failed == nil {
		return st, err
	}
	return storage.Observe(st, failed), nil
}

func openBackend(ctx context.Context, c *config.Config, lock bool) (storage.Store, error) {
	switch c.Storage.Type {
	case "fs":
		return fs.Open(c.Storage.Dir)
	case "s3":
		st, err := s3.Open(ctx, s3Config(c, c.Storage.S3.Bucket, lock))
		if err != nil {
			return nil, fmt.Errorf("オブジェクトストレージに接続できません / cannot use the S3 store: %w", err)
		}
		return st, nil
	}
	return nil, errors.New("unknown storage type " + c.Storage.Type)
}

// s3Config is the S3 store of the configuration, in bucket.
func s3Config(c *config.Config, bucket string, lock bool) s3.Config {
	sc := c.Storage.S3
	return s3.Config{
		Endpoint: sc.Endpoint, Region: sc.Region, Bucket: bucket,
		AccessKey: sc.AccessKey, SecretKey: sc.SecretKey,
		Insecure: sc.Insecure, PathStyle: sc.PathStyle, PartSize: int64(sc.PartSize),
		ObjectLock: s3.ObjectLock{Enabled: lock},
	}
}

// probeS3 opens the configured bucket and ledger bucket as serve would,
// which probes writing, reading and deleting, but creates no bucket and
// aborts no upload; then closes them.
func probeS3(ctx context.Context, c *config.Config) error {
	sc := c.Storage.S3
	type bucket struct {
		name string
		lock bool
	}
	buckets := []bucket{{sc.Bucket, sc.ObjectLock && sc.LedgerBucket == ""}}
	if sc.LedgerBucket != "" {
		buckets = append(buckets, bucket{sc.LedgerBucket, sc.ObjectLock})
	}
	for _, b := range buckets {
		cfg := s3Config(c, b.name, b.lock)
		cfg.NoCreate, cfg.StaleUploadAge = true, -1
		st, err := s3.Open(ctx, cfg)
		if err != nil {
			return err
		}
		st.Close()
	}
	return nil
}

// storageDescription names the object store for a certificate's method.
func storageDescription(c *config.Config) string {
	if c.Storage.Type == "s3" {
		return fmt.Sprintf("S3 %s, bucket %s", c.Storage.S3.Endpoint, c.Storage.S3.Bucket)
	}
	return "ファイルシステム / file system " + c.Storage.Dir
}

// ownerAlive reports whether the process named "host/pid" may be running:
// on this host it asks the kernel; another host's process is trusted to
// keep its heartbeat.
func ownerAlive(host, owner string) bool {
	h, p, ok := strings.Cut(owner, "/")
	if !ok || h != host {
		return true
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	return processAlive(pid)
}

// databaseTarget is what database.Open is given: the PostgreSQL URL of
// database.url, or the SQLite file in the data directory.
func databaseTarget(c *config.Config) string {
	if c.Database.IsPostgres() {
		return c.Database.URL
	}
	return c.Path("sealgate.db")
}

// databaseDescription names the database in certificates, without a
// password.
func databaseDescription(c *config.Config) string {
	if c.Database.IsPostgres() {
		return "PostgreSQL " + database.Redact(c.Database.URL)
	}
	return "SQLite (secure_delete=ON) " + c.Path("sealgate.db")
}
