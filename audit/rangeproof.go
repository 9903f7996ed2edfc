package audit

import (
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// This file verifies many consecutive entries at once. Checking one
// inclusion proof per entry costs log₂(n) hashes each and makes a bundle of
// a million entries carry twenty million hashes; instead, a contiguous range
// [a, b) of entries is checked by rebuilding the part of the tree they span
// from their leaf hashes (about one hash per entry, streaming, O(log n)
// memory) and combining it with a range proof: the roots of the subtrees
// outside [a, b) that the RFC 6962 recursion meets, in the order it meets
// them (none at all when the range is the whole tree).

// maxpow2 returns the largest power of two strictly less than n (n >= 2),
// the split point of RFC 6962 §2.1.
func maxpow2(n int64) int64 { return 1 << (bits.Len64(uint64(n-1)) - 1) }

// crNode is a perfect subtree: 2^level leaves starting at start.
type crNode struct {
	start int64
	level int
	hash  tlog.Hash
}

// compactRange accumulates the leaves [start, end) as the minimal list of
// aligned perfect subtrees covering them.
type compactRange struct {
	start, end int64
	nodes      []crNode
}

func newCompactRange(start int64) *compactRange { return &compactRange{start: start, end: start} }

// push adds the hash of leaf c.end and appends to out the hashes it
// creates: the leaf and each subtree it completes. For a range starting at
// 0 these are exactly the hashes tlog.StoredHashes stores for that record.
func (c *compactRange) push(leaf tlog.Hash, out []tlog.Hash) []tlog.Hash {
	n := crNode{start: c.end, level: 0, hash: leaf}
	out = append(out, leaf)
	for len(c.nodes) > 0 {
		top := c.nodes[len(c.nodes)-1]
		if top.level != n.level || top.start%(int64(2)<<top.level) != 0 {
			break
		}
		n = crNode{start: top.start, level: n.level + 1, hash: tlog.NodeHash(top.hash, n.hash)}
		out = append(out, n.hash)
		c.nodes = c.nodes[:len(c.nodes)-1]
	}
	c.nodes = append(c.nodes, n)
	c.end++
	return out
}

func (c *compactRange) lookup(start int64, level int) (tlog.Hash, bool) {
	for _, n := range c.nodes {
		if n.start == start && n.level == level {
			return n.hash, true
		}
	}
	return tlog.Hash{}, false
}

// root returns the root of the tree of size n whose leaves [c.start,
// c.end) are in c, taking the other subtrees' roots from proof (as made by
// rangeProof). With c.start == 0 and c.end == n the proof is empty.
func (c *compactRange) root(n int64, proof []tlog.Hash) (tlog.Hash, error) {
	a, b := c.start, c.end
	if a >= b || b > n {
		return tlog.Hash{}, fmt.Errorf("%w: range [%d, %d) of a tree of size %d", ErrMalformed, a, b, n)
	}
	var rec func(lo, hi int64) (tlog.Hash, error)
	rec = func(lo, hi int64) (tlog.Hash, error) {
		if hi <= a || lo >= b {
			if len(proof) == 0 {
				return tlog.Hash{}, fmt.Errorf("%w: range proof too short", ErrMalformed)
			}
			h := proof[0]
			proof = proof[1:]
			return h, nil
		}
		if size := hi - lo; size&(size-1) == 0 {
			if h, ok := c.lookup(lo, bits.TrailingZeros64(uint64(size))); ok {
				return h, nil
			}
			if size == 1 {
				return tlog.Hash{}, fmt.Errorf("%w: leaf %d missing from range", ErrMalformed, lo)
			}
		}
		k := maxpow2(hi - lo)
		l, err := rec(lo, lo+k)
		if err != nil {
			return tlog.Hash{}, err
		}
		r, err := rec(lo+k, hi)
		if err != nil {
			return tlog.Hash{}, err
		}
		return tlog.NodeHash(l, r), nil
	}
	h, err := rec(0, n)
	if err != nil {
		return tlog.Hash{}, err
	}
	if len(proof) != 0 {
		return tlog.Hash{}, fmt.Errorf("%w: range proof too long", ErrMalformed)
	}
	return h, nil
}

// rangeProof returns the proof for the leaves [a, b) of the tree of size n
// (see compactRange.root), reading stored hashes from r.
func rangeProof(n, a, b int64, r tlog.HashReader) ([]tlog.Hash, error) {
	if a < 0 || a >= b || b > n {
		return nil, fmt.Errorf("audit: invalid range [%d, %d) of a tree of size %d", a, b, n)
	}
	var outside [][2]int64
	var rec func(lo, hi int64)
	rec = func(lo, hi int64) {
		if hi <= a || lo >= b {
			outside = append(outside, [2]int64{lo, hi})
			return
		}
		if a <= lo && hi <= b {
			return
		}
		k := maxpow2(hi - lo)
		rec(lo, lo+k)
		rec(lo+k, hi)
	}
	rec(0, n)
	// Each outside subtree [lo, hi) is perfect, or the right edge of the
	// tree; either way lo is aligned and it splits into stored perfect
	// subtrees of decreasing size, whose hashes fold right to left.
	var indexes []int64
	counts := make([]int, len(outside))
	for i, o := range outside {
		for lo, hi := o[0], o[1]; lo < hi; {
			k := int64(1) << (bits.Len64(uint64(hi-lo)) - 1) // largest power of 2 <= hi-lo
			level := bits.TrailingZeros64(uint64(k))
			indexes = append(indexes, tlog.StoredHashIndex(level, lo>>level))
			counts[i]++
			lo += k
		}
	}
	hashes, err := r.ReadHashes(indexes)
	if err != nil {
		return nil, err
	}
	if len(hashes) != len(indexes) {
		return nil, fmt.Errorf("audit: read %d hashes, want %d", len(hashes), len(indexes))
	}
	proof := make([]tlog.Hash, len(outside))
	for i, c := range counts {
		part := hashes[:c]
		hashes = hashes[c:]
		h := part[len(part)-1]
		for j := len(part) - 2; j >= 0; j-- {
			h = tlog.NodeHash(part[j], h)
		}
		proof[i] = h
	}
	return proof, nil
}
