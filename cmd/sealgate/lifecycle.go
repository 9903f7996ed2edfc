package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/masterkey"
)

// crashHookEnv names the fault-injection hook of the crash tests: the
// process exits (status 3, no clean-up) once this many objects have been
// deleted during a destruction. Never set it in production.
const crashHookEnv = "SEALGATE_TEST_CRASH_AFTER_OBJECTS"

// lifecycleDeps wires what revocation, expiry and destruction need from the
// configuration.
func (e *env) lifecycleDeps(ctx context.Context, log *slog.Logger) (destroy.Deps, error) {
	var d destroy.Deps
	c, err := e.Config()
	if err != nil {
		return d, err
	}
	db, err := e.OpenDB(ctx)
	if err != nil {
		return d, err
	}
	st, err := e.OpenStore(ctx)
	if err != nil {
		return d, err
	}
	led, err := e.Ledger(ctx)
	if err != nil {
		return d, err
	}
	signer, err := e.LedgerSigner()
	if err != nil {
		return d, err
	}
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		return d, fmt.Errorf("failed to load time zone %q: %w", c.Timezone, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	spoolDir := c.Path("spool")
	d = destroy.Deps{
		DB: db, Store: st, Ledger: led, Now: e.Now, Log: log, Workers: c.Lifecycle.DeleteWorkers,
		RemoveSpool: func(name string) error {
			if name == "" || strings.ContainsAny(name, `/\`) || !strings.HasSuffix(name, ".age") {
				return fmt.Errorf("refusing to remove spool file %q", name)
			}
			err := os.Remove(filepath.Join(spoolDir, name))
			if os.IsNotExist(err) {
				return nil
			}
			return err
		},
		Signer:     signer,
		Defaults:   contract.DefaultsFrom(c),
		CertDir:    c.Path("certificates"),
		Location:   loc,
		Storage:    storageDescription(c),
		Database:   "SQLite (secure_delete=ON) " + c.Path("sealgate.db"),
		Owner:      host + "/" + strconv.Itoa(os.Getpid()),
		OwnerAlive: func(owner string) bool { return ownerAlive(host, owner) },
		Lease:      c.Lifecycle.Lease.D(),
	}
	if c.Lifecycle.RotateMasterKey {
		d.Rotate = func(ctx context.Context, code, reason, actor string) error {
			_, err := e.rotateKey(ctx, masterkey.Cause{Actor: actor, Reason: reason, Contract: code})
			return err
		}
	} else {
		d.RotateOff = "disabled by the configuration (lifecycle.rotate_master_key = false)"
	}
	if v := e.Getenv(crashHookEnv); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return d, fmt.Errorf("%s must be a positive number", crashHookEnv)
		}
		d.AfterDelete = func(done int64) {
			if done >= n {
				fmt.Fprintf(e.Stderr, "\nsealgate: %s=%d: exiting as if the process had crashed\n", crashHookEnv, n)
				os.Exit(3)
			}
		}
	}
	return d, nil
}

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

// phaseProgress shows one progress line per destruction phase on a
// terminal.
type phaseProgress struct {
	e   *env
	cur destroy.Phase
	p   *progress
}

func (pp *phaseProgress) update(phase destroy.Phase, done, total int64) {
	if pp.cur != phase {
		if pp.p != nil {
			pp.p.done()
		}
		pp.cur = phase
		pp.p = newProgress(pp.e, phaseLabel(phase))
	}
	pp.p.update(done, total)
}

func (pp *phaseProgress) finish() {
	if pp.p != nil {
		pp.p.done()
	}
}

func phaseLabel(p destroy.Phase) string {
	switch p {
	case destroy.PhaseKeys:
		return "鍵の消去 / destroying keys"
	case destroy.PhaseDelete:
		return "削除 / deleting objects"
	case destroy.PhaseVerify:
		return "削除の確認 / verifying absence"
	}
	return string(p)
}
