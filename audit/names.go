package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/database"
)

// Destroyable names (record format v2).
//
// Some of what the ledger records names things that are confidential in
// themselves: a file called 買収提案_A社.pdf, a subject, the address of a
// counterparty's employee. A ledger that keeps them for ever makes the
// destruction at contract end incomplete. So a contract's events are
// recorded (format v2) with each such name replaced by a commitment:
//
//	commitment = base64url(SHA-256("sealgate name v1\n" || opening || value))
//
// where opening is 32 random bytes drawn once per contract and value (the
// same address has the same commitment in every record of its contract,
// so records can still be matched by recipient or file; across contracts
// they differ). Without the opening a commitment reveals nothing, not even
// for a value with little entropy such as an address: there is nothing to
// guess against. The value and its opening are kept beside the tree, in
// table ledger_names, which exports, searches and the portal join back;
// contract end deletes the contract's rows (DestroyNames). The records —
// and so every leaf hash, proof, checkpoint and certificate — never change:
// afterwards they hold commitments that nobody can open any more, and
// exports show DestroyedName where the names were.
//
// Whoever holds a value and its opening can check it against a commitment
// (Name.Check): the client's copy of a destruction certificate carries the
// openings of the names it lists, so that the client, who knows its files
// and people, can see that the certificate is about them, while every copy
// the gateway keeps holds the commitments only.
//
// Why no per-contract key (an HMAC key wrapped to the master key): what
// makes a commitment unguessable is the secret that goes into it, and a
// random opening per value is that secret without a key to wrap, rotate
// and erase. A key would protect nothing more while the contract lives —
// the database holds the same names in clear in its messages, files and
// recipients rows, and contract end erases those too (package destroy) —
// and deleting the openings is what makes the commitments final.
//
// Which fields are names (nameFields): the recipient, the file, the
// address in an actor "recipient:<address>", the reason of a delivery
// failure or deferral (remote servers quote the address), and the details
// subject, from, header_from, to, recipients, internal_to, handed_to,
// message_id and parse (but a value of digits only, a count, is no name:
// "recipients" is a count in some events). Everything else — ids, sizes, hashes, object keys,
// times, rule names, reasons typed by staff, contract codes — stays as it
// was. Events without a contract (logins, public key registrations, refused
// messages) are recorded in format v1, names in clear: no contract end can
// destroy them.

// DestroyedName is shown in exports and pages where a destroyed name was.
const DestroyedName = "破棄済み / destroyed"

// ShownName returns a name to show a person: s, or DestroyedName when s is a
// commitment — what the rows of a contract hold instead of its names once
// they were destroyed at its end.
func ShownName(s string) string {
	if isCommitment(s) {
		return DestroyedName
	}
	return s
}

const (
	nameTag        = "sealgate name v1\n"
	openingSize    = 32
	commitmentSize = 43 // base64url, no padding, of 32 bytes
	recipientActor = "recipient:"
)

// nameDetails are the details keys whose values are names.
var nameDetails = map[string]bool{
	"subject": true, "from": true, "header_from": true, "to": true, "recipients": true,
	"internal_to": true, "handed_to": true, "message_id": true, "parse": true,
}

