package audit

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sealgate/sealgate/witness/cosig"
)

// VerifyOptions adds evidence held outside the gateway.
type VerifyOptions struct {
	// Previous is a signed checkpoint obtained earlier (its note text), for
	// example from an earlier bundle, from object storage or kept by the
	// auditor. Verification then also proves that the ledger verified
	// extends it: nothing it covered was rewritten since.
	Previous []byte
	// Checkpoints are further signed checkpoints held outside the database
	// (e.g. ledger/checkpoints/latest.note from object storage), checked by
	// VerifyDB like Previous. A checkpoint larger than the database reveals
	// entries deleted from its end.
	Checkpoints [][]byte
	// Witnesses, when set, requires witness cosignatures: VerifyBundle of
	// the bundle's checkpoint; VerifyDB of at least one checkpoint in the
	// database, and every recorded cosignature by these witnesses must
	// verify.
	Witnesses WitnessPolicy
}

// VerifyReport describes what a successful verification checked.
type VerifyReport struct {
	Origin     string
	Key        string            // "<name>+<hash>" of the verifier key
	Checkpoint *SignedCheckpoint // the newest checkpoint verified against
	// Previous lists older checkpoints shown to be prefixes of Checkpoint
	// (the bundle's and VerifyOptions.Previous).
	Previous []*SignedCheckpoint
	Entries  int64 // entries checked
	First    int64 // lowest index checked (-1 if none)
	Last     int64 // highest index checked (-1 if none)

	// Bundles only.
	Contract string    // the export's filter
	From, To time.Time // the export's filter (zero: unbounded)
	Range    bool      // the entries form one contiguous range, checked by rebuilding the tree
	Complete bool      // ... and the range is the whole tree of the checkpoint
	Names    int       // names revealed with their openings, each checked against its commitment

	// VerifyDB only.
	Size        int64 // entries in the database
	Checkpoints int   // signed checkpoints in the database, all checked
	// Unanchored is the number of entries after the newest checkpoint:
	// protected by the stored hashes only (see the package doc).
	Unanchored int64

	// With a WitnessPolicy: the valid cosignatures of the checkpoint
	// verified against (VerifyDB: of Witnessed, the newest checkpoint
	// with enough of them), and the entries after Witnessed.
	Witnesses   []cosig.Cosigned
	Witnessed   *SignedCheckpoint
	Unwitnessed int64
}

// VerifyBundle verifies a JSON bundle (Export) offline with only the
// verifier key vkey: the checkpoint's and manifest's signatures (a bundle
// signed by another key, e.g. another gateway's, fails with ErrWrongKey),
// every entry's canonical form, filter and position (leaf hashes plus a
// rebuilt tree for a contiguous range, inclusion proofs otherwise), that no
// entry was dropped, added or reordered, and consistency with the bundle's
// previous checkpoint and with opts.Previous. It reads r once, streaming, in
// memory independent of the number of entries.
//
// A failure attributable to an entry is a *VerifyError naming the first bad
// entry by its index.
func VerifyBundle(r io.Reader, vkey string, opts VerifyOptions, progress func(done, total int64)) (*VerifyReport, error) {
	kid, err := KeyID(vkey)
	if err != nil {
		return nil, err
	}
	v := &bundleVerifier{vkey: vkey, progress: progress, rep: &VerifyReport{Key: kid, First: -1, Last: -1}, d: newDigester(), last: -1}
	if opts.Witnesses.enabled() {
		if v.witnesses, v.quorum, err = opts.Witnesses.verifiers(); err != nil {
			return nil, err
		}
	}
	if len(opts.Previous) > 0 {
		// Opened first, so that a range starting at entry 0 can compute
		// the root at its size on the way.
		if v.optPrev, err = OpenCheckpoint(opts.Previous, vkey); err != nil {
			return nil, fmt.Errorf("previous checkpoint: %w", err)
		}
		v.want = v.optPrev.Size
	}
	dec := json.NewDecoder(bufio.NewReaderSize(r, 256<<10))
	if err := v.decode(dec); err != nil {
		return nil, err
	}
	if err := v.finish(); err != nil {
		return nil, err
	}
	return v.rep, nil
}

