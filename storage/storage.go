// Package storage defines the object-store contract that sealgate keeps its
// sealed files (age ciphertext) and ledger checkpoints in, and the errors its
// implementations return.
//
// A Store never sees plaintext: callers hand it age ciphertext or public ledger
// data. It does not know what it stores; keys are opaque slash-separated
// strings chosen by the caller (for example "sealed/<transfer>/<file>.age").
//
// Implementations live in sub-packages (storage/fs, storage/s3); the
// conformance suite in storage/storagetest runs against every one of them.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotFound is returned (possibly wrapped) by Get, Stat and GetRange when
// no object exists under the key. Test with errors.Is. (Delete of a missing
// key returns nil.)
var ErrNotFound = errors.New("storage: object not found")

// ErrInvalidKey is returned (wrapped) by every method of every
// implementation when the key fails ValidKey. Nothing is read or written.
var ErrInvalidKey = errors.New("storage: invalid key")

// ErrUnavailable marks a transient failure of the backing store (network
// error, server down, timeouts, disk full). Callers turn it into a 4xx SMTP
// reply or a retry; it is never a reason to deliver anything in clear.
// Implementations wrap their own errors so that errors.Is(err,
// ErrUnavailable) holds for transient conditions.
var ErrUnavailable = errors.New("storage: temporarily unavailable")

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Store is the object-store contract.
//
// Put is two-phase in one call: the object becomes visible under key only
// when Put returns nil, and it is then durable (fsynced to disk, or
// acknowledged by the S3 service). If Put returns an error — including when r
// returns an error or ctx is cancelled — the store is as it was before the
// call: no new object appears under key, an object previously stored under
// key is unchanged, and no partial upload remains (temporary files removed,
// multipart uploads aborted — by S3 as soon as the server answers again, if
// it was unreachable). An error from r is wrapped, so errors.Is finds
// it. Put reads r to EOF; it does not close it. On success an existing object
// under the same key is replaced. Memory use is bounded and independent of
// the object's size; each implementation documents its figure.
//
// Get returns a reader for the whole object and its Info; the caller must
// Close the reader. Get reports ErrNotFound at call time, not at the first
// Read. The reader may depend on ctx: cancelling ctx may make later Reads
// fail.
//
// Delete removes the object and, where the backend keeps versions, every
// version of it. Deleting a missing key returns nil (deletion is
// idempotent so that interrupted destruction can be resumed); callers prove
// absence with Stat, which returns ErrNotFound.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader) (Info, error)
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	Stat(ctx context.Context, key string) (Info, error)
	Delete(ctx context.Context, key string) error
}

// Lister is implemented by stores that can enumerate keys under a prefix.
// It is used for garbage collection of orphaned objects and by the
// conformance suite; it is optional.
type Lister interface {
	List(ctx context.Context, prefix string, fn func(Info) error) error
}

// RangeGetter is implemented by stores that can read a byte range of an
// object (HTTP Range support in the portal). The range starts at offset
// (0 <= offset <= size) and is length bytes long; length < 0, or a range that
// runs past the end, means up to the end. offset == size or length == 0 gives
// an empty reader; offset > size is an error. ErrNotFound is reported at call
// time. The caller must Close the reader.
type RangeGetter interface {
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
}

// BulkDeleter is implemented by stores that can delete many objects in far
// fewer requests than one Delete per key (S3's multi-object delete). For
// each key DeleteMany has Delete's contract: every version is removed, a
// missing key is not an error, and what remains afterwards is reported. It
// returns the keys it could not delete, each with its error; a key absent
// from the result was deleted. It is optional: destruction of a whole
// contract uses it when the store has it.
type BulkDeleter interface {
	DeleteMany(ctx context.Context, keys []string) map[string]error
}

// AbsenceProver is implemented by stores that can show many keys absent in
// far fewer requests than one Stat per key (S3: one listing of every
// version under the keys' common prefix). ProveAbsent returns the keys of
// which something remains — on S3 any version, a delete marker included,
// which is stricter than Stat — and an error when it could not tell for all
// of them; the caller then Stats each key. It is optional: destruction of a
// whole contract uses it when the store has it.
type AbsenceProver interface {
	ProveAbsent(ctx context.Context, keys []string) (present map[string]bool, err error)
}

// What Delete reaches, as recorded with each deletion (DeleteCoverage).
const (
	// VersionsAll: every version of the object was listed and deleted (a
	// bucket without versioning lists one).
	VersionsAll = "all"
	// VersionsNone: the store keeps no versions (a file system).
	VersionsNone = "unversioned"
	// VersionsCurrent: the server could not list versions, so only the
	// current version was deleted; older versions, if the bucket keeps
	// any, were not.
	VersionsCurrent = "current"
	// VersionsUnknown: the store does not say.
	VersionsUnknown = "unknown"
)

// CoverageReporter is implemented by stores that say what their Delete
// reaches: one of the Versions* constants. Destruction records it with
// each object, and a certificate claims "every version" only when it is
// VersionsAll or VersionsNone.
type CoverageReporter interface {
	DeleteCoverage() string
}

// DeleteCoverage returns what st's Delete reaches (VersionsUnknown for a
// store that does not implement CoverageReporter).
func DeleteCoverage(st Store) string {
	if c, ok := st.(CoverageReporter); ok {
		return c.DeleteCoverage()
	}
	return VersionsUnknown
}

// Retainer is implemented by stores that can write an object that nobody,
// not even the store's own credentials, can delete or overwrite before
// retainUntil (S3 Object Lock). sealgate uses it for signed ledger
// checkpoints, which an auditor must be able to trust even if the gateway
// itself were compromised. PutLocked has the contract of Store.Put; a store
// whose backend cannot enforce retention returns an error that says so
// rather than storing the object unprotected.
type Retainer interface {
	PutLocked(ctx context.Context, key string, r io.Reader, retainUntil time.Time) (Info, error)
}

// MaxKeyLen and MaxSegmentLen bound a key and each of its slash-separated
// segments. The segment bound is the file-name limit of common Unix file
// systems (NAME_MAX), so that storage/fs can map a key to a path.
const (
	MaxKeyLen     = 512
	MaxSegmentLen = 255
)

// ValidKey reports whether key is acceptable to every implementation: non-
// empty, at most MaxKeyLen bytes, made of [A-Za-z0-9._/-] segments of at most
// MaxSegmentLen bytes separated by single slashes, no segment "." or "..", no
// leading or trailing slash.
//
// One limit is not expressed here: storage/fs cannot hold both "a" and
// "a/b" (a file and a directory of the same name), so callers should not use
// a key as the prefix directory of another key.
func ValidKey(key string) bool {
	if key == "" || len(key) > MaxKeyLen || key[0] == '/' || key[len(key)-1] == '/' {
		return false
	}
	segStart := 0
	for i := 0; i <= len(key); i++ {
		if i == len(key) || key[i] == '/' {
			seg := key[segStart:i]
			if seg == "" || seg == "." || seg == ".." || len(seg) > MaxSegmentLen {
				return false
			}
			segStart = i + 1
			continue
		}
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// CheckKey returns nil if ValidKey(key), and otherwise an error wrapping
// ErrInvalidKey that quotes the key. Implementations call it first in every
// method.
func CheckKey(key string) error {
	if ValidKey(key) {
		return nil
	}
	const maxQuoted = 64
	q := key
	if len(q) > maxQuoted {
		q = q[:maxQuoted] + "..."
	}
	return fmt.Errorf("%w %q", ErrInvalidKey, q)
}
