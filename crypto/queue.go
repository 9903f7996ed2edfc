package crypto

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// The queue key seals what the gateway writes and later reads back itself
// and then deletes: spool files (messages waiting for delivery), and link
// tokens and passphrases waiting in the outbound queue. It is derived from
// the master identity, so it is exactly as secret and no more to manage;
// being symmetric it costs no X25519 operation — public-key encryption
// buys nothing when the same process encrypts and decrypts, and it was
// most of the X25519 work of a small message. The files stay age files
// (header, STREAM payload) with a stanza of their own type. What must
// outlive the queue (contract keys, TOTP secrets) is still age-encrypted
// to the master key, which the stock age CLI opens in a disaster.

// QueueStanzaType is the age stanza type of data sealed with the queue key.
const QueueStanzaType = "sealgate-queue"

// queueKey is an age Recipient and Identity for the queue key:
// XChaCha20-Poly1305 of the file key under a random 192-bit nonce.
type queueKey struct {
	aead cipher.AEAD // safe for concurrent use
}

// QueueIdentity returns the queue key derived from a master identity (its
// age text form), as an age.Identity that opens what the gateway sealed
// with it. Tests that play an attacker holding the master key use it.
func QueueIdentity(master string) (age.Identity, error) {
	id, err := age.ParseX25519Identity(master)
	if err != nil {
		return nil, fmt.Errorf("failed to parse master key: %w", err)
	}
	return deriveQueueKey(id)
}

func deriveQueueKey(master *age.X25519Identity) (*queueKey, error) {
	k, err := hkdf.Key(sha256.New, []byte(master.String()), nil, "sealgate queue key v1", chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("failed to derive queue key: %w", err)
	}
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, fmt.Errorf("failed to derive queue key: %w", err)
	}
	return &queueKey{aead: aead}, nil
}

// Wrap implements age.Recipient.
func (q *queueKey) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	aead := q.aead
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("failed to read random nonce: %w", err)
	}
	return []*age.Stanza{{
		Type: QueueStanzaType,
		Args: []string{base64.RawStdEncoding.EncodeToString(nonce)},
		Body: aead.Seal(nil, nonce, fileKey, []byte(QueueStanzaType)),
	}}, nil
}

// Unwrap implements age.Identity.
func (q *queueKey) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	aead := q.aead
	for _, s := range stanzas {
		if s.Type != QueueStanzaType {
			continue
		}
		if len(s.Args) != 1 {
			return nil, errors.New("crypto: malformed sealgate-queue stanza")
		}
		nonce, err := base64.RawStdEncoding.Strict().DecodeString(s.Args[0])
		if err != nil || len(nonce) != aead.NonceSize() {
			return nil, errors.New("crypto: malformed sealgate-queue stanza")
		}
		fileKey, err := aead.Open(nil, nonce, s.Body, []byte(QueueStanzaType))
		if err != nil {
			// Another gateway's queue key: not ours to open.
			return nil, fmt.Errorf("sealgate-queue stanza under another key: %w", age.ErrIncorrectIdentity)
		}
		return fileKey, nil
	}
	return nil, age.ErrIncorrectIdentity
}
