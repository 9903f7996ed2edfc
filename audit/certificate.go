package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/witness/cosig"
)

// Destruction certificates (削除証明書).
//
// When a contract ends, everything the gateway held under it is destroyed
// (package destroy) and a certificate says what was destroyed, how, when,
// by whom, to whom each file had been distributed and whether each
// recipient downloaded it. The certificate is a JSON document signed with
// the ledger key, and it carries the evidence: a signed checkpoint and the
// inclusion proof of every ledger event it relies on (the contract's end,
// every key destroyed, every object deleted and proven absent, every first
// download). VerifyCertificate checks it offline with only the verifier
// key: the signature, the checkpoint's signature, each proof, and that each
// claim is exactly what the proven event recorded.
//
// File layout (v1–v3: UTF-8 JSON; v4: the same JSON in two gzip members,
// see certgzip.go):
//
//	{"format": "sealgate-destruction-certificate/v1",
//	 "certificate": { ...the Certificate... },
//	 "signature": "<note>"}
//
// The note's text is four lines — certificateTitle, the ledger origin, the
// certificate id and the hex SHA-256 of the bytes of the "certificate"
// value exactly as they appear in the file — followed by the Ed25519
// signature line(s) of golang.org/x/mod/sumdb/note. Re-indenting the file
// therefore breaks the signature; it is a signed document, not data to be
// reformatted. In v4 the note's first line is certificateTitleV4 and its
// hash is of the compressed first gzip member.
//
// What a certificate cannot prove: that a recipient did not download a
// file (an absence of events, see the package doc), and anything about
// copies already downloaded, which it states plainly.

// CertificateFormat is the "format" of certificates written by this
// version. v2 adds the master key epoch, the exceptions, the conditions,
// what each deletion reached and who fetched key.age; v3 proves all the
// events with one multi-proof (Hashes, see multiproof.go) instead of one
// inclusion proof per event; v4 is the v3 document compressed, its
// signature over the compressed bytes (certgzip.go). v1, v2 and v3
// certificates still verify.
const CertificateFormat = "sealgate-destruction-certificate/v4"

// CertificateFormatV2 is the format with one inclusion proof per event
// (SignCertificate keeps it when c.Format names it).
const CertificateFormatV2 = "sealgate-destruction-certificate/v2"

// certificateFormatV1 is the format of the first version.
const certificateFormatV1 = "sealgate-destruction-certificate/v1"

const certificateTitle = "sealgate destruction certificate v1"

// CertificatePrefix is where certificates go in object storage.
const CertificatePrefix = "ledger/certificates/"

// Bilingual is a text in Japanese and English.
type Bilingual struct {
	JA string `json:"ja"`
	EN string `json:"en"`
}

// Certificate is the content of a destruction certificate.
type Certificate struct {
	Format      string       `json:"format"`
	ID          string       `json:"id"`
	Origin      string       `json:"origin"` // the ledger's checkpoint origin
	Key         string       `json:"key"`    // "<name>+<hash>" of the signing key (informative)
	IssuedAt    time.Time    `json:"issued_at"`
	Contract    CertContract `json:"contract"`
	Operator    string       `json:"operator"` // who ended the contract ("cli:alice", "system")
	Manager     string       `json:"manager"`  // the information manager responsible (情報管理責任者)
	Reason      string       `json:"reason,omitempty"`
	StartedAt   time.Time    `json:"started_at"`   // the contract.ended event: destruction began
	CompletedAt time.Time    `json:"completed_at"` // the last destruction event
	Method      CertMethod   `json:"method"`
	ContractKey CertKey      `json:"contract_key"`
	// MasterKey is the master key rotation that followed the erasure (v2),
	// nil when none was done (Exceptions then says why).
	MasterKey *CertMasterKey `json:"master_key,omitempty"`
	// Exceptions are the steps that could not be done as designed, each
	// with what was done instead (v2).
	Exceptions []CertException `json:"exceptions,omitempty"`
	Transfers  []CertTransfer  `json:"transfers"`
	Summary    CertSummary     `json:"summary"`
	Statements []Bilingual     `json:"statements"`
	// Conditions are what stays true only if people act (v2): the
	// certificate claims nothing beyond them.
	Conditions []Bilingual  `json:"conditions,omitempty"`
	Checkpoint string       `json:"checkpoint"` // signed note covering every proven event
	Proofs     []EventProof `json:"proofs"`
	// Hashes (v3) is the multi-proof of every entry of Proofs (in index
	// order) in the checkpoint's tree; v1 and v2 prove each entry in
	// EventProof.Proof instead.
	Hashes []tlog.Hash `json:"hashes,omitempty"`
}

// CertMasterKey is the rotation of the master key after the erasure: the
// contract's keys were erased under the retired epoch, whose key was then
// erased too.
type CertMasterKey struct {
	Epoch        int       `json:"epoch"`         // the epoch in use after the rotation
	RetiredEpoch int       `json:"retired_epoch"` // its predecessor, whose key was erased
	RotatedAt    time.Time `json:"rotated_at"`
	Event        int64     `json:"event"` // index of key.rotated
}

// CertException is a destruction step that could not be done as designed.
type CertException struct {
	Step   string    `json:"step"`   // "wal", "master-key", "versions"
	Result string    `json:"result"` // what was done instead, as recorded
	Text   Bilingual `json:"text"`
	Event  int64     `json:"event"` // index of destruction.noted
}

