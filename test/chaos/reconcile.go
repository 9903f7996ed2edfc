package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/storage/s3"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

// tally is the reconciliation of one run.
type tally struct {
	Messages, Accepted, Refused, Lost, Unknown, NotSent int
	Refused4xx, Refused5xx                              int
	UnknownCommitted                                    int // unknown, but the gateway had committed them

	Expected   int // deliveries owed for committed messages
	Delivered  int // of those, delivered at least once
	Missing    int
	Duplicated int // extra copies of owed deliveries
	// DupExplained counts the duplicates that SMTP's semantics allow: a
	// kill or a smarthost outage began between the two copies (the next
	// hop's 250 was sent but never recorded). The rest are bugs.
	DupExplained int
	Leaked       int // deliveries containing attachment plaintext or its base64
	Corrupt      int // internal copies that differ from what was sent
	Incomplete   int // sealed copies without one notice per attachment, or without a link
	Unsealed     int // a copy to an external recipient of a message with attachments, not sealed
	Stray        int // deliveries that belong to no message of the run, or to no owed recipient
	Bounced      int
	// The contract ended during the run (fleet mode): its messages'
	// deliveries still pending when it ended were cancelled by the end.
	EndMessages  int // messages naming it that were committed
	EndCancelled int // owed deliveries of those not made: cancelled by the end
	AfterEnd     int // deliveries of its messages begun after its end returned

	// Nothing may remain of a message that was refused or lost.
	AfterRefusal int // deliveries of refused/lost messages
	LeftInDB     int // refused/lost messages recorded in the database
	NotInDB      int // accepted messages not recorded exactly once

	// State of the gateway after the drain.
	StuckOutbound int // outbound rows still queued, waiting or held
	StuckLeased   int // of those, leased by an instance (PostgreSQL) until later than a minute after the drain
	// Queue summarizes the rows of the queue that were not delivered:
	// "status kind: last error ×count".
	Queue          []string
	FailedOutbound int
	SecretsLeft    int // wrapped tokens/passphrases still in the queue
	SpoolLeft      int // spool files left
	OrphanObjects  int // stored objects no file record points to
	// Unexplained counts the spool files and orphan objects that neither
	// a kill nor (for objects) a store outage explains: they can only come
	// from a refused message that was not cleaned up.
	Unexplained    int
	MissingObjects int // file records whose object is gone

	Problems []string
}

func (t *tally) problem(format string, args ...any) {
	if len(t.Problems) < 40 {
		t.Problems = append(t.Problems, fmt.Sprintf(format, args...))
	}
}

// ok reports whether the run lost nothing and leaked nothing.
func (t *tally) ok() bool {
	return t.Missing == 0 && t.Leaked == 0 && t.Corrupt == 0 && t.Incomplete == 0 && t.Unsealed == 0 &&
		t.Stray == 0 && t.AfterRefusal == 0 && t.LeftInDB == 0 && t.NotInDB == 0 && t.StuckOutbound == 0 &&
		t.MissingObjects == 0 && t.NotSent == 0 && t.Duplicated == t.DupExplained && t.Unexplained == 0 && t.SecretsLeft == 0 &&
		t.AfterEnd == 0
}

type owed struct{ kind, rcpt string }

