package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"filippo.io/age"
)

// Master key epochs.
//
// The master key is not forever: `sealgate key rotate` (and, by default,
// every contract end) replaces it with a new one, re-wraps every live
// secret to the new key and erases the old one. Each master key is one
// epoch, numbered from 1 (package masterkey keeps the numbers, the files
// and the rotation). A backup of the database made in epoch N holds
// secrets wrapped to the master key of epoch N only: once every copy of
// that key is destroyed, the backup opens nothing.
//
// A Keyring holds the epochs a process may need: the current one, with
// which everything new is wrapped, and during a rotation the one being
// retired, with which older data still opens. Everything that wraps a
// secret takes one Epoch (Keyring.Current) and wraps with it alone, so
// that the writer can tell the database which epoch its data belongs to
// (the fence in package masterkey): data wrapped to an epoch that a
// concurrent rotation has retired is never committed.

// ErrStaleEpoch is returned when data wrapped to a master key epoch
// reaches the database after a newer epoch became current (a rotation
// ran meanwhile). The operation is retried with the new key.
var ErrStaleEpoch = errors.New("crypto: master key epoch changed; retry")

// Epoch is the master key of one epoch. It is immutable and safe for
// concurrent use.
type Epoch struct {
	// Number is the epoch's number (1 for the first master key). It is
	// assigned by package masterkey from the database; 0 means not yet
	// known.
	Number int

	id    *age.X25519Identity
	rcpt  *age.X25519Recipient
	queue *queueKey // see queue.go
	ring  *Keyring  // the keyring it came from, or nil
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

// ParseMasterKey parses a master identity as written by GenerateMasterKey,
// or an age identity file's contents holding one key (lines starting with
// # are comments).
func ParseMasterKey(identity string) (*Epoch, error) {
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
	return &Epoch{id: id, rcpt: id.Recipient(), queue: q}, nil
}

// WithNumber returns a copy of e numbered n.
func (e *Epoch) WithNumber(n int) *Epoch {
	c := *e
	c.Number = n
	return &c
}

// Outdated tells the keyring e came from that a newer epoch is current
// (the fence found so): it reloads, so that the next Current is the new
// epoch.
func (e *Epoch) Outdated() {
	if e.ring != nil {
		e.ring.Reload()
	}
}

// Recipient returns the master key's public age recipient ("age1…"): how
// the database names an epoch without holding its key.
func (e *Epoch) Recipient() string { return e.rcpt.String() }

// Wrap encrypts a small long-lived secret (a contract key, a TOTP secret,
// the ledger signing key) to the master key, as an age file the stock age
// CLI opens with the master key file in a disaster.
func (e *Epoch) Wrap(secret []byte) ([]byte, error) {
	return encryptBytes(secret, e.rcpt)
}

// WrapTransient encrypts a small secret that only waits in the queue (a
// link token, a passphrase, a rendered notice) with the epoch's queue key.
func (e *Epoch) WrapTransient(secret []byte) ([]byte, error) {
	return encryptBytes(secret, e.queue)
}

// SpoolWriter returns a writer that encrypts everything written to it with
// the epoch's queue key and writes the ciphertext to dst. The caller must
// Close it to flush the last chunk; closing does not close dst. Spool
// files (queued messages and skeletons) are written only through it.
func (e *Epoch) SpoolWriter(dst io.Writer) (io.WriteCloser, error) {
	w, err := age.Encrypt(dst, e.queue)
	if err != nil {
		return nil, fmt.Errorf("failed to start spool encryption: %w", err)
	}
	return w, nil
}

// NewContractKey generates a contract KEK and returns its public recipient
// and the identity wrapped to this master key (for the database).
func (e *Epoch) NewContractKey() (recipient string, wrapped []byte, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", nil, fmt.Errorf("failed to generate contract key: %w", err)
	}
	wrapped, err = e.Wrap([]byte(id.String()))
	if err != nil {
		return "", nil, fmt.Errorf("failed to wrap contract key: %w", err)
	}
	return id.Recipient().String(), wrapped, nil
}

// Opens reports whether wrapped (from Wrap or WrapTransient of any epoch)
// opens with this epoch's key alone.
func (e *Epoch) Opens(wrapped []byte) bool {
	_, err := decryptBytes(wrapped, e.queue, e.id)
	return err == nil
}

// OpensSpool reports whether the spool file read from src was written
// with this epoch's queue key (or, for spool files of earlier versions,
// to its master key). It reads only the header.
func (e *Epoch) OpensSpool(src io.Reader) bool {
	_, err := age.Decrypt(src, e.queue, e.id)
	return err == nil
}

func (e *Epoch) identities() []age.Identity {
	// The master identity opens spools and secrets of earlier versions,
	// which were age-encrypted to it.
	return []age.Identity{e.queue, e.id}
}

// Keyring holds the master key epochs a process uses. It is safe for
// concurrent use. When something does not open with the epochs it holds,
// it reloads them (a rotation in another process may have re-wrapped the
// data to a newer key) and tries once more.
type Keyring struct {
	mu     sync.RWMutex
	epochs []*Epoch // newest (current) first
	reload func() ([]*Epoch, error)
}