// CertContract identifies the contract.
type CertContract struct {
	Code         string     `json:"code"`
	Name         string     `json:"name,omitempty"`
	Counterparty string     `json:"counterparty,omitempty"`
	Manager      string     `json:"manager,omitempty"`
	StartsAt     *time.Time `json:"starts_at,omitempty"`
	EndsAt       *time.Time `json:"ends_at,omitempty"` // exclusive: the first instant after the term
	EndedEvent   int64      `json:"ended_event"`       // index of contract.ended
}

// CertMethod says how the data were destroyed.
type CertMethod struct {
	Steps    []Bilingual `json:"steps"`
	Storage  string      `json:"storage"`  // e.g. "s3 (bucket sealgate)"
	Database string      `json:"database"` // e.g. "SQLite, secure_delete=ON"
}

// CertKey is the contract key (KEK) and its destruction.
type CertKey struct {
	Recipient   string    `json:"recipient"` // the KEK's public age recipient
	DestroyedAt time.Time `json:"destroyed_at"`
	Event       int64     `json:"event"` // index of key.destroyed
}

// CertTransfer is one sending under the contract.
type CertTransfer struct {
	ID                 string          `json:"id"`
	Message            string          `json:"message"`
	Sender             string          `json:"sender"`
	Subject            string          `json:"subject,omitempty"`
	CreatedAt          time.Time       `json:"created_at"`
	Status             string          `json:"status"` // what ended it: revoked | expired | destroyed
	InternalRecipients []string        `json:"internal_recipients,omitempty"`
	Recipients         []CertRecipient `json:"recipients"`
	Files              []CertFile      `json:"files"`
}

// CertRecipient is an external recipient and the destruction of their
// transfer identity.
type CertRecipient struct {
	Address        string    `json:"address"`
	KeyDestroyedAt time.Time `json:"key_destroyed_at"`
	KeyEvent       int64     `json:"key_event"` // index of key.destroyed
	// KeyFileEvent is the first download of key.age by the recipient
	// (v2), nil if none: such a recipient holds their transfer identity
	// and can open a copy of file.age kept elsewhere.
	KeyFileEvent *int64 `json:"key_file_event,omitempty"`
}

// CertFile is one sealed file and the deletion of its object.
type CertFile struct {
	Name         string    `json:"name"`
	ContentType  string    `json:"content_type,omitempty"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"` // of the plaintext, recorded at receipt
	Object       string    `json:"object"`
	CipherSHA256 string    `json:"cipher_sha256,omitempty"`
	DeletedAt    time.Time `json:"deleted_at"`
	DeletedEvent int64     `json:"deleted_event"` // index of object.deleted
	AbsentAt     time.Time `json:"absent_at"`
	AbsentEvent  int64     `json:"absent_event"` // index of object.absent
	// Versions is what the deletion reached (v2; storage.Versions*):
	// "all", "unversioned", "current" or "unknown", as object.deleted
	// recorded.
	Versions  string         `json:"versions,omitempty"`
	Downloads []CertDownload `json:"downloads"` // one per recipient of the transfer
}

// CertDownload says whether a recipient downloaded a file before it was
// destroyed. A download that stopped part-way but delivered something
// usable counts (file.downloaded with result ResultPartial); when every
// download of the file by the recipient was partial, Partial is set and
// Bytes is the most plaintext any of them delivered (downloads always start
// at the beginning of the file).
type CertDownload struct {
	Recipient  string     `json:"recipient"`
	Downloaded bool       `json:"downloaded"`
	FirstAt    *time.Time `json:"first_at,omitempty"`
	Count      int        `json:"count,omitempty"`
	Event      *int64     `json:"event,omitempty"` // index of the first file.downloaded (complete or partial)
	Partial    bool       `json:"partial,omitempty"`
	Bytes      int64      `json:"bytes,omitempty"` // when Partial: plaintext bytes delivered
	// ExtentEvent is the index of the event that proves how much was
	// downloaded — the first complete download, or when Partial the
	// partial one that delivered Bytes — when it is not Event.
	ExtentEvent *int64 `json:"extent_event,omitempty"`
}

// ResultPartial is the result of a file.downloaded event for a download
// that stopped part-way after delivering something usable: its details
// "bytes" (sent) and "plaintext_bytes" (what the recipient can have from
// them) say how much.
const ResultPartial = "partial"