// reconcile checks every message against what the sink received. dbMsgs
// counts the database's message records by Message-ID (nil for a plain
// relay, whose judge of "committed" is the 250 alone).
// faults are the faults injected during the run (to explain duplicates).
//
// end is the contract ended during the run (nil: none). Its messages'
// Message-IDs were replaced by commitments in the database, so they are
// reconciled in aggregate: the database holds between (accepted +
// unknown-but-delivered) and (accepted + unknown) messages under it; an
// owed delivery of one of its accepted messages may be missing only as
// cancelled by the end, and no more of its messages may miss deliveries
// than the database shows with rows the end cancelled; no delivery of its
// messages may begin after the end returned.
func reconcile(gen *generator, results []result, dels []delivery, dbMsgs map[string]int, relay bool, faults []faultEvent, end *contractEnd) *tally {
	t := &tally{Messages: len(results)}
	ended := func(m *msgSpec) bool { return end != nil && m.Contract != "" }
	endUnknown, endMissingMsgs := 0, 0
	byMsg := map[int][]delivery{}
	for _, d := range dels {
		if len(d.Leaks) > 0 {
			t.Leaked++
			t.problem("LEAK in %s delivery of %s to %v: %v", d.Kind, d.Tag, d.Rcpts, d.Leaks[0])
		}
		i, ok := gen.parseTag(d.Tag)
		if !ok || i >= len(results) {
			t.Stray++
			t.problem("stray %s delivery %q to %v", d.Kind, d.Tag, d.Rcpts)
			continue
		}
		byMsg[i] = append(byMsg[i], d)
	}
	for i, r := range results {
		m := gen.spec(i)
		got := byMsg[i]
		inDB := dbMsgs[m.Tag]
		if ended(&m) {
			inDB = -1 // not found by its Message-ID: counted in aggregate below
			for _, d := range got {
				if d.MailAt.After(end.Done) {
					t.AfterEnd++
					t.problem("message %d: %s delivery to %v began at %s, after the end of contract %s returned (%s)", i, d.Kind, d.Rcpts,
						d.MailAt.Format("15:04:05.000"), end.Code, end.Done.Format("15:04:05.000"))
				}
			}
		}
		committed := false
		switch r.Outcome {
		case accepted:
			t.Accepted++
			committed = true
			if inDB == -1 {
				t.EndMessages++
			} else if dbMsgs != nil && inDB != 1 {
				t.NotInDB++
				t.problem("message %d%s accepted but recorded %d times", i, tagOf(&m), inDB)
			}
		case refused, lost:
			if r.Outcome == refused {
				t.Refused++
				if r.Code/100 == 4 {
					t.Refused4xx++
				} else {
					t.Refused5xx++
				}
			} else {
				t.Lost++
			}
			if inDB > 0 {
				t.LeftInDB++
				t.problem("message %d %s (%d %s at %s) but recorded in the database", i, r.Outcome, r.Code, oneLine(r.Reply), r.Stage)
			}
			if len(got) > 0 {
				t.AfterRefusal += len(got)
				t.problem("message %d %s (%d at %s) but %d deliveries", i, r.Outcome, r.Code, r.Stage, len(got))
			}
		case unknown:
			t.Unknown++
			committed = inDB > 0
			if dbMsgs == nil || inDB == -1 {
				committed = len(got) > 0
			}
			if inDB == -1 {
				endUnknown++
				if committed {
					t.EndMessages++
				}
			}
			if committed {
				t.UnknownCommitted++
			}
		case notSent:
			t.NotSent++
			if inDB > 0 || len(got) > 0 {
				t.problem("message %d never sent but found", i)
			}
		}
		if !committed {
			if r.Outcome == unknown && len(got) > 0 {
				t.AfterRefusal += len(got)
				t.problem("message %d unknown, not committed, but %d deliveries", i, len(got))
			}
			continue
		}
		want := map[owed]bool{}
		for _, rc := range m.External {
			switch {
			case relay:
				want[owed{"copy", rc}] = true
			case len(m.Atts) > 0:
				want[owed{"sealed", rc}] = true
				want[owed{"key", rc}] = true
			default:
				want[owed{"copy", rc}] = true
			}
		}
		for _, rc := range m.Internal {
			want[owed{"plain", rc}] = true
		}
		count := map[owed][]span{}
		var plainHash *[32]byte
		for _, d := range got {
			switch d.Kind {
			case "plain":
				if plainHash == nil {
					h := sha256.Sum256(gen.render(&m))
					plainHash = &h
				}
				if d.SHA256 != *plainHash && !relay {
					t.Corrupt++
					t.problem("message %d: internal copy to %v differs from the original", i, d.Rcpts)
				}
			case "sealed":
				if d.Notices != len(m.Atts) || !d.HasLink {
					t.Incomplete++
					t.problem("message %d: sealed copy to %v has %d notices for %d attachments (link %v)", i, d.Rcpts, d.Notices, len(m.Atts), d.HasLink)
				}
			case "copy":
				if len(m.Atts) > 0 && !relay {
					t.Unsealed++
					t.problem("message %d: unsealed copy to %v", i, d.Rcpts)
				}
			case "bounce":
				t.Bounced++
				t.problem("message %d: bounce to %v", i, d.Rcpts)
				continue
			}
			for _, rc := range d.Rcpts {
				k := owed{d.Kind, rc}
				if !want[k] {
					t.Stray++
					t.problem("message %d: unexpected %s delivery to %s", i, d.Kind, rc)
					continue
				}
				count[k] = append(count[k], span{d.MailAt, d.At, d.Via})
			}
		}
		keys := make([]owed, 0, len(want))
		for k := range want {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(a, b int) bool { return keys[a].kind+keys[a].rcpt < keys[b].kind+keys[b].rcpt })
		missedByEnd := false
		for _, k := range keys {
			t.Expected++
			at := count[k]
			if len(at) == 0 && ended(&m) && r.Outcome == accepted && r.End.Before(end.Done) {
				t.EndCancelled++
				missedByEnd = true
				continue
			}
			if len(at) == 0 {
				t.Missing++
				t.problem("message %d%s (%s): %s to %s MISSING", i, tagOf(&m), r.Outcome, k.kind, k.rcpt)
				continue
			}
			t.Delivered++
			slices.SortFunc(at, func(a, b span) int { return a.end.Compare(b.end) })
			for j := 1; j < len(at); j++ {
				t.Duplicated++
				if explained(faults, at[j-1], at[j].end) {
					t.DupExplained++
				} else {
					t.problem("message %d: %s to %s delivered again at %s with no crash or outage since %s (began %s; nearest fault: %s)",
						i, k.kind, k.rcpt, at[j].end.Format("15:04:05.000"), at[j-1].end.Format("15:04:05.000"),
						at[j-1].start.Format("15:04:05.000"), nearestFault(faults, at[j-1].start))
				}
			}
		}
		if missedByEnd {
			endMissingMsgs++
		}
	}
	if end != nil {
		if lo, hi := t.EndMessages, t.EndMessages+endUnknown; end.DBMessages < lo || end.DBMessages > hi {
			t.NotInDB++
			t.problem("contract %s: %d messages in the database, want %d to %d (accepted, and replies never seen)", end.Code, end.DBMessages, lo, hi)
		}
		if endMissingMsgs > end.CancelledMessages {
			t.Missing += t.EndCancelled
			t.problem("contract %s: %d of its messages miss deliveries (%d), but its end cancelled the rows of %d", end.Code, endMissingMsgs, t.EndCancelled, end.CancelledMessages)
			t.EndCancelled = 0
		}
	}
	return t
}

