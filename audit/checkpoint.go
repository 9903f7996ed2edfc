package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/witness/cosig"
)

// Object-store keys of published checkpoints.
const (
	CheckpointPrefix    = "ledger/checkpoints/"
	LatestCheckpointKey = CheckpointPrefix + "latest.note"
)

// CheckpointKey is the object-store key of the checkpoint of the given size.
func CheckpointKey(size int64) string {
	return CheckpointPrefix + strconv.FormatInt(size, 10) + ".note"
}

// GenerateKey generates a ledger signing key (skey, secret: keep it like the
// master key) and its verifier key (vkey, public: give it to auditors),
// named name (e.g. "sealgate.example.com"), using randomness from rand.
func GenerateKey(rand io.Reader, name string) (skey, vkey string, err error) {
	if rand == nil {
		return "", "", fmt.Errorf("failed to generate ledger key: no randomness source")
	}
	skey, vkey, err = note.GenerateKey(rand, name)
	if err != nil {
		return "", "", fmt.Errorf("failed to generate ledger key: %w", err)
	}
	return skey, vkey, nil
}

// NewSigner parses a signing key made by GenerateKey.
func NewSigner(skey string) (note.Signer, error) {
	s, err := note.NewSigner(strings.TrimSpace(skey))
	if err != nil {
		return nil, fmt.Errorf("%w: signer key: %v", ErrBadKey, err)
	}
	return s, nil
}

// SignedCheckpoint is a signed statement of the tree's size and root.
type SignedCheckpoint struct {
	Origin string
	Size   int64     // entries 0..Size-1 are covered
	Root   tlog.Hash // RFC 6962 root of those entries
	// Note is the signed note, byte for byte as published: the gateway's
	// signature, then the cosignature lines of the witnesses that
	// cosigned it (if any; see Cosigner).
	Note []byte

	signed []byte // the note as the gateway signed it (nil: Note)
}

func (c *SignedCheckpoint) String() string { return string(c.Note) }

// signedNote is the note without the witnesses' cosignatures.
func (c *SignedCheckpoint) signedNote() []byte {
	if c.signed != nil {
		return c.signed
	}
	return c.Note
}

func checkpointBody(origin string, size int64, root tlog.Hash) string {
	return origin + "\n" + strconv.FormatInt(size, 10) + "\n" + root.String() + "\n"
}

