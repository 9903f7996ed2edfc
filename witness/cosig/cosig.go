// Package cosig holds the C2SP formats that a transparency-log witness
// and its clients exchange, shared by sealgate's witness (package witness),
// its client (package witness/client) and offline verification (package
// audit):
//
//   - cosignature/v1 (c2sp.org/tlog-cosignature): an Ed25519 signature by
//     a witness over "cosignature/v1\ntime <t>\n" followed by a checkpoint's
//     body, carried as a signed-note signature line whose signature is an
//     8-byte big-endian POSIX timestamp followed by the 64-byte Ed25519
//     signature. Signer and Verifier implement golang.org/x/mod/sumdb/note's
//     interfaces, so a cosigned checkpoint is an ordinary note with one more
//     signature line per witness.
//   - witness keys: verifier keys (vkeys, c2sp.org/signed-note) of signature
//     type 0x04, "<name>+<8 hex key ID>+<base64(0x04 || public key)>", with
//     the key ID SHA-256(name || "\n" || 0x04 || public key)[:4]; and the
//     secret key a witness keeps, in the same shape as a note signer key:
//     "PRIVATE+KEY+<name>+<key ID>+<base64(0x04 || Ed25519 seed)>".
//   - checkpoints (c2sp.org/tlog-checkpoint): "<origin>\n<size>\n<base64
//     root>\n" and optional extension lines.
//   - the body of a tlog-witness add-checkpoint request
//     (c2sp.org/tlog-witness): "old <size>\n", at most 63 consistency proof
//     lines, an empty line, then the signed checkpoint.
//
// What a cosignature states, in the words of the specification: as of its
// time, the consistent tree with the largest size the witness has observed
// for the log has this root. A witness cosigns only a checkpoint consistent
// with every checkpoint of that log it cosigned before.
package cosig

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Alg is the signature type byte of cosignature/v1 Ed25519 keys.
const Alg = 0x04

// sigSize is a cosignature's size after the key ID: timestamp and Ed25519
// signature.
const sigSize = 8 + ed25519.SignatureSize

// ErrKey: a witness key could not be parsed.
var ErrKey = errors.New("cosig: malformed witness key")

// ErrMalformed: a checkpoint or request could not be parsed.
var ErrMalformed = errors.New("cosig: malformed")

func validName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

func keyID(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', Alg})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// KeyName returns "<name>+<8 hex key ID>", how reports name a key.
func KeyName(name string, hash uint32) string { return fmt.Sprintf("%s+%08x", name, hash) }

// GenerateKey generates a witness key named name (a schema-less URL such
// as "witness.client.example"): skey is secret (keep it in a file only the
// witness reads), vkey is what logs and auditors are given.
func GenerateKey(rand io.Reader, name string) (skey, vkey string, err error) {
	if !validName(name) {
		return "", "", fmt.Errorf("%w: invalid name %q (no spaces, no '+')", ErrKey, name)
	}
	if rand == nil {
		return "", "", fmt.Errorf("failed to generate witness key: no randomness source")
	}
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return "", "", fmt.Errorf("failed to generate witness key: %w", err)
	}
	id := keyID(name, pub)
	skey = fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, id, base64.StdEncoding.EncodeToString(append([]byte{Alg}, priv.Seed()...)))
	vkey, err = VerifierKey(name, pub)
	return skey, vkey, err
}

// VerifierKey returns the vkey of the Ed25519 cosigner public key pub
// named name.
func VerifierKey(name string, pub ed25519.PublicKey) (string, error) {
	if !validName(name) {
		return "", fmt.Errorf("%w: invalid name %q (no spaces, no '+')", ErrKey, name)
	}
	if len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("%w: public key of %d bytes", ErrKey, len(pub))
	}
	return fmt.Sprintf("%s+%08x+%s", name, keyID(name, pub), base64.StdEncoding.EncodeToString(append([]byte{Alg}, pub...))), nil
}

// Verifier verifies cosignature/v1 signatures of one witness key. It is a
// note.Verifier.
type Verifier struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
	vkey string
}