type bundleVerifier struct {
	vkey     string
	progress func(done, total int64)
	rep      *VerifyReport

	format   string
	origin   string
	filt     *bundleFilter
	f        filter
	count    int64
	cp       *SignedCheckpoint
	prev     *bundlePrevious
	rng      *bundleRange
	manifest []byte
	events   bool

	witnesses []*cosig.Verifier // VerifyOptions.Witnesses
	quorum    int

	cr      *compactRange
	d       *digester
	last    int64
	n       int64
	optPrev *SignedCheckpoint // VerifyOptions.Previous
	want    int64             // its size: a range from entry 0 computes the root there
	wantAt  *tlog.Hash        // ... and keeps it here
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: bundle: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func (v *bundleVerifier) decode(dec *json.Decoder) error {
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return malformed("not a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return malformed("%v", err)
		}
		key, _ := t.(string)
		switch key {
		case "format":
			err = dec.Decode(&v.format)
			if err == nil && v.format != BundleFormat {
				return malformed("unsupported format %q (this version reads %q)", v.format, BundleFormat)
			}
		case "origin":
			err = dec.Decode(&v.origin)
		case "filter":
			v.filt = new(bundleFilter)
			err = dec.Decode(v.filt)
		case "count":
			err = dec.Decode(&v.count)
		case "checkpoint":
			var s string
			if err = dec.Decode(&s); err == nil {
				if v.cp, err = OpenCheckpoint([]byte(s), v.vkey); err != nil {
					return fmt.Errorf("bundle checkpoint: %w", err)
				}
				if v.witnesses != nil {
					if v.rep.Witnesses, err = checkWitnesses([]byte(s), v.cp.Size, v.witnesses, v.quorum); err != nil {
						return fmt.Errorf("bundle checkpoint: %w", err)
					}
					v.rep.Witnessed = v.cp
				}
			}
		case "previous":
			v.prev = new(bundlePrevious)
			err = dec.Decode(v.prev)
		case "range":
			v.rng = new(bundleRange)
			err = dec.Decode(v.rng)
		case "manifest":
			var s string
			err = dec.Decode(&s)
			v.manifest = []byte(s)
		case "events":
			if err := v.decodeEvents(dec); err != nil {
				return err
			}
		case "names":
			var names []Name
			if err = dec.Decode(&names); err == nil {
				for _, n := range names {
					if !n.Check() {
						return malformed("name %q: its opening does not reproduce commitment %s", Sanitize(n.Value), n.Commitment)
					}
				}
				v.rep.Names = len(names)
			}
		default: // informative fields ("key", "created") and future ones
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return malformed("field %q: %v", key, err)
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return malformed("unterminated object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return malformed("trailing data after the bundle")
	}
	return nil
}

// start checks what must precede the entries.
func (v *bundleVerifier) start() error {
	if v.format == "" {
		return malformed(`"format" must precede "events"`)
	}
	if v.cp == nil || v.filt == nil {
		return malformed(`"checkpoint" and "filter" must precede "events"`)
	}
	if v.events {
		return malformed(`"events" appears twice`)
	}
	v.events = true
	if v.origin != v.cp.Origin {
		return malformed("origin %q differs from the checkpoint's %q", v.origin, v.cp.Origin)
	}
	var err error
	v.f = filter{contract: v.filt.Contract, size: v.cp.Size}
	if v.f.from, err = parseFilterTime(v.filt.From); err != nil {
		return err
	}
	if v.f.to, err = parseFilterTime(v.filt.To); err != nil {
		return err
	}
	if v.rng != nil {
		if v.rng.Start < 0 || v.rng.Start >= v.rng.End || v.rng.End > v.cp.Size {
			return malformed("range [%d, %d) outside the checkpoint (size %d)", v.rng.Start, v.rng.End, v.cp.Size)
		}
		v.cr = newCompactRange(v.rng.Start)
		v.last = v.rng.Start - 1
	}
	return nil
}

func (v *bundleVerifier) decodeEvents(dec *json.Decoder) error {
	if err := v.start(); err != nil {
		return err
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return malformed(`"events" is not an array`)
	}
	total := v.count
	if v.rng != nil {
		total = v.rng.End - v.rng.Start
	}
	var leafBuf []tlog.Hash
	for dec.More() {
		var be bundleEvent
		if err := dec.Decode(&be); err != nil {
			return malformed("entry after #%d: %v", v.last, err)
		}
		if be.Index == nil || be.Line == nil {
			return malformed("entry after #%d lacks index or line", v.last)
		}
		idx := *be.Index
		if err := v.entry(idx, []byte(*be.Line), be.Hash, be.Proof, &leafBuf); err != nil {
			return err
		}
		v.n++
		if v.n%progressEvery == 0 {
			reportProgress(v.progress, v.n, total)
		}
	}
	reportProgress(v.progress, v.n, total)
	if t, err := dec.Token(); err != nil || t != json.Delim(']') {
		return malformed(`"events" is not terminated`)
	}
	return nil
}

func (v *bundleVerifier) entry(idx int64, line []byte, hash *tlog.Hash, proof []tlog.Hash, leafBuf *[]tlog.Hash) error {
	if idx <= v.last {
		return verr(idx, "の順序が不正です（記録の並べ替えまたは挿入）",
			"is out of order or repeated (entries reordered or inserted)")
	}
	if idx >= v.cp.Size {
		return verr(idx, "はチェックポイントの範囲外です（記録の挿入）",
			fmt.Sprintf("lies beyond the checkpoint of size %d (inserted)", v.cp.Size))
	}
	if v.cr != nil && idx != v.last+1 {
		return verr(v.last+1, "が欠落しています（記録の削除）", "is missing (deleted)")
	}
	if v.cr != nil && idx >= v.rng.End {
		return verr(idx, "は出力範囲外です（記録の挿入）",
			fmt.Sprintf("lies outside the exported range [%d, %d) (inserted)", v.rng.Start, v.rng.End))
	}
	ev, err := ParseRecord(line)
	if err != nil {
		return verr(idx, "が改ざんされています（正規形ではありません）", "has been altered (not canonical: "+err.Error()+")")
	}
	if !v.f.match(&ev) {
		return verr(idx, "は出力条件に合いません（記録の挿入）", "does not match the export's filter (inserted)")
	}
	leaf := tlog.RecordHash(line)
	if v.cr != nil {
		if hash == nil {
			return malformed("entry #%d lacks its hash", idx)
		}
		if *hash != leaf {
			return verr(idx, "が改ざんされています（内容がハッシュと一致しません）",
				"has been altered (its content does not match its hash)")
		}
		*leafBuf = v.cr.push(leaf, (*leafBuf)[:0])
		if v.want > 0 && v.cr.start == 0 && v.cr.end == v.want {
			root, err := v.cr.root(v.want, nil)
			if err != nil {
				return err
			}
			v.wantAt = &root
		}
	} else {
		if proof == nil {
			return malformed("entry #%d lacks its inclusion proof", idx)
		}
		if err := tlog.CheckRecord(proof, v.cp.Size, v.cp.Root, idx, leaf); err != nil {
			return verr(idx, "が改ざんされています（包含証明が署名済みチェックポイントと一致しません）",
				"has been altered (its inclusion proof does not match the signed checkpoint)")
		}
	}
	v.d.add(idx, leaf)
	if v.rep.First < 0 {
		v.rep.First = idx
	}
	v.rep.Last = idx
	v.last = idx
	return nil
}

func (v *bundleVerifier) finish() error {
	if !v.events {
		if err := v.start(); err != nil {
			return err
		}
	}
	cp := v.cp
	if v.cr != nil {
		if v.cr.end < v.rng.End {
			return verr(v.cr.end, "が欠落しています（記録の削除）",
				fmt.Sprintf("is missing (deleted): the range ends at #%d", v.rng.End-1))
		}
		root, err := v.cr.root(cp.Size, v.rng.Proof)
		if err != nil {
			return err
		}
		if root != cp.Root {
			return verr(-1, "記録とハッシュが共に書き換えられています（署名済みの根ハッシュと一致しません）",
				"the entries and their hashes were altered together: they do not add up to the signed checkpoint's root")
		}
	}
	if len(v.manifest) == 0 {
		return malformed(`"manifest" is missing`)
	}
	mn, err := openNote(v.manifest, v.vkey, "bundle manifest")
	if err != nil {
		return err
	}
	want := &manifest{
		origin: cp.Origin, size: cp.Size, root: cp.Root, contract: v.filt.Contract, from: v.filt.From, to: v.filt.To,
		isRange: v.rng != nil, count: v.n, digest: v.d.sum(),
	}
	if v.rng != nil {
		want.rng = [2]int64{v.rng.Start, v.rng.End}
	}
	if mn.Text != want.body() {
		return manifestMismatch(mn.Text, want)
	}

	rep := v.rep
	rep.Origin, rep.Checkpoint, rep.Entries = cp.Origin, cp, v.n
	rep.Contract, rep.From, rep.To = v.f.contract, v.f.from, v.f.to
	rep.Range = v.rng != nil
	rep.Complete = rep.Range && v.rng.Start == 0 && v.rng.End == cp.Size
	if v.prev != nil {
		p, err := OpenCheckpoint([]byte(v.prev.Checkpoint), v.vkey)
		if err != nil {
			return fmt.Errorf("bundle's previous checkpoint: %w", err)
		}
		if err := checkConsistency(p, cp, v.prev.Proof); err != nil {
			return err
		}
		rep.Previous = append(rep.Previous, p)
	}
	if p := v.optPrev; p != nil {
		switch {
		case p.Size >= cp.Size:
			if err := checkConsistency(p, cp, nil); err != nil {
				return err
			}
		case v.prev != nil && rep.Previous[0].Size == p.Size:
			if err := checkConsistency(p, rep.Previous[0], nil); err != nil {
				return err
			}
		case v.wantAt != nil:
			if *v.wantAt != p.Root {
				return fmt.Errorf("%w: entries before #%d differ from those the previous checkpoint signed: they were rewritten",
					ErrInconsistent, p.Size)
			}
		case p.Size == 0:
		default:
			return fmt.Errorf("%w: the bundle carries no consistency proof for the previous checkpoint (size %d): export it again with --previous",
				ErrMalformed, p.Size)
		}
		rep.Previous = append(rep.Previous, p)
	}
	return nil
}

func manifestMismatch(signed string, want *manifest) error {
	sl := strings.Split(signed, "\n")
	wl := strings.Split(want.body(), "\n")
	line := func(ls []string, prefix string) string {
		for _, l := range ls {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		return ""
	}
	if len(sl) < 4 || sl[0] != manifestTitle {
		return malformed("the manifest is not a sealgate export manifest")
	}
	if !slices.Equal(sl[1:4], wl[1:4]) {
		return malformed("the manifest is for another checkpoint than the bundle's")
	}
	for _, p := range []string{"contract ", "from ", "to "} {
		if line(sl, p) != line(wl, p) {
			return verr(-1, "出力条件が書き換えられています", "the export's filter was altered ("+strings.TrimSpace(p)+")")
		}
	}
	if s, w := line(sl, "range "), line(wl, "range "); s != w {
		var a, b int64
		_, err := fmt.Sscanf(s, "range %d %d", &a, &b)
		if err == nil && want.isRange && want.rng[0] > a {
			return verr(a, "が欠落しています（記録の削除）",
				fmt.Sprintf("is missing (deleted): the gateway exported from #%d", a))
		}
		if err == nil && want.isRange && want.rng[1] < b {
			return verr(want.rng[1], "以降が欠落しています（記録の削除）",
				fmt.Sprintf("and later entries are missing (deleted): the gateway exported up to #%d", b-1))
		}
		return verr(-1, "記録の範囲が書き換えられています（記録の削除または挿入）",
			"the range of entries differs from what the gateway exported (entries removed or added)")
	}
	var n int64
	fmt.Sscanf(line(sl, "events "), "events %d", &n)
	if n != want.count {
		return verr(-1, fmt.Sprintf("記録が削除または追加されています（出力時 %d 件、現在 %d 件）", n, want.count),
			fmt.Sprintf("entries were removed or added: the gateway exported %d, the bundle holds %d", n, want.count))
	}
	return verr(-1, "記録が別の記録に差し替えられています", "entries were replaced by other entries (the manifest digest differs)")
}

// VerifyDB recomputes the whole tree from the records in the database in
// one streaming pass and checks every record's canonical form and its
// copied columns, every stored hash, and the root at every signed checkpoint
// (whose signatures are checked with vkey) and at opts.Previous. This is how
// a record edited, deleted, reordered or inserted in the database is found;
// the first bad entry is named in a *VerifyError.
func VerifyDB(ctx context.Context, db ReadDB, vkey string, opts VerifyOptions, progress func(done, total int64)) (*VerifyReport, error) {
	kid, err := KeyID(vkey)
	if err != nil {
		return nil, err
	}
	tx, err := db.Read().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("failed to begin verification: %w", err)
	}
	defer tx.Rollback()
	rep := &VerifyReport{Key: kid, First: -1, Last: -1}

	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx)+1, 0) FROM ledger_records`).Scan(&n); err != nil {
		return nil, fmt.Errorf("failed to read ledger size: %w", err)
	}
	rep.Size = n

	// Signed checkpoints, oldest first, all verified.
	var cps []*SignedCheckpoint
	crows, err := tx.QueryContext(ctx, `SELECT size, root, note FROM ledger_checkpoints ORDER BY size`)
	if err != nil {
		return nil, fmt.Errorf("failed to read checkpoints: %w", err)
	}
	for crows.Next() {
		var size int64
		var root []byte
		var msg string
		if err := crows.Scan(&size, &root, &msg); err != nil {
			crows.Close()
			return nil, fmt.Errorf("failed to read checkpoint: %w", err)
		}
		cp, err := OpenCheckpoint([]byte(msg), vkey)
		if err != nil {
			crows.Close()
			return nil, fmt.Errorf("stored checkpoint of size %d: %w", size, err)
		}
		if cp.Size != size || string(root) != string(cp.Root[:]) {
			crows.Close()
			return nil, fmt.Errorf("%w: stored checkpoint of size %d: its columns differ from its signed note", ErrTampered, size)
		}
		cps = append(cps, cp)
	}
	crows.Close()
	if err := crows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read checkpoints: %w", err)
	}
	rep.Checkpoints = len(cps)
	if len(cps) > 0 {
		rep.Checkpoint = cps[len(cps)-1]
		rep.Origin = rep.Checkpoint.Origin
	}
	if opts.Witnesses.enabled() {
		if err := witnessedDB(ctx, tx, cps, opts.Witnesses, rep); err != nil {
			return nil, err
		}
	}
	checks := slices.Clone(cps)
	for _, msg := range append([][]byte{opts.Previous}, opts.Checkpoints...) {
		if len(msg) == 0 {
			continue
		}
		p, err := OpenCheckpoint(msg, vkey)
		if err != nil {
			return nil, fmt.Errorf("external checkpoint: %w", err)
		}
		if rep.Origin != "" && p.Origin != rep.Origin {
			return nil, fmt.Errorf("%w: the external checkpoint is of log %q, not %q", ErrInconsistent, p.Origin, rep.Origin)
		}
		checks = append(checks, p)
		rep.Previous = append(rep.Previous, p)
	}
	slices.SortStableFunc(checks, func(a, b *SignedCheckpoint) int { return cmp.Compare(a.Size, b.Size) })

	rows, err := tx.QueryContext(ctx, `SELECT idx, time_ms, type, contract, data FROM ledger_records ORDER BY idx`)
	if err != nil {
		return nil, fmt.Errorf("failed to read ledger records: %w", err)
	}
	defer rows.Close()
	hrows, err := tx.QueryContext(ctx, `SELECT idx, hash FROM ledger_hashes ORDER BY idx`)
	if err != nil {
		return nil, fmt.Errorf("failed to read ledger hashes: %w", err)
	}
	defer hrows.Close()
	hs := &hashCursor{rows: hrows}

	cr := newCompactRange(0)
	var produced []tlog.Hash
	var i int64
	good := int64(0) // entries [0, good) match a verified checkpoint
	ci := 0
	for ; rows.Next(); i++ {
		var idx, timeMS int64
		var typ, contract string
		var data sql.RawBytes
		if err := rows.Scan(&idx, &timeMS, &typ, &contract, &data); err != nil {
			return nil, fmt.Errorf("failed to read ledger record: %w", err)
		}
		if idx != i {
			// A gap: entry i was deleted, unless no hash exists for it
			// either, in which case row idx was inserted past the end.
			if ok, err := hs.peek(); err != nil {
				return nil, err
			} else if !ok {
				return nil, verr(idx, "は台帳を経ずに挿入されています", "was inserted outside the ledger (it has no stored hash)")
			}
			return nil, verr(i, "が欠落しています（記録の削除）", "is missing (deleted)")
		}
		ev, err := ParseRecord(data)
		if err != nil {
			return nil, verr(i, "が改ざんされています（正規形ではありません）", "has been altered (not canonical: "+err.Error()+")")
		}
		if ev.Time.UnixMilli() != timeMS || ev.Type != typ || ev.Contract != contract {
			return nil, verr(i, "の検索用の列（日時・種別・契約）が書き換えられています",
				"has had its time/type/contract columns altered (they differ from the record; exports select by them)")
		}
		produced = cr.push(tlog.RecordHash(data), produced[:0])
		first := tlog.StoredHashIndex(0, i)
		for j, h := range produced {
			sidx, sh, ok, err := hs.next()
			if err != nil {
				return nil, err
			}
			if !ok || sidx != first+int64(j) {
				return nil, verr(i, "は台帳を経ずに挿入されています（ハッシュがありません）",
					"was inserted outside the ledger (its stored hashes are missing)")
			}
			if sh != h {
				if j == 0 {
					return nil, verr(i, "が改ざんされています（内容が記録時のハッシュと一致しません）",
						"has been altered (its content differs from when it was appended)")
				}
				lo := i + 1 - int64(1)<<j
				return nil, verr(lo, fmt.Sprintf("〜#%d のハッシュが書き換えられています", i),
					fmt.Sprintf("to #%d: their stored hashes were rewritten", i))
			}
		}
		for ; ci < len(checks) && checks[ci].Size <= i+1; ci++ {
			c := checks[ci]
			if c.Size == 0 {
				continue
			}
			root, err := cr.root(c.Size, nil)
			if err != nil {
				return nil, err
			}
			if root != c.Root {
				return nil, verr(good, fmt.Sprintf("〜#%d が書き換えられています（サイズ %d の署名済みチェックポイントと一致しません。ハッシュも再計算されています）", c.Size-1, c.Size),
					fmt.Sprintf("to #%d were rewritten: the tree no longer matches the checkpoint signed at size %d (the stored hashes were recomputed too)", c.Size-1, c.Size))
			}
			good = c.Size
		}
		if rep.First < 0 {
			rep.First = i
		}
		rep.Last = i
		if (i+1)%progressEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			reportProgress(progress, i+1, n)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read ledger records: %w", err)
	}
	reportProgress(progress, i, n)
	rep.Entries = i
	for ; ci < len(checks); ci++ {
		c := checks[ci]
		if c.Size == 0 {
			continue
		}
		return nil, verr(i, fmt.Sprintf("〜#%d が欠落しています（サイズ %d の署名済みチェックポイントより少ない）", c.Size-1, c.Size),
			fmt.Sprintf("to #%d are missing (deleted): a checkpoint signed at size %d covers them", c.Size-1, c.Size))
	}
	if _, _, ok, err := hs.next(); err != nil {
		return nil, err
	} else if ok {
		return nil, verr(i, "以降が欠落しています（ハッシュだけが残っています）",
			"and later entries are missing (deleted): their stored hashes remain")
	}
	if rep.Checkpoint != nil {
		rep.Unanchored = n - rep.Checkpoint.Size
	} else {
		rep.Unanchored = n
	}
	if rep.Witnessed != nil {
		rep.Unwitnessed = n - rep.Witnessed.Size
	}
	return rep, nil
}

// witnessedDB checks the recorded cosignatures of the checkpoints cps
// (verified, oldest first) by the witnesses of p: every one must verify,
// and at least one checkpoint must have the quorum. The newest such
// checkpoint goes to rep.Witnessed.
func witnessedDB(ctx context.Context, tx *sql.Tx, cps []*SignedCheckpoint, p WitnessPolicy, rep *VerifyReport) error {
	vs, k, err := p.verifiers()
	if err != nil {
		return err
	}
	if len(cps) == 0 {
		return &WitnessError{Size: -1, Need: k, ReasonJA: "データベースに署名済みチェックポイントがありません",
			Reason: "the database holds no signed checkpoint"}
	}
	var newest error
	for _, cp := range cps {
		lines, err := cosignatureLines(ctx, tx, cp.Size)
		if err != nil {
			return err
		}
		got, err := checkWitnesses(append(bytes.Clone(cp.Note), lines...), cp.Size, vs, k)
		var we *WitnessError
		switch {
		case err == nil:
			rep.Witnessed, rep.Witnesses = cp, got
			newest = nil
		case errors.As(err, &we) && we.Altered == "":
			newest = err // too few: an older or newer one may have enough
		default:
			return fmt.Errorf("stored checkpoint of size %d: %w", cp.Size, err)
		}
	}
	if rep.Witnessed == nil {
		we := newest.(*WitnessError)
		we.ReasonJA = "データベースのどのチェックポイントにも必要な数の証人の連署がありません。最新の" + we.ReasonJA
		we.Reason = "no checkpoint in the database is cosigned by enough witnesses; the newest: " + we.Reason
		return we
	}
	return nil
}
