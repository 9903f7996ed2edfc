// Package lifecycle ends contracts and runs the scheduler.
//
// Ending a contract destroys everything the gateway holds under it, in an
// order chosen so that an interruption at any point leaves nothing
// readable:
//
//  1. the contract becomes "ending" (contract.ended): from then on the
//     gateway refuses mail for it, every pending link notice, key notice
//     and copy of its messages is cancelled with its secrets erased, and
//     its transfers are marked destroyed;
//  2. crypto-shredding: every transfer identity (key.destroyed per
//     recipient), then the contract key itself, are erased from the
//     database — from this moment no stored ciphertext, object version,
//     replica or backup can be opened by anyone;
//  3. every object is deleted, every version (object.deleted);
//  4. a Stat of each proves it gone (object.absent);
//  5. a checkpoint is signed and a destruction certificate is issued
//     (certificate.issued), carrying the inclusion proofs of the events
//     above, and the contract becomes "ended".
//
// Every step records what it did in the same transaction as the state it
// changes, conditional on that state, so EndContract can be run again after
// a crash at any point and resumes where it stopped, recording nothing
// twice; it reports success only once the certificate is issued. The
// scheduler resumes contracts left "ending" by a process that died.
package lifecycle

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/store"
	"github.com/sealgate/sealgate/transfer"
)

// Deps are what ending contracts and the scheduler need.
type Deps struct {
	transfer.Deps
	// Signer signs the checkpoint and the certificate (the ledger key).
	Signer note.Signer
	// Defaults are the configured contract defaults.
	Defaults contract.Defaults
	// CertDir receives the certificates (<data_dir>/certificates).
	CertDir string
	// Location is the time zone of the printable certificate.
	Location *time.Location
	// Storage and Database describe where the data were, for the
	// certificate's method section (e.g. "s3 bucket sealgate at …").
	Storage  string
	Database string
	// Owner identifies this process in the destruction lease ("host/pid").
	Owner string
	// OwnerAlive reports whether the process named by an owner string may
	// still be running (nil: trust the heartbeat alone).
	OwnerAlive func(owner string) bool
	// Lease is how long a destruction's heartbeat keeps other processes'
	// schedulers from resuming it (default 2m).
	Lease time.Duration
}

func (d Deps) withDefaults() Deps {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Lease <= 0 {
		d.Lease = 2 * time.Minute
	}
	if d.Location == nil {
		d.Location = time.UTC
	}
	if d.Database == "" {
		d.Database = "SQLite (secure_delete=ON)"
	}
	return d
}

// Issued describes a certificate.
type Issued struct {
	ID          string
	Certificate *audit.Certificate
	JSON        []byte
	JSONPath    string
	HTMLPath    string
	ObjectKeys  []string // in the ledger's object store
	PublishErr  error    // the certificate is issued, but not (yet) in object storage
	Resumed     bool     // the destruction had been started before
	WasEnded    bool     // nothing to do: the contract had ended; the certificate was written again
}

// ErrIncomplete is returned when a destruction step left something behind.
var ErrIncomplete = errors.New("lifecycle: destruction incomplete")

// EndContract ends the contract code and destroys everything under it
// (see the package doc), then issues the certificate. actor and reason are
// recorded when the contract is ended now; a destruction already under way
// is resumed (Resumed), and for an ended contract the certificate is
// written out again (WasEnded).
func EndContract(ctx context.Context, d Deps, code, actor, reason string) (*Issued, error) {
	d = d.withDefaults()
	c, err := contract.ByCode(ctx, d.DB.Read(), code)
	if err != nil {
		return nil, err
	}
	if c.Status == contract.StatusEnded {
		iss, err := d.reissue(ctx, c)
		if iss != nil {
			iss.WasEnded = true
		}
		return iss, err
	}
	resumed := c.Status == contract.StatusEnding
	if err := d.begin(ctx, c, actor, reason); err != nil {
		return nil, err
	}
	d = d.withHeartbeat(ctx, c.ID)

	// 2. Crypto-shredding: transfer identities, then the contract key.
	keys, err := transfer.Keys(ctx, d.DB.Read(), `t.contract_id = ?`, c.ID)
	if err != nil {
		return nil, err
	}
	if _, err := transfer.ShredKeys(ctx, d.Deps, keys, transfer.StatusDestroyed, actor, "contract ended"); err != nil {
		return nil, err
	}
	if err := d.destroyKEK(ctx, c, actor); err != nil {
		return nil, err
	}
	// The erased keys' old page images must not survive in the WAL.
	if ok, err := transfer.ScrubWAL(ctx, d.Deps); err != nil || !ok {
		if d.Log != nil {
			d.Log.Warn("could not truncate the database WAL after erasing keys; it is overwritten by later writes", "error", err)
		}
	}
	// 3 and 4. Objects, every version, then proof of absence.
	objs, err := transfer.Objects(ctx, d.DB.Read(), `t.contract_id = ? AND f.absent_at IS NULL`, c.ID)
	if err != nil {
		return nil, err
	}
	if err := transfer.DestroyObjects(ctx, d.Deps, objs, actor); err != nil {
		return nil, err
	}
	if err := d.checkComplete(ctx, c.ID); err != nil {
		return nil, err
	}
	// 5. The certificate.
	iss, err := d.issue(ctx, c)
	if iss != nil {
		iss.Resumed = resumed
	}
	return iss, err
}

