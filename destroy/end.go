package destroy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/atomicfile"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/outbox"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/transfer"
)

// Issued describes a certificate.
type Issued struct {
	ID          string
	Certificate *audit.Certificate // as the client's copy shows it (names revealed)
	JSON        []byte             // the client's copy (CertDir)
	KeptJSON    []byte             // as the gateway keeps it: names as commitments
	JSONPath    string
	HTMLPath    string
	ObjectKeys  []string // in the ledger's object store
	PublishErr  error    // the certificate is issued, but not (yet) in object storage
	Resumed     bool     // the destruction had been started before
	WasEnded    bool     // nothing to do: the contract had ended; the certificate was written again
}

// ErrIncomplete is returned when a destruction step left something behind.
var ErrIncomplete = errors.New("destroy: destruction incomplete")

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
	keys, err := transfer.KeysOfContract(ctx, d.DB.Read(), c.ID)
	if err != nil {
		return nil, err
	}
	if _, err := ShredKeys(ctx, d, keys, transfer.StatusDestroyed, actor, "contract ended"); err != nil {
		return nil, err
	}
	if err := d.destroyKEK(ctx, c, actor); err != nil {
		return nil, err
	}
	// The erased keys' old page images must not survive in the WAL.
	if err := d.scrubWAL(ctx, c, actor); err != nil {
		return nil, err
	}
	// 3 and 4. Objects, every version, then proof of absence.
	objs, err := transfer.ObjectsOfContract(ctx, d.DB.Read(), c.ID)
	if err != nil {
		return nil, err
	}
	if err := DestroyObjects(ctx, d, objs, actor); err != nil {
		return nil, err
	}
	if err := d.checkComplete(ctx, c.ID); err != nil {
		return nil, err
	}
	// The names: the rows' clear values replaced by the commitments the
	// ledger's records hold, the ledger's clear values and openings
	// deleted, and their old page images cut from the WAL.
	names, err := d.destroyNames(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := d.scrubWAL(ctx, c, actor); err != nil {
		return nil, err
	}
	// 5. A new master key: backups made before open nothing without the
	// old one.
	if err := d.rotate(ctx, c, actor); err != nil {
		return nil, err
	}
	// 6. The certificate.
	iss, err := d.issue(ctx, c, names.Names())
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
	err := d.DB.Write(ctx, func(tx *database.Tx) error {
		status, err := contract.Status(ctx, tx, c.ID)
		if err != nil {
			return err
		}
		switch status {
		case contract.StatusActive:
			if err := contract.StartEnding(ctx, tx, c.ID, actor, reason, d.Owner, now); err != nil {
				return err
			}
			// What the contract holds, counted in the transaction that
			// closes it to new mail: the certificate must list exactly
			// this much (audit.VerifyCertificate checks).
			n, err := transfer.CountOfContract(ctx, tx, c.ID)
			if err != nil {
				return err
			}
			if _, err := d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeContractEnded, Actor: actor, Contract: c.Code,
				Reason: reason, Details: map[string]string{"phase": "destruction started",
					"transfers": fmt.Sprint(n.Transfers), "files": fmt.Sprint(n.Files), "recipients": fmt.Sprint(n.Recipients)}}); err != nil {
				return err
			}
		case contract.StatusEnding:
			if err := contract.ClaimDestruction(ctx, tx, c.ID, d.Owner, now); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %s is %s", contract.ErrNotActive, c.Code, status)
		}
		// No link, key or copy of its messages may leave any more.
		msgs, err := transfer.MessagesOfContract(ctx, tx, c.ID)
		if err != nil {
			return err
		}
		if spools, err = outbox.CancelMessages(ctx, tx, msgs, "contract ended"); err != nil {
			return err
		}
		return transfer.DestroyOfContract(ctx, tx, c.ID, now)
	})
	if err != nil {
		return err
	}
	ReleaseSpools(ctx, d, spools)
	return nil
}

