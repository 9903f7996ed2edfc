package audit

import (
	"errors"
	"math/bits"
	"sort"

	"golang.org/x/mod/sumdb/tlog"
)

// Multi-leaf inclusion proofs (certificates v3).
//
// One inclusion proof per entry repeats the hashes near the root in every
// proof, and the entries of one contract are often neighbours, whose
// proofs share most hashes. A multi-proof gives each needed hash once: the
// hashes of the largest subtrees that hold none of the proven entries but
// whose parent holds one, in the order of a left-to-right walk of the RFC
// 6962 tree (a node of n > 1 leaves splits at the largest power of two
// below n). The verifier walks the same tree: a subtree holding proven
// entries is rebuilt from them, any other takes the next hash of the
// proof; the result must be the checkpoint's root and every hash must be
// used. The walk is fixed by the tree size and the entries' indexes, so a
// proof that verifies for other entries or another order would need a
// SHA-256 collision.

// errMultiProof says that a multi-proof has too few or too many hashes.
var errMultiProof = errors.New("the proof's hashes do not fit the entries")

// splitPoint is the largest power of two smaller than n (n ≥ 2).
func splitPoint(n int64) int64 { return 1 << (bits.Len64(uint64(n-1)) - 1) }

// subtreeHash returns the hash of the leaves [lo, hi) of a tree, a node of
// it: read when the node is complete, else combined from its children.
func subtreeHash(lo, hi int64, hr tlog.HashReader) (tlog.Hash, error) {
	n := hi - lo
	if n&(n-1) == 0 {
		level := bits.TrailingZeros64(uint64(n))
		hs, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(level, lo>>level)})
		if err != nil {
			return tlog.Hash{}, err
		}
		return hs[0], nil
	}
	k := splitPoint(n)
	l, err := subtreeHash(lo, lo+k, hr)
	if err != nil {
		return tlog.Hash{}, err
	}
	r, err := subtreeHash(lo+k, hi, hr)
	if err != nil {
		return tlog.Hash{}, err
	}
	return tlog.NodeHash(l, r), nil
}

// proveMulti returns the multi-proof of the entries idxs (sorted, distinct,
// each < n) in the tree of size n.
func proveMulti(n int64, idxs []int64, hr tlog.HashReader) ([]tlog.Hash, error) {
	out := []tlog.Hash{}
	var walk func(lo, hi int64, leaves []int64) error
	walk = func(lo, hi int64, leaves []int64) error {
		if len(leaves) == 0 {
			h, err := subtreeHash(lo, hi, hr)
			out = append(out, h)
			return err
		}
		if hi-lo == 1 {
			return nil
		}
		k := splitPoint(hi - lo)
		i := sort.Search(len(leaves), func(i int) bool { return leaves[i] >= lo+k })
		if err := walk(lo, lo+k, leaves[:i]); err != nil {
			return err
		}
		return walk(lo+k, hi, leaves[i:])
	}
	if n <= 0 || len(idxs) == 0 {
		return nil, errMultiProof
	}
	return out, walk(0, n, idxs)
}

// multiRoot returns the root of the tree of size n that the entries idxs
// (sorted, distinct, each < n) with leaf hashes leaves and the multi-proof
// proof rebuild, or errMultiProof if the proof does not fit them.
func multiRoot(n int64, idxs []int64, leaves, proof []tlog.Hash) (tlog.Hash, error) {
	if n <= 0 || len(idxs) == 0 || len(idxs) != len(leaves) {
		return tlog.Hash{}, errMultiProof
	}
	for i, x := range idxs {
		if x < 0 || x >= n || i > 0 && x <= idxs[i-1] {
			return tlog.Hash{}, errMultiProof
		}
	}
	pos := 0
	var walk func(lo, hi int64, a, b int) (tlog.Hash, error)
	walk = func(lo, hi int64, a, b int) (tlog.Hash, error) {
		if a == b {
			if pos == len(proof) {
				return tlog.Hash{}, errMultiProof
			}
			pos++
			return proof[pos-1], nil
		}
		if hi-lo == 1 {
			return leaves[a], nil // a+1 == b: indexes are distinct
		}
		k := splitPoint(hi - lo)
		m := a + sort.Search(b-a, func(i int) bool { return idxs[a+i] >= lo+k })
		l, err := walk(lo, lo+k, a, m)
		if err != nil {
			return tlog.Hash{}, err
		}
		r, err := walk(lo+k, hi, m, b)
		if err != nil {
			return tlog.Hash{}, err
		}
		return tlog.NodeHash(l, r), nil
	}
	root, err := walk(0, n, 0, len(idxs))
	if err == nil && pos != len(proof) {
		err = errMultiProof
	}
	return root, err
}