// tagOf marks a message that names a contract in problem lines.
func tagOf(m *msgSpec) string {
	if m.Contract == "" {
		return ""
	}
	return " [" + m.Contract + "]"
}

// span is one delivery as the sink saw it: from MAIL FROM to the end of
// reading and checking the message, and which instance made it.
type span struct {
	start, end time.Time
	via        string
}

// explained reports whether a kill of the instance that made the first
// delivery, or a smarthost outage, began after that delivery's
// transaction had started (it was in flight, or accepted but not yet
// recorded by the gateway) and before the second delivery ended: what
// SMTP's at-least-once delivery allows. A kill of another instance
// explains nothing: the instance that sent the first copy was alive to
// record it. (With one instance every kill hit it.)
func explained(faults []faultEvent, first span, second time.Time) bool {
	for _, f := range faults {
		hit := f.Kind == faultSmarthost || (f.Kind == faultKill && (f.Instance == "" || f.Instance == first.via))
		if hit && !f.Start.Before(first.start) && !f.Start.After(second) {
			return true
		}
	}
	return false
}

// nearestFault describes the fault that began closest to t.
func nearestFault(faults []faultEvent, t time.Time) string {
	best := "none"
	var bestD time.Duration = -1
	for _, f := range faults {
		d := f.Start.Sub(t)
		if d < 0 {
			d = -d
		}
		if bestD < 0 || d < bestD {
			bestD = d
			best = fmt.Sprintf("%s at %s (%+.3fs)", f.Kind, f.Start.Format("15:04:05.000"), f.Start.Sub(t).Seconds())
		}
	}
	return best
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " / ")
	if r := []rune(s); len(r) > 240 {
		s = string(r[:240]) + "…"
	}
	return s
}