// withHeartbeat makes progress reports also renew the destruction lease.
func (d Deps) withHeartbeat(ctx context.Context, id int64) Deps {
	inner := d.Progress
	last := d.Now()
	d.Progress = func(p Phase, done, total int64) {
		if inner != nil {
			inner(p, done, total)
		}
		if now := d.Now(); now.Sub(last) >= d.Lease/4 {
			last = now
			err := d.DB.Write(ctx, func(tx *database.Tx) error { return contract.ClaimDestruction(ctx, tx, id, d.Owner, now) })
			if err != nil && d.Log != nil {
				d.Log.Warn("failed to renew the destruction lease", "error", err)
			}
		}
	}
	return d
}

func (d Deps) destroyKEK(ctx context.Context, c *contract.Contract, actor string) error {
	return d.DB.Write(ctx, func(tx *database.Tx) error {
		now := d.Now()
		if erased, err := contract.EraseKEK(ctx, tx, c.ID, now); err != nil || !erased {
			return err
		}
		_, err := d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeKeyDestroyed, Actor: actor, Contract: c.Code,
			Reason: "contract ended", Details: map[string]string{"key": "contract", "recipient": c.KEKRecipient}})
		return err
	})
}

// scrubWAL truncates the database's write-ahead log after the erasure,
// trying for a while if readers keep it busy; if it cannot, it records so
// (destruction.noted, once) instead of claiming it.
func (d Deps) scrubWAL(ctx context.Context, c *contract.Contract, actor string) error {
	var lastErr error
	for i := range d.WALAttempts {
		ok, err := ScrubWAL(ctx, d)
		if ok {
			return nil
		}
		lastErr = err
		if errors.Is(err, ErrNoWALScrub) {
			break // trying again changes nothing
		}
		if i+1 < d.WALAttempts {
			t := time.NewTimer(d.WALPause)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	if d.Log != nil {
		d.Log.Warn("could not truncate the database WAL after erasing keys; recorded in the certificate", "contract", c.Code, "error", lastErr)
	}
	return d.note(ctx, c, actor, "wal", "not truncated")
}

// rotate rotates the master key once per destruction (a resumed one that
// already rotated does not rotate again), or records why it does not.
func (d Deps) rotate(ctx context.Context, c *contract.Contract, actor string) error {
	done, err := d.sinceEnd(ctx, c.Code, audit.TypeKeyRotated)
	if err != nil || len(done) > 0 {
		return err
	}
	if d.Rotate == nil {
		why := d.RotateOff
		if why == "" {
			why = "rotation disabled"
		}
		return d.note(ctx, c, actor, "master-key", why)
	}
	err = d.Rotate(ctx, c.Code, "contract "+c.Code+" ended", actor)
	if errors.Is(err, masterkey.ErrFromEnv) {
		return d.note(ctx, c, actor, "master-key", RotateOffEnv)
	}
	return err
}

// Why a contract end did not rotate the master key, as the ledger's
// destruction.noted records it (the certificate's exception gives each in
// both languages: rotateOffJA).
const (
	// RotateOffConfig: lifecycle.rotate_master_key is false.
	RotateOffConfig = "disabled by the configuration (lifecycle.rotate_master_key = false)"
	// RotateOffEnv: the key is given in SEALGATE_MASTER_KEY, which the
	// gateway cannot replace.
	RotateOffEnv = "the master key is given in SEALGATE_MASTER_KEY"
	// RotateOffFleet: on PostgreSQL the instances of a fleet share the
	// master key; one instance rotating it would leave the others with
	// the retired key.
	RotateOffFleet = "the master key is shared by the instances of a fleet on PostgreSQL; rotate it with every instance stopped (sealgate key rotate)"
)

// rotateOffJA gives a RotateOff* reason in Japanese (ok false: another
// text).
func rotateOffJA(reason string) (string, bool) {
	switch reason {
	case RotateOffConfig:
		return "設定で無効にされています（lifecycle.rotate_master_key = false）", true
	case RotateOffEnv:
		return "マスター鍵は SEALGATE_MASTER_KEY で与えられています", true
	case RotateOffFleet:
		return "PostgreSQL 上のフリートの全インスタンスがマスター鍵を共有しています。全インスタンスを停止して更新してください（sealgate key rotate）", true
	}
	return reason, false
}

// note records, once per destruction and step, a destruction step that
// could not be done as designed.
func (d Deps) note(ctx context.Context, c *contract.Contract, actor, step, result string) error {
	noted, err := d.sinceEnd(ctx, c.Code, audit.TypeDestructionNoted)
	if err != nil {
		return err
	}
	for _, n := range noted {
		if n.Event.Details["step"] == step {
			return nil
		}
	}
	return d.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := d.Ledger.Append(ctx, tx, audit.Event{Time: d.Now(), Type: audit.TypeDestructionNoted, Actor: actor, Contract: c.Code,
			Result: result, Details: map[string]string{"step": step}})
		return err
	})
}

