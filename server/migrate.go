package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/internal/servelock"
	"github.com/sealgate/sealgate/migrate"
)

// ErrServing is returned (wrapped) by Migrate while `sealgate serve` runs
// on the source's data directory.
var ErrServing = errors.New("sealgate serve がこのデータディレクトリで動作中です。停止してから移行してください / sealgate serve is running on this data directory: stop it, then migrate")

// ledgerRetention is how long the ledger's objects are locked (S3 Object
// Lock), 0 when they are not.
func ledgerRetention(c *config.Config) time.Duration {
	if c.Storage.Type == "s3" && c.Storage.S3.ObjectLock {
		return time.Duration(c.Storage.S3.LockDays) * 24 * time.Hour
	}
	return 0
}

// Migrate copies the embedded installation of s (SQLite, fs store) into
// the one target describes (PostgreSQL, S3), then verifies the copy
// (package migrate), and copies the spool files of mail still queued into
// the bucket (gateway.CopySpool). It holds the data directory's serve lock meanwhile:
// refused while serve runs there (ErrServing), and serve does not start
// until it is done. Once copied, the target's master key and keys/ must
// open the copied secrets: the master key's epoch and the ledger's
// signing key are opened as serve would open them; the target's
// keys/ledger.pub must be the source's verifier key before anything is
// copied.
func (s *System) Migrate(ctx context.Context, target *System, opts migrate.Options) (*migrate.Report, error) {
	c, tc := s.Config, target.Config
	if c.Database.IsPostgres() || c.Storage.Type != "fs" {
		return nil, errors.New("移行元は SQLite と fs ストアの環境に限られます / the source must be an embedded installation (SQLite and the fs store): this configuration is not")
	}
	if !tc.Database.IsPostgres() || tc.Storage.Type != "s3" {
		return nil, errors.New("移行先は PostgreSQL と S3 にしてください / the target must be PostgreSQL (database.url) and S3 (storage.type = \"s3\")")
	}
	if _, err := os.Stat(databaseTarget(c)); err != nil {
		return nil, fmt.Errorf("移行元のデータベースがありません / no source database: %w", err)
	}
	lock, err := servelock.Exclusive(c.DataDir)
	if errors.Is(err, servelock.ErrBusy) {
		return nil, fmt.Errorf("%w (%s)", ErrServing, c.DataDir)
	}
	if err != nil {
		return nil, err
	}
	defer lock.Release()

	var src migrate.Source
	if src.DB, err = s.DB(); err != nil {
		return nil, err
	}
	if src.Store, err = s.Objects(); err != nil {
		return nil, err
	}
	if src.Ledger, err = s.Ledger(); err != nil {
		return nil, err
	}
	if src.VerifierKey, err = s.VerifierKey(); err != nil {
		return nil, err
	}
	src.Signer = s.Signer
	// The target's keys/ must be the source's before anything is copied
	// (its ledger.pub read as a file: opening the key pair would record
	// a master key epoch in the empty target database).
	if b, err := os.ReadFile(tc.Path("keys", "ledger.pub")); err != nil || strings.TrimSpace(string(b)) != src.VerifierKey {
		return nil, fmt.Errorf("移行先の設定の keys/ に移行元の台帳鍵 (%s) がありません。同じ keys/ を使ってください / the target configuration's keys/ directory (%s) does not hold the source's ledger key %s: give it the same keys/",
			src.VerifierKey, tc.Path("keys"), src.VerifierKey)
	}
	dst := migrate.Target{Retention: ledgerRetention(tc), Now: target.opts.Now}
	if dst.DB, err = target.DB(); err != nil {
		return nil, err
	}
	if dst.Objects, err = target.Objects(); err != nil {
		return nil, err
	}
	if dst.LedgerStore, err = target.ledgerStore(); err != nil {
		return nil, err
	}
	if dst.Ledger, err = target.Ledger(); err != nil {
		return nil, err
	}
	rep, err := migrate.Run(ctx, src, dst, opts)
	if err != nil {
		return rep, err
	}
	// The spool of mail still queued moves from <data_dir>/spool into the
	// bucket, where serve on PostgreSQL reads it (gateway.BucketSpool),
	// and is checked there. With VerifyOnly, what is there is checked and
	// only what a stopped run had not copied yet is copied.
	// The spool files kept in the database moved with its tables; every
	// file of <data_dir>/spool goes to the bucket, even a small one (left
	// there by a release before the database kept them): a row written
	// here would make spool_files differ from the source's, which
	// --verify compares.
	bucket := gateway.BucketSpool{Store: dst.Objects}
	present, _, err := gateway.CopySpool(ctx, dst.DB, &gateway.DBSpool{DB: src.DB, Next: gateway.NewDirSpool(c.Path("spool"))},
		migratedSpool{DBSpool: &gateway.DBSpool{DB: dst.DB, Next: bucket}, bucket: bucket})
	if err != nil {
		return rep, fmt.Errorf("キュー中のメールのスプールをバケットにコピーできません / failed to copy the spool of queued mail into the bucket: %w", err)
	}
	if opts.Progress != nil {
		opts.Progress(migrate.Event{Kind: migrate.EventObjects, Name: gateway.SpoolPrefix, N: int64(present)})
	}
	if _, err := target.Signer(); err != nil {
		return rep, fmt.Errorf("移行先の設定のマスター鍵と keys/ で移行したデータを開けません。同じマスター鍵と keys/ を使ってください / the target configuration's master key and keys/ do not open the copied data: give it the same master key and keys/ directory: %w", err)
	}
	return rep, nil
}

// migratedSpool is the target's spool as migrate sees it: a file is read
// from the rows the table copy brought, or else from the bucket, and a
// copy is written to the bucket only, so that the target's spool_files
// keeps exactly the source's rows.
type migratedSpool struct {
	*gateway.DBSpool
	bucket gateway.SpoolStore
}

// Replace writes name into the bucket.
func (s migratedSpool) Replace(ctx context.Context, name string, write func(io.Writer) error) error {
	return s.bucket.Replace(ctx, name, write)
}
