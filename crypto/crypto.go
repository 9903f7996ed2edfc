// Package crypto holds sealgate's key hierarchy and every call into age.
//
//	master key, epoch N (age X25519 identity)  ── wraps ──▶ contract KEKs, ledger signing key, TOTP secrets; queue key (derived) seals spool and waiting secrets
//	contract KEK (X25519, one per contract)    ── wraps ──▶ key files (key.age) of transfer identities
//	transfer identity T (X25519, per recipient per transfer) ── decrypts ▶ file.age
//	key.age = T wrapped for the recipient: by a passphrase P (≥ 125 bits, age scrypt, low work factor),
//	          or to the recipient's registered age/SSH public key
//
// file.age is encrypted to transfer identities only, never to anything
// else. The server can open a sealed file only with both the recipient's P
// and the contract KEK: a stolen database plus bucket reveals nothing. Once
// the KEK or one recipient's wrapped key file is erased, nothing the
// gateway holds opens that recipient's T any more (crypto-shredding, which
// also defeats object versions and backups of the bucket) — for passphrase
// recipients and for recipients with a registered key alike: a registered
// key only ever opens key.age, never file.age. What stays true only if
// people act: a recipient who downloaded key.age holds T; a backup of the
// database still holds the erased keys, wrapped to the master key of its
// epoch (see master.go: rotation).
//
// Stock age interoperability: key.age is an armored age file encrypted with P
// alone (age forbids mixing a scrypt stanza with other recipients, which is
// why P wraps T instead of the file), so `age -d -i key.age file.age` works;
// with a registered key, `age -d -i my.key key.age > t.key` and then
// `age -d -i t.key file.age > file`.
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

// TransferKey is one recipient's transfer identity with what protects its
// key file: a passphrase, or the public key the recipient registered. It
// lives in memory only while a message is being sealed.
type TransferKey struct {
	identity *age.X25519Identity
	// Passphrase protects key.age; "" when the recipient registered a
	// public key (key.age is then encrypted to that key, and no
	// passphrase exists).
	Passphrase string
	pub        *PublicKey
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

// NewTransferKeyFor generates a transfer identity whose key file is
// encrypted to the recipient's registered public key: no passphrase.
func NewTransferKeyFor(pub *PublicKey) (*TransferKey, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("failed to generate transfer identity: %w", err)
	}
	return &TransferKey{identity: id, pub: pub}, nil
}

// KeyFile returns key.age: the identity, armored (so it can be mailed or
// pasted), encrypted with the passphrase alone (for `age -d -i key.age
// file.age`), or to the registered public key (for `age -d -i my.key
// key.age > t.key`).
func (t *TransferKey) KeyFile() ([]byte, error) {
	var r age.Recipient
	content := "# sealgate transfer key — open with: age -d -i key.age file.age > file\n"
	if t.pub != nil {
		r = t.pub.r
		content = "# sealgate transfer key — save as t.key, then: age -d -i t.key file.age > file\n"
	} else {
		sr, err := age.NewScryptRecipient(t.Passphrase)
		if err != nil {
			return nil, fmt.Errorf("failed to create passphrase recipient: %w", err)
		}
		sr.SetWorkFactor(ScryptWorkFactor)
		r = sr
	}
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, r)
	if err != nil {
		return nil, fmt.Errorf("failed to encrypt key file: %w", err)
	}
	if _, err := io.WriteString(w, content+t.identity.String()+"\n"); err != nil {
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

// Identity is an opened transfer identity: it decrypts file.age.
type Identity struct {
	id age.Identity
}

// OpenKeyFile decrypts key.age with a passphrase (already normalized with
// NormalizePassphrase) and returns the transfer identity. A wrong passphrase
// gives ErrWrongPassphrase. Work factors above ScryptWorkFactor are refused,
// so a tampered key file cannot make the server burn CPU.
func OpenKeyFile(keyFile []byte, passphrase string) (*Identity, error) {
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
	return parseKeyFileContent(r)
}

// OpenKeyFileWith decrypts a key.age encrypted to a registered public key
// with the matching private key (an age identity file's contents, or an
// unencrypted OpenSSH private key). The gateway never holds such a key;
// tests play the recipient with it.
func OpenKeyFileWith(keyFile []byte, privateKey []byte) (*Identity, error) {
	var ids []age.Identity
	if bytes.Contains(privateKey, []byte("OPENSSH PRIVATE KEY")) {
		id, err := agessh.ParseIdentity(privateKey)
		if err != nil {
			return nil, fmt.Errorf("failed to parse SSH private key: %w", err)
		}
		ids = []age.Identity{id}
	} else {
		var err error
		if ids, err = age.ParseIdentities(bytes.NewReader(privateKey)); err != nil {
			return nil, fmt.Errorf("failed to parse private key: %w", err)
		}
	}
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader(keyFile)), ids...)
	if err != nil {
		return nil, fmt.Errorf("failed to open key file: %w", err)
	}
	return parseKeyFileContent(r)
}