// gatewayState reads what the gateway left: its records and queue, spool
// and objects.
type gatewayState struct {
	dataDirs []string   // the instances' data directories (spool)
	dbURL    string     // PostgreSQL; "": the SQLite file of the (one) data directory
	s3       *s3.Config // nil: the fs store under the data directory
}

func (g gatewayState) openDB() (*sql.DB, error) {
	if g.dbURL != "" {
		db, err := sql.Open("pgx", g.dbURL)
		if err != nil {
			return nil, fmt.Errorf("failed to open the gateway database: %w", err)
		}
		return db, nil
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(g.dataDirs[0], "sealgate.db")+"?mode=ro&_pragma=busy_timeout(20000)")
	if err != nil {
		return nil, fmt.Errorf("failed to open the gateway database: %w", err)
	}
	return db, nil
}

// pending counts outbound rows not yet in a final state.
func (g gatewayState) pending(ctx context.Context) (int, error) {
	db, err := g.openDB()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbound WHERE status IN ('queued', 'waiting', 'held')`).Scan(&n); err != nil {
		return 0, fmt.Errorf("failed to count pending deliveries: %w", err)
	}
	return n, nil
}

// messages counts message records by Message-ID.
func (g gatewayState) messages(ctx context.Context) (map[string]int, error) {
	db, err := g.openDB()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT message_id, COUNT(*) FROM messages GROUP BY message_id`)
	if err != nil {
		return nil, fmt.Errorf("failed to read messages: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("failed to read messages: %w", err)
		}
		out[id] = n
	}
	return out, rows.Err()
}

// crashWindow is how long before a kill a file of an interrupted session
// may have been written.
const crashWindow = 30 * time.Second

// byCrash reports whether a kill came at most crashWindow after mtime.
func byCrash(faults []faultEvent, mtime time.Time) bool {
	for _, f := range faults {
		if f.Kind == faultKill && !f.Start.Before(mtime) && f.Start.Sub(mtime) <= crashWindow {
			return true
		}
	}
	return false
}

// byDatabaseFault reports whether the database was locked, full or
// restarting at most crashWindow after t: the deletion of a refused
// message's spool row fails then.
func byDatabaseFault(faults []faultEvent, t time.Time) bool {
	for _, f := range faults {
		switch f.Kind {
		case faultDBLock, faultDiskFull, faultDBRestart:
			if !f.End.Before(t) && f.Start.Sub(t) <= crashWindow {
				return true
			}
		}
	}
	return false
}

// byStoreOutage reports whether the object store was down at most
// crashWindow after mtime: a refused message's objects are deleted, and
// the deletion fails while the store is down (the gateway logs it; the
// objects are encrypted to keys that were never stored).
func byStoreOutage(faults []faultEvent, mtime time.Time) bool {
	for _, f := range faults {
		if f.Kind == faultStore && !f.End.Before(mtime) && f.Start.Sub(mtime) <= crashWindow {
			return true
		}
	}
	return false
}

