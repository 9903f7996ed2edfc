package audit

import (
	"errors"
	"fmt"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrInvalidEvent: Append refused an event (unknown type, empty actor,
	// control characters, invalid UTF-8, too large).
	ErrInvalidEvent = errors.New("audit: invalid event")
	// ErrNotCanonical: a record is not the canonical encoding of an event.
	ErrNotCanonical = errors.New("audit: record is not canonical")
	// ErrNotFound: no such record or checkpoint.
	ErrNotFound = errors.New("audit: not found")
	// ErrNoCheckpoint: the ledger has no signed checkpoint (yet) covering
	// what was asked.
	ErrNoCheckpoint = errors.New("audit: no checkpoint covers this entry")
	// ErrCorrupt: the ledger tables are inconsistent (rows deleted or
	// inserted outside the ledger); appending stops until verify-db is run.
	ErrCorrupt = errors.New("audit: ledger tables are inconsistent")
	// ErrBadKey: a verifier or signer key could not be parsed.
	ErrBadKey = errors.New("audit: malformed key")
	// ErrWrongKey: a note is not signed by the given verifier key (for
	// example a key of another gateway).
	ErrWrongKey = errors.New("audit: not signed by this key")
	// ErrBadSignature: a note claims the given key but its signature is
	// invalid (the note was altered).
	ErrBadSignature = errors.New("audit: invalid signature")
	// ErrMalformed: a checkpoint, proof or bundle cannot be parsed.
	ErrMalformed = errors.New("audit: malformed data")
	// ErrTampered: verification found altered, missing, inserted or
	// reordered entries. Returned as a *VerifyError.
	ErrTampered = errors.New("audit: ledger has been tampered with")
	// ErrInconsistent: two checkpoints are not of one append-only history
	// (the older tree is not a prefix of the newer one).
	ErrInconsistent = errors.New("audit: checkpoints are inconsistent")
	// ErrPublish: a checkpoint was signed and recorded but could not be
	// written to object storage, or its witness cosignatures could not be
	// recorded; it is retried by the next Publish.
	ErrPublish = errors.New("audit: failed to publish checkpoint")
	// ErrNotWitnessed: a checkpoint does not carry the witness
	// cosignatures a WitnessPolicy requires. Returned as a *WitnessError.
	ErrNotWitnessed = errors.New("audit: not cosigned by enough witnesses")
)

// VerifyError reports a verification failure. Index names the first bad
// entry; it is -1 when the failure cannot be attributed to one entry (for
// example when entries and their hashes were rewritten together and only
// the signed root disagrees).
type VerifyError struct {
	Index    int64
	Reason   string // English
	ReasonJA string // Japanese
}

func (e *VerifyError) Error() string {
	if e.Index < 0 {
		return "verification failed: " + e.Reason
	}
	return fmt.Sprintf("verification failed: entry #%d %s", e.Index, e.Reason)
}

// Unwrap makes errors.Is(err, ErrTampered) hold.
func (e *VerifyError) Unwrap() error { return ErrTampered }

// Message is the bilingual text shown to users, e.g.
// "検証に失敗しました: 記録 #123 が改ざんされています / verification failed: entry #123 has been altered".
func (e *VerifyError) Message() string {
	if e.Index < 0 {
		return "検証に失敗しました: " + e.ReasonJA + " / " + e.Error()
	}
	return fmt.Sprintf("検証に失敗しました: 記録 #%d %s / %s", e.Index, e.ReasonJA, e.Error())
}

func verr(idx int64, ja, en string) *VerifyError {
	return &VerifyError{Index: idx, ReasonJA: ja, Reason: en}
}
