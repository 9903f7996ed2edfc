// Package crypto holds sealgate's key hierarchy and every call into age.
//
//	master key (age X25519 identity, file or env)  ── wraps ──▶ contract KEKs, spool files, ledger signing key
//	contract KEK (X25519, one per contract)        ── wraps ──▶ key files (key.age) of transfer identities
//	transfer identity T (X25519, per recipient)    ── decrypts ▶ file.age
//	passphrase P (≥ 125 bits, typable)             ── wraps ──▶ T, as key.age (age scrypt, low work factor)
//
// The server can open a sealed file only with both the recipient's P and the
// contract KEK: a stolen database plus bucket reveals nothing, and once the KEK
// (or one recipient's wrapped key file) is erased, no passphrase opens anything
// (crypto-shredding, which also defeats object versions and backups).
//
// Stock age interoperability: key.age is an armored age file encrypted with P
// alone (age forbids mixing a scrypt stanza with other recipients, which is
// why P wraps T instead of the file), so `age -d -i key.age file.age` works.
//
// Transfer identities use X25519, not age's post-quantum hybrid keys, because
// recipients decrypt with whatever age they have (Debian 12 ships age 1.1.1).
//
// Nothing in this package writes to disk; callers store only wrapped keys.
package crypto

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"
)

// ScryptWorkFactor is the log2 scrypt work factor of key.age. P carries 125
// bits of entropy, so guessing is hopeless at any work factor: even 2^125
// checks at one nanosecond each take 10^21 years. A work factor would only
// buy protection for weak passwords, which these are not; what it would
// cost is real — age's default (2^18, ~1 s and 256 MiB per check) lets
// anyone with a link burn the server's CPU and memory, and at 2^10 deriving
// one key.age per recipient was a quarter of the CPU of sealing a small
// message. At 2^4 a check costs ~10 µs and 16 KiB. Stock age accepts any
// work factor from 1 up to its maximum.
const ScryptWorkFactor = 4

// ErrWrongPassphrase is returned when a passphrase does not open a key file.
var ErrWrongPassphrase = errors.New("crypto: wrong passphrase")

// ErrKeyDestroyed is returned when the key needed has been erased.
var ErrKeyDestroyed = errors.New("crypto: key destroyed")

// Keyring holds the master identity. It is safe for concurrent use.
type Keyring struct {
	master    *age.X25519Identity
	recipient *age.X25519Recipient
	queue     *queueKey // see queue.go
}

// GenerateMasterKey returns a new master identity in age's text form
// ("AGE-SECRET-KEY-1…").
func GenerateMasterKey() (string, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", fmt.Errorf("failed to generate master key: %w", err)
	}
	return id.String(), nil
}

// NewKeyring parses a master identity as written by GenerateMasterKey, or an
// age identity file's contents (comment lines starting with # are ignored).
func NewKeyring(identity string) (*Keyring, error) {
	var key string
	for _, line := range strings.Split(identity, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if key != "" {
			return nil, errors.New("crypto: master key file holds more than one key")
		}
		key = line
	}
	id, err := age.ParseX25519Identity(key)
	if err != nil {
		return nil, fmt.Errorf("failed to parse master key: %w", err)
	}
	q, err := deriveQueueKey(id)
	if err != nil {
		return nil, err
	}
	return &Keyring{master: id, recipient: id.Recipient(), queue: q}, nil
}

// Wrap encrypts a small secret to the master key.
func (k *Keyring) Wrap(secret []byte) ([]byte, error) {
	return encryptBytes(secret, k.recipient)
}

// WrapTransient encrypts a small secret that only waits in the queue (a
// link token, a passphrase) with the queue key (queue.go).
func (k *Keyring) WrapTransient(secret []byte) ([]byte, error) {
	return encryptBytes(secret, k.queue)
}

// Unwrap decrypts what Wrap or WrapTransient produced.
func (k *Keyring) Unwrap(wrapped []byte) ([]byte, error) {
	if len(wrapped) == 0 {
		return nil, ErrKeyDestroyed
	}
	return decryptBytes(wrapped, k.queue, k.master)
}

