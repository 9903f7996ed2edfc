package masterkey

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/internal/atomicfile"
)

// LedgerKey is the ledger signing key's files in the keys directory:
// ledger.key.age (the signer key, age-encrypted to the master key) and
// ledger.pub (the verifier key, public).
type LedgerKey struct {
	Dir string
}

func (l LedgerKey) keyPath() string { return filepath.Join(l.Dir, "ledger.key.age") }
func (l LedgerKey) pubPath() string { return filepath.Join(l.Dir, "ledger.pub") }

// Load returns the signer key (note format) and the verifier key,
// creating both (named name) when create is set and they are missing.
func (l LedgerKey) Load(keys *crypto.Keyring, rand io.Reader, name string, create bool) (skey, vkey string, err error) {
	b, err := os.ReadFile(l.keyPath())
	if errors.Is(err, os.ErrNotExist) && create {
		skey, vkey, err := audit.GenerateKey(rand, name)
		if err != nil {
			return "", "", err
		}
		wrapped, err := keys.Current().Wrap([]byte(skey))
		if err != nil {
			return "", "", err
		}
		if err := os.MkdirAll(l.Dir, 0o700); err != nil {
			return "", "", fmt.Errorf("failed to create key directory: %w", err)
		}
		if err := atomicfile.Create(l.keyPath(), wrapped, 0o600); err != nil {
			if errors.Is(err, os.ErrExist) { // another process made it first
				return l.Load(keys, rand, name, false)
			}
			return "", "", err
		}
		if err := atomicfile.Write(l.pubPath(), []byte(vkey+"\n"), 0o644); err != nil {
			return "", "", fmt.Errorf("failed to write verifier key: %w", err)
		}
		return skey, vkey, nil
	}
	if err != nil {
		return "", "", fmt.Errorf("failed to read ledger key %s (run `sealgate init`): %w", l.keyPath(), err)
	}
	sk, err := keys.Unwrap(b)
	if err != nil {
		return "", "", fmt.Errorf("failed to open ledger key (wrong master key?): %w", err)
	}
	pub, err := os.ReadFile(l.pubPath())
	if err != nil {
		return "", "", fmt.Errorf("failed to read verifier key: %w", err)
	}
	return string(sk), strings.TrimSpace(string(pub)), nil
}

// Name implements Holder.
func (l LedgerKey) Name() string { return "ledger signing key" }

// Rewrap implements Holder: the ledger key file is re-wrapped to the new
// master key (the signing key itself does not change).
func (l LedgerKey) Rewrap(ctx context.Context, from *crypto.Keyring, to *crypto.Epoch) (held, moved int, err error) {
	b, err := os.ReadFile(l.keyPath())
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("failed to read the ledger key: %w", err)
	}
	if to.Opens(b) {
		return 1, 0, nil
	}
	nb, err := from.Rewrap(b, to)
	if err != nil {
		return 1, 0, fmt.Errorf("failed to re-wrap the ledger key: %w", err)
	}
	if err := atomicfile.Write(l.keyPath(), nb, 0o600); err != nil {
		return 1, 0, err
	}
	return 1, 1, nil
}
