// Command chaos is sealgate's load and fault harness. It builds the real
// `sealgate serve` binary, starts it with a smarthost that is an SMTP sink
// in this process (so the sink survives gateway restarts), submits N
// messages over M concurrent SMTP sessions and, while they flow, injects
// faults: kill -9 of the gateway and restart, smarthost down and back,
// object store (versitygw) down and back, disk full (the data directory on
// a small tmpfs), database locked by another process. When the queue has
// drained it reconciles every message:
//
//   - 250: delivered exactly as owed — one sealed copy and one key notice
//     per external recipient, one plain copy per internal recipient, the
//     plain copy byte-identical to what was sent;
//   - 4xx/5xx, or connection lost before the end of data: nothing remains
//     (no delivery, no database record); orphan objects and spool files
//     are counted;
//   - no reply after the end of data ("unknown"): the database decides —
//     committed messages must be delivered completely, others not at all;
//   - no delivered copy to an external recipient holds any run of an
//     attachment's bytes or of its base64 (see gen.go).
//
// It prints accepted/refused/unknown, delivered/missing/duplicated/leaked,
// throughput and the p50/p99 of the 250 reply. With -bench it first runs
// a fault-free throughput comparison (one 20 KB attachment, one external
// recipient) against sealgate and then against a private Postfix relaying
// to the same kind of sink, and prints the ratio.
//
//	go run ./test/chaos                          # 2,000 messages, all faults
//	go run ./test/chaos -messages 50000 -bench 20000
//	bench/load.sh                                # the long form
//
// The fleet mode (-instances N -database postgres, fleet.go) runs N
// instances sharing a private PostgreSQL and the bucket; the client
// spreads its sessions over them and offers a message refused with 4xx
// (or cut off before the end of data) to the next one; its faults are
// kill -9 of a random instance, PostgreSQL restarts, the S3 outage and
// the end of a contract that one message in ten names (its certificate
// verified), and the one ledger is verified at the end. -fleet-bench N
// compares one instance on SQLite with one and two on PostgreSQL (S3
// store for all three, the -bench message shape):
//
//	go run ./test/chaos -instances 3 -database postgres -kills 6
//	go run ./test/chaos -messages 0 -fleet-bench 5000
//	bench/load.sh fleet                          # its long form
//
// It needs root for the tmpfs (disk-full fault; skipped otherwise unless
// -require-all or $CI is set), versitygw for the store outage and postfix
// for the comparison.
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Getenv))
}

// options are the command line.
type options struct {
	Messages int
	Sessions int
	Bench    int
	Postfix  bool
	// FleetBench: messages of each run of the database comparison.
	FleetBench int
	// FleetRuns: which runs of the database comparison, in this order.
	FleetRuns string
	// S3NoKeepAlive: versitygw closes each connection after one response.
	S3NoKeepAlive bool
	// CPUProfile: directory for a CPU profile of each serve process.
	CPUProfile string
	Instances  int
	Database   string
	Lease      time.Duration
	Seed       uint64
	BigEvery   int
	Store      string
	Plan       faultPlan
	TmpfsSize  int64
	WorkDir    string
	Keep       bool
	Race       bool
	Require    bool
	Drain      time.Duration
	Rate       float64
	LogLevel   string
	Bin        string
}

