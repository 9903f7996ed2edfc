package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the harness reads (and locks) the gateway's database
)

// Fault kinds the harness injects.
const (
	faultKill      = "kill"           // kill -9 of the gateway, then restart
	faultSmarthost = "smarthost-down" // the sink refuses connections for a while
	faultStore     = "store-down"     // versitygw killed for a while, then restarted
	faultDiskFull  = "disk-full"      // the data directory's tmpfs filled up for a while
	faultDBLock    = "db-locked"      // another process holds BEGIN EXCLUSIVE on the database
	// A fleet on PostgreSQL:
	faultDBRestart   = "db-restart"   // PostgreSQL crashed (pg_ctl stop -m immediate) and started again: every connection broken, WAL replayed
	faultContractEnd = "contract-end" // `sealgate contract end` of the tagged messages' contract, through one instance's CLI
)

// faultPlan says how many faults of each kind a run injects and for how long.
type faultPlan struct {
	Kills     int
	Smarthost int
	Store     int
	DiskFull  int
	DBLock    int
	DBRestart int // PostgreSQL restarts
	// ContractEnd: end the tagged messages' contract during the run (at
	// most once: it ends one contract).
	ContractEnd int
	Hold        time.Duration // how long an outage lasts
	LockHold    time.Duration // how long the database stays locked (the gateway's busy timeout is 10 s)
}

type plannedFault struct {
	Kind string
	At   float64 // fraction of the messages submitted when it starts
	Hold time.Duration
}