// PartialBytes returns the plaintext bytes a partial download event
// delivered, or 0 when ev is not one.
func PartialBytes(ev Event) int64 {
	if ev.Type != TypeFileDownloaded || ev.Result != ResultPartial {
		return 0
	}
	n, err := strconv.ParseInt(ev.Details["plaintext_bytes"], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// CertSummary counts what the certificate covers.
type CertSummary struct {
	Transfers  int   `json:"transfers"`
	Files      int   `json:"files"`
	Objects    int   `json:"objects"`
	Bytes      int64 `json:"bytes"` // plaintext
	Recipients int   `json:"recipients"`
	Keys       int   `json:"keys"` // transfer identities + the contract key
	Downloaded int   `json:"downloaded"`
}

// EventProof is the inclusion proof of one ledger entry in the tree of the
// certificate's checkpoint.
type EventProof struct {
	Index int64       `json:"index"`
	Line  string      `json:"line"`
	Proof []tlog.Hash `json:"proof,omitempty"` // v1, v2: the entry's own inclusion proof
}

// CertificateID returns the id of a certificate for code issued at t.
func CertificateID(code string, t time.Time) string {
	return code + "-" + t.UTC().Format("20060102T150405Z")
}

// ProveEvents returns the entries idxs, in index order, and their
// multi-proof in the tree of the signed checkpoint cp, read through q
// (certificates v3: Certificate.Proofs and Hashes).
func (l *Ledger) ProveEvents(ctx context.Context, q DBTX, idxs []int64, cp *SignedCheckpoint) ([]EventProof, []tlog.Hash, error) {
	out, hr, err := l.proveLines(ctx, q, idxs, cp)
	if err != nil {
		return nil, nil, err
	}
	sorted := make([]int64, len(out))
	leaves := make([]tlog.Hash, len(out))
	for i, p := range out {
		sorted[i], leaves[i] = p.Index, tlog.RecordHash([]byte(p.Line))
	}
	proof, err := proveMulti(cp.Size, sorted, hr)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to prove the entries: %w", err)
	}
	if root, err := multiRoot(cp.Size, sorted, leaves, proof); err != nil || root != cp.Root {
		return nil, nil, verr(-1, "が木と一致しません（記録が改ざんされています）", "do not match the tree: a record has been altered")
	}
	return out, proof, nil
}

// ProveEachEvent returns the inclusion proof of each of the entries idxs
// in the tree of cp, in index order: the proofs of certificates v2.
func (l *Ledger) ProveEachEvent(ctx context.Context, q DBTX, idxs []int64, cp *SignedCheckpoint) ([]EventProof, error) {
	out, hr, err := l.proveLines(ctx, q, idxs, cp)
	if err != nil {
		return nil, err
	}
	for i := range out {
		p := &out[i]
		if p.Proof, err = tlog.ProveRecord(cp.Size, p.Index, hr); err != nil {
			return nil, fmt.Errorf("failed to prove entry #%d: %w", p.Index, err)
		}
		if err := tlog.CheckRecord(p.Proof, cp.Size, cp.Root, p.Index, tlog.RecordHash([]byte(p.Line))); err != nil {
			return nil, verr(p.Index, "が改ざんされています（記録が木と一致しません）", "has been altered (the record does not match the tree)")
		}
	}
	return out, nil
}

// proveLines reads the entries idxs (sorted, without duplicates), checks
// each against the tree of cp, and returns them with a reader of every
// hash their proofs need. Hashes shared by many proofs are read once.
func (l *Ledger) proveLines(ctx context.Context, q DBTX, idxs []int64, cp *SignedCheckpoint) ([]EventProof, tlog.HashReader, error) {
	root, err := treeHash(ctx, q, cp.Size)
	if err != nil {
		return nil, nil, err
	}
	if root != cp.Root {
		return nil, nil, fmt.Errorf("%w: the stored tree of size %d no longer has the checkpoint's root", ErrInconsistent, cp.Size)
	}
	idxs = slices.Clone(idxs)
	slices.Sort(idxs)
	idxs = slices.Compact(idxs)
	lines := make(map[int64][]byte, len(idxs))
	for start := 0; start < len(idxs); start += 500 {
		chunk := idxs[start:min(start+500, len(idxs))]
		var sb strings.Builder
		for i, x := range chunk {
			if x < 0 || x >= cp.Size {
				return nil, nil, fmt.Errorf("%w: entry #%d (the checkpoint covers #0..#%d)", ErrNoCheckpoint, x, cp.Size-1)
			}
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(strconv.FormatInt(x, 10))
		}
		rows, err := q.QueryContext(ctx, `SELECT idx, data FROM ledger_records WHERE idx IN (`+sb.String()+`)`)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to read ledger records: %w", err)
		}
		for rows.Next() {
			var idx int64
			var data []byte
			if err := rows.Scan(&idx, &data); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("failed to read ledger record: %w", err)
			}
			lines[idx] = data
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("failed to read ledger records: %w", err)
		}
	}
	hr, err := prefetchProofHashes(ctx, q, cp.Size, idxs)
	if err != nil {
		return nil, nil, err
	}
	out := make([]EventProof, 0, len(idxs))
	for _, idx := range idxs {
		data, ok := lines[idx]
		if !ok {
			return nil, nil, fmt.Errorf("%w: ledger record %d", ErrNotFound, idx)
		}
		out = append(out, EventProof{Index: idx, Line: string(data)})
	}
	return out, hr, nil
}

