package audit

import (
	"math/rand/v2"
	"slices"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// TestMultiProof: for trees of many sizes and random sets of entries, the
// multi-proof rebuilds the root; a changed leaf, a missing, extra or
// changed hash, or other indexes do not; and it never has more hashes than
// the separate proofs together.
func TestMultiProof(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int64{1, 2, 3, 5, 8, 13, 64, 100, 1000} {
		m := buildTree(t, int(n))
		stored, leaves := m, m.leaves
		root, err := tlog.TreeHash(n, m)
		if err != nil {
			t.Fatal(err)
		}
		for trial := range 20 {
			k := 1 + rng.IntN(int(min(n, 50)))
			set := map[int64]bool{}
			for len(set) < k {
				set[rng.Int64N(n)] = true
			}
			var idxs []int64
			for x := range set {
				idxs = append(idxs, x)
			}
			slices.Sort(idxs)
			lv := make([]tlog.Hash, len(idxs))
			separate := 0
			for i, x := range idxs {
				lv[i] = leaves[x]
				p, _ := tlog.ProveRecord(n, x, stored)
				separate += len(p)
			}
			proof, err := proveMulti(n, idxs, stored)
			if err != nil {
				t.Fatal(err)
			}
			if len(proof) > separate {
				t.Fatalf("n=%d: %d hashes, the separate proofs %d", n, len(proof), separate)
			}
			if got, err := multiRoot(n, idxs, lv, proof); err != nil || got != root {
				t.Fatalf("n=%d trial %d: root %v, %v", n, trial, got, err)
			}
			bad := slices.Clone(lv)
			bad[rng.IntN(len(bad))][0] ^= 1
			if got, err := multiRoot(n, idxs, bad, proof); err == nil && got == root {
				t.Fatalf("n=%d: a changed leaf verifies", n)
			}
			if len(proof) > 0 {
				if got, err := multiRoot(n, idxs, lv, proof[1:]); err == nil && got == root {
					t.Fatalf("n=%d: a missing hash verifies", n)
				}
				changed := slices.Clone(proof)
				changed[len(changed)-1][3] ^= 1
				if got, err := multiRoot(n, idxs, lv, changed); err == nil && got == root {
					t.Fatalf("n=%d: a changed hash verifies", n)
				}
			}
			if _, err := multiRoot(n, idxs, lv, append(slices.Clone(proof), tlog.Hash{})); err == nil {
				t.Fatalf("n=%d: an extra hash verifies", n)
			}
			if len(idxs) < int(n) {
				// The same leaves claimed at other indexes.
				moved := slices.Clone(idxs)
				for i := len(moved) - 1; i >= 0; i-- {
					if moved[i]+1 < n && (i == len(moved)-1 || moved[i]+1 < moved[i+1]) {
						moved[i]++
						break
					}
				}
				if !slices.Equal(moved, idxs) {
					if got, err := multiRoot(n, moved, lv, proof); err == nil && got == root {
						t.Fatalf("n=%d: leaves at other indexes verify", n)
					}
				}
			}
		}
	}
}
