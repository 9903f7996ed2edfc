// Package witness is `sealgate witness`: a small transparency-log witness
// (c2sp.org/tlog-witness) that the client company runs, so that the
// gateway's operator cannot present a rewritten ledger unnoticed.
//
// A witness has its own Ed25519 key (GenerateKeyFiles: witness.key, mode
// 0600, and witness.pub, the verifier key to give to the gateway and to
// auditors), a list of the logs it accepts (each an origin line and the
// log's verifier keys, AddLog) and, per log, the checkpoint it last
// cosigned, in its own SQLite file (witness.db). Its one endpoint,
// POST /add-checkpoint, takes a checkpoint signed by the log with a
// consistency proof from the size the witness last cosigned, and cosigns
// it (cosignature/v1, package witness/cosig) only if it extends that
// checkpoint: a checkpoint that does not — a rewritten history, signed
// with the gateway's own key — is refused (422, or 409 for a different
// tree of the same size) and kept as evidence (Refused; the first
// MaxRefused of each log).
//
// The check of the old size and the update of the state happen in one
// database transaction on the database's single writer, so that two
// requests cannot roll the state back.
package witness

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/atomicfile"
	"github.com/sealgate/sealgate/witness/cosig"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Files of a witness directory.
const (
	KeyFile   = "witness.key" // the secret key, mode 0600
	PubFile   = "witness.pub" // the verifier key
	StateFile = "witness.db"  // SQLite: the logs and what was cosigned
)

// MaxRequestBytes bounds an add-checkpoint request.
const MaxRequestBytes = 64 << 10

// MaxRefused bounds the refused checkpoints a witness keeps per log, so
// that whoever holds the log's key cannot fill the witness's disk: the
// first ones are the evidence; later ones are refused all the same, and
// logged, but not kept. A checkpoint refused again is not kept twice.
const MaxRefused = 100

// Errors of AddCheckpoint, each answered with its HTTP status.
var (
	ErrBadRequest   = errors.New("witness: malformed request")                                      // 400
	ErrUnknownLog   = errors.New("witness: unknown log")                                            // 404
	ErrForbidden    = errors.New("witness: the checkpoint is not signed by a key of the log")       // 403
	ErrInconsistent = errors.New("witness: the checkpoint is not consistent with the one cosigned") // 422
)

// ConflictError is the answer 409: the old size of the request is not the
// size the witness last cosigned (Known), or it is, with another root.
type ConflictError struct {
	Known int64
	Fork  bool // same size, different root: two histories
}

func (e *ConflictError) Error() string {
	if e.Fork {
		return fmt.Sprintf("witness: a different tree of size %d was cosigned before", e.Known)
	}
	return fmt.Sprintf("witness: the last cosigned size is %d", e.Known)
}

// GenerateKeyFiles creates dir (0700) with a new witness key named name:
// witness.key (mode 0600, never overwritten) and witness.pub. It returns
// the verifier key.
func GenerateKeyFiles(dir, name string, rand io.Reader) (string, error) {
	skey, vkey, err := cosig.GenerateKey(rand, name)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("failed to create witness directory: %w", err)
	}
	if err := atomicfile.Create(filepath.Join(dir, KeyFile), []byte(skey+"\n"), 0o600); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("failed to create witness key: %s exists (a witness keeps its key)", filepath.Join(dir, KeyFile))
		}
		return "", fmt.Errorf("failed to create witness key: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, PubFile), []byte(vkey+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("failed to write witness verifier key: %w", err)
	}
	return vkey, nil
}

// Options configures a Witness.
type Options struct {
	// Now stamps cosignatures and records (default time.Now).
	Now func() time.Time
	// Log receives what the witness cosigned and refused (default: discard).
	Log *slog.Logger
}

// Witness is one witness: its key and its state.
type Witness struct {
	db     *database.DB
	signer *cosig.Signer
	now    func() time.Time
	log    *slog.Logger
}