// SignCertificate returns the certificate file: c as indented JSON, signed
// with signer (the ledger key). c.Format is set.
func SignCertificate(c *Certificate, signer note.Signer) ([]byte, error) {
	if signer == nil {
		return nil, fmt.Errorf("failed to sign certificate: %w: no signer", ErrBadKey)
	}
	if c.Format != CertificateFormatV2 && c.Format != CertificateFormatV3 { // v2: per-event proofs (ProveEachEvent); v3: uncompressed
		c.Format = CertificateFormat
	}
	if c.Key == "" {
		c.Key = keyID(signer.Name(), signer.KeyHash())
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("failed to encode certificate: %w", err)
	}
	raw := bytes.TrimRight(body.Bytes(), "\n")
	if strings.Contains(c.Origin, "\n") || strings.Contains(c.ID, "\n") {
		return nil, fmt.Errorf("failed to sign certificate: %w: origin or id spans lines", ErrMalformed)
	}
	sign := func(text string) ([]byte, error) {
		msg, err := note.Sign(&note.Note{Text: text}, signer)
		if err != nil {
			return nil, fmt.Errorf("failed to sign certificate: %w", err)
		}
		return msg, nil
	}
	if c.Format == CertificateFormat {
		return signCompressed(c, raw, sign)
	}
	sum := sha256.Sum256(raw)
	msg, err := sign(certificateText(c.Origin, c.ID, sum[:]))
	if err != nil {
		return nil, err
	}
	sig, err := json.Marshal(string(msg))
	if err != nil {
		return nil, fmt.Errorf("failed to encode certificate signature: %w", err)
	}
	var out bytes.Buffer
	out.WriteString(certHead(c.Format))
	out.Write(raw)
	out.WriteString(certSigKey)
	out.Write(sig)
	out.WriteString("\n}\n")
	return out.Bytes(), nil
}

func certificateText(origin, id string, sum []byte) string {
	return certificateTextTitled(certificateTitle, origin, id, sum)
}

func certificateTextTitled(title, origin, id string, sum []byte) string {
	return title + "\n" + origin + "\n" + id + "\n" + hex.EncodeToString(sum) + "\n"
}

// CertificateReport says what VerifyCertificate checked.
type CertificateReport struct {
	ID         string
	Contract   string
	Key        string // "<name>+<hash>" of the verifier key
	Checkpoint *SignedCheckpoint
	Transfers  int
	Files      int
	Keys       int
	Downloaded int
	Proofs     int
	Names      int // names revealed with their openings (the client's copy), each checked
	// Witnesses are the valid witness cosignatures of the checkpoint
	// (VerifyCertificateWitnessed only).
	Witnesses []cosig.Cosigned
}

type certEnvelope struct {
	Format      string          `json:"format"`
	Certificate json.RawMessage `json:"certificate"`
	Signature   string          `json:"signature"`
	// Names is in the client's copy only (CertificateWithNames): the
	// names the certificate commits to, with their openings.
	Names []Name `json:"names,omitempty"`
}

// VerifyCertificate checks a certificate file offline with only the
// verifier key vkey: the signature over its content (a certificate signed
// by another key fails with ErrWrongKey, an altered one with a
// *VerifyError), the checkpoint's signature, every inclusion proof, and
// that every claim — the contract's end, the contract key's and every
// transfer identity's destruction, every object's deletion and proven
// absence with the file's name, size and SHA-256, every first download and
// whether downloads were complete or partial (with the bytes) — is what the
// proven ledger event recorded. It returns the certificate and a
// report.
func VerifyCertificate(data []byte, vkey string) (*Certificate, *CertificateReport, error) {
	return VerifyCertificateWitnessed(data, vkey, WitnessPolicy{})
}