func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.Messages, "messages", 2000, "messages in the chaos run (0: no chaos run)")
	fs.IntVar(&o.Sessions, "sessions", 10, "concurrent SMTP sessions")
	fs.IntVar(&o.Bench, "bench", 0, "messages in the fault-free throughput comparison (0: none)")
	fs.BoolVar(&o.Postfix, "postfix", true, "compare with a private Postfix relay in the -bench run")
	fs.IntVar(&o.FleetBench, "fleet-bench", 0, "messages of each run of the database comparison: one instance on SQLite, one and two on PostgreSQL (0: none)")
	fs.StringVar(&o.FleetRuns, "fleet-bench-runs", "sqlite-1,postgres-1,postgres-2", "runs of -fleet-bench, in this order (each may repeat): sqlite-1, postgres-1, postgres-2")
	fs.BoolVar(&o.S3NoKeepAlive, "s3-no-keep-alive", false, "run versitygw without --keep-alive (one HTTP response per TCP connection, as before; S3 services keep connections open)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of each sealgate serve (SEALGATE_DEBUG_CPUPROFILE) into this directory, one file per run and instance")
	fs.IntVar(&o.Instances, "instances", 1, "sealgate instances of the chaos run (more than one needs -database postgres)")
	fs.StringVar(&o.Database, "database", "sqlite", "database of the chaos run: sqlite or postgres (a private cluster, initdb + pg_ctl)")
	fs.DurationVar(&o.Lease, "lease", time.Minute, "delivery.lease of the fleet's instances (how long a killed instance's deliveries wait for another; 0: the default)")
	fs.IntVar(&o.Plan.DBRestart, "db-restarts", 1, "PostgreSQL crashes and restarts (pg_ctl stop -m immediate, start; -database postgres)")
	fs.IntVar(&o.Plan.ContractEnd, "contract-end", 1, "end a contract during the run and verify its certificate (0 or 1; -database postgres)")
	fs.Uint64Var(&o.Seed, "seed", 0, "random seed (0: pick one and print it)")
	fs.IntVar(&o.BigEvery, "big-every", 100, "one message in this many (on average) carries a 5 MiB attachment (0: none)")
	fs.StringVar(&o.Store, "store", "s3", "object store of the chaos run: s3 (versitygw, allows the store outage) or fs")
	fs.IntVar(&o.Plan.Kills, "kills", 4, "kill -9 of the gateway")
	fs.IntVar(&o.Plan.Smarthost, "smarthost-outages", 1, "smarthost outages")
	fs.IntVar(&o.Plan.Store, "store-outages", 1, "object store outages")
	fs.IntVar(&o.Plan.DiskFull, "disk-full", 1, "disk-full episodes (needs root for the tmpfs)")
	fs.IntVar(&o.Plan.DBLock, "db-locks", 2, "database locks by another process (every second one outlasts the busy timeout)")
	fs.DurationVar(&o.Plan.Hold, "hold", 4*time.Second, "how long an outage lasts")
	fs.DurationVar(&o.Plan.LockHold, "lock-hold", 3*time.Second, "how long a short database lock lasts")
	tmpfsMiB := fs.Int64("tmpfs-mib", 2048, "size of the tmpfs holding the chaos run's data directory (0: no tmpfs, no disk-full fault)")
	fs.StringVar(&o.WorkDir, "workdir", "", "work directory (default: a new temporary directory)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the work directory")
	fs.BoolVar(&o.Race, "race", false, "build sealgate with the race detector")
	fs.BoolVar(&o.Require, "require-all", inCI(getenv), "fail instead of skipping a fault whose facility is missing (default on when $CI or SEALGATE_REQUIRE_TOOLS=1)")
	fs.Float64Var(&o.Rate, "rate", 0, "pace the chaos run's submission to at most this many messages per second (0: as fast as the sessions go)")
	fs.DurationVar(&o.Drain, "drain", 3*time.Minute, "how long to wait for the queue to drain")
	fs.StringVar(&o.LogLevel, "log-level", "info", "sealgate log level")
	fs.StringVar(&o.Bin, "sealgate", "", "use this sealgate binary instead of building one")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.TmpfsSize = *tmpfsMiB << 20
	if o.Seed == 0 {
		var b [8]byte
		if _, err := crand.Read(b[:]); err != nil {
			return o, fmt.Errorf("failed to pick a seed: %w", err)
		}
		o.Seed = binary.LittleEndian.Uint64(b[:]) >> 1
	}
	return o, nil
}

func run(ctx context.Context, args []string, out io.Writer, getenv func(string) string) int {
	o, err := parseFlags(args, out, getenv)
	if err != nil {
		return 2
	}
	reports, err := execute(ctx, o, out)
	for _, r := range reports {
		r.print(out)
	}
	printComparison(out, reports)
	if err != nil {
		fmt.Fprintf(out, "chaos: %v\n", err)
		return 1
	}
	for _, r := range reports {
		if !r.ok() {
			return 1
		}
	}
	return 0
}