// NewVerifier parses a witness vkey (signature type 0x04).
func NewVerifier(vkey string) (*Verifier, error) {
	vkey = strings.TrimSpace(vkey)
	name, rest, _ := strings.Cut(vkey, "+")
	hash16, key64, _ := strings.Cut(rest, "+")
	hash, err1 := strconv.ParseUint(hash16, 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(key64)
	if len(hash16) != 8 || err1 != nil || err2 != nil || !validName(name) || len(key) == 0 {
		return nil, fmt.Errorf("%w: %q is not <name>+<key ID>+<base64 key>", ErrKey, vkey)
	}
	if key[0] != Alg {
		return nil, fmt.Errorf("%w: %q has signature type 0x%02x, not 0x%02x (cosignature/v1): is it the log's key rather than a witness's?",
			ErrKey, KeyName(name, uint32(hash)), key[0], Alg)
	}
	pub := ed25519.PublicKey(key[1:])
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %q has a public key of %d bytes", ErrKey, name, len(pub))
	}
	if keyID(name, pub) != uint32(hash) {
		return nil, fmt.Errorf("%w: the key ID of %q does not match its key", ErrKey, vkey)
	}
	return &Verifier{name: name, hash: uint32(hash), pub: pub, vkey: vkey}, nil
}

// Name returns the witness's name.
func (v *Verifier) Name() string { return v.name }

// KeyHash returns the key ID.
func (v *Verifier) KeyHash() uint32 { return v.hash }

// PublicKey returns the witness's Ed25519 public key. A cosignature does
// not cover the witness's name: two vkeys with one public key are one
// witness, whatever their names.
func (v *Verifier) PublicKey() ed25519.PublicKey { return v.pub }

// ID returns "<name>+<key ID>".
func (v *Verifier) ID() string { return KeyName(v.name, v.hash) }

// String returns the vkey.
func (v *Verifier) String() string { return v.vkey }

// Verify reports whether sig (timestamp and signature, after the key ID)
// is a cosignature/v1 of the checkpoint body msg.
func (v *Verifier) Verify(msg, sig []byte) bool {
	if len(sig) != sigSize {
		return false
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	if ts > math.MaxInt64 {
		return false
	}
	return ed25519.Verify(v.pub, signedMessage(ts, msg), sig[8:])
}

func signedMessage(ts uint64, body []byte) []byte {
	m := make([]byte, 0, 40+len(body))
	m = append(m, "cosignature/v1\ntime "...)
	m = strconv.AppendUint(m, ts, 10)
	m = append(m, '\n')
	return append(m, body...)
}

// Signer makes cosignature/v1 signatures with a witness's key, timestamped
// by its clock. It is a note.Signer.
type Signer struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
	now  func() time.Time
}

// NewSigner parses a witness's secret key (GenerateKey); now stamps each
// cosignature.
func NewSigner(skey string, now func() time.Time) (*Signer, error) {
	parts := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return nil, fmt.Errorf("%w: not a witness secret key (PRIVATE+KEY+<name>+<key ID>+<key>)", ErrKey)
	}
	name, hash16, key64 := parts[2], parts[3], parts[4]
	hash, err1 := strconv.ParseUint(hash16, 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(key64)
	if len(hash16) != 8 || err1 != nil || err2 != nil || !validName(name) || len(key) != 1+ed25519.SeedSize || key[0] != Alg {
		return nil, fmt.Errorf("%w: malformed witness secret key", ErrKey)
	}
	priv := ed25519.NewKeyFromSeed(key[1:])
	if keyID(name, priv.Public().(ed25519.PublicKey)) != uint32(hash) {
		return nil, fmt.Errorf("%w: the key ID of the witness secret key does not match its key", ErrKey)
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{name: name, hash: uint32(hash), key: priv, now: now}, nil
}

// Name returns the witness's name.
func (s *Signer) Name() string { return s.name }

// KeyHash returns the key ID.
func (s *Signer) KeyHash() uint32 { return s.hash }

// VerifierKey returns the vkey of this signer.
func (s *Signer) VerifierKey() string {
	vk, _ := VerifierKey(s.name, s.key.Public().(ed25519.PublicKey))
	return vk
}

// Sign returns the cosignature of the checkpoint body msg at the signer's
// current time (whole seconds).
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	t := s.now().Unix()
	if t < 0 {
		return nil, fmt.Errorf("failed to cosign: the clock is before 1970")
	}
	out := make([]byte, 8, sigSize)
	binary.BigEndian.PutUint64(out, uint64(t))
	return append(out, ed25519.Sign(s.key, signedMessage(uint64(t), msg))...), nil
}