// parseCheckpointBody parses the C2SP checkpoint shape; extension lines
// after the root are allowed and ignored (they are covered by the
// signature all the same).
func parseCheckpointBody(text string) (origin string, size int64, root tlog.Hash, err error) {
	c, err := cosig.ParseCheckpoint(text)
	if err != nil {
		return "", 0, tlog.Hash{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return c.Origin, c.Size, c.Root, nil
}

// keyID is the "<name>+<hash>" prefix shared by a signer and verifier key.
func keyID(name string, hash uint32) string { return fmt.Sprintf("%s+%08x", name, hash) }

// KeyID returns the "<name>+<hash>" identity of a verifier key.
func KeyID(vkey string) (string, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return "", fmt.Errorf("%w: verifier key: %v", ErrBadKey, err)
	}
	return keyID(v.Name(), v.KeyHash()), nil
}

// openNote verifies msg's signature with vkey. A note signed only by other
// keys (another gateway's) fails with ErrWrongKey, one whose signature does
// not verify with ErrBadSignature.
func openNote(msg []byte, vkey, what string) (*note.Note, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("%w: verifier key: %v", ErrBadKey, err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err == nil {
		return n, nil
	}
	var unv *note.UnverifiedNoteError
	var inv *note.InvalidSignatureError
	switch {
	case errors.As(err, &unv):
		var by []string
		for _, s := range unv.Note.UnverifiedSigs {
			by = append(by, keyID(s.Name, s.Hash))
		}
		return nil, fmt.Errorf("%w: the %s is signed by %s, not by the given key %s (a key of another gateway?)",
			ErrWrongKey, what, strings.Join(by, ", "), keyID(v.Name(), v.KeyHash()))
	case errors.As(err, &inv):
		return nil, fmt.Errorf("%w: the %s's signature by %s does not verify: it has been altered",
			ErrBadSignature, what, keyID(inv.Name, inv.Hash))
	}
	return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
}

// OpenCheckpoint verifies a signed checkpoint with the verifier key vkey and
// parses it.
func OpenCheckpoint(msg []byte, vkey string) (*SignedCheckpoint, error) {
	n, err := openNote(msg, vkey, "checkpoint")
	if err != nil {
		return nil, err
	}
	origin, size, root, err := parseCheckpointBody(n.Text)
	if err != nil {
		return nil, err
	}
	return &SignedCheckpoint{Origin: origin, Size: size, Root: root, Note: bytes.Clone(msg)}, nil
}

// parseStoredCheckpoint parses a checkpoint from the database or storage
// without checking its signature (the caller verifies, or only needs the
// size).
func parseStoredCheckpoint(msg []byte) (*SignedCheckpoint, error) {
	_, err := note.Open(msg, nil)
	var unv *note.UnverifiedNoteError
	if !errors.As(err, &unv) {
		return nil, fmt.Errorf("%w: stored checkpoint: %v", ErrMalformed, err)
	}
	origin, size, root, err := parseCheckpointBody(unv.Note.Text)
	if err != nil {
		return nil, err
	}
	return &SignedCheckpoint{Origin: origin, Size: size, Root: root, Note: bytes.Clone(msg)}, nil
}

// Checkpoint signs the current tree with signer, records the checkpoint in
// the database and appends a checkpoint.signed event, all in one write: the
// checkpoint covers the entries before its own event. If the ledger has a
// Cosigner, the witnesses are then asked to cosign it (their cosignatures
// are recorded and the checkpoint returned carries them); if it has a
// Store, the checkpoint is then published (see Publish). If only recording
// cosignatures or publishing fails, the checkpoint is returned together
// with an error wrapping ErrPublish. A witness that does not cosign is no
// error here: the Cosigner reports it.
func (l *Ledger) Checkpoint(ctx context.Context, db DB, signer note.Signer) (*SignedCheckpoint, error) {
	if signer == nil {
		return nil, fmt.Errorf("failed to sign checkpoint: %w: no signer", ErrBadKey)
	}
	var cp *SignedCheckpoint
	err := db.Write(ctx, func(tx *database.Tx) error {
		var err error
		cp, err = l.checkpointTx(ctx, tx, signer)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("failed to sign checkpoint: %w", err)
	}
	cp, cerr := l.cosign(ctx, db, cp)
	if err := l.Publish(ctx, db); err != nil {
		return cp, err
	}
	return cp, cerr
}

func (l *Ledger) checkpointTx(ctx context.Context, tx DBTX, signer note.Signer) (*SignedCheckpoint, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := checkedSize(ctx, tx)
	if err != nil {
		return nil, err
	}
	root, err := treeHash(ctx, tx, n)
	if err != nil {
		return nil, err
	}
	msg, err := note.Sign(&note.Note{Text: checkpointBody(l.origin, n, root)}, signer)
	if err != nil {
		return nil, fmt.Errorf("failed to sign checkpoint: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_checkpoints(size, root, note, created_at) VALUES (?, ?, ?, ?)`,
		n, root[:], string(msg), l.now().UnixMilli()); err != nil {
		return nil, fmt.Errorf("failed to store checkpoint: %w", err)
	}
	if _, err := l.appendLocked(ctx, tx, Event{
		Type:  TypeCheckpointSigned,
		Actor: "system",
		Details: map[string]string{
			"size": strconv.FormatInt(n, 10),
			"root": root.String(),
			"key":  keyID(signer.Name(), signer.KeyHash()),
		},
	}); err != nil {
		return nil, err
	}
	return &SignedCheckpoint{Origin: l.origin, Size: n, Root: root, Note: msg, signed: msg}, nil
}

// LatestCheckpoint returns the newest checkpoint recorded in the database
// (signature not checked: verify with OpenCheckpoint). ErrNoCheckpoint if
// there is none.
func (l *Ledger) LatestCheckpoint(ctx context.Context, q DBTX) (*SignedCheckpoint, error) {
	return l.checkpointWhere(ctx, q, `ORDER BY size DESC LIMIT 1`)
}

// CheckpointAt returns the recorded checkpoint of the given size.
func (l *Ledger) CheckpointAt(ctx context.Context, q DBTX, size int64) (*SignedCheckpoint, error) {
	return l.checkpointWhere(ctx, q, `WHERE size = ?`, size)
}

func (l *Ledger) checkpointWhere(ctx context.Context, q DBTX, where string, args ...any) (*SignedCheckpoint, error) {
	var msg string
	err := q.QueryRowContext(ctx, `SELECT note FROM ledger_checkpoints `+where, args...).Scan(&msg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoCheckpoint
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read checkpoint: %w", err)
	}
	cp, err := parseStoredCheckpoint([]byte(msg))
	if err != nil {
		return nil, err
	}
	lines, err := cosignatureLines(ctx, q, cp.Size)
	if err != nil {
		return nil, err
	}
	cp.signed = cp.Note
	cp.Note = append(bytes.Clone(cp.Note), lines...)
	return cp, nil
}

// Publish writes every checkpoint not yet published to the ledger's Store
// as ledger/checkpoints/<size>.note (locked for Options.Retention when the
// store is a storage.Retainer), with the cosignatures recorded by then,
// then makes ledger/checkpoints/latest.note the newest one with all its
// cosignatures, unless the store already holds a newer one (another
// instance). <size>.note is written once; cosignatures that arrive later
// reach latest.note (and every export and proof). It is a no-op without a
// Store. Errors wrap ErrPublish.
func (l *Ledger) Publish(ctx context.Context, db DB) error {
	if l.store == nil {
		return nil
	}
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	rows, err := db.Read().QueryContext(ctx, `SELECT c.size, c.note FROM ledger_checkpoints c
		LEFT JOIN ledger_published p ON p.size = c.size WHERE p.size IS NULL ORDER BY c.size`)
	if err != nil {
		return fmt.Errorf("%w: failed to list unpublished checkpoints: %w", ErrPublish, err)
	}
	type pending struct {
		size int64
		note []byte
	}
	var todo []pending
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.size, &p.note); err != nil {
			rows.Close()
			return fmt.Errorf("%w: failed to read checkpoint: %w", ErrPublish, err)
		}
		todo = append(todo, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%w: failed to list unpublished checkpoints: %w", ErrPublish, err)
	}
	for _, p := range todo {
		lines, err := cosignatureLines(ctx, db.Read(), p.size)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPublish, err)
		}
		if err := l.putCheckpoint(ctx, CheckpointKey(p.size), append(p.note, lines...), true); err != nil {
			return err
		}
		if err := db.Write(ctx, func(tx *database.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO ledger_published(size, published_at) VALUES (?, ?) ON CONFLICT DO NOTHING`,
				p.size, l.now().UnixMilli())
			return err
		}); err != nil {
			return fmt.Errorf("%w: failed to record publication: %w", ErrPublish, err)
		}
	}
	latest, err := l.LatestCheckpoint(ctx, db.Read())
	if errors.Is(err, ErrNoCheckpoint) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPublish, err)
	}
	rc, _, err := l.store.Get(ctx, LatestCheckpointKey)
	switch {
	case err == nil:
		cur, rerr := io.ReadAll(io.LimitReader(rc, 1<<20))
		rc.Close()
		if rerr != nil {
			return fmt.Errorf("%w: failed to read %s: %w", ErrPublish, LatestCheckpointKey, rerr)
		}
		// Another instance published a newer one; or this one is there
		// already, with the same cosignatures.
		if c, perr := parseStoredCheckpoint(cur); perr == nil && (c.Size > latest.Size || bytes.Equal(cur, latest.Note)) {
			return nil
		}
	case !errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: failed to read %s: %w", ErrPublish, LatestCheckpointKey, err)
	}
	return l.putCheckpoint(ctx, LatestCheckpointKey, latest.Note, false)
}

// PublishedCheckpoint reads ledger/checkpoints/latest.note from st (a
// checkpoint held outside the database, to verify the database against).
// ErrNotFound if there is none.
func PublishedCheckpoint(ctx context.Context, st storage.Store) ([]byte, error) {
	rc, _, err := st.Get(ctx, LatestCheckpointKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, LatestCheckpointKey)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", LatestCheckpointKey, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", LatestCheckpointKey, err)
	}
	return b, nil
}

func (l *Ledger) putCheckpoint(ctx context.Context, key string, msg []byte, lock bool) error {
	var err error
	if r, ok := l.store.(storage.Retainer); ok && lock && l.retention > 0 {
		_, err = r.PutLocked(ctx, key, bytes.NewReader(msg), l.now().Add(l.retention))
	} else {
		_, err = l.store.Put(ctx, key, bytes.NewReader(msg))
	}
	if err != nil {
		return fmt.Errorf("%w: failed to write %s: %w", ErrPublish, key, err)
	}
	return nil
}

// CheckpointerOptions sets when a Checkpointer signs.
type CheckpointerOptions struct {
	// Every signs once this many events have been appended since the last
	// checkpoint (0: no count policy); the Checkpointer looks every
	// Every/16 appends of its own process (see wakeDivisor), and at every
	// Interval, so a checkpoint may cover up to that many more.
	Every int64
	// Interval signs at this interval if anything was appended since the
	// last checkpoint, and retries unpublished checkpoints (0: no timer).
	Interval time.Duration
	// OnCheckpoint, if set, is called after every attempt: with the new
	// checkpoint, and with the error if signing or publishing failed.
	OnCheckpoint func(cp *SignedCheckpoint, err error)
	// Logger receives failures (default: discard).
	Logger *slog.Logger
}

// Checkpointer signs checkpoints in the background (sealgate serve): the
// scheduler (package schedule) calls RunDue at start, whenever Appended is
// signalled, and when the time RunDue returned comes. Only one Checkpointer
// should run per Ledger: appends signal it through the Ledger. It learns
// about appends committed through database.Tx; appends by other processes are
// picked up at the next interval.
type Checkpointer struct {
	l      *Ledger
	db     DB
	signer note.Signer
	opts   CheckpointerOptions
	// lastTick is when the interval policy last ran (zero: never); only
	// the caller of RunDue touches it.
	lastTick time.Time

	evaluated func(pending int64, due bool) // test hook: after each decision
}

// wakeDivisor: with a count policy (Every), the Checkpointer is woken
// every Every/wakeDivisor appends committed through its Ledger, not at
// every commit: each wake costs a query of the ledger's size (and on
// PostgreSQL the job's lock, taken and released: three round trips, once
// per group commit under load). So a checkpoint due by count is signed at
// most Every/wakeDivisor of this process's appends late.
const wakeDivisor = 16

// NewCheckpointer returns a Checkpointer; have the scheduler run it.
func (l *Ledger) NewCheckpointer(db DB, signer note.Signer, opts CheckpointerOptions) *Checkpointer {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	step := opts.Every / wakeDivisor
	if opts.Every <= 0 {
		// Nothing is due by count: the interval's timer does the rest.
		step = math.MaxInt64
	}
	l.wakeStep.Store(max(step, 1))
	return &Checkpointer{l: l, db: db, signer: signer, opts: opts}
}

// Appended is signalled after transactions that appended through the
// Ledger have committed: every max(1, Every/16) appends (never without
// Every).
func (c *Checkpointer) Appended() <-chan struct{} { return c.l.appended }

// RunDue signs a checkpoint if one is due at now — by count (Every), or
// because Interval has passed since the last interval and anything was
// appended — and retries publishing at every interval. It returns when
// the next interval ends (zero without Interval). The first call starts
// the first interval. A failed attempt is logged and tried again at the
// next call.
func (c *Checkpointer) RunDue(ctx context.Context, now time.Time) time.Time {
	ticked := false
	if c.opts.Interval > 0 {
		switch {
		case c.lastTick.IsZero():
			c.lastTick = now
		case now.Sub(c.lastTick) >= c.opts.Interval:
			ticked, c.lastTick = true, now
		}
	}
	c.maybe(ctx, ticked)
	if c.opts.Interval <= 0 {
		return time.Time{}
	}
	return c.lastTick.Add(c.opts.Interval)
}

// pending returns how many entries were appended since the last checkpoint,
// not counting that checkpoint's own event.
func (c *Checkpointer) pending(ctx context.Context) (int64, error) {
	var n int64
	var last sql.NullInt64
	err := c.db.Read().QueryRowContext(ctx, `SELECT
		(SELECT COALESCE(MAX(idx)+1, 0) FROM ledger_records),
		(SELECT MAX(size) FROM ledger_checkpoints)`).Scan(&n, &last)
	if err != nil {
		return 0, fmt.Errorf("failed to read ledger state: %w", err)
	}
	if !last.Valid {
		return n, nil
	}
	return n - last.Int64 - 1, nil
}

func (c *Checkpointer) maybe(ctx context.Context, ticked bool) {
	if ctx.Err() != nil {
		return
	}
	p, err := c.pending(ctx)
	if err != nil {
		c.report(nil, err)
		return
	}
	due := (c.opts.Every > 0 && p >= c.opts.Every) || (ticked && p > 0)
	if c.evaluated != nil {
		c.evaluated(p, due)
	}
	if !due {
		if ticked {
			// Witnesses that were down when the latest checkpoint was
			// signed are asked again, then it is published again.
			if err := c.l.CosignLatest(ctx, c.db); err != nil {
				c.report(nil, err)
			}
			if err := c.l.Publish(ctx, c.db); err != nil {
				c.report(nil, err)
			}
		}
		return
	}
	cp, err := c.l.Checkpoint(ctx, c.db, c.signer)
	c.report(cp, err)
}

func (c *Checkpointer) report(cp *SignedCheckpoint, err error) {
	if err != nil && errors.Is(err, context.Canceled) {
		return // shutting down, not a failure
	}
	if err != nil {
		c.opts.Logger.Error("ledger checkpoint failed", "err", err)
	}
	if cp != nil && err == nil {
		c.opts.Logger.Info("ledger checkpoint signed", "size", cp.Size, "root", cp.Root.String())
	}
	if c.opts.OnCheckpoint != nil {
		c.opts.OnCheckpoint(cp, err)
	}
}
