package audit

import (
	"bufio"
	"context"
	"fmt"

	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sealgate/sealgate/database"
)

// Benchmarks. Run them with, for example:
//
//	go test -run '^$' -bench . -benchtime 2000x ./audit/         # appends
//	go test -run '^$' -bench Ledger1M -benchtime 1x -timeout 30m ./audit/
//
// Append benchmarks commit durably (synchronous=FULL) in a directory on the
// real disk: $SEALGATE_BENCH_DIR, or the default temporary directory (a
// warning is logged if that is tmpfs). SEALGATE_BENCH_EVENTS overrides the
// size of the large ledger (default 1,000,000).

func benchDir(b *testing.B) string {
	dir := os.Getenv("SEALGATE_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else {
		d, err := os.MkdirTemp(dir, "bench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	if isTmpfs(dir) {
		b.Logf("WARNING: %s is on tmpfs: fsync costs nothing there; set SEALGATE_BENCH_DIR to a directory on disk", dir)
	}
	return dir
}

func benchFixture(b *testing.B, syncMode string) *fixture {
	f := newFixtureSync(b, syncMode, func(o *Options) {})
	return f
}

// appendRate appends n events from writers concurrent goroutines, each
// waiting for its own durable commit, to the new database at path opened
// with synchronous mode mode, and returns the events per second.
func appendRate(b *testing.B, path, mode string, writers, n int) float64 {
	ctx := context.Background()
	db, err := database.Open(ctx, path, database.Options{Synchronous: mode})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	l, err := New(Options{Origin: testOrigin, Now: newClock().Now})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				err := db.Write(ctx, func(tx *database.Tx) error {
					_, err := l.Append(ctx, tx, event(int(i)))
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// benchAppend measures durable appends with writers concurrent writers,
// each waiting for its own commit: with the default durability (the WAL
// fsync of one batch overlapped with the next batch) and, alternating
// with it in the same run so that both see the same disk, with SQLite's
// own fsync inside each commit ("EXTRA": how it committed before, the
// baseline), and with one writer (every append one commit and one fsync).
// A batch holds at most one append per writer, so that writers cannot
// exceed writers times the one-writer rate unless commits overlap.
func benchAppend(b *testing.B, writers int) {
	dir := benchDir(b)
	const rounds = 4
	per := max(b.N/rounds, 1)
	var rate, base, one float64
	for r := range rounds {
		one += appendRate(b, filepath.Join(dir, fmt.Sprintf("one%d.db", r)), "FULL", 1, max(per/writers, 200)) / rounds
		base += appendRate(b, filepath.Join(dir, fmt.Sprintf("base%d.db", r)), "EXTRA", writers, per) / rounds
		rate += appendRate(b, filepath.Join(dir, fmt.Sprintf("ledger%d.db", r)), "FULL", writers, per) / rounds
	}
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(base, "baseline-events/s")
	b.ReportMetric(rate/base, "x-baseline")
	b.Logf("%d writers: %.0f durable appends/s pipelined; in the same run %.0f/s with the fsync inside each commit (baseline): %.2fx; "+
		"1 writer %.0f/s (%v per commit), so %d writers without overlap reach at most %.0f/s; target 15,000/s with 8 writers: %.2fx",
		writers, rate, base, rate/base, one, time.Duration(float64(time.Second)/one).Round(time.Microsecond), writers, one*float64(writers), rate/15000)
}

func BenchmarkAppendDurable1Writer(b *testing.B)   { benchAppend(b, 1) }
func BenchmarkAppendDurable8Writers(b *testing.B)  { benchAppend(b, 8) }
func BenchmarkAppendDurable64Writers(b *testing.B) { benchAppend(b, 64) }

// BenchmarkAppendCPU measures Append alone, many per transaction, no fsync.
func BenchmarkAppendCPU(b *testing.B) {
	f := benchFixture(b, "OFF")
	b.ResetTimer()
	f.appendN(b.N, event)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// fillFast writes n valid events straight into the tables (synchronous=OFF,
// big transactions, hashes from an in-memory frontier): a fixture, not the
// code under test. Contracts rotate over 8 codes.
func fillFast(b *testing.B, f *fixture, n int) {
	ctx := f.ctx
	cr := newCompactRange(0)
	var produced []tlog.Hash
	hidx := int64(0)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const batch = 50_000
	const rowsPerStmt = 100
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		err := f.db.Write(ctx, func(tx *database.Tx) error {
			var rq strings.Builder
			var rargs, hargs []any
			var hq strings.Builder
			nrec, nh := 0, 0
			flush := func() error {
				if nrec > 0 {
					if _, err := tx.ExecContext(ctx, "INSERT INTO ledger_records(idx, time_ms, type, contract, data) VALUES "+rq.String(), rargs...); err != nil {
						return err
					}
				}
				if nh > 0 {
					if _, err := tx.ExecContext(ctx, "INSERT INTO ledger_hashes(idx, hash) VALUES "+hq.String(), hargs...); err != nil {
						return err
					}
				}
				rq.Reset()
				hq.Reset()
				rargs, hargs, nrec, nh = rargs[:0], hargs[:0], 0, 0
				return nil
			}
			for i := start; i < end; i++ {
				ev := event(i)
				ev.V = schemaV1
				ev.Time = base.Add(time.Duration(i) * time.Second)
				ev.Contract = "C" + strconv.Itoa(i%8)
				line, err := Canonical(&ev)
				if err != nil {
					return err
				}
				if nrec > 0 {
					rq.WriteByte(',')
				}
				rq.WriteString("(?,?,?,?,?)")
				rargs = append(rargs, i, ev.Time.UnixMilli(), ev.Type, ev.Contract, line)
				nrec++
				produced = cr.push(tlog.RecordHash(line), produced[:0])
				for _, h := range produced {
					if nh > 0 {
						hq.WriteByte(',')
					}
					hq.WriteString("(?,?)")
					hargs = append(hargs, hidx, append([]byte(nil), h[:]...))
					hidx++
					nh++
				}
				if nrec == rowsPerStmt {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			return flush()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func benchEvents() int {
	if s := os.Getenv("SEALGATE_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err == nil && n > 0 {
			return n
		}
	}
	return 1_000_000
}

// BenchmarkLedger1M verifies and exports a ledger of a million events.
func BenchmarkLedger1M(b *testing.B) {
	n := benchEvents()
	f := benchFixture(b, "OFF")
	t0 := time.Now()
	fillFast(b, f, n)
	f.checkpoint()
	fmt.Fprintf(os.Stderr, "fixture: %d events in %v\n", n, time.Since(t0).Round(time.Millisecond))
	dir := b.TempDir()
	seconds := func(b *testing.B, what string, count int, fn func()) {
		b.ResetTimer()
		t := time.Now()
		for range b.N {
			fn()
		}
		d := time.Since(t) / time.Duration(b.N)
		b.ReportMetric(d.Seconds(), "s/op")
		b.ReportMetric(float64(count)/d.Seconds(), "events/s")
		b.Logf("%s: %v", what, d.Round(time.Millisecond))
	}
	b.Run("VerifyDB", func(b *testing.B) {
		seconds(b, "VerifyDB", n, func() {
			rep, err := VerifyDB(f.ctx, f.db, f.vkey, VerifyOptions{}, nil)
			if err != nil || rep.Entries != int64(n)+1 {
				b.Fatal(rep, err)
			}
		})
		if n == 1_000_000 {
			// Issue 16: verify of 1M events <= 8 s on one core (-cpu 1).
			per := b.Elapsed() / time.Duration(b.N)
			b.Logf("VerifyDB of 1,000,000 events with GOMAXPROCS=%d: %v; target <= 8 s on one core: %.2fx of the target's time",
				runtime.GOMAXPROCS(0), per.Round(time.Millisecond), per.Seconds()/8)
		}
	})
	full := filepath.Join(dir, "full.json")
	b.Run("ExportJSON", func(b *testing.B) {
		seconds(b, "Export", n, func() { exportFile(b, f, full, ExportOptions{}) })
	})
	b.Run("VerifyBundle", func(b *testing.B) {
		seconds(b, "VerifyBundle", n, func() {
			rep := verifyFile(b, f, full)
			if !rep.Complete || rep.Entries < int64(n) {
				b.Fatal(rep)
			}
		})
	})
	sel := filepath.Join(dir, "selection.json")
	b.Run("ExportContract", func(b *testing.B) {
		seconds(b, "Export one contract (1/8 of the events, with proofs)", n/8, func() { exportFile(b, f, sel, ExportOptions{Contract: "C3"}) })
	})
	b.Run("VerifyContractBundle", func(b *testing.B) {
		seconds(b, "VerifyBundle of one contract", n/8, func() {
			rep := verifyFile(b, f, sel)
			if rep.Range || rep.Entries != int64(n/8) {
				b.Fatal(rep)
			}
		})
	})
}

func exportFile(b *testing.B, f *fixture, path string, opts ExportOptions) {
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	w := bufio.NewWriter(out)
	opts.Format, opts.Signer = FormatJSON, f.signer
	if err := f.l.Export(f.ctx, f.db, opts, w, nil); err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if st, err := out.Stat(); err == nil {
		b.Logf("%s: %d MB", filepath.Base(path), st.Size()>>20)
	}
}

func verifyFile(b *testing.B, f *fixture, path string) *VerifyReport {
	in, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	rep, err := VerifyBundle(in, f.vkey, VerifyOptions{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return rep
}