// Open opens the witness of directory dir (made by GenerateKeyFiles): its
// key and its state, created on first use.
func Open(ctx context.Context, dir string, opts Options) (*Witness, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	b, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("failed to read the witness key (run `sealgate witness init`): %w", err)
	}
	signer, err := cosig.NewSigner(string(b), opts.Now)
	if err != nil {
		return nil, err
	}
	mig, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("failed to read witness migrations: %w", err)
	}
	db, err := database.Open(ctx, filepath.Join(dir, StateFile), database.Options{Migrations: mig})
	if err != nil {
		return nil, err
	}
	return &Witness{db: db, signer: signer, now: opts.Now, log: opts.Log}, nil
}

// Close closes the state database.
func (w *Witness) Close() error { return w.db.Close() }

// Name returns the witness's name (its key's).
func (w *Witness) Name() string { return w.signer.Name() }

// VerifierKey returns the witness's verifier key.
func (w *Witness) VerifierKey() string { return w.signer.VerifierKey() }

// AddLog makes the witness accept checkpoints of the log origin signed by
// vkey (a note verifier key; the gateway's keys/ledger.pub). origin ""
// means the key's name, which is the origin of sealgate's ledger. A log
// may have several keys; a log is never removed.
func (w *Witness) AddLog(ctx context.Context, origin, vkey string) (string, error) {
	vkey = strings.TrimSpace(vkey)
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return "", fmt.Errorf("%w: log verifier key: %v", ErrBadRequest, err)
	}
	if origin == "" {
		origin = v.Name()
	}
	if origin != strings.TrimSpace(origin) || strings.ContainsAny(origin, "\n") {
		return "", fmt.Errorf("%w: origin %q must be one line", ErrBadRequest, origin)
	}
	err = w.db.Write(ctx, func(tx *database.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO witness_logs(origin, size, added_at) VALUES (?, 0, ?)`,
			origin, w.now().UnixMilli()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO witness_log_keys(origin, vkey) VALUES (?, ?)`, origin, vkey)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("failed to add log: %w", err)
	}
	return origin, nil
}

// Log is a log the witness accepts, with what it last cosigned.
type Log struct {
	Origin  string
	Keys    []string
	Size    int64
	Root    tlog.Hash
	Updated time.Time // zero: never cosigned
	Refused int       // checkpoints refused as inconsistent
}

