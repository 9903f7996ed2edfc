package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// memTree is an in-memory tlog tree for checking the range-proof maths
// against tlog itself.
type memTree struct {
	hashes []tlog.Hash
	leaves []tlog.Hash
}

func (m *memTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = m.hashes[x]
	}
	return out, nil
}

func buildTree(t testing.TB, n int) *memTree {
	m := &memTree{}
	for i := range n {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		d := sha256.Sum256(b[:])
		hs, err := tlog.StoredHashes(int64(i), d[:], m)
		if err != nil {
			t.Fatal(err)
		}
		m.hashes = append(m.hashes, hs...)
		m.leaves = append(m.leaves, tlog.RecordHash(d[:]))
	}
	return m
}

func TestRangeProofAllRanges(t *testing.T) {
	const maxN = 37
	m := buildTree(t, maxN)
	for n := int64(1); n <= maxN; n++ {
		want, err := tlog.TreeHash(n, m)
		if err != nil {
			t.Fatal(err)
		}
		for a := int64(0); a < n; a++ {
			for b := a + 1; b <= n; b++ {
				proof, err := rangeProof(n, a, b, m)
				if err != nil {
					t.Fatalf("n=%d [%d,%d): %v", n, a, b, err)
				}
				cr := newCompactRange(a)
				for i := a; i < b; i++ {
					cr.push(m.leaves[i], nil)
				}
				got, err := cr.root(n, proof)
				if err != nil {
					t.Fatalf("n=%d [%d,%d): %v", n, a, b, err)
				}
				if got != want {
					t.Fatalf("n=%d [%d,%d): root mismatch", n, a, b)
				}
				if a == 0 && b == n && len(proof) != 0 {
					t.Fatalf("full range needs no proof, got %d hashes", len(proof))
				}
				// A wrong leaf changes the root.
				bad := newCompactRange(a)
				for i := a; i < b; i++ {
					h := m.leaves[i]
					if i == (a+b)/2 {
						h[0] ^= 1
					}
					bad.push(h, nil)
				}
				if got, _ := bad.root(n, proof); got == want {
					t.Fatalf("n=%d [%d,%d): altered leaf not detected", n, a, b)
				}
			}
		}
	}
}

// From 0, push yields exactly tlog's stored hashes.
func TestCompactRangeMatchesStoredHashes(t *testing.T) {
	m := buildTree(t, 300)
	cr := newCompactRange(0)
	var all []tlog.Hash
	for _, l := range m.leaves {
		all = cr.push(l, all)
	}
	if len(all) != len(m.hashes) {
		t.Fatalf("%d hashes, tlog stores %d", len(all), len(m.hashes))
	}
	for i := range all {
		if all[i] != m.hashes[i] {
			t.Fatalf("hash %d differs", i)
		}
	}
}