// check fills the gateway-state part of t. Spool files and orphan objects
// are what a crash leaves (the session died between writing them and its
// commit; they are encrypted, and their keys were never stored); any that
// no kill explains is counted as unexplained.
func (g gatewayState) check(ctx context.Context, t *tally, faults []faultEvent) error {
	db, err := g.openDB()
	if err != nil {
		return err
	}
	defer db.Close()
	q := func(query string, dst *int) error {
		if err := db.QueryRowContext(ctx, query).Scan(dst); err != nil {
			return fmt.Errorf("failed to query %q: %w", query, err)
		}
		return nil
	}
	if err := q(`SELECT COUNT(*) FROM outbound WHERE status IN ('queued', 'waiting', 'held')`, &t.StuckOutbound); err != nil {
		return err
	}
	if g.dbURL != "" {
		// Claim leases a row by moving its next attempt to the lease's end.
		soon := time.Now().Add(time.Minute).UnixMilli()
		if err := q(fmt.Sprintf(`SELECT COUNT(*) FROM outbound WHERE status = 'queued' AND next_attempt_at > %d`, soon), &t.StuckLeased); err != nil {
			return err
		}
	}
	if err := q(`SELECT COUNT(*) FROM outbound WHERE status = 'failed'`, &t.FailedOutbound); err != nil {
		return err
	}
	if err := q(`SELECT COUNT(*) FROM outbound WHERE secret IS NOT NULL`, &t.SecretsLeft); err != nil {
		return err
	}
	// The objects of a destroyed transfer (its contract ended) are gone
	// by design: they are not owed to the store.
	rows, err := db.QueryContext(ctx, `SELECT f.object_key, t.status FROM files f JOIN transfers t ON t.id = f.transfer_id`)
	if err != nil {
		return fmt.Errorf("failed to read files: %w", err)
	}
	recorded := map[string]bool{}
	destroyed := map[string]bool{}
	for rows.Next() {
		var k, status string
		if err := rows.Scan(&k, &status); err != nil {
			rows.Close()
			return fmt.Errorf("failed to read files: %w", err)
		}
		recorded[k] = true
		if status == "destroyed" {
			destroyed[k] = true
		}
	}
	rows.Close()
	if err := g.queueSummary(ctx, db, t); err != nil {
		return err
	}
	stored, err := g.objects(ctx)
	if err != nil {
		return err
	}
	for k, mtime := range stored {
		if !recorded[k] {
			t.OrphanObjects++
			if !byCrash(faults, mtime) && !byStoreOutage(faults, mtime) {
				t.Unexplained++
				t.problem("object %s (written %s) left behind with no crash to explain it", k, mtime.Format("15:04:05.000"))
			}
		}
	}
	for k := range recorded {
		if _, ok := stored[k]; !ok && !destroyed[k] {
			t.MissingObjects++
			t.problem("object %s recorded but not stored", k)
		}
	}
	if g.dbURL != "" && g.s3 != nil {
		// With PostgreSQL the spool is in the bucket (gateway.BucketSpool):
		// after the drain nothing pending needs any of it.
		left, err := g.listBucket(ctx, gateway.SpoolPrefix)
		if err != nil {
			return err
		}
		for k, mtime := range left {
			t.SpoolLeft++
			if !byCrash(faults, mtime) && !byStoreOutage(faults, mtime) {
				t.Unexplained++
				t.problem("spool object %s (written %s) left behind with no crash to explain it", k, mtime.Format("15:04:05.000"))
			}
		}
	}
	// Spool files kept in the database (gateway.DBSpool): a crash between
	// a file's commit and its message's leaves its row, as it leaves a
	// file; so does a refused message whose clean-up met the database
	// down or full (the row is deleted by the next orphan sweep).
	spoolRows, err := db.QueryContext(ctx, `SELECT name, written_at FROM spool_files`)
	if err != nil {
		return fmt.Errorf("failed to read spool_files: %w", err)
	}
	for spoolRows.Next() {
		var name string
		var ms int64
		if err := spoolRows.Scan(&name, &ms); err != nil {
			spoolRows.Close()
			return fmt.Errorf("failed to read spool_files: %w", err)
		}
		t.SpoolLeft++
		at := time.UnixMilli(ms)
		if !byCrash(faults, at) && !byStoreOutage(faults, at) && !byDatabaseFault(faults, at) {
			t.Unexplained++
			t.problem("spool row %s (written %s) left behind with no crash to explain it", name, at.Format("15:04:05.000"))
		}
	}
	spoolRows.Close()
	if err := spoolRows.Err(); err != nil {
		return fmt.Errorf("failed to read spool_files: %w", err)
	}
	for _, data := range g.dataDirs {
		spool := filepath.Join(data, "spool")
		for _, dir := range []string{spool, filepath.Join(spool, "tmp")} {
			entries, err := os.ReadDir(dir)
			if err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("failed to read spool: %w", err)
			}
			for _, e := range entries {
				if e.IsDir() {
					continue
				}
				t.SpoolLeft++
				info, err := e.Info()
				if err == nil && !byCrash(faults, info.ModTime()) {
					t.Unexplained++
					t.problem("spool file %s (written %s) left behind with no crash to explain it", filepath.Join(dir, e.Name()), info.ModTime().Format("15:04:05.000"))
				}
			}
		}
	}
	return nil
}

