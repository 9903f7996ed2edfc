package audit

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sealgate/sealgate/database"
)

// Format is an export format.
type Format string

// Export formats.
const (
	FormatJSON Format = "json" // verifiable bundle (VerifyBundle, sealgate audit verify)
	FormatCSV  Format = "csv"  // for Excel: UTF-8 with BOM, CRLF, bilingual header
	FormatHTML Format = "html" // printable report laid out by the agreement's clauses
)

// BundleFormat is the "format" value of JSON bundles written by this version.
const BundleFormat = "sealgate-ledger-bundle/1"

// ExportOptions selects and formats an export.
type ExportOptions struct {
	// Contract selects the events of one contract ("" = all events).
	Contract string
	// From (inclusive) and To (exclusive) select by event time, to the
	// millisecond; zero means unbounded.
	From, To time.Time
	Format   Format
	// Signer signs the checkpoint the export is taken against and the
	// bundle's manifest. Required.
	Signer note.Signer
	// Actor is recorded as the export.made event's actor (default "system").
	Actor string
	// Previous is an earlier signed checkpoint (note text), e.g. the one in
	// the auditor's last bundle: a JSON bundle then carries a consistency
	// proof from it to the new checkpoint.
	Previous []byte
	// Location is the time zone of times shown in CSV and HTML (default
	// UTC). JSON records are always UTC.
	Location *time.Location
}

// filter selects entries below a checkpoint's size.
type filter struct {
	contract string
	from, to time.Time
	size     int64
}

func (f filter) where() (string, []any) {
	w := "idx < ?"
	args := []any{f.size}
	if f.contract != "" {
		w += " AND contract = ?"
		args = append(args, f.contract)
	}
	if !f.from.IsZero() {
		w += " AND time_ms >= ?"
		args = append(args, f.from.UnixMilli())
	}
	if !f.to.IsZero() {
		w += " AND time_ms < ?"
		args = append(args, f.to.UnixMilli())
	}
	return w, args
}

func (f filter) match(ev *Event) bool {
	if f.contract != "" && ev.Contract != f.contract {
		return false
	}
	if !f.from.IsZero() && ev.Time.Before(f.from) {
		return false
	}
	if !f.to.IsZero() && !ev.Time.Before(f.to) {
		return false
	}
	return true
}

func formatFilterTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

func parseFilterTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: filter time %q", ErrMalformed, s)
	}
	return t, nil
}

// manifest is what the gateway signs about a bundle: which checkpoint,
// which filter, which entries (count and digest). It makes a bundle
// complete as well as authentic: entries cannot be dropped, added or
// swapped for other genuine entries without breaking its signature.
type manifest struct {
	origin   string
	size     int64
	root     tlog.Hash
	contract string
	from, to string
	rng      [2]int64 // [start, end) in range mode
	isRange  bool
	count    int64
	digest   [sha256.Size]byte
}

const manifestTitle = "sealgate ledger export v1"

func (m *manifest) body() string {
	var b strings.Builder
	b.WriteString(manifestTitle + "\n")
	b.WriteString(m.origin + "\n")
	fmt.Fprintf(&b, "%d\n%s\n", m.size, m.root)
	fmt.Fprintf(&b, "contract %s\nfrom %s\nto %s\n", strconv.Quote(m.contract), strconv.Quote(m.from), strconv.Quote(m.to))
	if m.isRange {
		fmt.Fprintf(&b, "range %d %d\n", m.rng[0], m.rng[1])
	} else {
		b.WriteString("selection\n")
	}
	fmt.Fprintf(&b, "events %d\ndigest %s\n", m.count, base64.StdEncoding.EncodeToString(m.digest[:]))
	return b.String()
}

// digester accumulates the manifest digest: SHA-256 over, for each entry in
// order, its index (8 bytes big-endian) and its leaf hash.
type digester struct {
	h   hash.Hash
	buf [8 + tlog.HashSize]byte
}

func newDigester() *digester { return &digester{h: sha256.New()} }

func (d *digester) add(idx int64, leaf tlog.Hash) {
	binary.BigEndian.PutUint64(d.buf[:8], uint64(idx))
	copy(d.buf[8:], leaf[:])
	d.h.Write(d.buf[:])
}

func (d *digester) sum() (s [sha256.Size]byte) {
	d.h.Sum(s[:0])
	return s
}

