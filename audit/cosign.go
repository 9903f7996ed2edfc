package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/witness/cosig"
)

// Cosigner obtains cosignatures of checkpoints from witnesses (package
// witness/client). The ledger calls it after signing each checkpoint, and
// the Checkpointer again at each interval for the witnesses that have not
// cosigned the latest checkpoint yet.
type Cosigner interface {
	// Cosign asks the witnesses that have not cosigned req's checkpoint
	// and returns the cosignatures that verified with their keys. It does
	// not fail: a witness that is down or refuses is the Cosigner's to
	// report, and the checkpoint stands without its cosignature.
	Cosign(ctx context.Context, req CosignRequest) []cosig.Cosigned
}

// CosignRequest is one checkpoint to have cosigned.
type CosignRequest struct {
	// Checkpoint is the checkpoint; Note is its note as the gateway
	// signed it, without cosignatures.
	Checkpoint *SignedCheckpoint
	Note       []byte
	// LastCosigned is, per witness key ("<name>+<key ID>"), the largest
	// checkpoint size the ledger holds that witness's cosignature of (a
	// witness not listed: none).
	LastCosigned map[string]int64
	// LedgerSize is the number of entries in the ledger when asked: a
	// witness that has cosigned a larger tree saw a history this ledger
	// no longer has.
	LedgerSize int64
	// Prove returns the RFC 6962 consistency proof from the tree of size
	// old to the checkpoint's tree (empty for 0 and for the same size).
	Prove func(ctx context.Context, old int64) (tlog.TreeProof, error)
}

// cosign has the checkpoint cp cosigned by the ledger's Cosigner, records
// the cosignatures and returns the checkpoint with them. Without a
// Cosigner it returns cp. An error (recording failed) wraps ErrPublish.
func (l *Ledger) cosign(ctx context.Context, db DB, cp *SignedCheckpoint) (*SignedCheckpoint, error) {
	if l.cosigner == nil {
		return cp, nil
	}
	last, err := l.lastCosigned(ctx, db.Read())
	if err != nil {
		return cp, fmt.Errorf("%w: %w", ErrPublish, err)
	}
	n, err := size(ctx, db.Read())
	if err != nil {
		return cp, fmt.Errorf("%w: %w", ErrPublish, err)
	}
	got := l.cosigner.Cosign(ctx, CosignRequest{
		Checkpoint:   cp,
		Note:         cp.signedNote(),
		LastCosigned: last,
		LedgerSize:   n,
		Prove: func(ctx context.Context, old int64) (tlog.TreeProof, error) {
			return l.proveFrom(ctx, db.Read(), old, cp)
		},
	})
	if len(got) > 0 {
		if err := l.addCosignatures(ctx, db, cp.Size, got); err != nil {
			return cp, fmt.Errorf("%w: %w", ErrPublish, err)
		}
	}
	full, err := l.CheckpointAt(ctx, db.Read(), cp.Size)
	if err != nil {
		return cp, fmt.Errorf("%w: %w", ErrPublish, err)
	}
	return full, nil
}

// CosignLatest asks the witnesses that have not cosigned the latest
// checkpoint to do so (they were down, or the checkpoint was signed by a
// process without them). No checkpoint, no Cosigner: nothing to do.
func (l *Ledger) CosignLatest(ctx context.Context, db DB) error {
	if l.cosigner == nil {
		return nil
	}
	cp, err := l.LatestCheckpoint(ctx, db.Read())
	if errors.Is(err, ErrNoCheckpoint) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = l.cosign(ctx, db, cp)
	return err
}

func (l *Ledger) lastCosigned(ctx context.Context, q DBTX) (map[string]int64, error) {
	rows, err := q.QueryContext(ctx, `SELECT witness, MAX(size) FROM ledger_cosignatures GROUP BY witness`)
	if err != nil {
		return nil, fmt.Errorf("failed to read cosignatures: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var w string
		var n int64
		if err := rows.Scan(&w, &n); err != nil {
			return nil, fmt.Errorf("failed to read cosignatures: %w", err)
		}
		out[w] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read cosignatures: %w", err)
	}
	return out, nil
}

func (l *Ledger) addCosignatures(ctx context.Context, db DB, size int64, cs []cosig.Cosigned) error {
	err := db.Write(ctx, func(tx *database.Tx) error {
		for _, c := range cs {
			line := strings.TrimSuffix(c.Line, "\n")
			if strings.ContainsAny(line, "\n") || !strings.HasPrefix(line, "— ") {
				return fmt.Errorf("%w: cosignature line %q", ErrMalformed, line)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_cosignatures(size, witness, line, cosigned_at, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
				size, c.Witness, line, c.Time.Unix(), l.now().UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failed to record cosignatures: %w", err)
	}
	return nil
}

// cosignatureLines returns the recorded cosignature lines of the
// checkpoint of size, each ending in a newline, in the order of the
// witness keys.
func cosignatureLines(ctx context.Context, q DBTX, size int64) ([]byte, error) {
	rows, err := q.QueryContext(ctx, `SELECT line FROM ledger_cosignatures WHERE size = ? ORDER BY witness`, size)
	if err != nil {
		return nil, fmt.Errorf("failed to read cosignatures: %w", err)
	}
	defer rows.Close()
	var b bytes.Buffer
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, fmt.Errorf("failed to read cosignatures: %w", err)
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read cosignatures: %w", err)
	}
	return b.Bytes(), nil
}

// proveFrom returns the consistency proof from the stored tree of size old
// to the tree of cp, whose root is checked against the stored tree first.
func (l *Ledger) proveFrom(ctx context.Context, q DBTX, old int64, cp *SignedCheckpoint) (tlog.TreeProof, error) {
	if old < 0 || old > cp.Size {
		return nil, fmt.Errorf("%w: no consistency proof from size %d to the checkpoint of size %d: the ledger was rolled back or the witness holds another log's tree",
			ErrInconsistent, old, cp.Size)
	}
	root, err := treeHash(ctx, q, cp.Size)
	if err != nil {
		return nil, err
	}
	if root != cp.Root {
		return nil, fmt.Errorf("%w: the stored tree of size %d does not have the checkpoint's root", ErrInconsistent, cp.Size)
	}
	if old == 0 || old == cp.Size {
		return tlog.TreeProof{}, nil
	}
	p, err := tlog.ProveTree(cp.Size, old, txHashReader{ctx, q})
	if err != nil {
		return nil, fmt.Errorf("failed to prove consistency: %w", err)
	}
	return p, nil
}