// SpoolWriter returns a writer that encrypts everything written to it with
// the queue key and writes the ciphertext to dst. The caller must Close it
// to flush the last chunk; closing does not close dst. Spool files (queued
// messages and skeletons) are written only through it.
func (k *Keyring) SpoolWriter(dst io.Writer) (io.WriteCloser, error) {
	w, err := age.Encrypt(dst, k.queue)
	if err != nil {
		return nil, fmt.Errorf("failed to start spool encryption: %w", err)
	}
	return w, nil
}

// SpoolReader decrypts a spool file written through SpoolWriter.
func (k *Keyring) SpoolReader(src io.Reader) (io.Reader, error) {
	r, err := age.Decrypt(src, k.queue, k.master) // the master: spools of earlier versions
	if err != nil {
		return nil, fmt.Errorf("failed to decrypt spool file: %w", err)
	}
	return r, nil
}

// NewContractKey generates a contract KEK and returns its public recipient
// and the identity wrapped to the master key (for the database).
func (k *Keyring) NewContractKey() (recipient string, wrapped []byte, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", nil, fmt.Errorf("failed to generate contract key: %w", err)
	}
	wrapped, err = k.Wrap([]byte(id.String()))
	if err != nil {
		return "", nil, fmt.Errorf("failed to wrap contract key: %w", err)
	}
	return id.Recipient().String(), wrapped, nil
}

// ContractKey is an unwrapped contract KEK.
type ContractKey struct {
	id *age.X25519Identity
}

// OpenContractKey unwraps a contract KEK. A nil or empty wrapped key (erased
// at destruction) gives ErrKeyDestroyed.
func (k *Keyring) OpenContractKey(wrapped []byte) (*ContractKey, error) {
	b, err := k.Unwrap(wrapped)
	if err != nil {
		return nil, fmt.Errorf("failed to open contract key: %w", err)
	}
	id, err := age.ParseX25519Identity(string(b))
	if err != nil {
		return nil, fmt.Errorf("failed to parse contract key: %w", err)
	}
	return &ContractKey{id: id}, nil
}

// UnwrapKeyFile returns the key.age held for one recipient.
func (c *ContractKey) UnwrapKeyFile(wrapped []byte) ([]byte, error) {
	if len(wrapped) == 0 {
		return nil, ErrKeyDestroyed
	}
	return decryptBytes(wrapped, c.id)
}

// WrapKeyFile encrypts a recipient's key.age to the contract KEK recipient.
func WrapKeyFile(kekRecipient string, keyFile []byte) ([]byte, error) {
	r, err := age.ParseX25519Recipient(kekRecipient)
	if err != nil {
		return nil, fmt.Errorf("failed to parse contract key recipient: %w", err)
	}
	return encryptBytes(keyFile, r)
}

// TransferKey is one recipient's transfer identity with the passphrase that
// protects it. It lives in memory only while a message is being sealed.
type TransferKey struct {
	identity   *age.X25519Identity
	Passphrase string
}

// NewTransferKey generates a transfer identity and a passphrase drawn from
// rand.
func NewTransferKey(rand io.Reader) (*TransferKey, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("failed to generate transfer identity: %w", err)
	}
	p, err := NewPassphrase(rand)
	if err != nil {
		return nil, err
	}
	return &TransferKey{identity: id, Passphrase: p}, nil
}

// Recipient returns the age recipient that file.age is encrypted to.
func (t *TransferKey) Recipient() age.Recipient { return t.identity.Recipient() }

// KeyFile returns key.age: the identity, encrypted with the passphrase alone
// (armored, so it can be mailed or pasted), for `age -d -i key.age`.
func (t *TransferKey) KeyFile() ([]byte, error) {
	r, err := age.NewScryptRecipient(t.Passphrase)
	if err != nil {
		return nil, fmt.Errorf("failed to create passphrase recipient: %w", err)
	}
	r.SetWorkFactor(ScryptWorkFactor)
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, r)
	if err != nil {
		return nil, fmt.Errorf("failed to encrypt key file: %w", err)
	}
	content := "# sealgate transfer key — open with: age -d -i key.age file.age > file\n" + t.identity.String() + "\n"
	if _, err := io.WriteString(w, content); err != nil {
		return nil, fmt.Errorf("failed to encrypt key file: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("failed to encrypt key file: %w", err)
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("failed to armor key file: %w", err)
	}
	return buf.Bytes(), nil
}

