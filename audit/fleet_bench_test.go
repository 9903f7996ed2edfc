package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/testpg"
)

// BenchmarkFleetAppend measures ledger appends per second across 1, 2 and
// 3 instances (database.DB and Ledger each, as on three machines) on one
// PostgreSQL, 8 and 32 writers per instance, each append its own db.Write (as
// an SMTP session's), on a private cluster with fsync on (as in
// production: every commit reaches the disk) and, to show what the disk
// costs, with fsync off. It reports appends/s and appends per commit
// (batch; one WAL flush each). Without PostgreSQL installed it skips
// (fails under SEALGATE_REQUIRE_TOOLS).
//
//	go test -run '^$' -bench FleetAppend -benchtime 6000x ./audit/
func BenchmarkFleetAppend(b *testing.B) {
	for _, fsync := range []bool{true, false} {
		srv, err := testpg.StartBench(context.Background(), fsync)
		if errors.Is(err, testpg.ErrNotInstalled) && os.Getenv("SEALGATE_REQUIRE_TOOLS") == "" {
			b.Skip(err)
		}
		if err != nil {
			b.Fatal(err)
		}
		dbs := 0
		// 8 writers per instance as in issue 16's ledger target; 32 as
		// an instance under real load (SMTP sessions, delivery workers
		// and the portal each write): more of them share one commit.
		writers := []int{8}
		if fsync {
			writers = append(writers, 32)
		}
		for _, w := range writers {
			for n := 1; n <= 3; n++ {
				b.Run(fmt.Sprintf("fsync=%v/writers=%d/instances=%d", fsync, w, n), func(b *testing.B) {
					dbs++
					benchFleet(b, srv, fmt.Sprintf("bench%d", dbs), n, w)
				})
			}
		}
		if err := srv.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}

// batchKey marks, in a transaction, that a function of it has counted it.
type batchKey struct{}

func benchFleet(b *testing.B, srv *testpg.Server, name string, instances, writers int) {
	ctx := context.Background()
	url, err := srv.CreateDatabase(ctx, name)
	if err != nil {
		b.Fatal(err)
	}
	stats, err := database.OpenPlain(url)
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	if _, err := stats.Exec(`CREATE EXTENSION pg_stat_statements`); err != nil {
		b.Fatal(err)
	}
	var fleet []*fleetInstance
	clock := newClock()
	for range instances {
		db, err := database.Open(ctx, url, database.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		l, err := New(Options{Origin: testOrigin, Now: clock.Now})
		if err != nil {
			b.Fatal(err)
		}
		fleet = append(fleet, &fleetInstance{db: db, l: l})
	}
	// Statements are counted from here (the migrations are not).
	if _, err := stats.Exec(`SELECT pg_stat_statements_reset()`); err != nil {
		b.Fatal(err)
	}
	var next, batches atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for _, in := range fleet {
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(b.N) {
						return
					}
					err := in.db.Write(ctx, func(tx *database.Tx) error {
						if tx.Value(batchKey{}) == nil {
							tx.SetValue(batchKey{}, true)
							tx.AfterCommit(func() { batches.Add(1) })
						}
						_, err := in.l.Append(ctx, tx, event(int(i)))
						return err
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "client-µs-cpu/append")
	b.ReportMetric(float64(b.N)/float64(max(batches.Load(), 1)), "appends/commit")
	b.ReportMetric(0, "ns/op")
	// Each statement is a round trip between an instance and the server.
	var calls int64
	if err := stats.QueryRow(`SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&calls); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(calls)/float64(b.N), "statements/append")
	// The fleet's statements run one after the other (under the writers'
	// lock): wall time per statement is a round trip plus its work.
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(max(calls, 1)), "µs/statement")
	if testing.Verbose() {
		rows, err := stats.Query(`SELECT calls, query FROM pg_stat_statements
			WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY calls DESC LIMIT 12`)
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var n int64
			var q string
			if err := rows.Scan(&n, &q); err != nil {
				b.Fatal(err)
			}
			b.Logf("%8d %.90s", n, strings.Join(strings.Fields(q), " "))
		}
	}
}

// cpuTime is the CPU time (user and system) this process has used: the
// instances' share of an append, PostgreSQL's not included.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
