package audit

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/witness/cosig"
)

// WitnessPolicy makes verification require witness cosignatures: the
// checkpoint verified against must carry valid cosignatures
// (cosignature/v1) by at least Quorum of the witnesses whose verifier keys
// are Keys. A witness cosigns a checkpoint only if it extends every
// checkpoint of the ledger it cosigned before, so a history rewritten and
// signed again with the gateway's own key cannot carry them.
type WitnessPolicy struct {
	Keys []string
	// Quorum is k of "k of n" (0: all of Keys).
	Quorum int
}

func (p WitnessPolicy) enabled() bool { return len(p.Keys) > 0 || p.Quorum > 0 }

// verifiers parses the keys (a key given twice counts once) and returns
// them with the quorum. One public key under two names is refused: a
// cosignature does not cover the witness's name, so the one witness's
// cosignature would verify under both and count twice.
func (p WitnessPolicy) verifiers() ([]*cosig.Verifier, int, error) {
	var vs []*cosig.Verifier
	seen := map[string]*cosig.Verifier{} // by public key
	for _, k := range p.Keys {
		v, err := cosig.NewVerifier(k)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: witness key: %v", ErrBadKey, err)
		}
		prev, ok := seen[string(v.PublicKey())]
		switch {
		case !ok:
			seen[string(v.PublicKey())] = v
			vs = append(vs, v)
		case prev.ID() != v.ID():
			return nil, 0, fmt.Errorf("%w: witness keys %s and %s are one public key under two names: one witness, which must not count twice",
				ErrBadKey, prev.ID(), v.ID())
		}
	}
	k := p.Quorum
	if k <= 0 {
		k = len(vs)
	}
	if k > len(vs) {
		return nil, 0, fmt.Errorf("%w: %d witness cosignatures required but only %d witness keys given", ErrBadKey, k, len(vs))
	}
	return vs, k, nil
}

// WitnessError says why a checkpoint does not satisfy a WitnessPolicy.
// errors.Is(err, ErrNotWitnessed) holds.
type WitnessError struct {
	Size     int64    // the checkpoint's size (-1: no checkpoint)
	Have     int      // valid cosignatures by the given witnesses
	Need     int      // the quorum
	Missing  []string // witnesses ("<name>+<key ID>") without a valid cosignature
	Altered  string   // a witness whose cosignature is there but does not verify
	Reason   string   // English
	ReasonJA string   // Japanese
}

func (e *WitnessError) Error() string { return "witness verification failed: " + e.Reason }

// Unwrap makes errors.Is(err, ErrNotWitnessed) hold.
func (e *WitnessError) Unwrap() error { return ErrNotWitnessed }

// Message is the bilingual text shown to users.
func (e *WitnessError) Message() string {
	return "証人による検証に失敗しました: " + e.ReasonJA + " / " + e.Error()
}

// checkWitnesses verifies the cosignatures on the checkpoint note msg (of
// the tree of size) by the witnesses vs and requires k of them. A
// cosignature that claims a witness's key but does not verify fails
// verification at once: the checkpoint was altered after that witness
// cosigned it.
func checkWitnesses(msg []byte, size int64, vs []*cosig.Verifier, k int) ([]cosig.Cosigned, error) {
	got, err := cosig.Open(msg, vs)
	if err != nil {
		var inv *note.InvalidSignatureError
		if errors.As(err, &inv) {
			w := cosig.KeyName(inv.Name, inv.Hash)
			return nil, &WitnessError{Size: size, Need: k, Altered: w,
				ReasonJA: fmt.Sprintf("証人 %s の連署が検証できません（連署の後にチェックポイントが書き換えられたか、別のチェックポイントの連署が写されています）", w),
				Reason:   fmt.Sprintf("the cosignature of witness %s does not verify: the checkpoint was altered after the witness cosigned it, or the cosignature was copied from another checkpoint", w),
			}
		}
		return nil, fmt.Errorf("%w: checkpoint: %v", ErrMalformed, err)
	}
	if len(got) >= k {
		return got, nil
	}
	have := map[string]bool{}
	for _, c := range got {
		have[c.Witness] = true
	}
	var missing []string
	for _, v := range vs {
		if !have[v.ID()] {
			missing = append(missing, v.ID())
		}
	}
	list := strings.Join(missing, ", ")
	return got, &WitnessError{Size: size, Have: len(got), Need: k, Missing: missing,
		ReasonJA: fmt.Sprintf("サイズ %d のチェックポイントの証人の連署は必要な %d 件のうち %d 件です（%s の連署がありません）。"+
			"独立した証人が、この履歴を以前に見た履歴の続きだと確認していません。ゲートウェイ自身の鍵で署名し直した書き換えの履歴に証人は連署しません",
			size, k, len(got), list),
		Reason: fmt.Sprintf("the checkpoint of size %d is cosigned by %d of the %d witnesses required (no cosignature from %s): "+
			"no independent witness has confirmed that this history extends the one it saw before; "+
			"witnesses do not cosign a history rewritten and signed again with the gateway's own key",
			size, len(got), k, list),
	}
}

// CheckWitnesses verifies the witness cosignatures on a signed checkpoint
// (its note, as exports, proofs and certificates carry it) against p and
// returns the valid ones. The note's own signature is not checked here
// (OpenCheckpoint does that). Errors: ErrBadKey for a bad policy, a
// *WitnessError when too few witnesses cosigned or a cosignature does not
// verify.
func CheckWitnesses(msg []byte, p WitnessPolicy) ([]cosig.Cosigned, error) {
	vs, k, err := p.verifiers()
	if err != nil {
		return nil, err
	}
	cp, err := parseStoredCheckpoint(msg)
	if err != nil {
		return nil, err
	}
	return checkWitnesses(msg, cp.Size, vs, k)
}
