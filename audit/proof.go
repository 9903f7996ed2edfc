package audit

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// InclusionProof proves that a record is an entry of the tree a signed
// checkpoint covers. It is self-contained (JSON) and checked offline by
// CheckInclusion with the verifier key.
type InclusionProof struct {
	Index      int64       `json:"index"`
	Line       string      `json:"line"`       // the record, byte for byte
	LeafHash   tlog.Hash   `json:"leaf_hash"`  // RFC 6962 leaf hash of Line (informative)
	Proof      []tlog.Hash `json:"proof"`      // RFC 6962 audit path, leaf to root
	Checkpoint string      `json:"checkpoint"` // the signed checkpoint note
}

// Prove returns the inclusion proof of entry idx in the tree of the signed
// checkpoint cp, read through q. It fails with ErrNoCheckpoint if cp does
// not cover idx, with ErrInconsistent if the stored tree no longer has cp's
// root, and with a *VerifyError if the record no longer matches the tree.
func (l *Ledger) Prove(ctx context.Context, q DBTX, idx int64, cp *SignedCheckpoint) (*InclusionProof, error) {
	if idx < 0 || idx >= cp.Size {
		return nil, fmt.Errorf("%w: entry #%d (the checkpoint covers #0..#%d)", ErrNoCheckpoint, idx, cp.Size-1)
	}
	root, err := treeHash(ctx, q, cp.Size)
	if err != nil {
		return nil, err
	}
	if root != cp.Root {
		return nil, fmt.Errorf("%w: the stored tree of size %d no longer has the checkpoint's root", ErrInconsistent, cp.Size)
	}
	data, err := l.Record(ctx, q, idx)
	if err != nil {
		return nil, err
	}
	p, err := tlog.ProveRecord(cp.Size, idx, txHashReader{ctx, q})
	if err != nil {
		return nil, fmt.Errorf("failed to prove entry #%d: %w", idx, err)
	}
	leaf := tlog.RecordHash(data)
	if err := tlog.CheckRecord(p, cp.Size, cp.Root, idx, leaf); err != nil {
		return nil, verr(idx, "が改ざんされています（記録が木と一致しません）", "has been altered (the record does not match the tree)")
	}
	return &InclusionProof{Index: idx, Line: string(data), LeafHash: leaf, Proof: p, Checkpoint: string(cp.Note)}, nil
}

// CheckInclusion verifies an inclusion proof offline: the checkpoint's
// signature with vkey, the record's canonical form, and the audit path. It
// returns the checkpoint and the event.
func CheckInclusion(vkey string, p *InclusionProof) (*SignedCheckpoint, Event, error) {
	cp, err := OpenCheckpoint([]byte(p.Checkpoint), vkey)
	if err != nil {
		return nil, Event{}, err
	}
	if p.Index < 0 || p.Index >= cp.Size {
		return nil, Event{}, verr(p.Index, "はチェックポイントの範囲外です",
			fmt.Sprintf("is not covered by the checkpoint (size %d)", cp.Size))
	}
	line := []byte(p.Line)
	ev, err := ParseRecord(line)
	if err != nil {
		return nil, Event{}, verr(p.Index, "が改ざんされています（正規形ではありません）", "has been altered (not canonical: "+err.Error()+")")
	}
	if err := tlog.CheckRecord(p.Proof, cp.Size, cp.Root, p.Index, tlog.RecordHash(line)); err != nil {
		return nil, Event{}, verr(p.Index, "が改ざんされています（包含証明が署名済みチェックポイントと一致しません）",
			"has been altered (its inclusion proof does not match the signed checkpoint)")
	}
	return cp, ev, nil
}

// ProveConsistency returns the proof that the tree of older is a prefix of
// the tree of newer, from the stored hashes. Both checkpoints' roots are
// checked against the stored tree first (ErrInconsistent).
func (l *Ledger) ProveConsistency(ctx context.Context, q DBTX, older, newer *SignedCheckpoint) (tlog.TreeProof, error) {
	if older.Size > newer.Size {
		return nil, fmt.Errorf("audit: older checkpoint (size %d) is larger than newer (size %d)", older.Size, newer.Size)
	}
	root, err := treeHash(ctx, q, older.Size)
	if err != nil {
		return nil, err
	}
	if root != older.Root {
		return nil, fmt.Errorf("%w: the stored tree of size %d does not have the checkpoint's root", ErrInconsistent, older.Size)
	}
	return l.proveFrom(ctx, q, older.Size, newer)
}

// CheckConsistency verifies offline that the checkpoint older (note text)
// and the checkpoint newer are both signed with vkey and that older's tree
// is a prefix of newer's. It fails with ErrInconsistent if not: the log was
// rewritten between them (or older was forged and signed by the gateway).
func CheckConsistency(vkey string, older, newer []byte, proof tlog.TreeProof) error {
	o, err := OpenCheckpoint(older, vkey)
	if err != nil {
		return fmt.Errorf("older checkpoint: %w", err)
	}
	n, err := OpenCheckpoint(newer, vkey)
	if err != nil {
		return fmt.Errorf("newer checkpoint: %w", err)
	}
	return checkConsistency(o, n, proof)
}

func checkConsistency(o, n *SignedCheckpoint, proof tlog.TreeProof) error {
	if o.Origin != n.Origin {
		return fmt.Errorf("%w: checkpoints of different logs (%q, %q)", ErrInconsistent, o.Origin, n.Origin)
	}
	switch {
	case o.Size > n.Size:
		return fmt.Errorf("%w: the previous checkpoint (size %d) is newer than this one (size %d)", ErrInconsistent, o.Size, n.Size)
	case o.Size == n.Size:
		if o.Root != n.Root {
			return fmt.Errorf("%w: two different trees of size %d are both signed: the log was rewritten", ErrInconsistent, o.Size)
		}
		return nil
	}
	if err := tlog.CheckTree(proof, n.Size, n.Root, o.Size, o.Root); err != nil {
		return fmt.Errorf("%w: the tree of size %d is not a prefix of the tree of size %d: entries before #%d were rewritten",
			ErrInconsistent, o.Size, n.Size, o.Size)
	}
	return nil
}