// Logs lists the logs the witness accepts.
func (w *Witness) Logs(ctx context.Context) ([]Log, error) {
	rows, err := w.db.Read().QueryContext(ctx, `SELECT l.origin, l.size, l.root, l.updated_at,
		(SELECT COUNT(*) FROM witness_refused r WHERE r.origin = l.origin)
		FROM witness_logs l ORDER BY l.origin`)
	if err != nil {
		return nil, fmt.Errorf("failed to list logs: %w", err)
	}
	var out []Log
	for rows.Next() {
		var l Log
		var root []byte
		var upd sql.NullInt64
		if err := rows.Scan(&l.Origin, &l.Size, &root, &upd, &l.Refused); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to list logs: %w", err)
		}
		copy(l.Root[:], root)
		if upd.Valid {
			l.Updated = time.UnixMilli(upd.Int64).UTC()
		}
		out = append(out, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list logs: %w", err)
	}
	for i := range out {
		if out[i].Keys, err = w.keys(ctx, w.db.Read(), out[i].Origin); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Refusal is a checkpoint the witness refused as inconsistent with what
// it had cosigned.
type Refusal struct {
	Origin     string
	OldSize    int64 // the size the witness held
	Size       int64
	Checkpoint string // the refused note, signed by the log
	Reason     string
	At         time.Time
}

// Refused lists the refused checkpoints of origin, oldest first.
func (w *Witness) Refused(ctx context.Context, origin string) ([]Refusal, error) {
	rows, err := w.db.Read().QueryContext(ctx, `SELECT origin, old_size, size, checkpoint, reason, at
		FROM witness_refused WHERE origin = ? ORDER BY id`, origin)
	if err != nil {
		return nil, fmt.Errorf("failed to list refused checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Refusal
	for rows.Next() {
		var r Refusal
		var at int64
		if err := rows.Scan(&r.Origin, &r.OldSize, &r.Size, &r.Checkpoint, &r.Reason, &at); err != nil {
			return nil, fmt.Errorf("failed to list refused checkpoints: %w", err)
		}
		r.At = time.UnixMilli(at).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

func (w *Witness) keys(ctx context.Context, q database.Querier, origin string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT vkey FROM witness_log_keys WHERE origin = ? ORDER BY vkey`, origin)
	if err != nil {
		return nil, fmt.Errorf("failed to read log keys: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("failed to read log keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// AddCheckpoint handles one add-checkpoint request body and returns the
// cosignature lines. Errors: ErrBadRequest, ErrUnknownLog, ErrForbidden,
// *ConflictError, ErrInconsistent (each wrapped with detail).
func (w *Witness) AddCheckpoint(ctx context.Context, body []byte) ([]byte, error) {
	req, err := cosig.ParseRequest(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	origin, _, _ := strings.Cut(string(req.Checkpoint), "\n")
	var lines []byte
	var refused *Refusal
	err = w.db.Write(ctx, func(tx *database.Tx) error {
		refused = nil
		var size int64
		var root []byte
		err := tx.QueryRowContext(ctx, `SELECT size, root FROM witness_logs WHERE origin = ?`, origin).Scan(&size, &root)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %q", ErrUnknownLog, origin)
		}
		if err != nil {
			return fmt.Errorf("failed to read log state: %w", err)
		}
		keys, err := w.keys(ctx, tx, origin)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return fmt.Errorf("%w: %q has no keys", ErrUnknownLog, origin)
		}
		var vs []note.Verifier
		for _, k := range keys {
			v, err := note.NewVerifier(k)
			if err != nil {
				return fmt.Errorf("failed to read log key %q: %w", k, err)
			}
			vs = append(vs, v)
		}
		n, err := note.Open(req.Checkpoint, note.VerifierList(vs...))
		if err != nil {
			var unv *note.UnverifiedNoteError
			var inv *note.InvalidSignatureError
			if errors.As(err, &unv) || errors.As(err, &inv) {
				return fmt.Errorf("%w: %v", ErrForbidden, err)
			}
			return fmt.Errorf("%w: checkpoint: %v", ErrBadRequest, err)
		}
		cp, err := cosig.ParseCheckpoint(n.Text)
		if err != nil || cp.Origin != origin {
			return fmt.Errorf("%w: checkpoint: %v", ErrBadRequest, err)
		}
		if req.OldSize > cp.Size {
			return fmt.Errorf("%w: old size %d is larger than the checkpoint's %d", ErrBadRequest, req.OldSize, cp.Size)
		}
		if req.OldSize != size {
			return &ConflictError{Known: size}
		}
		refuse := func(reason string) {
			refused = &Refusal{Origin: origin, OldSize: size, Size: cp.Size, Checkpoint: string(req.Checkpoint), Reason: reason, At: w.now()}
		}
		switch {
		case size == 0:
			if len(req.Proof) != 0 {
				return fmt.Errorf("%w: a consistency proof from size 0 must be empty", ErrBadRequest)
			}
		case cp.Size == size:
			if string(root) != string(cp.Root[:]) {
				refuse(fmt.Sprintf("a different tree of size %d was cosigned before", size))
				return &ConflictError{Known: size, Fork: true}
			}
		default:
			if err := tlog.CheckTree(req.Proof, cp.Size, cp.Root, size, tlog.Hash(root)); err != nil {
				refuse(fmt.Sprintf("the consistency proof from size %d to %d does not verify: the tree cosigned at size %d is not a prefix of this one", size, cp.Size, size))
				return fmt.Errorf("%w: %s", ErrInconsistent, refused.Reason)
			}
		}
		signed, err := note.Sign(&note.Note{Text: n.Text}, w.signer)
		if err != nil {
			return fmt.Errorf("failed to cosign: %w", err)
		}
		lines = signed[len(n.Text)+1:]
		_, err = tx.ExecContext(ctx, `UPDATE witness_logs SET size = ?, root = ?, checkpoint = ?, updated_at = ? WHERE origin = ?`,
			cp.Size, cp.Root[:], string(req.Checkpoint), w.now().UnixMilli(), origin)
		if err != nil {
			return fmt.Errorf("failed to record the cosigned checkpoint: %w", err)
		}
		w.log.Info("witness: cosigned", "origin", origin, "size", cp.Size, "root", cp.Root.String())
		return nil
	})
	if refused != nil {
		w.log.Warn("witness: REFUSED a checkpoint inconsistent with the one cosigned before (kept as evidence)",
			"origin", refused.Origin, "cosigned_size", refused.OldSize, "size", refused.Size, "reason", refused.Reason)
		if rerr := w.recordRefusal(ctx, refused); rerr != nil {
			w.log.Error("witness: failed to keep the refused checkpoint", "error", rerr)
		}
	}
	if err != nil {
		return nil, err
	}
	return lines, nil
}

// recordRefusal keeps r unless the same checkpoint is kept already or
// MaxRefused of its log are.
func (w *Witness) recordRefusal(ctx context.Context, r *Refusal) error {
	return w.db.Write(ctx, func(tx *database.Tx) error {
		var kept int
		var same bool
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(MAX(checkpoint = ?), 0) FROM witness_refused WHERE origin = ?`,
			r.Checkpoint, r.Origin).Scan(&kept, &same); err != nil {
			return err
		}
		if same {
			return nil
		}
		if kept >= MaxRefused {
			w.log.Warn("witness: refused checkpoint not kept: the first ones of this log are kept as evidence", "origin", r.Origin, "kept", kept)
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO witness_refused(origin, old_size, size, checkpoint, reason, at) VALUES (?, ?, ?, ?, ?, ?)`,
			r.Origin, r.OldSize, r.Size, r.Checkpoint, r.Reason, r.At.UnixMilli())
		return err
	})
}

// Handler serves the tlog-witness protocol: POST /add-checkpoint.
func (w *Witness) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", w.serveAddCheckpoint)
	return mux
}

func (w *Witness) serveAddCheckpoint(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxRequestBytes))
	if err != nil {
		http.Error(rw, "request too large or unreadable", http.StatusBadRequest)
		return
	}
	lines, err := w.AddCheckpoint(r.Context(), body)
	var ce *ConflictError
	switch {
	case err == nil:
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Write(lines)
	case errors.As(err, &ce):
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		io.WriteString(rw, strconv.FormatInt(ce.Known, 10)+"\n")
	case errors.Is(err, ErrBadRequest):
		http.Error(rw, err.Error(), http.StatusBadRequest)
	case errors.Is(err, ErrUnknownLog):
		http.Error(rw, err.Error(), http.StatusNotFound)
	case errors.Is(err, ErrForbidden):
		http.Error(rw, err.Error(), http.StatusForbidden)
	case errors.Is(err, ErrInconsistent):
		http.Error(rw, err.Error(), http.StatusUnprocessableEntity)
	default:
		w.log.Error("witness: add-checkpoint failed", "error", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
	}
}

// Serve answers the protocol on ln until ctx is done, then shuts down
// (requests under way finish). With certFile and keyFile it serves HTTPS.
func (w *Witness) Serve(ctx context.Context, ln net.Listener, certFile, keyFile string) error {
	srv := &http.Server{
		Handler:           w.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		if certFile != "" {
			err = srv.ServeTLS(ln, certFile, keyFile)
		} else {
			err = srv.Serve(ln)
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("witness: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		return fmt.Errorf("failed to shut down the witness: %w", err)
	}
	return nil
}