// sinceEnd returns the contract's events of type typ since its last
// contract.ended (this destruction's).
func (d Deps) sinceEnd(ctx context.Context, code, typ string) ([]audit.Indexed, error) {
	q := d.DB.Read()
	from, err := audit.LastContractEvent(ctx, q, code, audit.TypeContractEnded)
	if err != nil {
		return nil, err
	}
	return audit.ContractEvents(ctx, q, code, from+1, -1, typ)
}

func (d Deps) checkComplete(ctx context.Context, id int64) error {
	keys, objs, err := transfer.Unfinished(ctx, d.DB.Read(), id)
	if err != nil {
		return err
	}
	erased, err := contract.KEKErased(ctx, d.DB.Read(), id)
	if err != nil {
		return fmt.Errorf("failed to check the destruction: %w", err)
	}
	if keys > 0 || objs > 0 || !erased {
		return fmt.Errorf("%w: %d keys and %d objects remain (contract key erased: %v)", ErrIncomplete, keys, objs, erased)
	}
	return nil
}

// destroyNames replaces the names of the contract's rows (transfer,
// outbox) by their commitments and destroys the ledger's clear values. It
// returns the names it replaced, for the client's copy of the certificate
// (none when a resumed destruction had done it).
func (d Deps) destroyNames(ctx context.Context, c *contract.Contract) (*audit.NameMap, error) {
	m, err := audit.NewNameMap(ctx, d.DB.Read(), c.Code, d.Rand)
	if err != nil {
		return nil, err
	}
	err = d.DB.Write(ctx, func(tx *database.Tx) error {
		if err := transfer.ReplaceNamesOfContract(ctx, tx, c.ID, m.Commit); err != nil {
			return err
		}
		msgs, err := transfer.MessagesOfContract(ctx, tx, c.ID)
		if err != nil {
			return err
		}
		if err := outbox.ForgetExternalRecipients(ctx, tx, msgs); err != nil {
			return err
		}
		_, err = audit.DestroyNames(ctx, tx, c.Code, d.Now())
		return err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// issue builds, signs and records the certificate (commitments where the
// names were), then writes it out with names (the client's copy, see
// writeOut).
func (d Deps) issue(ctx context.Context, c *contract.Contract, names []audit.Name) (*Issued, error) {
	if d.Signer == nil {
		return nil, errors.New("destroy: no ledger signing key to issue the certificate")
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
	err = d.DB.Write(ctx, func(tx *database.Tx) error {
		finished = false // the function may run more than once (database.DB.Write)
		ended, err := contract.FinishEnding(ctx, tx, c.ID, cert.IssuedAt)
		if err != nil || !ended {
			return err // !ended: another process finished first; its certificate stands
		}
		finished = true
		details := audit.CertificateIssuedDetails(cert.ID, data)
		if err := recordCertificate(ctx, tx, CertRecord{ID: cert.ID, ContractID: c.ID, IssuedAt: cert.IssuedAt, SHA256: details["sha256"], JSON: data}); err != nil {
			return err
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
	return d.writeOut(ctx, cert, data, names)
}

// reissue writes out the latest certificate of an ended contract again.
func (d Deps) reissue(ctx context.Context, c *contract.Contract) (*Issued, error) {
	rec, err := LatestCertificate(ctx, d.DB.Read(), c.ID)
	if errors.Is(err, ErrNoCertificate) {
		return nil, fmt.Errorf("%w: contract %s ended without a certificate", ErrIncomplete, c.Code)
	}
	if err != nil {
		return nil, err
	}
	cert, err := audit.ParseCertificate(rec.JSON)
	if err != nil {
		return nil, err
	}
	return d.writeOut(ctx, cert, rec.JSON, nil)
}

// writeOut publishes the certificate as the gateway keeps it (data: the
// names as commitments), and writes <CertDir>/<id>.json.gz (.json before
// format v4) and <id>.html: the
// client's copy, which reveals names (each with its opening) when given.
func (d Deps) writeOut(ctx context.Context, cert *audit.Certificate, data []byte, names []audit.Name) (*Issued, error) {
	var html bytes.Buffer
	if err := audit.WriteCertificateHTML(&html, cert, d.Location); err != nil {
		return nil, err
	}
	clientData, err := audit.CertificateWithNames(data, names)
	if err != nil {
		return nil, err
	}
	client := *cert
	client.Transfers = cloneTransfers(cert.Transfers)
	if err := audit.RevealCertificate(&client, names); err != nil {
		return nil, err
	}
	var clientHTML bytes.Buffer
	if err := audit.WriteCertificateHTML(&clientHTML, &client, d.Location); err != nil {
		return nil, err
	}
	iss := &Issued{ID: cert.ID, Certificate: &client, JSON: clientData, KeptJSON: data}
	if d.CertDir != "" {
		if err := os.MkdirAll(d.CertDir, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create the certificate directory: %w", err)
		}
		iss.JSONPath = filepath.Join(d.CertDir, cert.ID+audit.CertificateFileExt(clientData))
		iss.HTMLPath = filepath.Join(d.CertDir, cert.ID+".html")
		if err := atomicfile.Write(iss.JSONPath, clientData, 0o644); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(iss.HTMLPath, clientHTML.Bytes(), 0o644); err != nil {
			return nil, err
		}
	}
	iss.ObjectKeys, iss.PublishErr = d.Ledger.PublishCertificate(ctx, cert.ID, data, html.Bytes())
	return iss, nil
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
		Method:     audit.CertMethod{Storage: d.Storage, Database: d.Database},
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
			if kf := ev.keyFiles[t.ID+"\x00"+strings.ToLower(r.Address)]; kf != nil {
				idx := kf.idx
				r.KeyFileEvent = &idx
				prove = append(prove, idx)
			}
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
			f.Versions = del.ev.Details["versions"]
			if f.Versions == "" {
				f.Versions = storage.VersionsUnknown // recorded before deletions said
			}
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
	if r := ev.rotated; r != nil {
		from, _ := strconv.Atoi(r.ev.Details["from_epoch"])
		to, _ := strconv.Atoi(r.ev.Details["to_epoch"])
		cert.MasterKey = &audit.CertMasterKey{Epoch: to, RetiredEpoch: from, RotatedAt: r.ev.Time, Event: r.idx}
		prove = append(prove, r.idx)
		completed = later(completed, r.ev.Time)
	}
	for _, n := range ev.notes {
		cert.Exceptions = append(cert.Exceptions, audit.CertException{Step: n.ev.Details["step"], Result: n.ev.Result,
			Text: exceptionText(n.ev.Details["step"], n.ev.Result, cert.MasterKey != nil), Event: n.idx})
		prove = append(prove, n.idx)
	}
	facts := certFacts{overwritten: ev.rotated != nil && ev.rotated.ev.Details["old_key_overwritten"] == "true"}
	if cert.MasterKey == nil {
		// The epoch still in use: backups made before the end open the
		// contract's files with it.
		infos, err := masterkey.Epochs(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, i := range infos {
			facts.epoch = max(facts.epoch, i.Epoch)
		}
	}
	cert.CompletedAt = completed
	writeTexts(cert, facts)
	if cert.Proofs, cert.Hashes, err = d.Ledger.ProveEvents(ctx, q, prove, cp); err != nil {
		return nil, err
	}
	return cert, nil
}

// cloneTransfers copies ts deep enough for RevealCertificate.
func cloneTransfers(ts []audit.CertTransfer) []audit.CertTransfer {
	out := make([]audit.CertTransfer, len(ts))
	for i, t := range ts {
		t.Recipients = append([]audit.CertRecipient(nil), t.Recipients...)
		t.Files = append([]audit.CertFile(nil), t.Files...)
		for j := range t.Files {
			t.Files[j].Downloads = append([]audit.CertDownload(nil), t.Files[j].Downloads...)
		}
		out[i] = t
	}
	return out
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
	keyFiles      map[string]*provenEvent // transfer \0 address: the first download of key.age
	rotated       *provenEvent            // key.rotated after the last contract.ended
	notes         []*provenEvent          // destruction.noted after the last contract.ended
}

// destructionEvents reads the contract's events below size that a
// certificate relies on.
func (d Deps) destructionEvents(ctx context.Context, code string, size int64) (*eventIndex, error) {
	evs, err := audit.ContractEvents(ctx, d.DB.Read(), code, 0, size, audit.TypeContractEnded, audit.TypeKeyDestroyed, audit.TypeObjectDeleted,
		audit.TypeObjectAbsent, audit.TypeFileDownloaded, audit.TypeKeyRotated, audit.TypeDestructionNoted)
	if err != nil {
		return nil, err
	}
	ix := &eventIndex{keys: map[string]*provenEvent{}, deleted: map[string]*provenEvent{}, absent: map[string]*provenEvent{},
		downloads: map[string]*provenEvent{}, completed: map[string]*provenEvent{}, mostPartial: map[string]*provenEvent{}, downloadCount: map[string]int{},
		keyFiles: map[string]*provenEvent{}}
	for _, x := range evs {
		ev := x.Event
		p := &provenEvent{idx: x.Idx, ev: ev}
		switch ev.Type {
		case audit.TypeContractEnded:
			// The last one: the destruction that finished. What came
			// before it belongs to no rotation or exception of this one.
			ix.ended, ix.rotated, ix.notes = p, nil, nil
		case audit.TypeKeyRotated:
			if ix.ended != nil && ix.rotated == nil {
				ix.rotated = p
			}
		case audit.TypeDestructionNoted:
			if ix.ended != nil {
				ix.notes = append(ix.notes, p)
			}
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
			if ev.Details["format"] == "key" && ev.Result == "ok" {
				if k := ev.Transfer + "\x00" + strings.ToLower(ev.Recipient); ix.keyFiles[k] == nil {
					ix.keyFiles[k] = p
				}
				continue
			}
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
	return ix, nil
}

// certTransfers lists the contract's transfers with their recipients and
// files (downloads filled in by build).
func (d Deps) certTransfers(ctx context.Context, contractID int64) ([]audit.CertTransfer, error) {
	q := d.DB.Read()
	ts, err := transfer.OfContract(ctx, q, contractID)
	if err != nil {
		return nil, err
	}
	out := make([]audit.CertTransfer, 0, len(ts))
	for _, t := range ts {
		ct := audit.CertTransfer{ID: t.ID, Message: t.MessageID, Sender: t.Sender, Subject: t.Subject, CreatedAt: t.CreatedAt, Status: t.Status,
			Recipients: []audit.CertRecipient{}, Files: []audit.CertFile{}}
		for _, r := range t.Recipients {
			ct.Recipients = append(ct.Recipients, audit.CertRecipient{Address: r.Address})
		}
		for _, f := range t.Files {
			cf := audit.CertFile{Name: f.Name, ContentType: f.ContentType, Size: f.Size, SHA256: f.SHA256, Object: f.Object,
				CipherSHA256: f.CipherSHA256, Downloads: []audit.CertDownload{}}
			for _, r := range t.Recipients {
				cf.Downloads = append(cf.Downloads, audit.CertDownload{Recipient: r.Address})
			}
			ct.Files = append(ct.Files, cf)
		}
		out = append(out, ct)
	}
	// Internal recipients got the original unchanged: name them.
	msgs := make([]string, len(ts))
	for i, t := range ts {
		msgs[i] = t.MessageID
	}
	internal, err := outbox.PlainRecipients(ctx, q, msgs)
	if err != nil {
		return nil, err
	}
	for i, t := range ts {
		out[i].InternalRecipients = internal[t.MessageID]
	}
	return out, nil
}