// NewKeyring returns a keyring of one epoch (number 1) parsed from a
// master identity (see ParseMasterKey). Tests and tools use it; sealgate
// itself loads its keyring through package masterkey.
func NewKeyring(identity string) (*Keyring, error) {
	e, err := ParseMasterKey(identity)
	if err != nil {
		return nil, err
	}
	return NewKeyringOf([]*Epoch{e.WithNumber(1)}, nil), nil
}

// NewKeyringOf returns a keyring of epochs, newest first. reload (may be
// nil) loads them afresh, as package masterkey does.
func NewKeyringOf(epochs []*Epoch, reload func() ([]*Epoch, error)) *Keyring {
	k := &Keyring{reload: reload}
	k.epochs = k.adopt(epochs)
	return k
}

// adopt returns copies of epochs that know k.
func (k *Keyring) adopt(epochs []*Epoch) []*Epoch {
	out := make([]*Epoch, len(epochs))
	for i, e := range epochs {
		c := *e
		c.ring = k
		out[i] = &c
	}
	return out
}

// Current returns the current epoch: everything new is wrapped with it.
func (k *Keyring) Current() *Epoch {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.epochs[0]
}

// Epochs returns the epochs held, newest first.
func (k *Keyring) Epochs() []*Epoch {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return append([]*Epoch(nil), k.epochs...)
}

// Reload loads the epochs afresh (after a rotation). Without a reload
// function it does nothing.
func (k *Keyring) Reload() error {
	if k.reload == nil {
		return nil
	}
	eps, err := k.reload()
	if err != nil {
		return fmt.Errorf("failed to reload the master key: %w", err)
	}
	if len(eps) == 0 {
		return errors.New("crypto: no master key after reload")
	}
	eps = k.adopt(eps)
	k.mu.Lock()
	k.epochs = eps
	k.mu.Unlock()
	return nil
}

func (k *Keyring) identities() []age.Identity {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var ids []age.Identity
	for _, e := range k.epochs {
		ids = append(ids, e.identities()...)
	}
	return ids
}

// Unwrap decrypts what Wrap or WrapTransient of any epoch held produced.
func (k *Keyring) Unwrap(wrapped []byte) ([]byte, error) {
	if len(wrapped) == 0 {
		return nil, ErrKeyDestroyed
	}
	b, err := decryptBytes(wrapped, k.identities()...)
	if err != nil && k.noMatch(err) && k.Reload() == nil {
		b, err = decryptBytes(wrapped, k.identities()...)
	}
	return b, err
}

// noMatch reports whether err says that none of the keyring's keys fit.
func (k *Keyring) noMatch(err error) bool {
	var nm *age.NoIdentityMatchError
	return k.reload != nil && (errors.As(err, &nm) || errors.Is(err, age.ErrIncorrectIdentity))
}

// SpoolReader decrypts a spool file written through an epoch's
// SpoolWriter. src is read from its start again if the keyring had to be
// reloaded.
func (k *Keyring) SpoolReader(src io.ReadSeeker) (io.Reader, error) {
	size := remaining(src) // cuts a small spool file's buffers to it
	r, err := openAge(src, size, k.identities()...)
	if err != nil && k.noMatch(err) && k.Reload() == nil {
		if _, serr := src.Seek(0, io.SeekStart); serr == nil {
			r, err = openAge(src, size, k.identities()...)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("failed to decrypt spool file: %w", err)
	}
	return r, nil
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

// Rewrap opens wrapped (from Wrap or WrapTransient of any epoch the
// keyring holds) and wraps it again to e in the same way: what Wrap made
// with Wrap, what WrapTransient made with WrapTransient. It is how a
// rotation moves live secrets to the new master key.
func (k *Keyring) Rewrap(wrapped []byte, e *Epoch) ([]byte, error) {
	plain, err := k.Unwrap(wrapped)
	if err != nil {
		return nil, err
	}
	if isQueueSealed(wrapped) {
		return e.WrapTransient(plain)
	}
	return e.Wrap(plain)
}

// RewrapSpool decrypts the spool file src with the keyring and writes it
// to dst encrypted with e's queue key, streaming. The caller must make dst
// durable.
func (k *Keyring) RewrapSpool(dst io.Writer, src io.ReadSeeker, e *Epoch) error {
	r, err := k.SpoolReader(src)
	if err != nil {
		return err
	}
	w, err := e.SpoolWriter(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("failed to re-encrypt spool file: %w", err)
	}
	return w.Close()
}

// isQueueSealed reports whether an age file's header has a queue-key
// stanza (WrapTransient) rather than an X25519 one (Wrap).
func isQueueSealed(wrapped []byte) bool {
	head := wrapped
	if i := bytes.Index(head, []byte("\n---")); i >= 0 {
		head = head[:i]
	}
	return bytes.Contains(head, []byte("\n-> "+QueueStanzaType+" "))
}