// Export writes the events selected by opts to w in opts.Format. It first
// signs a new checkpoint (Checkpoint), so the export covers everything
// recorded up to then and can be proven against that checkpoint; then it
// reads the selection from one consistent snapshot; when the export is
// written it appends an export.made event (after the checkpoint, so the
// export never covers its own record). progress, if set, is called with the
// entries written so far and the total.
//
// A JSON bundle holds the signed checkpoint, the selected entries byte for
// byte, and what proves them against the checkpoint: when the selection is a
// contiguous range of entries, their leaf hashes and one range proof
// (verified by rebuilding that part of the tree); otherwise one inclusion
// proof per entry. A manifest signed with the same key states the filter,
// the number of entries and a digest of them, so that a bundle can be
// verified alone (VerifyBundle) and cannot be cut down unnoticed.
func (l *Ledger) Export(ctx context.Context, db DB, opts ExportOptions, w io.Writer, progress func(done, total int64)) error {
	switch opts.Format {
	case FormatJSON, FormatCSV, FormatHTML:
	default:
		return fmt.Errorf("audit: unknown export format %q (json, csv or html)", opts.Format)
	}
	if opts.Signer == nil {
		return fmt.Errorf("failed to export: %w: no signer", ErrBadKey)
	}
	if err := checkString(opts.Contract); err != nil {
		return fmt.Errorf("audit: invalid contract code: %v", err)
	}
	if !opts.From.IsZero() && !opts.To.IsZero() && !opts.From.Before(opts.To) {
		return fmt.Errorf("audit: export period is empty (from %v, to %v)", opts.From, opts.To)
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Actor == "" {
		opts.Actor = "system"
	}
	var prev *SignedCheckpoint
	if len(opts.Previous) > 0 {
		var err error
		if prev, err = parseStoredCheckpoint(opts.Previous); err != nil {
			return fmt.Errorf("failed to read the previous checkpoint: %w", err)
		}
		if prev.Origin != l.origin {
			return fmt.Errorf("%w: the previous checkpoint is of log %q, not %q", ErrInconsistent, prev.Origin, l.origin)
		}
	}

	cp, err := l.Checkpoint(ctx, db, opts.Signer)
	if err != nil && !errors.Is(err, ErrPublish) {
		return fmt.Errorf("failed to export: %w", err)
	}
	tx, err := db.Read().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("failed to begin export: %w", err)
	}
	defer tx.Rollback()

	f := filter{contract: opts.Contract, from: eventTime(opts.From), to: eventTime(opts.To), size: cp.Size}
	if opts.From.IsZero() {
		f.from = time.Time{}
	}
	if opts.To.IsZero() {
		f.to = time.Time{}
	}
	where, args := f.where()
	var count int64
	var lo, hi sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), MIN(idx), MAX(idx) FROM ledger_records WHERE `+where, args...).
		Scan(&count, &lo, &hi); err != nil {
		return fmt.Errorf("failed to select events: %w", err)
	}

	e := &exporter{l: l, ctx: ctx, tx: tx, cp: cp, f: f, opts: opts, progress: progress, total: count}
	bw := bufio.NewWriterSize(w, 64<<10)
	switch opts.Format {
	case FormatJSON:
		isRange := count > 0 && hi.Int64-lo.Int64+1 == count
		err = e.writeJSON(bw, prev, isRange, lo.Int64, hi.Int64+1)
	case FormatCSV:
		err = e.writeCSV(bw)
	case FormatHTML:
		err = e.writeHTML(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("failed to export: %w", err)
	}
	tx.Rollback()

	details := map[string]string{
		"format":     string(opts.Format),
		"events":     strconv.FormatInt(e.done, 10),
		"checkpoint": strconv.FormatInt(cp.Size, 10),
	}
	if opts.Contract != "" {
		details["contract"] = opts.Contract
	}
	if s := formatFilterTime(f.from); s != "" {
		details["from"] = s
	}
	if s := formatFilterTime(f.to); s != "" {
		details["to"] = s
	}
	if err := db.Write(ctx, func(tx *database.Tx) error {
		_, err := l.Append(ctx, tx, Event{Type: TypeExportMade, Actor: opts.Actor, Contract: opts.Contract, Details: details})
		return err
	}); err != nil {
		return fmt.Errorf("failed to record the export: %w", err)
	}
	return nil
}

type exporter struct {
	l        *Ledger
	ctx      context.Context
	tx       *sql.Tx
	cp       *SignedCheckpoint
	f        filter
	opts     ExportOptions
	progress func(done, total int64)
	done     int64
	total    int64
	book     *nameBook // JSON: the names of the selection
	used     []Name    // ... that its entries commit to, in order of first use
}

func (e *exporter) tick() {
	e.done++
	if e.done%progressEvery == 0 || e.done == e.total {
		reportProgress(e.progress, e.done, e.total)
	}
}

func writeJSONField(w *bufio.Writer, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.WriteString(strconv.Quote(key))
	w.WriteByte(':')
	w.Write(b)
	_, err = w.WriteString(",\n")
	return err
}

// appendJSONLine appends a record as a JSON string. Canonical records need
// only '"' and '\\' escaped; anything else (a tampered record) goes through
// encoding/json, whose replacement of invalid UTF-8 then fails verification
// at that entry, as it should.
func appendJSONLine(b, line []byte) []byte {
	if utf8.Valid(line) && checkString(string(line)) == nil {
		return appendString(b, string(line))
	}
	j, _ := json.Marshal(string(line))
	return append(b, j...)
}

func appendHash(b []byte, h tlog.Hash) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, h[:])
	return append(b, '"')
}

func (e *exporter) writeJSON(w *bufio.Writer, prev *SignedCheckpoint, isRange bool, a, b int64) error {
	ctx, tx, cp := e.ctx, e.tx, e.cp
	w.WriteString("{")
	writeJSONField(w, "format", BundleFormat)
	writeJSONField(w, "origin", cp.Origin)
	writeJSONField(w, "key", keyID(e.opts.Signer.Name(), e.opts.Signer.KeyHash()))
	writeJSONField(w, "created", e.l.now().UTC().Format(timeLayout))
	writeJSONField(w, "filter", bundleFilter{Contract: e.f.contract, From: formatFilterTime(e.f.from), To: formatFilterTime(e.f.to)})
	writeJSONField(w, "count", e.total)
	writeJSONField(w, "checkpoint", string(cp.Note))
	if prev != nil {
		proof, err := e.l.ProveConsistency(ctx, tx, prev, cp)
		if err != nil {
			return fmt.Errorf("the previous checkpoint does not match this ledger: %w", err)
		}
		writeJSONField(w, "previous", bundlePrevious{Checkpoint: string(prev.Note), Proof: proof})
	}
	m := &manifest{
		origin: cp.Origin, size: cp.Size, root: cp.Root, contract: e.f.contract,
		from: formatFilterTime(e.f.from), to: formatFilterTime(e.f.to), isRange: isRange, rng: [2]int64{a, b},
	}
	d := newDigester()
	if isRange {
		proof, err := rangeProof(cp.Size, a, b, txHashReader{ctx, tx})
		if err != nil {
			return fmt.Errorf("failed to prove range: %w", err)
		}
		if proof == nil {
			proof = []tlog.Hash{}
		}
		writeJSONField(w, "range", bundleRange{Start: a, End: b, Proof: proof})
	}
	if _, err := w.WriteString("\"events\":[\n"); err != nil {
		return err
	}
	var err error
	if e.book, err = e.names(); err != nil {
		return err
	}
	if isRange {
		err = e.jsonRange(w, d, a, b)
	} else {
		err = e.jsonSelection(w, d)
	}
	if err != nil {
		return err
	}
	m.count = e.done
	m.digest = d.sum()
	// The names the entries commit to that the ledger still keeps, each
	// with its opening: a verifier checks each against its commitment.
	// They are outside the manifest: a name proves itself.
	w.WriteString("\n],\n")
	if len(e.used) > 0 {
		if err := writeJSONField(w, "names", e.used); err != nil {
			return err
		}
	}
	msg, err := note.Sign(&note.Note{Text: m.body()}, e.opts.Signer)
	if err != nil {
		return fmt.Errorf("failed to sign the bundle manifest: %w", err)
	}
	mj, _ := json.Marshal(string(msg))
	w.WriteString(`"manifest":`)
	w.Write(mj)
	_, err = w.WriteString("}\n")
	return err
}

// jsonRange writes the entries [a, b) with their stored leaf hashes,
// streaming records and hashes side by side (record i's hashes start at
// tlog.StoredHashIndex(0, i)).
func (e *exporter) jsonRange(w *bufio.Writer, d *digester, a, b int64) error {
	ctx, tx := e.ctx, e.tx
	hrows, err := tx.QueryContext(ctx, `SELECT idx, hash FROM ledger_hashes WHERE idx >= ? AND idx < ? ORDER BY idx`,
		tlog.StoredHashIndex(0, a), tlog.StoredHashCount(b))
	if err != nil {
		return fmt.Errorf("failed to read ledger hashes: %w", err)
	}
	defer hrows.Close()
	hs := &hashCursor{rows: hrows}
	rows, err := tx.QueryContext(ctx, `SELECT idx, data FROM ledger_records WHERE idx >= ? AND idx < ? ORDER BY idx`, a, b)
	if err != nil {
		return fmt.Errorf("failed to read ledger records: %w", err)
	}
	defer rows.Close()
	return e.writeEntries(w, rows, func(buf []byte, idx int64, data []byte) ([]byte, error) {
		leaf, ok, err := hs.seek(tlog.StoredHashIndex(0, idx))
		if err != nil {
			return nil, err
		}
		if !ok { // hash row missing: the verifier will name this entry
			leaf = tlog.RecordHash(data)
		}
		d.add(idx, leaf)
		buf = append(buf, `,"hash":`...)
		buf = appendHash(buf, leaf)
		return append(buf, '}'), nil
	})
}

// writeEntries writes one JSON entry per ledger record of rows (columns idx,
// data): its index and line, then what tail appends (which closes it).
func (e *exporter) writeEntries(w *bufio.Writer, rows *sql.Rows, tail func(buf []byte, idx int64, data []byte) ([]byte, error)) error {
	buf := make([]byte, 0, 2048)
	for rows.Next() {
		var idx int64
		var data sql.RawBytes
		if err := rows.Scan(&idx, &data); err != nil {
			return fmt.Errorf("failed to read ledger record: %w", err)
		}
		buf = buf[:0]
		if e.done > 0 {
			buf = append(buf, ",\n"...)
		}
		buf = append(buf, `{"index":`...)
		buf = strconv.AppendInt(buf, idx, 10)
		buf = append(buf, `,"line":`...)
		buf = appendJSONLine(buf, data)
		if e.book != nil {
			e.used = e.book.collect(data, e.used)
		}
		var err error
		if buf, err = tail(buf, idx, data); err != nil {
			return err
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
		e.tick()
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read ledger records: %w", err)
	}
	return nil
}

// jsonSelection writes the selected entries each with its inclusion proof.
func (e *exporter) jsonSelection(w *bufio.Writer, d *digester) error {
	ctx, tx, cp := e.ctx, e.tx, e.cp
	where, args := e.f.where()
	rows, err := tx.QueryContext(ctx, `SELECT idx, data FROM ledger_records WHERE `+where+` ORDER BY idx`, args...)
	if err != nil {
		return fmt.Errorf("failed to read ledger records: %w", err)
	}
	defer rows.Close()
	hr := &cachingHashReader{ctx: ctx, q: tx, max: 1 << 16}
	return e.writeEntries(w, rows, func(buf []byte, idx int64, data []byte) ([]byte, error) {
		proof, err := tlog.ProveRecord(cp.Size, idx, hr)
		if err != nil {
			return nil, fmt.Errorf("failed to prove entry #%d: %w", idx, err)
		}
		d.add(idx, tlog.RecordHash(data))
		buf = append(buf, `,"proof":[`...)
		for i, h := range proof {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendHash(buf, h)
		}
		return append(buf, "]}"...), nil
	})
}

// hashCursor walks ledger_hashes in index order.
type hashCursor struct {
	rows   *sql.Rows
	peeked bool
	idx    int64
	hash   tlog.Hash
	done   bool
}

func (c *hashCursor) peek() (ok bool, err error) {
	if c.peeked {
		return true, nil
	}
	if c.done {
		return false, nil
	}
	if !c.rows.Next() {
		c.done = true
		if err := c.rows.Err(); err != nil {
			return false, fmt.Errorf("failed to read ledger hashes: %w", err)
		}
		return false, nil
	}
	var h sql.RawBytes
	if err := c.rows.Scan(&c.idx, &h); err != nil {
		return false, fmt.Errorf("failed to read ledger hash: %w", err)
	}
	if len(h) != tlog.HashSize {
		c.hash = tlog.Hash{} // a wrong-sized hash never matches
	} else {
		c.hash = tlog.Hash(h)
	}
	c.peeked = true
	return true, nil
}

// next returns the next stored hash and its index.
func (c *hashCursor) next() (idx int64, h tlog.Hash, ok bool, err error) {
	if ok, err = c.peek(); !ok || err != nil {
		return 0, tlog.Hash{}, false, err
	}
	c.peeked = false
	return c.idx, c.hash, true, nil
}

// seek skips to stored hash target; ok is false if it does not exist.
func (c *hashCursor) seek(target int64) (tlog.Hash, bool, error) {
	for {
		ok, err := c.peek()
		if err != nil || !ok {
			return tlog.Hash{}, false, err
		}
		if c.idx >= target {
			if c.idx == target {
				c.peeked = false
				return c.hash, true, nil
			}
			return tlog.Hash{}, false, nil
		}
		c.peeked = false
	}
}

// trailingOnes is the number of subtrees record n completes.
func trailingOnes(n int64) int { return bits.TrailingZeros64(uint64(n + 1)) }

// JSON shapes of a bundle.
type bundleFilter struct {
	Contract string `json:"contract"`
	From     string `json:"from"`
	To       string `json:"to"`
}

type bundlePrevious struct {
	Checkpoint string      `json:"checkpoint"`
	Proof      []tlog.Hash `json:"proof"`
}

type bundleRange struct {
	Start int64       `json:"start"`
	End   int64       `json:"end"`
	Proof []tlog.Hash `json:"proof"`
}

type bundleEvent struct {
	Index *int64      `json:"index"`
	Line  *string     `json:"line"`
	Hash  *tlog.Hash  `json:"hash"`
	Proof []tlog.Hash `json:"proof"`
}