// queueSummary fills t.Queue: the queue's undelivered rows by status,
// kind and the start of their last error.
func (g gatewayState) queueSummary(ctx context.Context, db *sql.DB, t *tally) error {
	rows, err := db.QueryContext(ctx, `SELECT status, kind, last_error FROM outbound WHERE status <> 'delivered'`)
	if err != nil {
		return fmt.Errorf("failed to read the queue: %w", err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var status, kind, lastErr string
		if err := rows.Scan(&status, &kind, &lastErr); err != nil {
			return fmt.Errorf("failed to read the queue: %w", err)
		}
		if r := []rune(lastErr); len(r) > 90 {
			lastErr = string(r[:90]) + "…"
		}
		counts[fmt.Sprintf("%s %s: %q", status, kind, lastErr)]++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read the queue: %w", err)
	}
	for k, n := range counts {
		t.Queue = append(t.Queue, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(t.Queue)
	return nil
}

// listBucket lists the keys under prefix in the S3 bucket with the time
// each was written.
func (g gatewayState) listBucket(ctx context.Context, prefix string) (map[string]time.Time, error) {
	c, err := s3test.Client(*g.s3)
	if err != nil {
		return nil, fmt.Errorf("failed to connect to the S3 store: %w", err)
	}
	out := map[string]time.Time{}
	for o := range c.ListObjects(ctx, g.s3.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("failed to list objects: %w", o.Err)
		}
		out[o.Key] = o.LastModified
	}
	return out, nil
}

// objects lists the keys of the sealed objects (prefix sealed/) with the
// time each was written.
func (g gatewayState) objects(ctx context.Context) (map[string]time.Time, error) {
	if g.s3 != nil {
		return g.listBucket(ctx, "sealed/")
	}
	out := map[string]time.Time{}
	// The fs store keeps key k at <dir>/objects/k, and its dir is
	// <data_dir>/objects by default.
	base := filepath.Join(g.dataDirs[0], "objects", "objects")
	root := filepath.Join(base, "sealed")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(base, p)
			info, err := d.Info()
			if err != nil {
				return err
			}
			out[filepath.ToSlash(rel)] = info.ModTime()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to list objects: %w", err)
	}
	return out, nil
}

// stats is throughput and latency of one run.
type stats struct {
	Submit     time.Duration // first start to last outcome
	AcceptRate float64       // accepted messages per second of Submit
	EndToEnd   time.Duration // first start to last owed delivery
	E2ERate    float64       // committed messages per second of EndToEnd
	P50, P99   time.Duration // end of data → 250
	Max        time.Duration
}

func computeStats(results []result, dels []delivery, committed int) stats {
	var s stats
	var first, last time.Time
	var lats []time.Duration
	for _, r := range results {
		if r.Start.IsZero() {
			continue
		}
		if first.IsZero() || r.Start.Before(first) {
			first = r.Start
		}
		if r.End.After(last) {
			last = r.End
		}
		if r.Outcome == accepted {
			lats = append(lats, r.Latency)
		}
	}
	if first.IsZero() {
		return s
	}
	s.Submit = last.Sub(first)
	if s.Submit > 0 {
		s.AcceptRate = float64(len(lats)) / s.Submit.Seconds()
	}
	lastDel := first
	for _, d := range dels {
		if d.At.After(lastDel) {
			lastDel = d.At
		}
	}
	s.EndToEnd = lastDel.Sub(first)
	if s.EndToEnd > 0 {
		s.E2ERate = float64(committed) / s.EndToEnd.Seconds()
	}
	slices.Sort(lats)
	if n := len(lats); n > 0 {
		s.P50 = lats[n*50/100]
		s.P99 = lats[min(n-1, n*99/100)]
		s.Max = lats[n-1]
	}
	return s
}