// VerifyCertificateWitnessed is VerifyCertificate that also requires the
// certificate's checkpoint to carry the witness cosignatures p asks for
// (a *WitnessError if it does not).
func VerifyCertificateWitnessed(data []byte, vkey string, p WitnessPolicy) (*Certificate, *CertificateReport, error) {
	kid, err := KeyID(vkey)
	if err != nil {
		return nil, nil, err
	}
	var env certEnvelope
	title, signed := certificateTitle, []byte(nil)
	if CertificateCompressed(data) {
		cz, err := openCompressed(data)
		if err != nil {
			return nil, nil, err
		}
		if cz.format != CertificateFormat {
			return nil, nil, fmt.Errorf("%w: compressed certificate format %q (this version reads %q)", ErrMalformed, cz.format, CertificateFormat)
		}
		env = certEnvelope{Format: cz.format, Certificate: cz.raw, Signature: cz.sig, Names: cz.names}
		title, signed = certificateTitleV4, cz.member1
	} else {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env); err != nil {
			return nil, nil, fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
		}
		if env.Format != CertificateFormatV3 && env.Format != CertificateFormatV2 && env.Format != certificateFormatV1 {
			return nil, nil, fmt.Errorf("%w: certificate format %q (this version reads %q, %q, %q and %q)", ErrMalformed, env.Format,
				CertificateFormat, CertificateFormatV3, CertificateFormatV2, certificateFormatV1)
		}
		signed = env.Certificate
	}
	if len(env.Certificate) == 0 || env.Signature == "" {
		return nil, nil, fmt.Errorf("%w: certificate or signature missing", ErrMalformed)
	}
	n, err := openNote([]byte(env.Signature), vkey, "certificate")
	if err != nil {
		return nil, nil, err
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 5 || lines[0] != title || lines[4] != "" {
		return nil, nil, fmt.Errorf("%w: the signature is not a sealgate certificate signature of format %s", ErrMalformed, env.Format)
	}
	sum := sha256.Sum256(signed)
	if lines[3] != hex.EncodeToString(sum[:]) {
		return nil, nil, verr(-1, "証明書の内容が署名と一致しません（改ざんされています）",
			"the certificate's content does not match its signature: it has been altered")
	}
	var c Certificate
	dec := json.NewDecoder(bytes.NewReader(env.Certificate))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, nil, fmt.Errorf("%w: certificate content: %v", ErrMalformed, err)
	}
	if c.Format != env.Format || c.Origin != lines[1] || c.ID != lines[2] {
		return nil, nil, fmt.Errorf("%w: the certificate's format, origin or id differs from what was signed", ErrMalformed)
	}
	cp, err := OpenCheckpoint([]byte(c.Checkpoint), vkey)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate checkpoint: %w", err)
	}
	if cp.Origin != c.Origin {
		return nil, nil, fmt.Errorf("%w: the checkpoint is of log %q, the certificate of %q", ErrMalformed, cp.Origin, c.Origin)
	}
	var witnessed []cosig.Cosigned
	if p.enabled() {
		if witnessed, err = CheckWitnesses([]byte(c.Checkpoint), p); err != nil {
			return nil, nil, fmt.Errorf("certificate checkpoint: %w", err)
		}
	}
	cc := &certChecker{c: &c, events: make(map[int64]Event, len(c.Proofs))}
	multi := c.Format == CertificateFormat || c.Format == CertificateFormatV3
	var idxs []int64
	var leaves []tlog.Hash
	for _, p := range c.Proofs {
		if _, dup := cc.events[p.Index]; dup {
			return nil, nil, fmt.Errorf("%w: entry #%d is proven twice", ErrMalformed, p.Index)
		}
		if p.Index < 0 || p.Index >= cp.Size {
			return nil, nil, verr(p.Index, "はチェックポイントの範囲外です", fmt.Sprintf("is not covered by the checkpoint (size %d)", cp.Size))
		}
		ev, err := ParseRecord([]byte(p.Line))
		if err != nil {
			return nil, nil, verr(p.Index, "が改ざんされています（正規形ではありません）", "has been altered (not canonical: "+err.Error()+")")
		}
		if multi {
			if len(p.Proof) > 0 {
				return nil, nil, fmt.Errorf("%w: entry #%d has its own proof in a %s certificate", ErrMalformed, p.Index, c.Format)
			}
			if len(idxs) > 0 && p.Index <= idxs[len(idxs)-1] {
				return nil, nil, fmt.Errorf("%w: entry #%d is out of index order", ErrMalformed, p.Index)
			}
			idxs, leaves = append(idxs, p.Index), append(leaves, tlog.RecordHash([]byte(p.Line)))
		} else if err := tlog.CheckRecord(p.Proof, cp.Size, cp.Root, p.Index, tlog.RecordHash([]byte(p.Line))); err != nil {
			return nil, nil, verr(p.Index, "が改ざんされています（包含証明が署名済みチェックポイントと一致しません）",
				"has been altered (its inclusion proof does not match the signed checkpoint)")
		}
		cc.events[p.Index] = ev
	}
	if multi {
		if root, err := multiRoot(cp.Size, idxs, leaves, c.Hashes); err != nil || root != cp.Root {
			return nil, nil, verr(-1, "記録のいずれかが改ざんされています（まとめた包含証明が署名済みチェックポイントと一致しません）",
				"an entry has been altered (the entries' multi-proof does not match the signed checkpoint)")
		}
	} else if len(c.Hashes) > 0 {
		return nil, nil, fmt.Errorf("%w: a %s certificate has a multi-proof", ErrMalformed, c.Format)
	}
	if err := cc.check(); err != nil {
		return nil, nil, err
	}
	// Checked after the claims, which hold the commitments.
	if err := RevealCertificate(&c, env.Names); err != nil {
		return nil, nil, err
	}
	rep := &CertificateReport{ID: c.ID, Contract: c.Contract.Code, Key: kid, Checkpoint: cp,
		Transfers: len(c.Transfers), Files: c.Summary.Files, Keys: c.Summary.Keys, Downloaded: c.Summary.Downloaded, Proofs: len(c.Proofs),
		Witnesses: witnessed, Names: len(env.Names)}
	return &c, rep, nil
}

// ParseCertificate decodes a certificate file without verifying it (to
// render or re-publish one the gateway issued; use VerifyCertificate to
// trust one). The certificate is as signed: the names of a client's copy
// are not revealed (RevealCertificate).
func ParseCertificate(data []byte) (*Certificate, error) {
	data, err := uncompressedCert(data)
	if err != nil {
		return nil, err
	}
	var env certEnvelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
	}
	var c Certificate
	if err := json.Unmarshal(env.Certificate, &c); err != nil {
		return nil, fmt.Errorf("%w: certificate content: %v", ErrMalformed, err)
	}
	return &c, nil
}

type certChecker struct {
	c      *Certificate
	events map[int64]Event
}

func claimErr(idx int64, ja, en string) error {
	return verr(idx, "と証明書の記載が一致しません: "+ja, "does not match the certificate's claim: "+en)
}

// event returns the proven event idx, which must be of type typ and of the
// certificate's contract.
func (cc *certChecker) event(idx int64, typ, what string) (Event, error) {
	ev, ok := cc.events[idx]
	if !ok {
		return Event{}, verr(idx, "の包含証明がありません（"+what+"）", "has no inclusion proof in the certificate ("+what+")")
	}
	if ev.Type != typ {
		return Event{}, claimErr(idx, "種別が "+ev.Type+" です（"+what+"）", fmt.Sprintf("it is a %s event, not %s (%s)", ev.Type, typ, what))
	}
	if ev.Contract != cc.c.Contract.Code {
		return Event{}, claimErr(idx, "契約が "+ev.Contract+" です", fmt.Sprintf("it belongs to contract %q, not %q", ev.Contract, cc.c.Contract.Code))
	}
	return ev, nil
}

