package audit

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/database"
)

// certFixture appends the events of a small destruction (with noise from
// another contract in between) and returns a matching certificate.
func certFixture(t *testing.T) (*fixture, *Certificate) {
	t.Helper()
	return certFixtureWith(t, false)
}

// certFixtureWith is certFixture; with partial, dave also downloaded the
// file twice part-way (500, then 900 bytes of plaintext) before the end.
func certFixtureWith(t *testing.T, partial bool) (*fixture, *Certificate) {
	t.Helper()
	return certFixtureOn(t, newFixture(t), partial)
}

// certFixtureOn appends certFixtureWith's events to f's ledger.
func certFixtureOn(t *testing.T, f *fixture, partial bool) (*fixture, *Certificate) {
	t.Helper()
	idx := map[string]int64{}
	add := func(name string, ev Event) {
		t.Helper()
		err := f.db.Write(f.ctx, func(tx *database.Tx) error {
			n, err := f.l.Append(f.ctx, tx, ev)
			idx[name] = n
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// noise: another contract's events interleave
		if err := f.db.Write(f.ctx, func(tx *database.Tx) error {
			_, err := f.l.Append(f.ctx, tx, Event{Type: TypePageViewed, Actor: "recipient:x@other.example", Contract: "OTHER"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	const code, tid, obj, sha = "C-2026-001", "tabc", "objects/tabc/0.age", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	add("sealed", Event{Type: TypeFileSealed, Actor: "system", Contract: code, Transfer: tid, File: "見積書.pdf", SHA256: sha, Size: 1234, Object: obj})
	add("dl", Event{Type: TypeFileDownloaded, Actor: "recipient:carol@client.example", Contract: code, Transfer: tid,
		Recipient: "carol@client.example", File: "見積書.pdf", SHA256: sha, Size: 1234, Result: "ok", Details: map[string]string{"format": "plain"}})
	if partial {
		add("pdl1", Event{Type: TypeFileDownloaded, Actor: "recipient:dave@client.example", Contract: code, Transfer: tid,
			Recipient: "dave@client.example", File: "見積書.pdf", SHA256: sha, Size: 1234, Result: ResultPartial, Reason: "the connection ended before the end of the file",
			Details: map[string]string{"format": "plain", "bytes": "500", "plaintext_bytes": "500"}})
		add("pdl2", Event{Type: TypeFileDownloaded, Actor: "recipient:dave@client.example", Contract: code, Transfer: tid,
			Recipient: "dave@client.example", File: "見積書.pdf", SHA256: sha, Size: 1234, Result: ResultPartial, Reason: "the connection ended before the end of the file",
			Details: map[string]string{"format": "age", "bytes": "1000", "plaintext_bytes": "900"}})
	}
	add("ended", Event{Type: TypeContractEnded, Actor: "cli:alice", Contract: code, Reason: "project finished",
		Details: map[string]string{"transfers": "1", "files": "1", "recipients": "2"}})
	add("key1", Event{Type: TypeKeyDestroyed, Actor: "cli:alice", Contract: code, Transfer: tid, Recipient: "carol@client.example",
		Details: map[string]string{"key": "transfer"}})
	add("key2", Event{Type: TypeKeyDestroyed, Actor: "cli:alice", Contract: code, Transfer: tid, Recipient: "dave@client.example",
		Details: map[string]string{"key": "transfer"}})
	add("kek", Event{Type: TypeKeyDestroyed, Actor: "cli:alice", Contract: code, Details: map[string]string{"key": "contract", "recipient": "age1kek"}})
	add("del", Event{Type: TypeObjectDeleted, Actor: "cli:alice", Contract: code, Transfer: tid, File: "見積書.pdf", SHA256: sha, Size: 1234, Object: obj,
		Details: map[string]string{"versions": "all"}})
	add("abs", Event{Type: TypeObjectAbsent, Actor: "cli:alice", Contract: code, Transfer: tid, File: "見積書.pdf", Object: obj, Result: "absent"})
	add("wal", Event{Type: TypeDestructionNoted, Actor: "cli:alice", Contract: code, Result: "not truncated", Details: map[string]string{"step": "wal"}})
	add("rotated", Event{Type: TypeKeyRotated, Actor: "cli:alice", Contract: code, Reason: "contract C-2026-001 ended",
		Details: map[string]string{"from_epoch": "1", "to_epoch": "2"}})
	cp := f.checkpoint()
	read := func(name string) Event {
		data, err := f.l.Record(f.ctx, f.db.Read(), idx[name])
		if err != nil {
			t.Fatal(err)
		}
		ev, err := ParseRecord(data)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	dlAt := read("dl").Time
	dlIdx := idx["dl"]
	c := &Certificate{
		ID: CertificateID(code, read("abs").Time), Origin: testOrigin, IssuedAt: read("abs").Time.Add(time.Second),
		Contract: CertContract{Code: code, Name: "見積支援業務", Counterparty: "Client KK", EndedEvent: idx["ended"]},
		Operator: "cli:alice", Manager: "manager@corp.example",
		StartedAt: read("ended").Time, CompletedAt: read("abs").Time,
		Method:      CertMethod{Steps: []Bilingual{{JA: "鍵の消去", EN: "keys erased"}}, Storage: "fs", Database: "SQLite"},
		ContractKey: CertKey{Recipient: "age1kek", DestroyedAt: read("kek").Time, Event: idx["kek"]},
		Transfers: []CertTransfer{{
			ID: tid, Message: "mabc", Sender: "alice@corp.example", CreatedAt: read("sealed").Time, Status: "destroyed",
			Recipients: []CertRecipient{
				{Address: "carol@client.example", KeyDestroyedAt: read("key1").Time, KeyEvent: idx["key1"]},
				{Address: "dave@client.example", KeyDestroyedAt: read("key2").Time, KeyEvent: idx["key2"]},
			},
			Files: []CertFile{{
				Name: "見積書.pdf", Size: 1234, SHA256: sha, Object: obj,
				DeletedAt: read("del").Time, DeletedEvent: idx["del"], AbsentAt: read("abs").Time, AbsentEvent: idx["abs"], Versions: "all",
				Downloads: []CertDownload{
					{Recipient: "carol@client.example", Downloaded: true, FirstAt: &dlAt, Count: 1, Event: &dlIdx},
					{Recipient: "dave@client.example"},
				},
			}},
		}},
		MasterKey:  &CertMasterKey{Epoch: 2, RetiredEpoch: 1, RotatedAt: read("rotated").Time, Event: idx["rotated"]},
		Exceptions: []CertException{{Step: "wal", Result: "not truncated", Text: Bilingual{JA: "WAL", EN: "WAL"}, Event: idx["wal"]}},
		Summary:    CertSummary{Transfers: 1, Files: 1, Objects: 1, Bytes: 1234, Recipients: 2, Keys: 3, Downloaded: 1},
		Statements: []Bilingual{{JA: "ダウンロード済みの複製は対象外", EN: "downloaded copies are not covered"}},
		Checkpoint: string(cp.Note),
	}
	prove := []int64{idx["ended"], idx["kek"], idx["key1"], idx["key2"], idx["del"], idx["abs"], idx["dl"], idx["wal"], idx["rotated"]}
	if partial {
		at, first, extent := read("pdl1").Time, idx["pdl1"], idx["pdl2"]
		c.Transfers[0].Files[0].Downloads[1] = CertDownload{Recipient: "dave@client.example", Downloaded: true, FirstAt: &at, Count: 2, Event: &first,
			Partial: true, Bytes: 900, ExtentEvent: &extent}
		c.Summary.Downloaded = 2
		prove = append(prove, first, extent)
	}
	var err error
	c.Proofs, c.Hashes, err = f.l.ProveEvents(f.ctx, f.db.Read(), prove, cp)
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func TestCertificateRoundTrip(t *testing.T) {
	f, c := certFixture(t)
	data, err := SignCertificate(c, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	got, rep, err := VerifyCertificate(data, f.vkey)
	if err != nil {
		t.Fatalf("a genuine certificate does not verify: %v", err)
	}
	if rep.Files != 1 || rep.Keys != 3 || rep.Downloaded != 1 || rep.Proofs != 9 || got.Contract.Code != "C-2026-001" {
		t.Fatalf("report %+v", rep)
	}
	var html bytes.Buffer
	if err := WriteCertificateHTML(&html, got, time.FixedZone("JST", 9*3600)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"削除証明書", "Certificate of destruction", "見積書.pdf", "ダウンロード済み", "未ダウンロード", "manager@corp.example",
		"cli:alice", c.Transfers[0].Files[0].SHA256, "verify-certificate"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if _, err := ParseCertificate(data); err != nil {
		t.Fatal(err)
	}
}

// TestCertificateTampered edits a v3 (uncompressed) certificate; v4 files
// are changed byte by byte in TestCertificateV4Bytes.
func TestCertificateTampered(t *testing.T) {
	f, c := certFixture(t)
	c.Format = CertificateFormatV3
	data, err := SignCertificate(c, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	var ve *VerifyError

	// Any change to the signed content breaks the signature.
	for _, edit := range []struct{ from, to string }{
		{`"name": "見積書.pdf"`, `"name": "見積書2.pdf"`},
		{`"downloaded": true`, `"downloaded": false`},
		{`"operator": "cli:alice"`, `"operator": "cli:bob"`},
	} {
		bad := bytes.Replace(data, []byte(edit.from), []byte(edit.to), 1)
		if bytes.Equal(bad, data) {
			t.Fatalf("edit %q not applied", edit.from)
		}
		if _, _, err := VerifyCertificate(bad, f.vkey); !errors.As(err, &ve) || !errors.Is(err, ErrTampered) {
			t.Errorf("edited %q: got %v, want a tampering error", edit.from, err)
		}
	}
	// Another gateway's key.
	_, otherV, _ := GenerateKey(rand.Reader, "other.test")
	if _, _, err := VerifyCertificate(data, otherV); !errors.Is(err, ErrWrongKey) {
		t.Errorf("other key: got %v, want ErrWrongKey", err)
	}
	// A forged signature line.
	bad := bytes.Replace(data, []byte(`\n— sealgate.test `), []byte(`\n— sealgate.test AAAA`), 1)
	if _, _, err := VerifyCertificate(bad, f.vkey); err == nil {
		t.Error("a certificate with a mangled signature verifies")
	}
}

// TestCertificateClaims: even signed with the right key, a certificate
// whose claims differ from the proven events does not verify.
func TestCertificateClaims(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *Certificate)
		is   error
	}{
		{"file hash", func(c *Certificate) { c.Transfers[0].Files[0].SHA256 = strings.Repeat("0", 64) }, ErrTampered},
		{"file size", func(c *Certificate) { c.Transfers[0].Files[0].Size = 99; c.Summary.Bytes = 99 }, ErrTampered},
		{"deleted time", func(c *Certificate) {
			c.Transfers[0].Files[0].DeletedAt = c.Transfers[0].Files[0].DeletedAt.Add(time.Hour)
		}, ErrTampered},
		{"absence event", func(c *Certificate) { c.Transfers[0].Files[0].AbsentEvent = c.Transfers[0].Files[0].DeletedEvent }, ErrTampered},
		{"key of another recipient", func(c *Certificate) {
			r := c.Transfers[0].Recipients
			r[0].KeyEvent, r[1].KeyEvent = r[1].KeyEvent, r[0].KeyEvent
		}, ErrTampered},
		{"download time", func(c *Certificate) {
			t := c.Transfers[0].Files[0].Downloads[0].FirstAt.Add(-time.Hour)
			c.Transfers[0].Files[0].Downloads[0].FirstAt = &t
		}, ErrTampered},
		{"contract", func(c *Certificate) { c.Contract.Code = "C-2026-002" }, ErrTampered},
		{"summary", func(c *Certificate) { c.Summary.Files = 5 }, ErrMalformed},
		{"unproven event", func(c *Certificate) { c.Proofs = c.Proofs[:len(c.Proofs)-1] }, ErrTampered},
		{"multi-proof hash", func(c *Certificate) { c.Hashes[len(c.Hashes)-1][0] ^= 1 }, ErrTampered},
		{"multi-proof cut", func(c *Certificate) { c.Hashes = c.Hashes[1:] }, ErrTampered},
		{"entries out of order", func(c *Certificate) { c.Proofs[0], c.Proofs[1] = c.Proofs[1], c.Proofs[0] }, ErrMalformed},
		{"per-event proof in v3", func(c *Certificate) { c.Proofs[0].Proof = c.Hashes }, ErrMalformed},
		{"altered proof line", func(c *Certificate) {
			c.Proofs[0].Line = strings.Replace(c.Proofs[0].Line, `"actor":"`, `"actor":"x`, 1)
		}, ErrTampered},
		{"checkpoint", func(c *Certificate) {
			lines := strings.SplitN(c.Checkpoint, "\n", 3)
			lines[1] += "0" // another tree size
			c.Checkpoint = strings.Join(lines, "\n")
		}, ErrBadSignature},
		// Completeness: the contract.ended event counted one transfer, one
		// file and two recipients.
		{"transfer removed", func(c *Certificate) { c.Transfers = nil; c.Summary = CertSummary{Keys: 1} }, ErrTampered},
		{"recipient removed", func(c *Certificate) {
			tr := &c.Transfers[0]
			tr.Recipients = tr.Recipients[:1]
			tr.Files[0].Downloads = tr.Files[0].Downloads[:1]
			c.Summary.Recipients, c.Summary.Keys = 1, 2
		}, ErrTampered},
		{"file removed", func(c *Certificate) {
			c.Transfers[0].Files = nil
			c.Summary.Files, c.Summary.Objects, c.Summary.Bytes, c.Summary.Downloaded = 0, 0, 0, 0
		}, ErrTampered},
		{"rotation epoch", func(c *Certificate) { c.MasterKey.Epoch = 3 }, ErrTampered},
		{"rotation not cited, no reason", func(c *Certificate) { c.MasterKey = nil }, ErrMalformed},
		{"exception result", func(c *Certificate) { c.Exceptions[0].Result = "truncated" }, ErrTampered},
		{"versions", func(c *Certificate) { c.Transfers[0].Files[0].Versions = "unversioned" }, ErrTampered},
		{"key file event of another kind", func(c *Certificate) {
			x := c.Transfers[0].Files[0].DeletedEvent
			c.Transfers[0].Recipients[0].KeyFileEvent = &x
		}, ErrTampered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := certFixture(t)
			tc.edit(c)
			data, err := SignCertificate(c, f.signer)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := VerifyCertificate(data, f.vkey); !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
		})
	}
}

// TestCertificatePartialDownload: a certificate says "downloaded (partial,
// N bytes)" — in the printable HTML in Japanese and English — only as the
// proven events record it: the bytes, the partial flag and the event that
// proves the extent are all checked.
func TestCertificatePartialDownload(t *testing.T) {
	f, c := certFixtureWith(t, true)
	data, err := SignCertificate(c, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	got, rep, err := VerifyCertificate(data, f.vkey)
	if err != nil {
		t.Fatalf("a genuine certificate with a partial download does not verify: %v", err)
	}
	if rep.Downloaded != 2 || rep.Proofs != 11 {
		t.Fatalf("report %+v", rep)
	}
	var html bytes.Buffer
	if err := WriteCertificateHTML(&html, got, time.UTC); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ダウンロード済み（一部、900 バイト）", "downloaded (partial, 900 bytes)"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Count(html.String(), "partial") != 1 {
		t.Errorf("HTML calls the complete download partial too")
	}
	dave := func(c *Certificate) *CertDownload { return &c.Transfers[0].Files[0].Downloads[1] }
	carol := func(c *Certificate) *CertDownload { return &c.Transfers[0].Files[0].Downloads[0] }
	for _, tc := range []struct {
		name string
		edit func(c *Certificate)
		is   error
	}{
		{"more bytes", func(c *Certificate) { dave(c).Bytes = 901 }, ErrTampered},
		{"fewer bytes", func(c *Certificate) { dave(c).Bytes = 500 }, ErrTampered},
		{"the smaller partial as extent", func(c *Certificate) { dave(c).ExtentEvent = nil }, ErrTampered},
		{"partial claimed complete", func(c *Certificate) { dave(c).Partial, dave(c).Bytes = false, 0 }, ErrTampered},
		{"complete claimed partial", func(c *Certificate) { carol(c).Partial, carol(c).Bytes = true, 1234 }, ErrTampered},
		{"another recipient's download as extent", func(c *Certificate) { carol(c).ExtentEvent = dave(c).ExtentEvent }, ErrTampered},
		{"extent before the first download", func(c *Certificate) {
			// The larger partial claimed first, the smaller as extent.
			first, ext := *dave(c).Event, *dave(c).ExtentEvent
			for _, p := range c.Proofs {
				if p.Index == ext {
					ev, _ := ParseRecord([]byte(p.Line))
					dave(c).FirstAt = &ev.Time
				}
			}
			dave(c).Event, dave(c).ExtentEvent = &ext, &first
		}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := certFixtureWith(t, true)
			tc.edit(c)
			data, err := SignCertificate(c, f.signer)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := VerifyCertificate(data, f.vkey); !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
		})
	}
}
