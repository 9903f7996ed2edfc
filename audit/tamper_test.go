package audit

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// ---- tampering with the database ----

// tamperFixture has 40 events, a checkpoint at 40 (its event is #40) and 9
// more events: 50 entries.
func tamperFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.appendN(40, event)
	f.checkpoint()
	f.appendN(9, func(i int) Event { return event(100 + i) })
	if rep, err := f.verifyDB(VerifyOptions{}); err != nil || rep.Size != 50 {
		t.Fatal(rep, err)
	}
	return f
}

type rawRecord struct {
	timeMS   int64
	typ      string
	contract string
	data     []byte
}

func readRaw(t *testing.T, db *sql.DB, idx int64) rawRecord {
	var r rawRecord
	if err := db.QueryRow(`SELECT time_ms, type, contract, data FROM ledger_records WHERE idx = ?`, idx).
		Scan(&r.timeMS, &r.typ, &r.contract, &r.data); err != nil {
		t.Fatal(err)
	}
	return r
}

func writeRaw(t *testing.T, db *sql.DB, idx int64, r rawRecord) {
	if _, err := db.Exec(`UPDATE ledger_records SET time_ms = ?, type = ?, contract = ?, data = ? WHERE idx = ?`,
		r.timeMS, r.typ, r.contract, r.data, idx); err != nil {
		t.Fatal(err)
	}
}

// forge re-encodes a record with another actor: still canonical, so only
// the tree can tell.
func forge(t *testing.T, data []byte) []byte {
	ev, err := ParseRecord(data)
	if err != nil {
		t.Fatal(err)
	}
	ev.Actor = "mallory@example.co.jp"
	b, err := Canonical(&ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantVerifyError(t *testing.T, err error, idx int64) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("want a VerifyError naming #%d, got %v", idx, err)
	}
	if ve.Index != idx {
		t.Fatalf("want entry #%d named, got %v", idx, err)
	}
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("not ErrTampered: %v", err)
	}
	if idx >= 0 && (!strings.Contains(ve.Message(), fmt.Sprintf("記録 #%d", idx)) || !strings.Contains(ve.Message(), fmt.Sprintf("entry #%d", idx))) {
		t.Fatalf("message does not name the entry in both languages: %s", ve.Message())
	}
}