// OpenKeyFile decrypts key.age with a passphrase (already normalized with
// NormalizePassphrase) and returns the transfer identity. A wrong passphrase
// gives ErrWrongPassphrase. Work factors above ScryptWorkFactor are refused,
// so a tampered key file cannot make the server burn CPU.
func OpenKeyFile(keyFile []byte, passphrase string) (age.Identity, error) {
	sid, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, fmt.Errorf("failed to create passphrase identity: %w", err)
	}
	sid.SetMaxWorkFactor(ScryptWorkFactor)
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader(keyFile)), sid)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) || errors.Is(err, age.ErrIncorrectIdentity) {
			return nil, ErrWrongPassphrase
		}
		return nil, fmt.Errorf("failed to open key file: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return nil, fmt.Errorf("failed to read key file: %w", err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil || len(ids) != 1 {
		return nil, fmt.Errorf("failed to parse key file: %v", err)
	}
	return ids[0], nil
}

// EncryptFile returns a writer that encrypts to recipients (the transfer
// identities of every external recipient of a message, plus any registered
// public keys) and writes file.age to dst. The caller must Close it; Close
// does not close dst.
func EncryptFile(dst io.Writer, recipients []age.Recipient) (io.WriteCloser, error) {
	if len(recipients) == 0 {
		return nil, errors.New("crypto: no recipients")
	}
	w, err := age.Encrypt(dst, recipients...)
	if err != nil {
		return nil, fmt.Errorf("failed to start encryption: %w", err)
	}
	return w, nil
}

// DecryptFile returns the plaintext of file.age read from src. Every chunk
// returned has been authenticated; a truncated or altered file makes Read
// fail.
func DecryptFile(src io.Reader, id age.Identity) (io.Reader, error) {
	r, err := age.Decrypt(src, id)
	if err != nil {
		return nil, fmt.Errorf("failed to decrypt file: %w", err)
	}
	return r, nil
}

// ParseRecipient parses a recipient's registered public key: an age X25519
// recipient ("age1…") or an SSH public key ("ssh-ed25519 …", "ssh-rsa …",
// as in authorized_keys; the comment is ignored). Post-quantum age keys are
// refused: age does not let them share a file with the X25519 transfer
// identities of the other recipients.
func ParseRecipient(s string) (age.Recipient, error) {
	r, _, _, err := ParsePublicKey(s)
	return r, err
}

// Public key kinds.
const (
	PublicKeyAge = "age"
	PublicKeySSH = "ssh"
)

// ParsePublicKey parses a public key as ParseRecipient does and also
// returns its kind (PublicKeyAge or PublicKeySSH) and canonical text (the
// age1… string, or the SSH key type and base64 without the comment).
func ParsePublicKey(s string) (r age.Recipient, kind, canonical string, err error) {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, "\r\n") {
		return nil, "", "", errors.New("crypto: a public key is one line")
	}
	switch {
	case strings.HasPrefix(s, "age1"):
		x, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, "", "", fmt.Errorf("failed to parse age public key: %w", err)
		}
		return x, PublicKeyAge, x.String(), nil
	case strings.HasPrefix(s, "ssh-ed25519 ") || strings.HasPrefix(s, "ssh-rsa "):
		f := strings.Fields(s)
		if len(f) < 2 {
			return nil, "", "", errors.New("crypto: incomplete SSH public key")
		}
		canonical = f[0] + " " + f[1]
		r, err := agessh.ParseRecipient(canonical)
		if err != nil {
			return nil, "", "", fmt.Errorf("failed to parse SSH public key: %w", err)
		}
		return r, PublicKeySSH, canonical, nil
	}
	return nil, "", "", errors.New("crypto: unsupported public key (expected age1… or ssh-ed25519 / ssh-rsa)")
}

// PublicKeyFingerprint is what people compare: "SHA256:" and the unpadded
// base64 of the SHA-256 of the canonical key text.
func PublicKeyFingerprint(canonical string) string {
	h := sha256.Sum256([]byte(canonical))
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(h[:])
}

func encryptBytes(b []byte, r age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		return nil, fmt.Errorf("failed to encrypt: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return nil, fmt.Errorf("failed to encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("failed to encrypt: %w", err)
	}
	return buf.Bytes(), nil
}

func decryptBytes(b []byte, ids ...age.Identity) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(b), ids...)
	if err != nil {
		return nil, fmt.Errorf("failed to decrypt: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("failed to decrypt: %w", err)
	}
	return out, nil
}