func parseKeyFileContent(r io.Reader) (*Identity, error) {
	b, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return nil, fmt.Errorf("failed to read key file: %w", err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil || len(ids) != 1 {
		return nil, fmt.Errorf("failed to parse key file: %v", err)
	}
	return &Identity{id: ids[0]}, nil
}

// EncryptFile returns a writer that encrypts to the transfer identities of
// keys (every external recipient of a message) — and to nothing else — and
// writes file.age to dst. The caller must Close it; Close does not close
// dst.
func EncryptFile(dst io.Writer, keys []*TransferKey) (io.WriteCloser, error) {
	if len(keys) == 0 {
		return nil, errors.New("crypto: no recipients")
	}
	rs := make([]age.Recipient, len(keys))
	for i, k := range keys {
		rs[i] = k.identity.Recipient()
	}
	w, err := age.Encrypt(dst, rs...)
	if err != nil {
		return nil, fmt.Errorf("failed to start encryption: %w", err)
	}
	return w, nil
}

// DecryptFile writes the plaintext of file.age read from src to dst and
// returns how many bytes it wrote. It writes each 64 KiB chunk only once
// the chunk is authenticated; a truncated or altered file makes it fail,
// after the chunks before the damage (as the stock age CLI does). See
// payloadReader for why this is not age.Decrypt's reader.
func DecryptFile(dst io.Writer, src io.Reader, id *Identity) (int64, error) {
	n, err := decryptAge(dst, src, id.id)
	if err != nil {
		return n, fmt.Errorf("failed to decrypt file: %w", err)
	}
	return n, nil
}

// PublicKey is a recipient's registered public key: an age X25519
// recipient or an SSH key. key.age is encrypted to it.
type PublicKey struct {
	r age.Recipient
	// Kind is PublicKeyAge or PublicKeySSH.
	Kind string
	// Canonical is the age1… string, or the SSH key type and base64
	// without the comment.
	Canonical string
}

// Public key kinds.
const (
	PublicKeyAge = "age"
	PublicKeySSH = "ssh"
)

// ParsePublicKey parses a recipient's registered public key: an age X25519
// recipient ("age1…") or an SSH public key ("ssh-ed25519 …", "ssh-rsa …",
// as in authorized_keys; the comment is ignored). Post-quantum age keys are
// refused: recipients decrypt with the age they have.
func ParsePublicKey(s string) (*PublicKey, error) {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("crypto: a public key is one line")
	}
	switch {
	case strings.HasPrefix(s, "age1"):
		x, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("failed to parse age public key: %w", err)
		}
		return &PublicKey{r: x, Kind: PublicKeyAge, Canonical: x.String()}, nil
	case strings.HasPrefix(s, "ssh-ed25519 ") || strings.HasPrefix(s, "ssh-rsa "):
		f := strings.Fields(s)
		if len(f) < 2 {
			return nil, errors.New("crypto: incomplete SSH public key")
		}
		canonical := f[0] + " " + f[1]
		r, err := agessh.ParseRecipient(canonical)
		if err != nil {
			return nil, fmt.Errorf("failed to parse SSH public key: %w", err)
		}
		return &PublicKey{r: r, Kind: PublicKeySSH, Canonical: canonical}, nil
	}
	return nil, errors.New("crypto: unsupported public key (expected age1… or ssh-ed25519 / ssh-rsa)")
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

// decryptBytes returns the plaintext of the age file b. The plaintext is
// shorter than b: it is held in one buffer of b's size.
func decryptBytes(b []byte, ids ...age.Identity) ([]byte, error) {
	r, err := openAge(bytes.NewReader(b), int64(len(b)), ids...)
	if err != nil {
		return nil, fmt.Errorf("failed to decrypt: %w", err)
	}
	out := bytes.NewBuffer(make([]byte, 0, len(b)))
	if _, err := r.WriteTo(out); err != nil {
		return nil, fmt.Errorf("failed to decrypt: %w", err)
	}
	return out.Bytes(), nil
}