func TestVerifyDBDetectsTampering(t *testing.T) {
	t.Run("edit", func(t *testing.T) {
		f := tamperFixture(t)
		raw := f.raw(true)
		r := readRaw(t, raw, 12)
		r.data = forge(t, r.data)
		writeRaw(t, raw, 12, r)
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 12)
	})
	t.Run("edit non-canonical", func(t *testing.T) {
		f := tamperFixture(t)
		raw := f.raw(true)
		r := readRaw(t, raw, 45)
		r.data = append(r.data, ' ')
		writeRaw(t, raw, 45, r)
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 45)
	})
	t.Run("edit columns", func(t *testing.T) {
		f := tamperFixture(t)
		raw := f.raw(true)
		if _, err := raw.Exec(`UPDATE ledger_records SET contract = 'OTHER' WHERE idx = 7`); err != nil {
			t.Fatal(err)
		}
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 7)
	})
	t.Run("delete", func(t *testing.T) {
		f := tamperFixture(t)
		raw := f.raw(true)
		if _, err := raw.Exec(`DELETE FROM ledger_records WHERE idx = 17`); err != nil {
			t.Fatal(err)
		}
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 17)
	})
	t.Run("delete last", func(t *testing.T) {
		f := tamperFixture(t)
		raw := f.raw(true)
		if _, err := raw.Exec(`DELETE FROM ledger_records WHERE idx = 49`); err != nil {
			t.Fatal(err)
		}
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 49)
	})
	t.Run("delete covered tail with its hashes", func(t *testing.T) {
		f := tamperFixture(t)
		raw := f.raw(true)
		if _, err := raw.Exec(`DELETE FROM ledger_records WHERE idx >= 30`); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Exec(`DELETE FROM ledger_hashes WHERE idx >= ?`, tlog.StoredHashCount(30)); err != nil {
			t.Fatal(err)
		}
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 30) // the checkpoint at 40 covers them
	})
	t.Run("swap", func(t *testing.T) {
		f := tamperFixture(t)
		raw := f.raw(true)
		a, b := readRaw(t, raw, 3), readRaw(t, raw, 9)
		writeRaw(t, raw, 3, b)
		writeRaw(t, raw, 9, a)
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 3)
	})
	t.Run("insert shifting", func(t *testing.T) {
		f := tamperFixture(t)
		raw := f.raw(true)
		r := readRaw(t, raw, 4)
		for _, s := range []string{
			`UPDATE ledger_records SET idx = -idx - 1 WHERE idx >= 4`,
			`UPDATE ledger_records SET idx = -idx WHERE idx < 0`,
		} {
			if _, err := raw.Exec(s); err != nil {
				t.Fatal(err)
			}
		}
		r.data = forge(t, r.data)
		if _, err := raw.Exec(`INSERT INTO ledger_records(idx, time_ms, type, contract, data) VALUES (4, ?, ?, ?, ?)`,
			r.timeMS, r.typ, r.contract, r.data); err != nil {
			t.Fatal(err)
		}
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 4)
	})
	t.Run("insert at end", func(t *testing.T) {
		f := tamperFixture(t)
		raw := f.raw(true)
		r := readRaw(t, raw, 49)
		if _, err := raw.Exec(`INSERT INTO ledger_records(idx, time_ms, type, contract, data) VALUES (50, ?, ?, ?, ?)`,
			r.timeMS, r.typ, r.contract, forge(t, r.data)); err != nil {
			t.Fatal(err)
		}
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 50)
	})
	t.Run("insert past end", func(t *testing.T) {
		f := tamperFixture(t)
		raw := f.raw(true)
		r := readRaw(t, raw, 49)
		if _, err := raw.Exec(`INSERT INTO ledger_records(idx, time_ms, type, contract, data) VALUES (60, ?, ?, ?, ?)`,
			r.timeMS, r.typ, r.contract, r.data); err != nil {
			t.Fatal(err)
		}
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 60)
	})
	t.Run("stored hash edited", func(t *testing.T) {
		f := tamperFixture(t)
		raw := f.raw(true)
		if _, err := raw.Exec(`UPDATE ledger_hashes SET hash = ? WHERE idx = ?`, make([]byte, 32), tlog.StoredHashIndex(0, 21)); err != nil {
			t.Fatal(err)
		}
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 21)
	})
	t.Run("rewrite with hashes recomputed", func(t *testing.T) {
		// The DBA edits entry 45 (after the checkpoint at 40) and entry 25,
		// and recomputes every stored hash: only the signed root can tell,
		// and it names the range it covers.
		f := tamperFixture(t)
		raw := f.raw(true)
		r := readRaw(t, raw, 25)
		r.data = forge(t, r.data)
		writeRaw(t, raw, 25, r)
		rehash(t, raw)
		_, err := f.verifyDB(VerifyOptions{})
		wantVerifyError(t, err, 0) // entries #0..#39: the checkpoint at 40 fails
	})
}

