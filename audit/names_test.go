package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/database"
)

// namedEvents appends, for contract ACME and for BETA, events that carry
// every kind of name, and one event without a contract.
func namedEvents(t *testing.T, f *fixture) {
	t.Helper()
	err := f.db.Write(f.ctx, func(tx *database.Tx) error {
		for _, c := range []string{"ACME", "BETA"} {
			lc := strings.ToLower(c)
			for _, ev := range []Event{
				{Type: TypeMessageReceived, Actor: "smtp:192.0.2.1", Contract: c, Message: "m-" + lc,
					Details: map[string]string{"subject": "買収提案 " + c, "from": "alice@corp.example", "size": "10"}},
				{Type: TypeFileSealed, Actor: "system", Contract: c, Transfer: "t-" + lc, File: "買収提案_" + c + ".pdf",
					Size: 10, SHA256: strings.Repeat("0", 64)},
				{Type: TypeNoticeDelivered, Actor: "system", Contract: c, Transfer: "t-" + lc, Recipient: "ceo@" + lc + ".example"},
				{Type: TypeFileDownloaded, Actor: "recipient:ceo@" + lc + ".example", Contract: c, Transfer: "t-" + lc,
					Recipient: "ceo@" + lc + ".example", File: "買収提案_" + c + ".pdf", Result: "ok"},
			} {
				if _, err := f.l.Append(f.ctx, tx, ev); err != nil {
					return err
				}
			}
		}
		_, err := f.l.Append(f.ctx, tx, Event{Type: TypeLogin, Actor: "carol", RemoteIP: "192.0.2.9"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func rawRecords(t *testing.T, f *fixture) []byte {
	t.Helper()
	rows, err := f.db.Read().QueryContext(f.ctx, `SELECT data FROM ledger_records ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var all []byte
	for rows.Next() {
		var d []byte
		rows.Scan(&d)
		all = append(append(all, d...), '\n')
	}
	return all
}

var acmeNames = []string{"買収提案 ACME", "買収提案_ACME.pdf", "ceo@acme.example"}

// TestNamesCommittedRevealedDestroyed: a contract's records hold its names
// only as commitments; searches and exports show them while the ledger
// keeps them; after DestroyNames the exports show "destroyed", no longer
// hold them, and every export and the database still verify.
func TestNamesCommittedRevealedDestroyed(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Names = true })
	namedEvents(t, f)
	raw := rawRecords(t, f)
	for _, n := range append(acmeNames, "alice@corp.example") {
		if bytes.Contains(raw, []byte(n)) {
			t.Errorf("a record holds %q in clear", n)
		}
	}
	if !bytes.Contains(raw, []byte(`{"v":2,`)) || !bytes.Contains(raw, []byte(`"actor":"carol"`)) {
		t.Fatalf("records:\n%s", raw)
	}

	// Before: shown everywhere.
	found, err := Search(f.ctx, f.db.Read(), Query{Recipient: "ceo@acme.example"})
	if err != nil || len(found) != 2 {
		t.Fatalf("search by recipient: %d found, %v", len(found), err)
	}
	for _, x := range found {
		if x.Event.Recipient != "ceo@acme.example" || x.Event.Contract != "ACME" {
			t.Fatalf("search shows %+v", x.Event)
		}
	}
	csv := f.export(ExportOptions{Format: FormatCSV})
	for _, n := range append(acmeNames, "買収提案_BETA.pdf", "recipient:ceo@acme.example", "subject=買収提案 ACME") {
		if !bytes.Contains(csv, []byte(n)) {
			t.Errorf("CSV export lacks %q", n)
		}
	}
	bundle := f.export(ExportOptions{Contract: "ACME"})
	for _, n := range acmeNames {
		if !bytes.Contains(bundle, []byte(strings.TrimSpace(mustJSON(n)))) {
			t.Errorf("JSON export lacks %q", n)
		}
	}
	rep, err := VerifyBundle(bytes.NewReader(bundle), f.vkey, VerifyOptions{}, nil)
	if err != nil || rep.Names != 4 { // subject, from, file, address
		t.Fatalf("bundle: %v, %+v", err, rep)
	}
	// A name whose opening does not match its commitment is refused.
	forged := bytes.Replace(bundle, []byte(mustJSON("買収提案_ACME.pdf")), []byte(mustJSON("別の名前.pdf")), 1)
	if _, err := VerifyBundle(bytes.NewReader(forged), f.vkey, VerifyOptions{}, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a forged name: %v", err)
	}

	// Destroyed.
	var n int
	err = f.db.Write(f.ctx, func(tx *database.Tx) error {
		n, err = DestroyNames(f.ctx, tx, "ACME", f.clock.Now())
		return err
	})
	if err != nil || n != 4 {
		t.Fatalf("DestroyNames: %d, %v", n, err)
	}
	if ns, err := ContractNames(f.ctx, f.db.Read(), "ACME"); err != nil || len(ns) != 0 {
		t.Fatalf("names left: %v, %v", ns, err)
	}
	// A late event of the ended contract keeps no name either.
	err = f.db.Write(f.ctx, func(tx *database.Tx) error {
		_, err := f.l.Append(f.ctx, tx, Event{Type: TypeFileDownloaded, Actor: "recipient:late@acme.example", Contract: "ACME",
			Transfer: "t-acme", Recipient: "late@acme.example", Result: "refused"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if ns, _ := ContractNames(f.ctx, f.db.Read(), "ACME"); len(ns) != 0 {
		t.Fatalf("a late event kept %v", ns)
	}
	for _, format := range []Format{FormatCSV, FormatHTML, FormatJSON} {
		out := f.export(ExportOptions{Format: format})
		for _, n := range append(acmeNames, "late@acme.example") {
			if bytes.Contains(out, []byte(n)) {
				t.Errorf("%s export after destruction holds %q", format, n)
			}
		}
		if format != FormatJSON && (!bytes.Contains(out, []byte(DestroyedName)) || !bytes.Contains(out, []byte("買収提案_BETA.pdf"))) {
			t.Errorf("%s export after destruction: destroyed names not marked, or BETA's gone", format)
		}
		if format == FormatJSON {
			rep, err := VerifyBundle(bytes.NewReader(out), f.vkey, VerifyOptions{}, nil)
			if err != nil || !rep.Complete || rep.Names != 4 { // BETA's
				t.Fatalf("bundle after destruction: %v, %+v", err, rep)
			}
		}
	}
	found, err = Search(f.ctx, f.db.Read(), Query{Contract: "ACME", Types: []string{TypeFileSealed}})
	if err != nil || len(found) != 1 || found[0].Event.File != DestroyedName {
		t.Fatalf("search after destruction: %+v, %v", found, err)
	}
	if _, err := f.verifyDB(VerifyOptions{}); err != nil {
		t.Fatalf("verify-db after destruction: %v", err)
	}
}

// TestNamesOffWritesV1: a ledger without Options.Names records names in
// clear (format v1), as before.
func TestNamesOffWritesV1(t *testing.T) {
	f := newFixture(t)
	namedEvents(t, f)
	raw := rawRecords(t, f)
	if bytes.Contains(raw, []byte(`{"v":2,`)) || !bytes.Contains(raw, []byte("買収提案_ACME.pdf")) {
		t.Fatalf("records:\n%s", raw)
	}
}

// TestNameCheck: an opening binds one value to one commitment.
func TestNameCheck(t *testing.T) {
	op := bytes.Repeat([]byte{7}, openingSize)
	n := Name{Commitment: CommitName(op, "a.pdf"), Value: "a.pdf", Opening: op}
	if !n.Check() {
		t.Fatal("a true name fails")
	}
	for _, bad := range []Name{
		{Commitment: n.Commitment, Value: "b.pdf", Opening: op},
		{Commitment: n.Commitment, Value: "a.pdf", Opening: bytes.Repeat([]byte{8}, openingSize)},
		{Commitment: n.Commitment, Value: "a.pdf", Opening: op[:16]},
	} {
		if bad.Check() {
			t.Fatalf("accepted %+v", bad)
		}
	}
	// v2 records must hold commitments where names are.
	ev := Event{V: SchemaVersion, Time: time.Now(), Type: TypeFileSealed, Actor: "system", Contract: "C", File: "a.pdf"}
	if _, err := Canonical(&ev); !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("a v2 record with a clear name: %v", err)
	}
	ev.File = n.Commitment
	if _, err := Canonical(&ev); err != nil {
		t.Fatal(err)
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ShownName shows a commitment (a name destroyed at contract end) as
// destroyed and any other name as it is.
func TestShownName(t *testing.T) {
	c := CommitName(make([]byte, openingSize), "買収提案_A社.pdf")
	for in, want := range map[string]string{c: DestroyedName, "買収提案_A社.pdf": "買収提案_A社.pdf", "carol@client.example": "carol@client.example", "": ""} {
		if got := ShownName(in); got != want {
			t.Errorf("ShownName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestNamesDestroyedInTheTransaction: names destroyed in the transaction
// that appended events of the contract are not used by its next appends
// (the transaction's name cache ends at DestroyNames): a late event names
// a known value with a fresh commitment and keeps no name.
func TestNamesDestroyedInTheTransaction(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Names = true })
	ev := Event{Type: TypeNoticeDelivered, Actor: "system", Contract: "ACME", Transfer: "t-acme", Recipient: "ceo@acme.example"}
	var first, late string
	err := f.db.Write(f.ctx, func(tx *database.Tx) error {
		if _, err := f.l.Append(f.ctx, tx, ev); err != nil {
			return err
		}
		if _, err := DestroyNames(f.ctx, tx, "ACME", f.clock.Now()); err != nil {
			return err
		}
		_, err := f.l.Append(f.ctx, tx, ev)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	found, err := Search(f.ctx, f.db.Read(), Query{Contract: "ACME"})
	if err != nil || len(found) != 2 {
		t.Fatalf("search: %d found, %v", len(found), err)
	}
	rows, err := f.db.Read().QueryContext(f.ctx, `SELECT data FROM ledger_records ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var d []byte
		rows.Scan(&d)
		var e Event
		if err := json.Unmarshal(d, &e); err != nil {
			t.Fatal(err)
		}
		first, late = late, e.Recipient
	}
	if first == "" || first == late || !isCommitment(first) || !isCommitment(late) {
		t.Fatalf("the late event's commitment %q, the first's %q: want two different commitments", late, first)
	}
	if ns, err := ContractNames(f.ctx, f.db.Read(), "ACME"); err != nil || len(ns) != 0 {
		t.Fatalf("names kept after their destruction: %v, %v", ns, err)
	}
}

// TestKnownNamesAcrossTransactions: a value named again in a later
// transaction keeps its commitment without being looked up again (the
// Ledger remembers what it saw committed), and once the contract's names
// are destroyed in another transaction, the next event names it with a
// fresh commitment, which the ledger does not keep.
func TestKnownNamesAcrossTransactions(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Names = true })
	ev := Event{Type: TypeNoticeDelivered, Actor: "system", Contract: "ACME", Transfer: "t-acme", Recipient: "ceo@acme.example"}
	first := appendRecipient(t, f, ev)
	if _, ok := f.l.known.get(valueKey{"ACME", "ceo@acme.example"}); !ok {
		t.Fatal("the committed name is not remembered")
	}
	if again := appendRecipient(t, f, ev); again != first {
		t.Fatalf("the same name in a later transaction: %q, first %q", again, first)
	}
	if err := f.db.Write(f.ctx, func(tx *database.Tx) error {
		_, err := DestroyNames(f.ctx, tx, "ACME", f.clock.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	late := appendRecipient(t, f, ev)
	if late == first || !isCommitment(late) {
		t.Fatalf("after the names' destruction the event names %q, the destroyed commitment was %q", late, first)
	}
	if ns, err := ContractNames(f.ctx, f.db.Read(), "ACME"); err != nil || len(ns) != 0 {
		t.Fatalf("names kept after their destruction: %v, %v", ns, err)
	}
}

// TestKnownNamesNotFromRolledBack: a name recorded by a transaction that
// then rolls back is not remembered as committed, even when that
// transaction looked the name up again after it had forgotten recording
// it (DestroyNames of another contract empties the transaction's
// nameCache; so does a savepoint rolled back for another function of its
// batch). Remembered, the next transaction names it with the rolled-back
// commitment and records no row for it: its record holds a commitment
// whose value and opening the ledger does not keep, although the
// contract's names were never destroyed.
func TestKnownNamesNotFromRolledBack(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Names = true })
	const value = "ceo@acme.example"
	ev := Event{Type: TypeNoticeDelivered, Actor: "system", Contract: "ACME", Transfer: "t-acme", Recipient: value}
	rolledBack := errors.New("rolled back")
	err := f.db.Write(f.ctx, func(tx *database.Tx) error {
		if _, err := f.l.Append(f.ctx, tx, ev); err != nil {
			return err
		}
		if _, err := DestroyNames(f.ctx, tx, "OTHER", f.clock.Now()); err != nil {
			return err
		}
		if _, err := f.l.Append(f.ctx, tx, ev); err != nil {
			return err
		}
		return rolledBack
	})
	if !errors.Is(err, rolledBack) {
		t.Fatalf("write: %v, want the function's error", err)
	}
	recipient := appendRecipient(t, f, ev)
	ns, err := ContractNames(f.ctx, f.db.Read(), "ACME")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.Commitment == recipient && n.Value == value {
			return
		}
	}
	t.Fatalf("the record names %q, but the ledger keeps %v for the contract: the commitment of a rolled-back row was reused", recipient, ns)
}

// appendRecipient appends ev in a Write of its own and returns the
// recipient its record holds.
func appendRecipient(t *testing.T, f *fixture, ev Event) string {
	t.Helper()
	var idx int64
	if err := f.db.Write(f.ctx, func(tx *database.Tx) error {
		var err error
		idx, err = f.l.Append(f.ctx, tx, ev)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var d []byte
	if err := f.db.Read().QueryRowContext(f.ctx, `SELECT data FROM ledger_records WHERE idx = ?`, idx).Scan(&d); err != nil {
		t.Fatal(err)
	}
	var e Event
	if err := json.Unmarshal(d, &e); err != nil {
		t.Fatal(err)
	}
	return e.Recipient
}