// schedule spreads the faults at random points of the submission, never
// two at once (they run one after another).
func (p faultPlan) schedule(r *rand.Rand) []plannedFault {
	var out []plannedFault
	add := func(kind string, n int, hold time.Duration) {
		for i := 0; i < n; i++ {
			out = append(out, plannedFault{Kind: kind, At: 0.05 + 0.85*r.Float64(), Hold: hold})
		}
	}
	add(faultKill, p.Kills, 0)
	add(faultSmarthost, p.Smarthost, p.Hold)
	add(faultStore, p.Store, p.Hold)
	add(faultDiskFull, p.DiskFull, p.Hold)
	add(faultDBRestart, p.DBRestart, 0)
	add(faultContractEnd, min(p.ContractEnd, 1), 0)
	// Alternate short locks (the gateway waits) and long ones (past its
	// busy timeout: it must answer 4xx).
	for i := 0; i < p.DBLock; i++ {
		hold := p.LockHold
		if i%2 == 1 {
			hold = 12 * time.Second
		}
		out = append(out, plannedFault{Kind: faultDBLock, At: 0.05 + 0.85*r.Float64(), Hold: hold})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out
}

// faultEvent is one fault as it happened.
type faultEvent struct {
	Kind          string
	Start, End    time.Time
	Progress      int64 // messages with an outcome when it started
	DuringTraffic bool  // submission was still going on when it ended
	Err           string
	// Instance is the EHLO name of the instance a kill hit ("" with one
	// instance: every kill hit it).
	Instance string
	Detail   string // e.g. the mode of a database restart
}

// injector runs the planned faults against the gateway's instances.
type injector struct {
	gws     []*gatewayProc
	pick    *rand.Rand // which instance a kill hits
	pg      dbRestarter
	ender   func(ctx context.Context) error // ends the tagged messages' contract
	sink    *sink
	s3      *s3Server // nil: no store outage possible
	tmpfs   bool      // the data directory is a tmpfs (disk full possible)
	dbPath  string
	log     io.Writer
	now     func() time.Time
	startUp time.Duration
}

// run executes plan in order; each fault starts once progress() reaches its
// point (or traffic is over). It returns what happened.
func (in *injector) run(ctx context.Context, plan []plannedFault, total int, progress func() int64, trafficDone <-chan struct{}) []faultEvent {
	var events []faultEvent
	for _, f := range plan {
		target := int64(f.At * float64(total))
	wait:
		for progress() < target {
			select {
			case <-ctx.Done():
				return events
			case <-trafficDone:
				break wait
			case <-time.After(20 * time.Millisecond):
			}
		}
		ev := faultEvent{Kind: f.Kind, Start: in.now(), Progress: progress()}
		if err := in.inject(ctx, f, &ev); err != nil {
			ev.Err = err.Error()
			fmt.Fprintf(in.log, "chaos: fault %s failed: %v\n", f.Kind, err)
		}
		ev.End = in.now()
		select {
		case <-trafficDone:
		default:
			ev.DuringTraffic = true
		}
		fmt.Fprintf(in.log, "chaos: %-15s at %6d msgs, %6.1fs%s %s\n", f.Kind, ev.Progress, ev.End.Sub(ev.Start).Seconds(),
			map[bool]string{true: "", false: " (after traffic)"}[ev.DuringTraffic], ev.Instance+ev.Detail)
		events = append(events, ev)
	}
	return events
}

func (in *injector) inject(ctx context.Context, f plannedFault, ev *faultEvent) error {
	switch f.Kind {
	case faultKill:
		gw := in.gws[in.pick.IntN(len(in.gws))]
		if len(in.gws) > 1 {
			ev.Instance = gw.name
		}
		gw.kill()
		return in.restart(ctx, gw)
	case faultDBRestart:
		if in.pg == nil {
			return errors.New("no PostgreSQL server to restart")
		}
		ev.Detail = "-m immediate"
		return in.pg.Restart(ctx)
	case faultContractEnd:
		if in.ender == nil {
			return errors.New("no contract to end")
		}
		return in.ender(ctx)
	case faultSmarthost:
		in.sink.Down()
		sleep(ctx, f.Hold)
		return in.sink.Up()
	case faultStore:
		if in.s3 == nil {
			return errors.New("no S3 server to stop")
		}
		in.s3.Down()
		sleep(ctx, f.Hold)
		return in.s3.Up(ctx)
	case faultDiskFull:
		if !in.tmpfs {
			return errors.New("the data directory is not a tmpfs")
		}
		return in.fillDisk(ctx, f.Hold)
	case faultDBLock:
		return in.lockDB(ctx, f.Hold)
	}
	return fmt.Errorf("unknown fault %q", f.Kind)
}

// dbRestarter restarts the database server (testpg.Server: a crash, then
// a start that replays the WAL).
type dbRestarter interface {
	Restart(ctx context.Context) error
}

// restart starts an instance again, retrying while it cannot (e.g. its
// port is still in TIME_WAIT).
func (in *injector) restart(ctx context.Context, gw *gatewayProc) error {
	var err error
	for i := 0; i < 5; i++ {
		if err = gw.start(ctx, in.startUp); err == nil {
			return nil
		}
		fmt.Fprintf(in.log, "chaos: restart failed, retrying: %v\n", err)
		sleep(ctx, time.Second)
	}
	return err
}

// fillDisk takes all the free space of the data directory's file system
// for hold, then gives it back.
func (in *injector) fillDisk(ctx context.Context, hold time.Duration) error {
	dir := in.gws[0].dir
	path := filepath.Join(dir, "chaos-filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("failed to create filler: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(path)
	}()
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = 0xA5
	}
	var filled int64
	if free, err := freeBytes(dir); err == nil && free > 1<<20 && preallocate(f, free-1<<20) == nil {
		filled = free - 1<<20
		if _, err := f.Seek(filled, io.SeekStart); err != nil {
			return fmt.Errorf("failed to seek in filler: %w", err)
		}
	}
	for {
		n, err := f.Write(chunk)
		filled += int64(n)
		if err != nil {
			if len(chunk) == 1 {
				break // full to the byte
			}
			chunk = chunk[:len(chunk)/2]
		}
	}
	free, _ := freeBytes(dir)
	fmt.Fprintf(in.log, "chaos: disk full (filled %d MiB, %d bytes left; database %d MiB, WAL %d MiB, spool %d MiB)\n", filled>>20, free,
		duMiB(filepath.Join(dir, "sealgate.db")), duMiB(filepath.Join(dir, "sealgate.db-wal")), duMiB(filepath.Join(dir, "spool")))
	sleep(ctx, hold)
	return nil
}

// lockDB holds the database's write lock from this process for hold.
func (in *injector) lockDB(ctx context.Context, hold time.Duration) error {
	db, err := sql.Open("sqlite", "file:"+in.dbPath+"?_pragma=busy_timeout(60000)")
	if err != nil {
		return fmt.Errorf("failed to open database: %w", err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("failed to open database: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		return fmt.Errorf("failed to lock database: %w", err)
	}
	sleep(ctx, hold)
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		return fmt.Errorf("failed to unlock database: %w", err)
	}
	return nil
}

// duMiB is the size of a file or directory tree in MiB (best effort).
func duMiB(path string) int64 {
	var n int64
	filepath.WalkDir(path, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n >> 20
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// countFaults summarizes events as "kill×4 store-down×1 …".
func countFaults(events []faultEvent) string {
	n := map[string]int{}
	var order []string
	for _, e := range events {
		if n[e.Kind] == 0 {
			order = append(order, e.Kind)
		}
		if e.Err == "" {
			n[e.Kind]++
		}
	}
	var parts []string
	for _, k := range order {
		parts = append(parts, fmt.Sprintf("%s×%d", k, n[k]))
	}
	return strings.Join(parts, " ")
}