// Timestamp returns the time of a cosignature given as the base64 of a
// signature line (key ID, timestamp, signature).
func Timestamp(b64 string) (time.Time, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 4+sigSize {
		return time.Time{}, fmt.Errorf("%w: not a cosignature/v1 signature", ErrMalformed)
	}
	ts := binary.BigEndian.Uint64(b[4:12])
	if ts > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("%w: cosignature timestamp out of range", ErrMalformed)
	}
	return time.Unix(int64(ts), 0).UTC(), nil
}

// Line returns the signature line of sig as a note carries it ("— <name>
// <base64>\n").
func Line(sig note.Signature) string { return "— " + sig.Name + " " + sig.Base64 + "\n" }

// Checkpoint is the body of a C2SP tlog checkpoint.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// ParseCheckpoint parses a checkpoint body: origin, size (decimal, no
// leading zeros) and base64 root hash, each on a line; extension lines
// after the root are allowed (and covered by every signature).
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 || lines[0] == "" {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint body is not <origin>\\n<size>\\n<root>\\n", ErrMalformed)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint size %q", ErrMalformed, lines[1])
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint root %q", ErrMalformed, lines[2])
	}
	return Checkpoint{Origin: lines[0], Size: size, Root: root}, nil
}

// MaxProofLines is the most consistency proof lines a request may carry.
const MaxProofLines = 63

// Request is a tlog-witness add-checkpoint request.
type Request struct {
	// OldSize is the size of the checkpoint the witness last cosigned
	// for this log, as the client believes (0: none).
	OldSize int64
	// Proof is the RFC 6962 consistency proof from OldSize to the
	// checkpoint's size (empty when OldSize is 0).
	Proof tlog.TreeProof
	// Checkpoint is the signed checkpoint note.
	Checkpoint []byte
}

// Marshal returns the request body.
func (r *Request) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString("old " + strconv.FormatInt(r.OldSize, 10) + "\n")
	for _, h := range r.Proof {
		b.WriteString(h.String() + "\n")
	}
	b.WriteByte('\n')
	b.Write(r.Checkpoint)
	return b.Bytes()
}

// ParseRequest parses an add-checkpoint request body. The checkpoint is
// returned as given (its signatures are not checked).
func ParseRequest(body []byte) (*Request, error) {
	head, cp, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("%w: request has no empty line before the checkpoint", ErrMalformed)
	}
	lines := strings.Split(string(head), "\n")
	size, ok := strings.CutPrefix(lines[0], "old ")
	if !ok {
		return nil, fmt.Errorf("%w: request does not start with \"old <size>\"", ErrMalformed)
	}
	old, err := strconv.ParseInt(size, 10, 64)
	if err != nil || old < 0 || strconv.FormatInt(old, 10) != size {
		return nil, fmt.Errorf("%w: old size %q", ErrMalformed, size)
	}
	if len(lines)-1 > MaxProofLines {
		return nil, fmt.Errorf("%w: more than %d consistency proof lines", ErrMalformed, MaxProofLines)
	}
	r := &Request{OldSize: old, Checkpoint: cp}
	for _, l := range lines[1:] {
		h, err := tlog.ParseHash(l)
		if err != nil {
			return nil, fmt.Errorf("%w: consistency proof line %q", ErrMalformed, l)
		}
		r.Proof = append(r.Proof, h)
	}
	return r, nil
}

// Cosigned is one verified cosignature of a checkpoint.
type Cosigned struct {
	Witness string    // "<name>+<key ID>" of the witness key
	Name    string    // the witness's name
	Time    time.Time // when the witness cosigned (its clock)
	Line    string    // the signature line, "— <name> <base64>\n"
}

// Open verifies the cosignatures in the note msg by the witness keys in
// ws and returns them (one per key that cosigned, in the order of the
// note). Signature lines by other keys (the log's own, unknown witnesses)
// are ignored. A cosignature that claims one of ws but does not verify is
// an error: the checkpoint was altered after that witness cosigned it.
// Witnesses whose keys have not signed are simply absent from the result.
func Open(msg []byte, ws []*Verifier) ([]Cosigned, error) {
	vs := make([]note.Verifier, len(ws))
	for i, w := range ws {
		vs[i] = w
	}
	n, err := note.Open(msg, note.VerifierList(vs...))
	var unv *note.UnverifiedNoteError
	if errors.As(err, &unv) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]Cosigned, 0, len(n.Sigs))
	for _, s := range n.Sigs {
		t, err := Timestamp(s.Base64)
		if err != nil {
			return nil, err
		}
		out = append(out, Cosigned{Witness: KeyName(s.Name, s.Hash), Name: s.Name, Time: t, Line: Line(s)})
	}
	return out, nil
}