// begin moves an active contract to ending (or takes over an ending one):
// contract.ended, pending mail cancelled, transfers marked destroyed.
func (d Deps) begin(ctx context.Context, c *contract.Contract, actor, reason string) error {
	now := d.Now()
	var spools []string
	err := d.DB.Write(ctx, func(tx *store.Tx) error {
		var status string
		if err := tx.QueryRowContext(ctx, `SELECT status FROM contracts WHERE id = ?`, c.ID).Scan(&status); err != nil {
			return fmt.Errorf("failed to read contract: %w", err)
		}
		switch status {
		case contract.StatusActive:
			if _, err := tx.ExecContext(ctx, `UPDATE contracts SET status = 'ending', ending_at = ?, end_operator = ?, end_reason = ?,
				destroy_owner = ?, destroy_heartbeat = ? WHERE id = ?`, now.UnixMilli(), actor, reason, d.Owner, now.UnixMilli(), c.ID); err != nil {
				return fmt.Errorf("failed to end contract: %w", err)
			}
			var transfers, files int64
			if err := tx.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM transfers WHERE contract_id = ?),
				(SELECT COUNT(*) FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE t.contract_id = ?)`, c.ID, c.ID).Scan(&transfers, &files); err != nil {
				return fmt.Errorf("failed to count the contract's transfers: %w", err)
			}
			if _, err := d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeContractEnded, Actor: actor, Contract: c.Code,
				Reason: reason, Details: map[string]string{"phase": "destruction started",
					"transfers": fmt.Sprint(transfers), "files": fmt.Sprint(files)}}); err != nil {
				return err
			}
		case contract.StatusEnding:
			if _, err := tx.ExecContext(ctx, `UPDATE contracts SET destroy_owner = ?, destroy_heartbeat = ? WHERE id = ?`,
				d.Owner, now.UnixMilli(), c.ID); err != nil {
				return fmt.Errorf("failed to take over the destruction: %w", err)
			}
		default:
			return fmt.Errorf("%w: %s is %s", contract.ErrNotActive, c.Code, status)
		}
		s, err := transfer.CancelMessages(ctx, tx, c.ID, "contract ended")
		if err != nil {
			return err
		}
		spools = s
		if _, err := tx.ExecContext(ctx, `UPDATE transfers SET status = 'destroyed', ended_at = ? WHERE contract_id = ? AND status = 'active'`,
			now.UnixMilli(), c.ID); err != nil {
			return fmt.Errorf("failed to mark transfers destroyed: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	transfer.ReleaseSpools(ctx, d.Deps, spools)
	return nil
}

// withHeartbeat makes progress reports also renew the destruction lease.
func (d Deps) withHeartbeat(ctx context.Context, id int64) Deps {
	inner := d.Progress
	last := d.Now()
	d.Progress = func(p transfer.Phase, done, total int64) {
		if inner != nil {
			inner(p, done, total)
		}
		if now := d.Now(); now.Sub(last) >= d.Lease/4 {
			last = now
			err := d.DB.Write(ctx, func(tx *store.Tx) error {
				_, err := tx.ExecContext(ctx, `UPDATE contracts SET destroy_heartbeat = ?, destroy_owner = ? WHERE id = ?`, now.UnixMilli(), d.Owner, id)
				return err
			})
			if err != nil && d.Log != nil {
				d.Log.Warn("failed to renew the destruction lease", "error", err)
			}
		}
	}
	return d
}

func (d Deps) destroyKEK(ctx context.Context, c *contract.Contract, actor string) error {
	return d.DB.Write(ctx, func(tx *store.Tx) error {
		now := d.Now()
		res, err := tx.ExecContext(ctx, `UPDATE contracts SET kek_wrapped = NULL, kek_destroyed_at = ? WHERE id = ? AND kek_destroyed_at IS NULL`,
			now.UnixMilli(), c.ID)
		if err != nil {
			return fmt.Errorf("failed to destroy the contract key: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		_, err = d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeKeyDestroyed, Actor: actor, Contract: c.Code,
			Reason: "contract ended", Details: map[string]string{"key": "contract", "recipient": c.KEKRecipient}})
		return err
	})
}

func (d Deps) checkComplete(ctx context.Context, id int64) error {
	var keys, objs int
	var kek []byte
	err := d.DB.Read().QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM recipients r JOIN transfers t ON t.id = r.transfer_id WHERE t.contract_id = ? AND (r.key_destroyed_at IS NULL OR r.key_wrapped IS NOT NULL)),
		(SELECT COUNT(*) FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE t.contract_id = ? AND f.absent_at IS NULL),
		(SELECT kek_wrapped FROM contracts WHERE id = ?)`, id, id, id).Scan(&keys, &objs, &kek)
	if err != nil {
		return fmt.Errorf("failed to check the destruction: %w", err)
	}
	if keys > 0 || objs > 0 || len(kek) > 0 {
		return fmt.Errorf("%w: %d keys and %d objects remain (contract key erased: %v)", ErrIncomplete, keys, objs, len(kek) == 0)
	}
	return nil
}

// issue builds, signs and records the certificate, then writes it out.
func (d Deps) issue(ctx context.Context, c *contract.Contract) (*Issued, error) {
	if d.Signer == nil {
		return nil, errors.New("lifecycle: no ledger signing key to issue the certificate")
	}
	cp, err := d.Ledger.Checkpoint(ctx, d.DB, d.Signer)
	if cp == nil {
		return nil, fmt.Errorf("failed to sign a checkpoint for the certificate: %w", err)
	}
	if err != nil && d.Log != nil {
		d.Log.Warn("checkpoint signed but not published", "error", err)
	}
	cert, err := d.build(ctx, c, cp)
	if err != nil {
		return nil, err
	}
	data, err := audit.SignCertificate(cert, d.Signer)
	if err != nil {
		return nil, err
	}
	finished := false
	err = d.DB.Write(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE contracts SET status = 'ended', ended_at = ?, destroy_owner = '' WHERE id = ? AND status = 'ending'`,
			cert.IssuedAt.UnixMilli(), c.ID)
		if err != nil {
			return fmt.Errorf("failed to end contract: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // another process finished first: its certificate stands
		}
		finished = true
		details := audit.CertificateIssuedDetails(cert.ID, data)
		if _, err := tx.ExecContext(ctx, `INSERT INTO certificates(id, contract_id, issued_at, sha256, json) VALUES (?, ?, ?, ?, ?)`,
			cert.ID, c.ID, cert.IssuedAt.UnixMilli(), details["sha256"], data); err != nil {
			return fmt.Errorf("failed to record certificate: %w", err)
		}
		_, err = d.Ledger.Append(ctx, tx, audit.Event{Time: cert.IssuedAt, Type: audit.TypeCertificateIssued, Actor: cert.Operator,
			Contract: c.Code, Details: details})
		return err
	})
	if err != nil {
		return nil, err
	}
	if !finished {
		return d.reissue(ctx, c)
	}
	return d.writeOut(ctx, cert, data)
}

// reissue writes out the latest certificate of an ended contract again.
func (d Deps) reissue(ctx context.Context, c *contract.Contract) (*Issued, error) {
	var data []byte
	err := d.DB.Read().QueryRowContext(ctx, `SELECT json FROM certificates WHERE contract_id = ? ORDER BY issued_at DESC LIMIT 1`, c.ID).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: contract %s ended without a certificate", ErrIncomplete, c.Code)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read certificate: %w", err)
	}
	cert, err := audit.ParseCertificate(data)
	if err != nil {
		return nil, err
	}
	return d.writeOut(ctx, cert, data)
}

// writeOut writes <CertDir>/<id>.json and .html and publishes both.
func (d Deps) writeOut(ctx context.Context, cert *audit.Certificate, data []byte) (*Issued, error) {
	var html bytes.Buffer
	if err := audit.WriteCertificateHTML(&html, cert, d.Location); err != nil {
		return nil, err
	}
	iss := &Issued{ID: cert.ID, Certificate: cert, JSON: data}
	if d.CertDir != "" {
		if err := os.MkdirAll(d.CertDir, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create the certificate directory: %w", err)
		}
		iss.JSONPath = filepath.Join(d.CertDir, cert.ID+".json")
		iss.HTMLPath = filepath.Join(d.CertDir, cert.ID+".html")
		if err := writeFileAtomic(iss.JSONPath, data); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(iss.HTMLPath, html.Bytes()); err != nil {
			return nil, err
		}
	}
	iss.ObjectKeys, iss.PublishErr = d.Ledger.PublishCertificate(ctx, cert.ID, data, html.Bytes())
	return iss, nil
}

func writeFileAtomic(name string, data []byte) error {
	dir := filepath.Dir(name)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to write %s: %w", name, err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("failed to write %s: %w", name, err)
	}
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
	return nil
}

// build gathers the certificate's content from the database and the
// ledger's events under the contract, and proves those events in cp.
func (d Deps) build(ctx context.Context, c *contract.Contract, cp *audit.SignedCheckpoint) (*audit.Certificate, error) {
	q := d.DB.Read()
	c, err := contract.ByID(ctx, q, c.ID) // fresh: end operator, reason
	if err != nil {
		return nil, err
	}
	ev, err := d.destructionEvents(ctx, c.Code, cp.Size)
	if err != nil {
		return nil, err
	}
	issued := d.Now().UTC().Truncate(time.Millisecond)
	cert := &audit.Certificate{
		ID: audit.CertificateID(c.Code, issued), Origin: cp.Origin, IssuedAt: issued,
		Contract: audit.CertContract{Code: c.Code, Name: c.Name, Counterparty: c.Counterparty, Manager: c.Manager},
		Operator: c.EndOperator, Manager: c.Manager, Reason: c.EndReason,
		Method:     audit.CertMethod{Steps: methodSteps(), Storage: d.Storage, Database: d.Database},
		Statements: statements(),
		Checkpoint: string(cp.Note),
	}
	if cert.Operator == "" {
		cert.Operator = "system"
	}
	if !c.StartsAt.IsZero() {
		t := c.StartsAt
		cert.Contract.StartsAt = &t
	}
	if !c.EndsAt.IsZero() {
		t := c.EndsAt
		cert.Contract.EndsAt = &t
	}
	var prove []int64
	if ev.ended == nil {
		return nil, fmt.Errorf("%w: no contract.ended event for %s", ErrIncomplete, c.Code)
	}
	cert.Contract.EndedEvent, cert.StartedAt = ev.ended.idx, ev.ended.ev.Time
	prove = append(prove, ev.ended.idx)
	if ev.kek == nil {
		return nil, fmt.Errorf("%w: no key.destroyed event for the contract key of %s", ErrIncomplete, c.Code)
	}
	cert.ContractKey = audit.CertKey{Recipient: c.KEKRecipient, DestroyedAt: ev.kek.ev.Time, Event: ev.kek.idx}
	prove = append(prove, ev.kek.idx)
	completed := ev.kek.ev.Time
	cert.Summary.Keys = 1

	transfers, err := d.certTransfers(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	for i := range transfers {
		t := &transfers[i]
		for j := range t.Recipients {
			r := &t.Recipients[j]
			k := ev.keys[t.ID+"\x00"+strings.ToLower(r.Address)]
			if k == nil {
				return nil, fmt.Errorf("%w: no key.destroyed event for %s in %s", ErrIncomplete, r.Address, t.ID)
			}
			r.KeyDestroyedAt, r.KeyEvent = k.ev.Time, k.idx
			prove = append(prove, k.idx)
			completed = later(completed, k.ev.Time)
			cert.Summary.Recipients++
			cert.Summary.Keys++
		}
		for j := range t.Files {
			f := &t.Files[j]
			del, abs := ev.deleted[f.Object], ev.absent[f.Object]
			if del == nil || abs == nil {
				return nil, fmt.Errorf("%w: object %s has no deletion or absence event", ErrIncomplete, f.Object)
			}
			f.DeletedAt, f.DeletedEvent = del.ev.Time, del.idx
			f.AbsentAt, f.AbsentEvent = abs.ev.Time, abs.idx
			prove = append(prove, del.idx, abs.idx)
			completed = later(completed, abs.ev.Time)
			for k := range f.Downloads {
				dl := &f.Downloads[k]
				key := t.ID + "\x00" + strings.ToLower(dl.Recipient) + "\x00" + f.SHA256
				if first := ev.downloads[key]; first != nil {
					at, idx := first.ev.Time, first.idx
					dl.Downloaded, dl.FirstAt, dl.Event, dl.Count = true, &at, &idx, ev.downloadCount[key]
					prove = append(prove, idx)
					// How much: a complete download, else the partial
					// one that delivered the most.
					extent := ev.completed[key]
					if extent == nil {
						extent = ev.mostPartial[key]
						dl.Partial, dl.Bytes = true, audit.PartialBytes(extent.ev)
					}
					if extent.idx != idx {
						x := extent.idx
						dl.ExtentEvent = &x
						prove = append(prove, x)
					}
					cert.Summary.Downloaded++
				}
			}
			cert.Summary.Files++
			cert.Summary.Objects++
			cert.Summary.Bytes += f.Size
		}
	}
	cert.Transfers = transfers
	cert.Summary.Transfers = len(transfers)
	cert.CompletedAt = completed
	if cert.Proofs, err = d.Ledger.ProveEvents(ctx, q, prove, cp); err != nil {
		return nil, err
	}
	return cert, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

type provenEvent struct {
	idx int64
	ev  audit.Event
}

type eventIndex struct {
	ended         *provenEvent
	kek           *provenEvent
	keys          map[string]*provenEvent // transfer \0 address
	deleted       map[string]*provenEvent // object
	absent        map[string]*provenEvent // object
	downloads     map[string]*provenEvent // transfer \0 address \0 sha256: the first, complete or partial
	completed     map[string]*provenEvent // ... the first complete download
	mostPartial   map[string]*provenEvent // ... the partial download that delivered the most (the first of equals)
	downloadCount map[string]int          // complete and partial
}

// destructionEvents reads the contract's events below size that a
// certificate relies on.
func (d Deps) destructionEvents(ctx context.Context, code string, size int64) (*eventIndex, error) {
	types := []string{audit.TypeContractEnded, audit.TypeKeyDestroyed, audit.TypeObjectDeleted, audit.TypeObjectAbsent, audit.TypeFileDownloaded}
	rows, err := d.DB.Read().QueryContext(ctx, `SELECT idx, data FROM ledger_records WHERE contract = ? AND idx < ? AND type IN (?, ?, ?, ?, ?) ORDER BY idx`,
		code, size, types[0], types[1], types[2], types[3], types[4])
	if err != nil {
		return nil, fmt.Errorf("failed to read the contract's ledger events: %w", err)
	}
	defer rows.Close()
	ix := &eventIndex{keys: map[string]*provenEvent{}, deleted: map[string]*provenEvent{}, absent: map[string]*provenEvent{},
		downloads: map[string]*provenEvent{}, completed: map[string]*provenEvent{}, mostPartial: map[string]*provenEvent{}, downloadCount: map[string]int{}}
	for rows.Next() {
		var idx int64
		var data []byte
		if err := rows.Scan(&idx, &data); err != nil {
			return nil, fmt.Errorf("failed to read ledger record: %w", err)
		}
		ev, err := audit.ParseRecord(data)
		if err != nil {
			return nil, fmt.Errorf("ledger entry #%d: %w", idx, err)
		}
		p := &provenEvent{idx: idx, ev: ev}
		switch ev.Type {
		case audit.TypeContractEnded:
			ix.ended = p // the last one: the destruction that finished
		case audit.TypeKeyDestroyed:
			if ev.Details["key"] == "contract" {
				if ix.kek == nil {
					ix.kek = p
				}
			} else if k := ev.Transfer + "\x00" + strings.ToLower(ev.Recipient); ix.keys[k] == nil {
				ix.keys[k] = p
			}
		case audit.TypeObjectDeleted:
			if ix.deleted[ev.Object] == nil {
				ix.deleted[ev.Object] = p
			}
		case audit.TypeObjectAbsent:
			if ix.absent[ev.Object] == nil && ix.deleted[ev.Object] != nil {
				ix.absent[ev.Object] = p
			}
		case audit.TypeFileDownloaded:
			if ev.Details["format"] != "plain" && ev.Details["format"] != "age" {
				continue
			}
			k := ev.Transfer + "\x00" + strings.ToLower(ev.Recipient) + "\x00" + ev.SHA256
			switch n := audit.PartialBytes(ev); {
			case ev.Result == "ok":
				if ix.completed[k] == nil {
					ix.completed[k] = p
				}
			case n > 0:
				if m := ix.mostPartial[k]; m == nil || n > audit.PartialBytes(m.ev) {
					ix.mostPartial[k] = p
				}
			default:
				continue // refused, aborted: nothing usable went out
			}
			if ix.downloads[k] == nil {
				ix.downloads[k] = p
			}
			ix.downloadCount[k]++
		}
	}
	return ix, rows.Err()
}

// certTransfers lists the contract's transfers with their recipients and
// files (downloads filled in by build).
func (d Deps) certTransfers(ctx context.Context, contractID int64) ([]audit.CertTransfer, error) {
	q := d.DB.Read()
	rows, err := q.QueryContext(ctx, `SELECT t.id, t.message_id, t.sender, m.subject, t.created_at, t.status
		FROM transfers t JOIN messages m ON m.id = t.message_id WHERE t.contract_id = ? ORDER BY t.created_at, t.id`, contractID)
	if err != nil {
		return nil, fmt.Errorf("failed to list transfers: %w", err)
	}
	var out []audit.CertTransfer
	pos := map[string]int{}
	for rows.Next() {
		var t audit.CertTransfer
		var created int64
		if err := rows.Scan(&t.ID, &t.Message, &t.Sender, &t.Subject, &created, &t.Status); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to read transfer: %w", err)
		}
		t.CreatedAt = time.UnixMilli(created).UTC()
		t.Recipients, t.Files = []audit.CertRecipient{}, []audit.CertFile{}
		pos[t.ID] = len(out)
		out = append(out, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list transfers: %w", err)
	}
	rows, err = q.QueryContext(ctx, `SELECT r.transfer_id, r.address FROM recipients r JOIN transfers t ON t.id = r.transfer_id
		WHERE t.contract_id = ? ORDER BY r.id`, contractID)
	if err != nil {
		return nil, fmt.Errorf("failed to list recipients: %w", err)
	}
	for rows.Next() {
		var tid, addr string
		if err := rows.Scan(&tid, &addr); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to read recipient: %w", err)
		}
		if i, ok := pos[tid]; ok {
			out[i].Recipients = append(out[i].Recipients, audit.CertRecipient{Address: addr})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list recipients: %w", err)
	}
	rows, err = q.QueryContext(ctx, `SELECT f.transfer_id, f.name, f.content_type, f.size, f.sha256, f.object_key, f.cipher_sha256
		FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE t.contract_id = ? ORDER BY f.transfer_id, f.idx`, contractID)
	if err != nil {
		return nil, fmt.Errorf("failed to list files: %w", err)
	}
	for rows.Next() {
		var tid string
		var f audit.CertFile
		if err := rows.Scan(&tid, &f.Name, &f.ContentType, &f.Size, &f.SHA256, &f.Object, &f.CipherSHA256); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to read file: %w", err)
		}
		i, ok := pos[tid]
		if !ok {
			continue
		}
		f.Downloads = []audit.CertDownload{}
		for _, r := range out[i].Recipients {
			f.Downloads = append(f.Downloads, audit.CertDownload{Recipient: r.Address})
		}
		out[i].Files = append(out[i].Files, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list files: %w", err)
	}
	// Internal recipients got the original unchanged: name them.
	rows, err = q.QueryContext(ctx, `SELECT t.id, o.rcpts FROM outbound o JOIN transfers t ON t.message_id = o.message_id
		WHERE t.contract_id = ? AND o.kind = 'plain'`, contractID)
	if err != nil {
		return nil, fmt.Errorf("failed to list internal recipients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var tid, rcpts string
		if err := rows.Scan(&tid, &rcpts); err != nil {
			return nil, fmt.Errorf("failed to read internal recipients: %w", err)
		}
		var list []string
		if json.Unmarshal([]byte(rcpts), &list) != nil {
			continue
		}
		if i, ok := pos[tid]; ok {
			for _, a := range list {
				if !slices.Contains(out[i].InternalRecipients, a) {
					out[i].InternalRecipients = append(out[i].InternalRecipients, a)
				}
			}
		}
	}
	return out, rows.Err()
}

func methodSteps() []audit.Bilingual {
	return []audit.Bilingual{
		{JA: "契約の終了: 以後この契約のメールは拒否し、未送信のリンク通知・鍵通知・コピーを取り消してその秘密情報を消去しました。",
			EN: "Contract ended: mail for it is refused from then on; pending link notices, key notices and copies were cancelled and their secrets erased."},
		{JA: "鍵の暗号学的消去（クリプトシュレッディング）: 各受信者の転送鍵（X25519 秘密鍵を収めた key.age）と契約鍵（KEK）をデータベースから消去しました。データベースは SQLite の secure_delete により解放領域を上書きし、消去後に WAL をチェックポイントして切り詰めます。これにより、保管していた暗号文は、オブジェクトの旧バージョン・複製・バックアップを含め、誰も復号できません。",
			EN: "Crypto-erasure: every recipient's transfer identity (the X25519 secret key in key.age) and the contract key (KEK) were erased from the database, which overwrites freed space (SQLite secure_delete) and whose write-ahead log is checkpointed and truncated after the erasure. No stored ciphertext — object versions, replicas and backups included — can be decrypted by anyone."},
		{JA: "保管ファイルの削除: 暗号化して保管していた各オブジェクトを、すべてのバージョンを含めて削除しました。",
			EN: "Object deletion: every stored (encrypted) object was deleted, every version."},
		{JA: "削除の確認: 各オブジェクトを照会し、存在しないことを確認しました。",
			EN: "Verification: each object was looked up (Stat) and found absent."},
		{JA: "記録: 上記の各手順を改ざん検知可能な台帳に記録し、署名済みチェックポイントと各記録の包含証明をこの証明書に収めました。",
			EN: "Record: every step above is an entry of the tamper-evident ledger; this certificate carries a signed checkpoint and each entry's inclusion proof."},
	}
}

func statements() []audit.Bilingual {
	return []audit.Bilingual{
		{JA: "この削除は、当社のゲートウェイが保管していたデータを対象とします。削除より前に受信者がダウンロードした複製（「ダウンロード済み」と記載）は受信者の管理下にあり、この削除の対象外です。該当する受信者には別途、削除を依頼してください。",
			EN: "This destruction covers what the gateway held. Copies that recipients downloaded before it (marked \"downloaded\") are in their hands and are not covered; ask those recipients to destroy them."},
		{JA: "「未ダウンロード」は、台帳にダウンロードの記録がないことを示します。",
			EN: "\"Not downloaded\" means the ledger records no download."},
		{JA: "「ダウンロード済み（一部、N バイト）」は、ダウンロードがいずれも途中で終わったものの、受信者が内容の一部を得たことを示します。N は、ゲートウェイが送信したデータから受信者が得られる平文の最大バイト数です（暗号化ファイル file.age では、送信した完全なチャンクを復号して得られるバイト数）。実際に受信者に届いた量はこれより少ない場合があります。",
			EN: "\"Downloaded (partial, N bytes)\" means every download stopped part-way, but the recipient got part of the content: N is the most plaintext the recipient can have from what the gateway sent (for the encrypted file.age, what its complete chunks decrypt to). The recipient may have received less."},
		{JA: "社内宛てのコピーは無変更で社内のメールシステムに配信されており、この削除の対象外です。",
			EN: "Copies delivered unchanged to internal recipients are in the internal mail system and are not covered."},
	}
}