func sameTime(a, b time.Time) bool {
	return a.UTC().Truncate(time.Millisecond).Equal(b.UTC().Truncate(time.Millisecond))
}

func (cc *certChecker) check() error {
	c := cc.c
	ended, err := cc.event(c.Contract.EndedEvent, TypeContractEnded, "contract end")
	if err != nil {
		return err
	}
	if !sameTime(ended.Time, c.StartedAt) {
		return claimErr(c.Contract.EndedEvent, "終了日時", "the start of destruction")
	}
	kek, err := cc.event(c.ContractKey.Event, TypeKeyDestroyed, "contract key")
	if err != nil {
		return err
	}
	if kek.Details["key"] != "contract" || kek.Details["recipient"] != c.ContractKey.Recipient || kek.Transfer != "" {
		return claimErr(c.ContractKey.Event, "契約鍵", "the contract key")
	}
	if !sameTime(kek.Time, c.ContractKey.DestroyedAt) {
		return claimErr(c.ContractKey.Event, "契約鍵の消去日時", "when the contract key was destroyed")
	}
	latest := kek.Time
	v2 := c.Format == CertificateFormat || c.Format == CertificateFormatV3
	if v2 {
		if err := cc.checkMasterKey(); err != nil {
			return err
		}
	}
	var sum CertSummary
	objects := map[string]bool{}
	sum.Transfers = len(c.Transfers)
	sum.Keys = 1
	for _, t := range c.Transfers {
		rcpts := map[string]bool{}
		for _, r := range t.Recipients {
			ev, err := cc.event(r.KeyEvent, TypeKeyDestroyed, "transfer key of "+r.Address)
			if err != nil {
				return err
			}
			if ev.Transfer != t.ID || !strings.EqualFold(ev.Recipient, r.Address) || ev.Details["key"] != "transfer" {
				return claimErr(r.KeyEvent, "受信者 "+r.Address+" の鍵", "the transfer key of "+r.Address+" in "+t.ID)
			}
			if !sameTime(ev.Time, r.KeyDestroyedAt) {
				return claimErr(r.KeyEvent, "鍵の消去日時", "when the key of "+r.Address+" was destroyed")
			}
			latest = maxTime(latest, ev.Time)
			if r.KeyFileEvent != nil {
				kf, err := cc.event(*r.KeyFileEvent, TypeFileDownloaded, "key.age of "+r.Address)
				if err != nil {
					return err
				}
				if kf.Transfer != t.ID || !strings.EqualFold(kf.Recipient, r.Address) || kf.Details["format"] != "key" {
					return claimErr(*r.KeyFileEvent, r.Address+" による key.age の取得", "the download of key.age by "+r.Address)
				}
			}
			rcpts[strings.ToLower(r.Address)] = true
			sum.Recipients++
			sum.Keys++
		}
		for _, f := range t.Files {
			if objects[f.Object] {
				return fmt.Errorf("%w: object %s is listed twice", ErrMalformed, f.Object)
			}
			objects[f.Object] = true
			del, err := cc.event(f.DeletedEvent, TypeObjectDeleted, "deletion of "+f.Object)
			if err != nil {
				return err
			}
			if del.Transfer != t.ID || del.Object != f.Object || del.File != f.Name || del.SHA256 != f.SHA256 || del.Size != f.Size {
				return claimErr(f.DeletedEvent, "ファイル "+f.Name+" の名前・サイズ・SHA-256・保管キー",
					"the name, size, SHA-256 or object key of "+f.Name)
			}
			if !sameTime(del.Time, f.DeletedAt) {
				return claimErr(f.DeletedEvent, "削除日時", "when "+f.Object+" was deleted")
			}
			if v2 && f.Versions != del.Details["versions"] {
				return claimErr(f.DeletedEvent, "削除したバージョンの範囲", "what the deletion of "+f.Object+" reached")
			}
			abs, err := cc.event(f.AbsentEvent, TypeObjectAbsent, "absence of "+f.Object)
			if err != nil {
				return err
			}
			if abs.Transfer != t.ID || abs.Object != f.Object || f.AbsentEvent < f.DeletedEvent {
				return claimErr(f.AbsentEvent, "削除確認の対象", "the absence check of "+f.Object)
			}
			if !sameTime(abs.Time, f.AbsentAt) {
				return claimErr(f.AbsentEvent, "削除確認日時", "when "+f.Object+" was proven absent")
			}
			latest = maxTime(latest, abs.Time)
			for _, d := range f.Downloads {
				if !rcpts[strings.ToLower(d.Recipient)] {
					return fmt.Errorf("%w: download record of %s, who is not a recipient of %s", ErrMalformed, d.Recipient, t.ID)
				}
				if d.Downloaded != (d.FirstAt != nil) || (d.Event != nil) != d.Downloaded {
					return fmt.Errorf("%w: download record of %s for %s is inconsistent", ErrMalformed, d.Recipient, f.Name)
				}
				if !d.Downloaded {
					continue
				}
				dl, err := cc.download(*d.Event, t.ID, d.Recipient, f)
				if err != nil {
					return err
				}
				if !sameTime(dl.Time, *d.FirstAt) {
					return claimErr(*d.Event, "ダウンロード日時", "when "+d.Recipient+" downloaded "+f.Name)
				}
				extent, ext := *d.Event, dl
				if d.ExtentEvent != nil {
					if extent = *d.ExtentEvent; extent < *d.Event {
						return fmt.Errorf("%w: download record of %s for %s proves its extent by an event before the first download", ErrMalformed, d.Recipient, f.Name)
					}
					if ext, err = cc.download(extent, t.ID, d.Recipient, f); err != nil {
						return err
					}
				}
				if d.Partial {
					if ext.Result != ResultPartial || d.Bytes <= 0 || PartialBytes(ext) != d.Bytes {
						return claimErr(extent, fmt.Sprintf("一部ダウンロード（%d バイト）", d.Bytes), fmt.Sprintf("a partial download of %d bytes", d.Bytes))
					}
				} else if ext.Result != "ok" || d.Bytes != 0 {
					return claimErr(extent, "完全なダウンロード", "a complete download")
				}
				sum.Downloaded++
			}
			sum.Files++
			sum.Bytes += f.Size
		}
	}
	sum.Objects = len(objects)
	if sum != c.Summary {
		return fmt.Errorf("%w: the summary (%+v) does not add up to the certificate's entries (%+v)", ErrMalformed, c.Summary, sum)
	}
	// Completeness: the contract.ended event counted, when the
	// destruction began, what the contract held; a certificate that lists
	// less leaves something out.
	for _, n := range []struct {
		key, ja, en string
		got         int
	}{
		{"transfers", "送付", "transfers", sum.Transfers},
		{"files", "ファイル", "files", sum.Files},
		{"recipients", "受信者", "recipients", sum.Recipients},
	} {
		v, ok := ended.Details[n.key]
		if !ok {
			continue // recorded by versions that did not count it
		}
		want, err := strconv.Atoi(v)
		if err != nil {
			return claimErr(c.Contract.EndedEvent, "件数", "its count of "+n.en)
		}
		if want != n.got {
			return verr(c.Contract.EndedEvent, fmt.Sprintf("の時点で%sは %d 件でしたが、証明書には %d 件しか記載されていません（不完全です）", n.ja, want, n.got),
				fmt.Sprintf("counted %d %s when the destruction began, but the certificate lists %d: it is incomplete", want, n.en, n.got))
		}
	}
	if c.CompletedAt.Before(latest.Truncate(time.Millisecond)) {
		return fmt.Errorf("%w: completed_at is before the last destruction event", ErrMalformed)
	}
	return nil
}

