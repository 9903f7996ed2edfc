// Package keyfiles finds, creates and loads sealgate's key files in the
// data directory:
//
//	keys/master.key      the master key (age identity, mode 0600) — or $SEALGATE_MASTER_KEY
//	keys/ledger.key.age  the ledger signing key, age-encrypted to the master key
//	keys/ledger.pub      the ledger verifier key, public: give it to auditors
//
// Only the master key is stored in clear (that is what a KMS replaces);
// every other secret is wrapped by it.
package keyfiles

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
)

// Master loads the master key: from env (the key itself) when set,
// otherwise from path; create makes a new one at path when neither exists.
// created reports that a new key was written.
func Master(path, env string, create bool) (k *crypto.Keyring, created bool, err error) {
	if env != "" {
		k, err := crypto.NewKeyring(env)
		if err != nil {
			return nil, false, fmt.Errorf("SEALGATE_MASTER_KEY: %w", err)
		}
		return k, false, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		key, err := crypto.GenerateMasterKey()
		if err != nil {
			return nil, false, err
		}
		content := "# sealgate master key: wraps every other key. Keep it secret and backed up;\n# losing it makes every stored file unreadable.\n" + key + "\n"
		if err := writeNew(path, []byte(content)); err != nil {
			return nil, false, err
		}
		k, err := crypto.NewKeyring(content)
		return k, true, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("failed to read master key %s (run `sealgate init`): %w", path, err)
	}
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("master key %s is readable by others (mode %v); chmod 600 it", path, info.Mode().Perm())
	}
	k, err = crypto.NewKeyring(string(b))
	return k, false, err
}

// Ledger loads the ledger signing key from dir, creating it (and the
// public verifier key file) when create is set and it is missing. It
// returns the signer key (note format) and the verifier key.
func Ledger(dir string, keys *crypto.Keyring, rand io.Reader, name string, create bool) (skey, vkey string, err error) {
	keyPath := filepath.Join(dir, "ledger.key.age")
	pubPath := filepath.Join(dir, "ledger.pub")
	b, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) && create {
		skey, vkey, err := audit.GenerateKey(rand, name)
		if err != nil {
			return "", "", err
		}
		wrapped, err := keys.Wrap([]byte(skey))
		if err != nil {
			return "", "", err
		}
		if err := writeNew(keyPath, wrapped); err != nil {
			return "", "", err
		}
		if err := os.WriteFile(pubPath, []byte(vkey+"\n"), 0o644); err != nil {
			return "", "", fmt.Errorf("failed to write verifier key: %w", err)
		}
		return skey, vkey, nil
	}
	if err != nil {
		return "", "", fmt.Errorf("failed to read ledger key %s (run `sealgate init`): %w", keyPath, err)
	}
	sk, err := keys.Unwrap(b)
	if err != nil {
		return "", "", fmt.Errorf("failed to open ledger key (wrong master key?): %w", err)
	}
	pub, err := os.ReadFile(pubPath)
	if err != nil {
		return "", "", fmt.Errorf("failed to read verifier key: %w", err)
	}
	return string(sk), strings.TrimSpace(string(pub)), nil
}

func writeNew(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("failed to create key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("failed to create %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("failed to sync %s: %w", path, err)
	}
	return f.Close()
}