// execute runs the benchmark comparison (if asked) and the chaos run.
func execute(ctx context.Context, o options, log io.Writer) ([]*runReport, error) {
	work := o.WorkDir
	if work == "" {
		d, err := os.MkdirTemp("", "sealgate-chaos-")
		if err != nil {
			return nil, fmt.Errorf("failed to create work directory: %w", err)
		}
		work = d
		if !o.Keep {
			defer os.RemoveAll(work)
		}
	}
	work, err := filepath.Abs(work)
	if err != nil {
		return nil, fmt.Errorf("failed to resolve work directory: %w", err)
	}
	fmt.Fprintf(log, "chaos: seed %d, work directory %s\n", o.Seed, work)
	bin := o.Bin
	if bin == "" {
		if bin, err = buildSealgate(ctx, work, o.Race); err != nil {
			return nil, err
		}
	}
	base := runConfig{Sessions: o.Sessions, Seed: o.Seed, BigEvery: o.BigEvery, RequireAll: o.Require,
		DrainTimeout: o.Drain, Bin: bin, WorkDir: work, LogLevel: o.LogLevel, Log: log, Now: time.Now, CPUProfile: o.CPUProfile, S3NoKeepAlive: o.S3NoKeepAlive}
	var reports []*runReport
	if o.Bench > 0 {
		rc := base
		rc.Name, rc.Messages, rc.Profile, rc.Store = "bench-sealgate", o.Bench, profileBench, "fs"
		rep, err := runSealgate(ctx, rc)
		if err != nil {
			return reports, fmt.Errorf("bench run: %w", err)
		}
		reports = append(reports, rep)
		if o.Postfix {
			rc.Name = "bench-postfix"
			rep, err := runPostfix(ctx, rc)
			if err != nil {
				if o.Require {
					return reports, fmt.Errorf("postfix run: %w", err)
				}
				fmt.Fprintf(log, "chaos: SKIP postfix comparison: %v\n", err)
			} else {
				reports = append(reports, rep)
			}
		}
	}
	if o.FleetBench > 0 {
		runs := map[string]struct {
			db string
			n  int
		}{"sqlite-1": {"sqlite", 1}, "postgres-1": {"postgres", 1}, "postgres-2": {"postgres", 2}}
		seen := map[string]int{}
		for _, name := range strings.Split(o.FleetRuns, ",") {
			v, ok := runs[strings.TrimSpace(name)]
			if !ok {
				return reports, fmt.Errorf("unknown -fleet-bench-runs entry %q", name)
			}
			rc := base
			rc.Name, rc.Messages, rc.Profile, rc.Store, rc.Database, rc.Instances = "bench-"+strings.TrimSpace(name), o.FleetBench, profileBench, "s3", v.db, v.n
			if seen[name]++; seen[name] > 1 {
				rc.Name = fmt.Sprintf("%s-run%d", rc.Name, seen[name])
			}
			rep, err := runSealgate(ctx, rc)
			if err != nil {
				return reports, fmt.Errorf("%s run: %w", rc.Name, err)
			}
			reports = append(reports, rep)
		}
	}
	if o.Messages > 0 {
		rc := base
		rc.Name, rc.Messages, rc.Profile, rc.Store, rc.Faults, rc.TmpfsSize = "chaos", o.Messages, profileMixed, o.Store, o.Plan, o.TmpfsSize
		rc.Instances, rc.Database, rc.Rate, rc.Lease = o.Instances, o.Database, o.Rate, o.Lease
		if o.Plan.DiskFull == 0 {
			rc.TmpfsSize = 0
		}
		rep, err := runSealgate(ctx, rc)
		if err != nil {
			return reports, fmt.Errorf("chaos run: %w", err)
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

// printComparison prints sealgate against Postfix, SQLite against
// PostgreSQL, and the targets.
func printComparison(w io.Writer, reports []*runReport) {
	printDatabases(w, reports)
	var sg, pf *runReport
	for _, r := range reports {
		switch r.Name {
		case "bench-sealgate":
			sg = r
		case "bench-postfix":
			pf = r
		}
	}
	if sg == nil {
		return
	}
	fmt.Fprintf(w, "\n== throughput, one 20 KB attachment, one external recipient, %d sessions\n", sg.Sessions)
	fmt.Fprintf(w, "sealgate:    %.1f msgs/s accepted, %.1f msgs/s end to end, p50 %s, p99 %s\n",
		sg.Stats.AcceptRate, sg.Stats.E2ERate, sg.Stats.P50.Round(10*time.Microsecond), sg.Stats.P99.Round(10*time.Microsecond))
	// The targets of issue 16.
	fmt.Fprintf(w, "target p99 < 100ms: %s\n", metOrMissed(sg.Stats.P99 < 100*time.Millisecond))
	if pf == nil {
		return
	}
	fmt.Fprintf(w, "postfix:     %.1f msgs/s accepted, %.1f msgs/s end to end, p50 %s, p99 %s\n",
		pf.Stats.AcceptRate, pf.Stats.E2ERate, pf.Stats.P50.Round(10*time.Microsecond), pf.Stats.P99.Round(10*time.Microsecond))
	if pf.Stats.AcceptRate > 0 && pf.Stats.E2ERate > 0 {
		acc, e2e := sg.Stats.AcceptRate/pf.Stats.AcceptRate, sg.Stats.E2ERate/pf.Stats.E2ERate
		fmt.Fprintf(w, "ratio:       %.2f× accepted (target ≥ 0.9×: %s), %.2f× end to end (target ≥ 0.7×: %s)\n",
			acc, metOrMissed(acc >= 0.9), e2e, metOrMissed(e2e >= 0.7))
	}
}

// printDatabases prints the database comparison of -fleet-bench: one
// instance on SQLite, one and two on PostgreSQL, and the target (one
// instance on PostgreSQL at least 0.7× SQLite).
func printDatabases(w io.Writer, reports []*runReport) {
	runs := map[string]*runReport{}
	for _, r := range reports {
		runs[r.Name] = r
	}
	lite := runs["bench-sqlite-1"]
	if lite == nil {
		return
	}
	fmt.Fprintf(w, "\n== databases: one 20 KB attachment, one external recipient, %d sessions, S3 store (versitygw)\n", lite.Sessions)
	for _, r := range reports {
		if !strings.HasPrefix(r.Name, "bench-sqlite-") && !strings.HasPrefix(r.Name, "bench-postgres-") {
			continue
		}
		fmt.Fprintf(w, "%d× %-9s %7.1f msgs/s accepted, %7.1f msgs/s end to end, p50 %s, p99 %s, gateway CPU %s/msg (%s)%s\n", r.Instances, r.Database+":",
			r.Stats.AcceptRate, r.Stats.E2ERate, r.Stats.P50.Round(10*time.Microsecond), r.Stats.P99.Round(10*time.Microsecond), cpuPerMessage(r), r.Name,
			map[bool]string{true: "", false: "  (run FAILED, see its report)"}[r.ok()])
		if r.Statements > 0 && r.Tally.Accepted > 0 {
			fmt.Fprintf(w, "             %.1f statements per accepted message (%d)\n", float64(r.Statements)/float64(r.Tally.Accepted), r.Statements)
			if os.Getenv("SEALGATE_BENCH_STATEMENTS") != "" {
				for _, s := range r.TopStatements {
					fmt.Fprintf(w, "             %s\n", s)
				}
			}
		}
	}
	pg := runs["bench-postgres-1"]
	if pg == nil || lite.Stats.AcceptRate == 0 || lite.Stats.E2ERate == 0 {
		return
	}
	ratio := pg.Stats.AcceptRate / lite.Stats.AcceptRate
	fmt.Fprintf(w, "ratio:       PostgreSQL×1 / SQLite×1 = %.2f× accepted (target ≥ 0.7×: %s), %.2f× end to end\n", ratio, metOrMissed(ratio >= 0.7), pg.Stats.E2ERate/lite.Stats.E2ERate)
	if pg2 := runs["bench-postgres-2"]; pg2 != nil && pg.Stats.AcceptRate > 0 {
		fmt.Fprintf(w, "             PostgreSQL×2 / PostgreSQL×1 = %.2f× accepted, %.2f× end to end\n", pg2.Stats.AcceptRate/pg.Stats.AcceptRate, pg2.Stats.E2ERate/pg.Stats.E2ERate)
	}
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// cpuPerMessage is the gateway CPU time per accepted message of a run.
func cpuPerMessage(r *runReport) string {
	if r.Tally.Accepted == 0 {
		return "-"
	}
	return (r.GatewayCPU / time.Duration(r.Tally.Accepted)).Round(10 * time.Microsecond).String()
}