// checkMasterKey checks the rotation and the exceptions a v2 certificate
// claims: each is a proven event of the contract recorded after its end
// began, and a certificate without a rotation names why.
func (cc *certChecker) checkMasterKey() error {
	c := cc.c
	if mk := c.MasterKey; mk != nil {
		ev, err := cc.event(mk.Event, TypeKeyRotated, "master key rotation")
		if err != nil {
			return err
		}
		if mk.Event < c.Contract.EndedEvent || ev.Details["to_epoch"] != strconv.Itoa(mk.Epoch) || ev.Details["from_epoch"] != strconv.Itoa(mk.RetiredEpoch) {
			return claimErr(mk.Event, "マスター鍵の更新", "the master key rotation")
		}
		if !sameTime(ev.Time, mk.RotatedAt) {
			return claimErr(mk.Event, "マスター鍵の更新日時", "when the master key was rotated")
		}
	}
	named := false
	for _, x := range c.Exceptions {
		ev, err := cc.event(x.Event, TypeDestructionNoted, "exception "+x.Step)
		if err != nil {
			return err
		}
		if x.Event < c.Contract.EndedEvent || ev.Details["step"] != x.Step || ev.Result != x.Result {
			return claimErr(x.Event, "削除手順の例外 "+x.Step, "the exception "+x.Step)
		}
		named = named || x.Step == "master-key"
	}
	if c.MasterKey == nil && !named {
		return fmt.Errorf("%w: the certificate neither cites a master key rotation nor says why there was none", ErrMalformed)
	}
	return nil
}