// rehash recomputes ledger_hashes from ledger_records, as an attacker with
// the database would.
func rehash(t *testing.T, raw *sql.DB) {
	t.Helper()
	rows, err := raw.Query(`SELECT data FROM ledger_records ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	m := &memTree{}
	for rows.Next() {
		var d []byte
		rows.Scan(&d)
		hs, err := tlog.StoredHashes(int64(len(m.leaves)), d, m)
		if err != nil {
			t.Fatal(err)
		}
		m.hashes = append(m.hashes, hs...)
		m.leaves = append(m.leaves, tlog.RecordHash(d))
	}
	rows.Close()
	if _, err := raw.Exec(`DELETE FROM ledger_hashes`); err != nil {
		t.Fatal(err)
	}
	tx, _ := raw.Begin()
	for i, h := range m.hashes {
		if _, err := tx.Exec(`INSERT INTO ledger_hashes(idx, hash) VALUES (?, ?)`, i, h[:]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// A complete rewrite, checkpoints re-signed with the gateway's own key, is
// only caught by a checkpoint held elsewhere (package doc).
func TestVerifyDBRewriteNeedsExternalCheckpoint(t *testing.T) {
	f := tamperFixture(t)
	held, err := f.l.LatestCheckpoint(f.ctx, f.db.Read()) // e.g. in the auditor's last bundle
	if err != nil {
		t.Fatal(err)
	}
	raw := f.raw(true)
	r := readRaw(t, raw, 25)
	r.data = forge(t, r.data)
	writeRaw(t, raw, 25, r)
	rehash(t, raw)
	if _, err := raw.Exec(`DELETE FROM ledger_checkpoints`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	f.checkpoint() // re-signed over the forged history

	if _, err := f.verifyDB(VerifyOptions{}); err != nil {
		t.Fatalf("a full rewrite with the gateway key is invisible from inside (as documented), got %v", err)
	}
	_, err = f.verifyDB(VerifyOptions{Previous: held.Note})
	wantVerifyError(t, err, 0)

	// An export now cannot be proven consistent with the held checkpoint.
	var buf bytes.Buffer
	err = f.l.Export(f.ctx, f.db, ExportOptions{Format: FormatJSON, Signer: f.signer, Previous: held.Note}, &buf, nil)
	if !errors.Is(err, ErrInconsistent) {
		t.Fatalf("export with a previous checkpoint of the true history: %v", err)
	}
	// And a fresh bundle of the forged history fails against it.
	bundle := f.export(ExportOptions{})
	if _, err := VerifyBundle(bytes.NewReader(bundle), f.vkey, VerifyOptions{Previous: held.Note}, nil); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("forged history verified against the held checkpoint: %v", err)
	}
}

// ---- tampering with an exported bundle ----

type tBundle struct {
	Format     string          `json:"format"`
	Origin     string          `json:"origin"`
	Key        string          `json:"key"`
	Created    string          `json:"created"`
	Filter     bundleFilter    `json:"filter"`
	Count      int64           `json:"count"`
	Checkpoint string          `json:"checkpoint"`
	Previous   *bundlePrevious `json:"previous,omitempty"`
	Range      *bundleRange    `json:"range,omitempty"`
	Events     []tEvent        `json:"events"`
	Manifest   string          `json:"manifest"`
}

type tEvent struct {
	Index int64       `json:"index"`
	Line  string      `json:"line"`
	Hash  *tlog.Hash  `json:"hash,omitempty"`
	Proof []tlog.Hash `json:"proof,omitempty"`
}

func parseBundle(t *testing.T, b []byte) *tBundle {
	t.Helper()
	var tb tBundle
	if err := json.Unmarshal(b, &tb); err != nil {
		t.Fatal(err)
	}
	return &tb
}

func (tb *tBundle) bytes(t *testing.T) []byte {
	b, err := json.Marshal(tb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) verifyBundle(b []byte, opts VerifyOptions) (*VerifyReport, error) {
	return VerifyBundle(bytes.NewReader(b), f.vkey, opts, nil)
}

func forgeLine(t *testing.T, line string) string { return string(forge(t, []byte(line))) }

func TestVerifyBundleDetectsTampering(t *testing.T) {
	f := tamperFixture(t)
	full := f.export(ExportOptions{}) // complete: entries 0..49
	rep, err := f.verifyBundle(full, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || rep.Entries != 50 || rep.First != 0 || rep.Last != 49 || rep.Checkpoint.Size != 50 {
		t.Fatalf("report %+v", rep)
	}
	if _, err := f.verifyBundle(parseBundle(t, full).bytes(t), VerifyOptions{}); err != nil {
		t.Fatalf("re-encoded untouched bundle: %v", err)
	}

	cases := []struct {
		name string
		mut  func(tb *tBundle)
		idx  int64
	}{
		{"edit", func(tb *tBundle) { tb.Events[12].Line = forgeLine(t, tb.Events[12].Line) }, 12},
		{"edit non-canonical", func(tb *tBundle) {
			tb.Events[5].Line = strings.Replace(tb.Events[5].Line, `"v":1`, `"v": 1`, 1)
		}, 5},
		{"delete", func(tb *tBundle) { tb.Events = append(tb.Events[:17], tb.Events[18:]...) }, 17},
		{"delete first", func(tb *tBundle) { tb.Events = tb.Events[1:] }, 0},
		{"delete last", func(tb *tBundle) { tb.Events = tb.Events[:49] }, 49},
		{"swap entries", func(tb *tBundle) { tb.Events[3], tb.Events[9] = tb.Events[9], tb.Events[3] }, 3},
		{"swap lines", func(tb *tBundle) {
			tb.Events[3].Line, tb.Events[9].Line = tb.Events[9].Line, tb.Events[3].Line
		}, 3},
		{"insert", func(tb *tBundle) {
			ev := tb.Events[6]
			ev.Line = forgeLine(t, ev.Line)
			h := tlog.RecordHash([]byte(ev.Line))
			ev.Hash = &h
			tb.Events = append(tb.Events[:6], append([]tEvent{ev}, tb.Events[6:]...)...)
		}, 6},
		{"append past checkpoint", func(tb *tBundle) {
			ev := tb.Events[49]
			ev.Index = 50
			tb.Events = append(tb.Events, ev)
		}, 50},
		{"edit line and hash together", func(tb *tBundle) {
			tb.Events[12].Line = forgeLine(t, tb.Events[12].Line)
			h := tlog.RecordHash([]byte(tb.Events[12].Line))
			tb.Events[12].Hash = &h
		}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := parseBundle(t, full)
			c.mut(tb)
			_, err := f.verifyBundle(tb.bytes(t), VerifyOptions{})
			wantVerifyError(t, err, c.idx)
		})
	}
}

func TestVerifyFilteredBundleDetectsTampering(t *testing.T) {
	f := tamperFixture(t)
	acme := f.export(ExportOptions{Contract: "ACME-2026"}) // even events: not contiguous, proofs
	rep, err := f.verifyBundle(acme, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Range || rep.Contract != "ACME-2026" || rep.Entries != 25 {
		t.Fatalf("report %+v", rep)
	}
	tb0 := parseBundle(t, acme)
	if tb0.Range != nil || len(tb0.Events[3].Proof) == 0 {
		t.Fatal("expected a selection with inclusion proofs")
	}
	beta := parseBundle(t, f.export(ExportOptions{Contract: "BETA-01"}))

	cases := []struct {
		name string
		mut  func(tb *tBundle)
		idx  int64
	}{
		{"edit", func(tb *tBundle) { tb.Events[4].Line = forgeLine(t, tb.Events[4].Line) }, tb0.Events[4].Index},
		// The later of the swapped entries arrives first; the disorder shows
		// at the next entry.
		{"swap", func(tb *tBundle) { tb.Events[2], tb.Events[5] = tb.Events[5], tb.Events[2] }, tb0.Events[3].Index},
		{"swap lines", func(tb *tBundle) {
			tb.Events[2].Line, tb.Events[5].Line = tb.Events[5].Line, tb.Events[2].Line
		}, tb0.Events[2].Index},
		{"insert another contract's entry", func(tb *tBundle) {
			ev := beta.Events[3] // #7, genuine, with its genuine proof
			tb.Events = append(tb.Events[:4], append([]tEvent{ev}, tb.Events[4:]...)...)
		}, beta.Events[3].Index},
		{"insert duplicate", func(tb *tBundle) {
			tb.Events = append(tb.Events[:4], append([]tEvent{tb.Events[3]}, tb.Events[4:]...)...)
		}, tb0.Events[3].Index},
		// A dropped entry of a selection cannot be located, but the signed
		// manifest (count and digest) catches it.
		{"delete", func(tb *tBundle) { tb.Events = append(tb.Events[:8], tb.Events[9:]...) }, -1},
		{"filter widened", func(tb *tBundle) { tb.Filter.Contract = "" }, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := parseBundle(t, acme)
			c.mut(tb)
			_, err := f.verifyBundle(tb.bytes(t), VerifyOptions{})
			wantVerifyError(t, err, c.idx)
		})
	}
	t.Run("manifest removed", func(t *testing.T) {
		tb := parseBundle(t, acme)
		tb.Manifest = ""
		if _, err := f.verifyBundle(tb.bytes(t), VerifyOptions{}); !errors.Is(err, ErrMalformed) {
			t.Fatal(err)
		}
	})
}

// A contiguous range that starts after 0 and ends before the checkpoint is
// verified with a range proof.
func TestVerifyRangeBundle(t *testing.T) {
	f := newFixture(t)
	f.appendN(30, event)
	start := f.clock.Now()
	f.appendN(25, func(i int) Event { return event(i + 30) })
	end := f.clock.Now()
	f.appendN(7, event)
	b := f.export(ExportOptions{From: start, To: end})
	rep, err := f.verifyBundle(b, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Range || rep.Complete || rep.First != 30 || rep.Last != 54 || rep.Entries != 25 {
		t.Fatalf("report %+v", rep)
	}
	tb := parseBundle(t, b)
	if tb.Range == nil || len(tb.Range.Proof) == 0 {
		t.Fatal("expected a range proof")
	}
	// Truncating the range and rebuilding its proof from the dropped
	// entries' hashes still breaks the signed manifest.
	short := parseBundle(t, b)
	short.Events = short.Events[:20]
	m := &memTree{}
	err = f.l.Records(f.ctx, f.db.Read(), 0, 62, func(idx int64, data []byte) error {
		hs, err := tlog.StoredHashes(idx, data, m)
		m.hashes = append(m.hashes, hs...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := OpenCheckpoint([]byte(short.Checkpoint), f.vkey)
	short.Range.End = 50
	short.Range.Proof, err = rangeProof(cp.Size, 30, 50, m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.verifyBundle(short.bytes(t), VerifyOptions{})
	wantVerifyError(t, err, 50)
}

func TestVerifyBundleRefusesOtherKeys(t *testing.T) {
	f := newFixture(t)
	f.appendN(10, event)
	b := f.export(ExportOptions{})
	// Another gateway, even one that chose the same key name.
	for _, name := range []string{"other.example", "sealgate.test"} {
		_, vkey, err := GenerateKey(rand.Reader, name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = VerifyBundle(bytes.NewReader(b), vkey, VerifyOptions{}, nil)
		if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "sealgate.test+") {
			t.Fatalf("bundle verified with %s's key: %v", name, err)
		}
	}
	if _, err := VerifyBundle(bytes.NewReader(b), "garbage", VerifyOptions{}, nil); !errors.Is(err, ErrBadKey) {
		t.Fatalf("garbage key: %v", err)
	}
	// An altered checkpoint fails its signature.
	tb := parseBundle(t, b)
	altered := strings.Replace(tb.Checkpoint, "\n10\n", "\n9\n", 1)
	if altered == tb.Checkpoint {
		t.Fatalf("unexpected checkpoint %s", tb.Checkpoint)
	}
	tb.Checkpoint = altered
	if _, err := f.verifyBundle(tb.bytes(t), VerifyOptions{}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("altered checkpoint: %v", err)
	}
	// Not a bundle at all.
	for _, junk := range []string{"", "[]", `{"format":"x"}`, `{"format":"` + BundleFormat + `","events":[]}`} {
		if _, err := f.verifyBundle([]byte(junk), VerifyOptions{}); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%q: %v", junk, err)
		}
	}
}