// isCount reports whether a details value is a number ("recipients" is a
// list of addresses in some events and a count in others): not a name.
func isCount(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// reasonIsName reports whether the reason of an event of type typ is a
// name: remote servers' replies, which quote addresses.
func reasonIsName(typ string) bool { return typ == TypeDeliveryDeferred || typ == TypeDeliveryFailed }

// CommitName returns the commitment to value with opening.
func CommitName(opening []byte, value string) string {
	h := sha256.New()
	io.WriteString(h, nameTag)
	h.Write(opening)
	io.WriteString(h, value)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// Name is a name recorded under a contract: its clear value, its
// commitment and the opening that binds them.
type Name struct {
	Commitment string `json:"commitment"`
	Value      string `json:"value"`
	Opening    []byte `json:"opening"` // base64 in JSON
}

// Check reports whether the opening binds value to the commitment.
func (n Name) Check() bool {
	if len(n.Opening) != openingSize || !isCommitment(n.Commitment) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(CommitName(n.Opening, n.Value)), []byte(n.Commitment)) == 1
}

// isCommitment reports whether s has the shape of a commitment.
func isCommitment(s string) bool {
	if len(s) != commitmentSize {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// nameFields calls fn with each name of ev (a pointer to the string that
// holds it) in a fixed order. Details values are set through the map.
func nameFields(ev *Event, fn func(s *string) error) error {
	for _, p := range []*string{&ev.Recipient, &ev.File} {
		if *p != "" {
			if err := fn(p); err != nil {
				return err
			}
		}
	}
	if rest, ok := strings.CutPrefix(ev.Actor, recipientActor); ok && rest != "" {
		if err := fn(&rest); err != nil {
			return err
		}
		ev.Actor = recipientActor + rest
	}
	if ev.Reason != "" && reasonIsName(ev.Type) {
		if err := fn(&ev.Reason); err != nil {
			return err
		}
	}
	if len(ev.Details) > 0 {
		keys := make([]string, 0, len(ev.Details))
		for k, v := range ev.Details {
			if nameDetails[k] && v != "" && !isCount(v) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			v := ev.Details[k]
			if err := fn(&v); err != nil {
				return err
			}
			ev.Details[k] = v
		}
	}
	return nil
}

// checkCommitted checks that every name of a v2 event is a commitment.
func checkCommitted(ev *Event) error {
	if ev.Contract == "" {
		return errors.New("a v2 record names no contract")
	}
	cp := *ev
	cp.Details = ev.Details // read only: fn does not change values
	return nameFields(&cp, func(s *string) error {
		if !isCommitment(*s) {
			return fmt.Errorf("a name is not a commitment (%q)", Sanitize(*s))
		}
		return nil
	})
}

// commitNames replaces the names of ev (a contract's event, sanitized) by
// their commitments, recording new values in ledger_names inside tx. The
// transaction remembers what it read and wrote (nameCache): under load one
// group-committed transaction holds many appends naming the same contract
// and addresses, and on PostgreSQL each statement is a round trip made
// while every instance's writers wait. So the contract's destruction is
// read once per transaction, each value looked up once, and the new values
// of an event recorded in one INSERT.
func (l *Ledger) commitNames(ctx context.Context, st stmtSet, ev *Event) error {
	nc := loadNameCache(st.q)
	destroyed, ok := nc.destroyed[ev.Contract]
	if !ok {
		var n int
		if err := st.scan(ctx, stNamesDestroyed, []any{ev.Contract}, &n); err != nil {
			return fmt.Errorf("failed to read the ledger's names: %w", err)
		}
		destroyed = n > 0
		nc.destroyed[ev.Contract] = destroyed
	}
	if len(ev.Details) > 0 { // the caller's map must not change
		d := make(map[string]string, len(ev.Details))
		for k, v := range ev.Details {
			d[k] = v
		}
		ev.Details = d
	}
	var found []Name // looked up in the table (see knownNames)
	if !destroyed {
		// The values this transaction does not know yet, each looked up once.
		var unknown []string
		cp := *ev
		nameFields(&cp, func(s *string) error {
			if _, ok := nc.commits[valueKey{ev.Contract, *s}]; !ok && !slices.Contains(unknown, *s) {
				unknown = append(unknown, *s)
			}
			return nil
		})
		// Values this process has seen committed need no lookup (see
		// knownNames): the contract's names were not destroyed, read
		// just above in this transaction, so their rows are still there.
		unknown = slices.DeleteFunc(unknown, func(v string) bool {
			c, ok := l.known.get(valueKey{ev.Contract, v})
			if ok {
				nc.commits[valueKey{ev.Contract, v}] = c
			}
			return ok
		})
		if err := nc.lookup(ctx, st, ev.Contract, unknown); err != nil {
			return err
		}
		// A row found may be one this transaction recorded and then
		// forgot (DestroyNames, or a savepoint rolled back for another
		// function, empties the nameCache): it is remembered only once
		// the transaction has committed, as a fresh one is.
		for _, v := range unknown {
			if c, ok := nc.commits[valueKey{ev.Contract, v}]; ok {
				found = append(found, Name{Commitment: c, Value: v})
			}
		}
	}
	var fresh []Name
	seen := map[string]string{}
	err := nameFields(ev, func(s *string) error {
		if c, ok := seen[*s]; ok {
			*s = c
			return nil
		}
		value := *s
		c, ok := nc.commits[valueKey{ev.Contract, value}]
		if !ok || destroyed {
			opening := make([]byte, openingSize)
			if _, err := io.ReadFull(l.rand, opening); err != nil {
				return fmt.Errorf("failed to draw a name opening: %w", err)
			}
			c = CommitName(opening, value)
			if !destroyed {
				// (Destroyed: the contract's names are gone; this one is
				// committed to with an opening nobody keeps.)
				fresh = append(fresh, Name{Commitment: c, Value: value, Opening: opening})
			}
		}
		seen[value], *s = c, c
		return nil
	})
	if err != nil {
		return err
	}
	if len(fresh) > 0 {
		if err := nc.insert(ctx, st, ev.Contract, fresh, l.now()); err != nil {
			return err
		}
	}
	if ac, ok := st.q.(interface{ AfterCommit(func()) }); ok && len(found)+len(fresh) > 0 {
		contract := ev.Contract
		ac.AfterCommit(func() {
			for _, n := range slices.Concat(found, fresh) {
				l.known.put(valueKey{contract, n.Value}, n.Commitment)
			}
		})
	}
	return nil
}

// knownNames remembers, across transactions, the commitments of names
// whose rows this process has seen committed in ledger_names: a value
// looked up there or recorded, by a transaction that then committed.
// Under load most events name values the contract's earlier events
// named (its sender, its recipients), and each lookup is a statement
// made while every instance's writers wait. An entry is used only in a
// transaction that has just read that the contract's names were not
// destroyed (commitNames): the only statement that deletes from
// ledger_names is DestroyNames, which marks the contract destroyed in
// the same transaction, and write transactions run one at a time (on
// PostgreSQL across instances, under the writers' lock), so a row known
// once is still there while its contract is not marked. Bounded: when
// full it is emptied.
type knownNames struct {
	mu sync.Mutex
	m  map[valueKey]string
}

// maxKnownNames bounds knownNames.
const maxKnownNames = 1 << 16

func (k *knownNames) get(key valueKey) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.m[key]
	return c, ok
}

func (k *knownNames) put(key valueKey, c string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil || len(k.m) >= maxKnownNames {
		k.m = make(map[valueKey]string)
	}
	k.m[key] = c
}

// nameCache is what the appends of one transaction know of the ledger's
// names: whether a contract's names were destroyed, and the commitment of
// each (contract, value) this transaction read or recorded. It is kept in
// the transaction (database.Tx.Value) like treeState, forgotten when a
// savepoint rolls back and by DestroyNames; an entry is added only after
// the row is known to be in the table, so it is always what the table
// holds in this transaction.
type nameCache struct {
	destroyed map[string]bool
	commits   map[valueKey]string
}

// valueKey is a contract's value.
type valueKey struct{ contract, value string }

// nameCacheKey is the key of the nameCache in a transaction.
type nameCacheKey struct{}

// maxNameCache bounds the commitments a nameCache keeps.
const maxNameCache = 4096

// loadNameCache returns the nameCache kept in tx, or a new one (kept in
// tx when tx keeps values).
func loadNameCache(tx DBTX) *nameCache {
	v, ok := tx.(txValues)
	if ok {
		if nc, ok := v.Value(nameCacheKey{}).(*nameCache); ok {
			if len(nc.commits) > maxNameCache {
				clear(nc.commits)
			}
			return nc
		}
	}
	nc := &nameCache{destroyed: map[string]bool{}, commits: map[valueKey]string{}}
	if ok {
		v.SetValue(nameCacheKey{}, nc)
	}
	return nc
}

// lookup reads the commitments of the contract's values already recorded.
// One statement per value: a single "value IN (…)" statement for an
// event's values was measured slower on PostgreSQL (pg_stat_statements:
// 1.15 ms a statement, against 0.01 ms a value looked up alone).
func (nc *nameCache) lookup(ctx context.Context, st stmtSet, contract string, values []string) error {
	for _, v := range values {
		var c string
		err := st.scan(ctx, stNameLookup, []any{v, contract}, &c)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("failed to read the ledger's names: %w", err)
		}
		nc.commits[valueKey{contract, v}] = c
	}
	return nil
}

// insert records the contract's new names in one statement.
func (nc *nameCache) insert(ctx context.Context, st stmtSet, contract string, names []Name, at time.Time) error {
	var err error
	if len(names) == 1 {
		err = st.exec(ctx, stNameInsert, contract, names[0].Commitment, names[0].Value, names[0].Opening, at.UnixMilli())
	} else {
		args := make([]any, 0, 5*len(names))
		for _, n := range names {
			args = append(args, contract, n.Commitment, n.Value, n.Opening, at.UnixMilli())
		}
		_, err = st.q.ExecContext(ctx, `INSERT INTO ledger_names(contract, commitment, value, opening, created_at) VALUES (?, ?, ?, ?, ?)`+
			strings.Repeat(", (?, ?, ?, ?, ?)", len(names)-1), args...)
	}
	if err != nil {
		return fmt.Errorf("failed to record a name: %w", err)
	}
	for _, n := range names {
		nc.commits[valueKey{contract, n.Value}] = n.Commitment
	}
	return nil
}

// ContractNames returns every name the ledger still keeps for the
// contract, ordered by commitment.
func ContractNames(ctx context.Context, q database.Querier, contract string) ([]Name, error) {
	rows, err := q.QueryContext(ctx, `SELECT commitment, value, opening FROM ledger_names WHERE contract = ? ORDER BY commitment`, contract)
	if err != nil {
		return nil, fmt.Errorf("failed to read the ledger's names: %w", err)
	}
	defer rows.Close()
	var out []Name
	for rows.Next() {
		var n Name
		if err := rows.Scan(&n.Commitment, &n.Value, &n.Opening); err != nil {
			return nil, fmt.Errorf("failed to read the ledger's names: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// DestroyNames deletes every clear value and opening of the contract's
// names, in tx, and marks its names destroyed: later events of the
// contract are committed to with openings that are not kept. It returns
// how many names it deleted (0 when they were destroyed before).
//
// The database runs with secure_delete, so the deleted rows are
// overwritten in the database file; their old page images stay in the
// write-ahead log until it is checkpointed and truncated, which the
// caller does after the commit (package destroy).
func DestroyNames(ctx context.Context, tx DBTX, contract string, at time.Time) (int, error) {
	if v, ok := tx.(txValues); ok {
		v.SetValue(nameCacheKey{}, nil) // what it knows of the contract's names ends here
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM ledger_names WHERE contract = ?`, contract)
	if err != nil {
		return 0, fmt.Errorf("failed to destroy the ledger's names: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_names_destroyed(contract, destroyed_at, names) VALUES (?, ?, ?)
		ON CONFLICT (contract) DO UPDATE SET names = ledger_names_destroyed.names + excluded.names`, contract, at.UnixMilli(), n); err != nil {
		return 0, fmt.Errorf("failed to record the destruction of names: %w", err)
	}
	return int(n), nil
}

// NamesDestroyedAt returns when the contract's names were destroyed, or
// the zero time.
func NamesDestroyedAt(ctx context.Context, q database.Querier, contract string) (time.Time, error) {
	var ms int64
	err := q.QueryRowContext(ctx, `SELECT destroyed_at FROM ledger_names_destroyed WHERE contract = ?`, contract).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("failed to read the ledger's names: %w", err)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// nameKey identifies a name: commitments are per contract.
type nameKey struct{ contract, commitment string }

// nameBook resolves commitments to names, loading each contract's names
// once (exports read them all; searches a few).
type nameBook struct {
	ctx    context.Context
	q      database.Querier
	loaded map[string]bool
	names  map[nameKey]Name
	used   map[nameKey]bool // collect
}

func newNameBook(ctx context.Context, q database.Querier) *nameBook {
	return &nameBook{ctx: ctx, q: q, loaded: map[string]bool{}, names: map[nameKey]Name{}}
}

func (b *nameBook) load(contract string) error {
	if b.loaded[contract] {
		return nil
	}
	ns, err := ContractNames(b.ctx, b.q, contract)
	if err != nil {
		return err
	}
	for _, n := range ns {
		b.names[nameKey{contract, n.Commitment}] = n
	}
	b.loaded[contract] = true
	return nil
}

// lookup returns the name committed to by c in the contract's records.
func (b *nameBook) lookup(contract, c string) (Name, bool, error) {
	if err := b.load(contract); err != nil {
		return Name{}, false, err
	}
	n, ok := b.names[nameKey{contract, c}]
	return n, ok, nil
}

// reveal replaces the commitments of a v2 event by the clear values the
// ledger still keeps, and by DestroyedName where it keeps none. It calls
// found (if not nil) with each name it revealed.
func (b *nameBook) reveal(ev *Event, found func(Name)) error {
	if ev.V < 2 || ev.Contract == "" {
		return nil
	}
	if len(ev.Details) > 0 {
		d := make(map[string]string, len(ev.Details))
		for k, v := range ev.Details {
			d[k] = v
		}
		ev.Details = d
	}
	return nameFields(ev, func(s *string) error {
		n, ok, err := b.lookup(ev.Contract, *s)
		if err != nil {
			return err
		}
		if !ok {
			*s = DestroyedName
			return nil
		}
		if found != nil {
			found(n)
		}
		*s = n.Value
		return nil
	})
}

// RevealNames replaces, in each v2 event, every commitment by the clear
// value the ledger still keeps, or by DestroyedName. Events of format v1
// are left as they are.
func RevealNames(ctx context.Context, q database.Querier, evs []*Event) error {
	b := newNameBook(ctx, q)
	for _, ev := range evs {
		if err := b.reveal(ev, nil); err != nil {
			return err
		}
	}
	return nil
}

// commitmentsOf returns the commitments, in any contract, of the values.
func commitmentsOf(ctx context.Context, q database.Querier, values []string) ([]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	rows, err := q.QueryContext(ctx, `SELECT commitment FROM ledger_names WHERE value IN (?`+strings.Repeat(", ?", len(values)-1)+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to read the ledger's names: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("failed to read the ledger's names: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// names loads the names of every contract in the export's selection, in
// its transaction, before the records are read.
func (e *exporter) names() (*nameBook, error) {
	where, args := e.f.where()
	rows, err := e.tx.QueryContext(e.ctx, `SELECT DISTINCT contract FROM ledger_records WHERE `+where+` AND contract <> ''`, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to read the ledger's contracts: %w", err)
	}
	var contracts []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to read the ledger's contracts: %w", err)
		}
		contracts = append(contracts, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read the ledger's contracts: %w", err)
	}
	b := newNameBook(e.ctx, e.tx)
	for _, c := range contracts {
		if err := b.load(c); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// revealLoaded is reveal with the names already loaded: a contract not
// loaded has none left.
func (b *nameBook) revealLoaded(ev *Event) {
	if ev.V < 2 || ev.Contract == "" {
		return
	}
	b.loaded[ev.Contract] = true
	_ = b.reveal(ev, nil) // loads nothing, so fails never
}

// collect appends to used the names, not yet in it, that the record data
// commits to (records of format v2 only).
func (b *nameBook) collect(data []byte, used []Name) []Name {
	if !bytes.HasPrefix(data, []byte(`{"v":2,`)) {
		return used
	}
	ev, err := ParseRecord(data)
	if err != nil {
		return used // the verifier names the record
	}
	if b.used == nil {
		b.used = map[nameKey]bool{}
	}
	b.loaded[ev.Contract] = true
	_ = nameFields(&ev, func(s *string) error {
		k := nameKey{ev.Contract, *s}
		if n, ok := b.names[k]; ok && !b.used[k] {
			b.used[k] = true
			used = append(used, n)
		}
		return nil
	})
	return used
}

// IsCommitment reports whether s has the shape of a name's commitment.
func IsCommitment(s string) bool { return isCommitment(s) }

// NameMap gives the commitments of a contract's names, to replace the
// clear values other tables hold by the ones the records hold (package
// destroy, at contract end).
type NameMap struct {
	contract string
	rand     io.Reader
	byValue  map[string]Name
	byFold   map[string]Name // lower-cased value: the first name of that spelling
	used     map[string]bool // commitments handed out
	names    []Name          // in order of first use
}

// NewNameMap returns the map of the names the ledger keeps for contract;
// rand draws the openings of values it does not keep.
func NewNameMap(ctx context.Context, q database.Querier, contract string, rand io.Reader) (*NameMap, error) {
	ns, err := ContractNames(ctx, q, contract)
	if err != nil {
		return nil, err
	}
	m := &NameMap{contract: contract, rand: rand, byValue: map[string]Name{}, byFold: map[string]Name{}, used: map[string]bool{}}
	for _, n := range ns {
		m.byValue[n.Value] = n
		if _, ok := m.byFold[strings.ToLower(n.Value)]; !ok {
			m.byFold[strings.ToLower(n.Value)] = n
		}
	}
	return m, nil
}

// Commit returns the commitment the records use for value: of the same
// value, else of the same value in another case (addresses), else a new
// one whose opening only Names keeps. A value that is a commitment already
// (a destruction resumed) or empty is returned as it is.
func (m *NameMap) Commit(value string) (string, error) {
	if value == "" || isCommitment(value) {
		return value, nil
	}
	n, ok := m.byValue[value]
	if !ok {
		n, ok = m.byFold[strings.ToLower(value)]
	}
	if !ok {
		op := make([]byte, openingSize)
		if _, err := io.ReadFull(m.rand, op); err != nil {
			return "", fmt.Errorf("failed to draw a name opening: %w", err)
		}
		n = Name{Commitment: CommitName(op, value), Value: value, Opening: op}
		m.byValue[value] = n
	}
	if !m.used[n.Commitment] {
		m.used[n.Commitment] = true
		m.names = append(m.names, n)
	}
	return n.Commitment, nil
}

// Names returns the names Commit handed out, in order of first use.
func (m *NameMap) Names() []Name { return m.names }

// CertificateWithNames returns the client's copy of a signed certificate:
// data with the names it commits to revealed, each with its opening, in a
// "names" field beside the signature (a name proves itself against its
// commitment; the signature covers the certificate as the gateway keeps
// it, commitments only).
func CertificateWithNames(data []byte, names []Name) ([]byte, error) {
	if len(names) == 0 {
		return data, nil
	}
	if CertificateCompressed(data) {
		return withNamesCompressed(data, names)
	}
	body, ok := bytes.CutSuffix(data, []byte("\n}\n"))
	if !ok {
		return nil, fmt.Errorf("%w: not a signed certificate file", ErrMalformed)
	}
	nj, err := json.Marshal(names)
	if err != nil {
		return nil, fmt.Errorf("failed to encode the certificate's names: %w", err)
	}
	out := append(bytes.Clone(body), ",\n\"names\": "...)
	out = append(out, nj...)
	return append(out, "\n}\n"...), nil
}

// RevealCertificate replaces in c every commitment that one of names (each
// checked) opens by its value: the subjects, addresses and file names.
func RevealCertificate(c *Certificate, names []Name) error {
	byC := make(map[string]string, len(names))
	for _, n := range names {
		if !n.Check() {
			return fmt.Errorf("%w: name %q: its opening does not reproduce commitment %s", ErrMalformed, Sanitize(n.Value), n.Commitment)
		}
		byC[n.Commitment] = n.Value
	}
	rv := func(s *string) {
		if v, ok := byC[*s]; ok {
			*s = v
		}
	}
	for i := range c.Transfers {
		t := &c.Transfers[i]
		rv(&t.Subject)
		for j := range t.Recipients {
			rv(&t.Recipients[j].Address)
		}
		for j := range t.Files {
			f := &t.Files[j]
			rv(&f.Name)
			for k := range f.Downloads {
				rv(&f.Downloads[k].Recipient)
			}
		}
	}
	return nil
}
