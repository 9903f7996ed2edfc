package server

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/servelock"
	"github.com/sealgate/sealgate/migrate"
)

// systems returns an embedded installation in a new data directory (its
// database made) and a target configuration on PostgreSQL and S3 that is
// never reached: the refusals below come first.
func systems(t *testing.T) (src, dst *System, dir string) {
	t.Helper()
	dir = t.TempDir()
	env := map[string]string{"SEALGATE_DATA_DIR": dir, "SEALGATE_SMTP_ADDR": "127.0.0.1:0", "SEALGATE_HTTP_ADDR": "127.0.0.1:0",
		"SEALGATE_SUBMISSION_ADDR": "off", "SEALGATE_INTERNAL_DOMAINS": "corp.example", "SEALGATE_HOSTNAME": "gw.corp.example"}
	c, err := config.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	src = Open(&c, Options{Stderr: &log, CreateKeys: true, Getenv: func(string) string { return "" }})
	t.Cleanup(func() { src.Close() })
	if _, err := src.Keys(); err != nil { // makes the database and the master key
		t.Fatal(err)
	}
	tc := c
	tc.Database.URL = "postgres://sealgate@127.0.0.1:1/none"
	tc.Storage.Type = "s3"
	dst = Open(&tc, Options{Stderr: &log, Getenv: func(string) string { return "" }})
	t.Cleanup(func() { dst.Close() })
	return src, dst, dir
}

// TestMigrateRefusedWhileServing: with serve's lock held on the data
// directory, migrate is refused in both languages before it opens the
// target.
func TestMigrateRefusedWhileServing(t *testing.T) {
	src, dst, dir := systems(t)
	lock, err := servelock.Shared(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	_, err = src.Migrate(context.Background(), dst, migrate.Options{})
	if !errors.Is(err, ErrServing) || !strings.Contains(err.Error(), "停止してから移行してください") || !strings.Contains(err.Error(), "stop it, then migrate") {
		t.Fatalf("migrate while serving: %v", err)
	}
	lock.Release()
	// Without serve, the same call goes on to the target (which is not
	// there): the refusal was the lock's.
	_, err = src.Migrate(context.Background(), dst, migrate.Options{})
	if err == nil || errors.Is(err, ErrServing) {
		t.Fatalf("migrate without serve: %v", err)
	}
}

// TestServeRefusedWhileMigrating: serve does not start on a data
// directory a migration holds.
func TestServeRefusedWhileMigrating(t *testing.T) {
	src, _, dir := systems(t)
	lock, err := servelock.Exclusive(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	_, err = New(context.Background(), src)
	if err == nil || !strings.Contains(err.Error(), "a migration (sealgate migrate) is copying this data directory") {
		t.Fatalf("serve during a migration: %v", err)
	}
}

// TestMigrateRefusesWrongShapes: the source must be SQLite + fs, the
// target PostgreSQL + S3.
func TestMigrateRefusesWrongShapes(t *testing.T) {
	src, dst, _ := systems(t)
	if _, err := dst.Migrate(context.Background(), src, migrate.Options{}); err == nil || !strings.Contains(err.Error(), "the source must be an embedded installation") {
		t.Fatalf("migrate from PostgreSQL: %v", err)
	}
	if _, err := src.Migrate(context.Background(), src, migrate.Options{}); err == nil || !strings.Contains(err.Error(), "the target must be PostgreSQL") {
		t.Fatalf("migrate into SQLite: %v", err)
	}
}

// TestMigrateRefusesOtherKeys: a target configuration whose keys/ lacks
// the source's ledger key is refused before anything is opened there.
func TestMigrateRefusesOtherKeys(t *testing.T) {
	src, dst, _ := systems(t)
	if _, err := src.VerifierKey(); err != nil { // makes the ledger key pair
		t.Fatal(err)
	}
	tc := *dst.Config
	tc.DataDir = t.TempDir()
	other := Open(&tc, dst.opts)
	t.Cleanup(func() { other.Close() })
	_, err := src.Migrate(context.Background(), other, migrate.Options{})
	if err == nil || !strings.Contains(err.Error(), "does not hold the source's ledger key") {
		t.Fatalf("migrate to a configuration with other keys: %v", err)
	}
	// With the source's keys/ the same check passes: the call goes on to
	// the target's database (which is not there).
	_, err = src.Migrate(context.Background(), dst, migrate.Options{})
	if err == nil || strings.Contains(err.Error(), "ledger key") {
		t.Fatalf("migrate with the same keys/: %v", err)
	}
}