// download returns the proven event idx, which must be a usable download
// (complete or partial) of f by recipient in transfer tid.
func (cc *certChecker) download(idx int64, tid, recipient string, f CertFile) (Event, error) {
	dl, err := cc.event(idx, TypeFileDownloaded, "download by "+recipient)
	if err != nil {
		return Event{}, err
	}
	usable := dl.Result == "ok" || (dl.Result == ResultPartial && PartialBytes(dl) > 0)
	if dl.Transfer != tid || !strings.EqualFold(dl.Recipient, recipient) || dl.SHA256 != f.SHA256 || !usable {
		return Event{}, claimErr(idx, recipient+" による "+f.Name+" のダウンロード", "the download of "+f.Name+" by "+recipient)
	}
	return dl, nil
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// PublishCertificate writes a certificate's JSON and HTML to the ledger's
// object store under ledger/certificates/ (locked for the ledger's
// retention when the store supports it) and returns their keys. Without a
// store it does nothing.
func (l *Ledger) PublishCertificate(ctx context.Context, id string, jsonData, html []byte) ([]string, error) {
	if l.store == nil {
		return nil, nil
	}
	var keys []string
	for _, f := range []struct {
		ext  string
		data []byte
	}{{CertificateFileExt(jsonData), jsonData}, {".html", html}} {
		key := CertificatePrefix + id + f.ext
		var err error
		if r, ok := l.store.(storage.Retainer); ok && l.retention > 0 {
			_, err = r.PutLocked(ctx, key, bytes.NewReader(f.data), l.now().Add(l.retention))
		} else {
			_, err = l.store.Put(ctx, key, bytes.NewReader(f.data))
		}
		if err != nil {
			return keys, fmt.Errorf("%w: failed to write %s: %w", ErrPublish, key, err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

//go:embed templates/certificate.html
var certTemplateFS embed.FS

type certPage struct {
	C        *Certificate
	Zone     string
	VerifyJA string
	VerifyEN string
}

// WriteCertificateHTML writes the printable certificate (Japanese with
// English), times shown in loc.
func WriteCertificateHTML(w io.Writer, c *Certificate, loc *time.Location) error {
	if loc == nil {
		loc = time.UTC
	}
	show := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.In(loc).Format("2006-01-02 15:04:05")
	}
	t, err := template.New("certificate.html").Funcs(template.FuncMap{
		"time": show,
		"ptime": func(t *time.Time) string {
			if t == nil {
				return "-"
			}
			return show(*t)
		},
		"date": func(t *time.Time) string {
			if t == nil {
				return "-"
			}
			return t.In(loc).Format("2006-01-02")
		},
		// End dates are exclusive (the first instant after the term):
		// show the last day of the term.
		"lastday": func(t *time.Time) string {
			if t == nil {
				return "-"
			}
			return t.Add(-time.Nanosecond).In(loc).Format("2006-01-02")
		},
		"size": func(n int64) string {
			return strconv.FormatInt(n, 10)
		},
		"versions": func(v string) string {
			switch v {
			case "all":
				return "全バージョン / every version"
			case "unversioned":
				return "バージョンなし / unversioned store"
			case "current":
				return "現行バージョンのみ / current version only"
			}
			return "範囲不明 / reach unknown"
		},
		"statusja": func(s string) string {
			switch s {
			case "revoked":
				return "取消し"
			case "expired":
				return "期限切れ"
			case "destroyed":
				return "契約終了による破棄"
			}
			return s
		},
	}).ParseFS(certTemplateFS, "templates/certificate.html")
	if err != nil {
		return fmt.Errorf("failed to parse certificate template: %w", err)
	}
	page := certPage{C: c, Zone: offsetLabel(loc, c.IssuedAt)}
	if err := t.Execute(w, page); err != nil {
		return fmt.Errorf("failed to render certificate: %w", err)
	}
	return nil
}

// CertificateIssuedDetails are the details of the certificate.issued event
// that anchors a certificate file in the ledger.
func CertificateIssuedDetails(id string, file []byte) map[string]string {
	sum := sha256.Sum256(file)
	return map[string]string{"certificate": id, "sha256": hex.EncodeToString(sum[:])}
}

// prefetchProofHashes reads, in a few range queries, every stored hash the
// proofs of idxs in a tree of size n need, and returns a reader serving
// them (a certificate proves tens of thousands of entries: one query per
// proof would dominate). Which hashes a proof reads depends only on the
// tree's shape, so a first pass with a reader that only records the
// indexes finds them.
func prefetchProofHashes(ctx context.Context, q DBTX, n int64, idxs []int64) (tlog.HashReader, error) {
	rec := &recordingHashReader{want: map[int64]bool{}}
	for _, idx := range idxs {
		if _, err := tlog.ProveRecord(n, idx, rec); err != nil {
			return nil, fmt.Errorf("failed to plan the proof of entry #%d: %w", idx, err)
		}
	}
	need := make([]int64, 0, len(rec.want))
	for x := range rec.want {
		need = append(need, x)
	}
	slices.Sort(need)
	hr := &cachingHashReader{ctx: ctx, q: q, max: len(need) + 1<<16, cache: make(map[int64]tlog.Hash, len(need))}
	for i := 0; i < len(need); {
		// A run of indexes with small gaps is one range query.
		j := i + 1
		for j < len(need) && need[j]-need[j-1] <= 64 && need[j]-need[i] < 1<<16 {
			j++
		}
		rows, err := q.QueryContext(ctx, `SELECT idx, hash FROM ledger_hashes WHERE idx BETWEEN ? AND ?`, need[i], need[j-1])
		if err != nil {
			return nil, fmt.Errorf("failed to read ledger hashes: %w", err)
		}
		for rows.Next() {
			var x int64
			var h []byte
			if err := rows.Scan(&x, &h); err != nil {
				rows.Close()
				return nil, fmt.Errorf("failed to read ledger hash: %w", err)
			}
			if rec.want[x] && len(h) == tlog.HashSize {
				hr.cache[x] = tlog.Hash(h)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("failed to read ledger hashes: %w", err)
		}
		i = j
	}
	return hr, nil
}

// recordingHashReader records the indexes asked for and returns zero
// hashes.
type recordingHashReader struct{ want map[int64]bool }

func (r *recordingHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	for _, x := range indexes {
		r.want[x] = true
	}
	return make([]tlog.Hash, len(indexes)), nil
}
