package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sealgate/sealgate/storage/s3"
)

// runConfig describes one run against sealgate (or Postfix).
type runConfig struct {
	Name     string // sub-directory of WorkDir and report title
	Messages int
	Sessions int
	Profile  profile
	BigEvery int
	Seed     uint64
	Store    string // fs | s3
	Faults   faultPlan
	// TmpfsSize, when > 0, puts the data directory on a tmpfs of that
	// many bytes (needed for the disk-full fault).
	TmpfsSize int64
	// Instances is the number of `sealgate serve` processes (0: one);
	// Database is sqlite (one instance only) or postgres (a private
	// cluster, internal/testpg). Several instances, or PostgreSQL, is
	// the fleet mode (fleet.go).
	Instances int
	Database  string
	// Lease is delivery.lease of a fleet (0: the default, 10 minutes):
	// the drain must outlast it for the deliveries a killed instance had
	// claimed.
	Lease time.Duration
	// RequireAll turns a missing facility (versitygw, tmpfs, Postfix) into
	// an error instead of a skipped fault.
	RequireAll   bool
	DrainTimeout time.Duration
	// Rate, when > 0, paces the submission to at most Rate messages per
	// second.
	Rate     float64
	Bin      string // the sealgate binary
	WorkDir  string
	LogLevel string
	// S3NoKeepAlive runs versitygw as it starts by default: one HTTP
	// response per connection.
	S3NoKeepAlive bool
	// CPUProfile, when set, is a directory: each serve writes its CPU
	// profile there (<run>-<instance>.pprof) when stopped.
	CPUProfile string
	Log        io.Writer
	Now        func() time.Time
}

// runReport is the outcome of one run.
type runReport struct {
	Name      string
	Target    string // sealgate | postfix
	Sessions  int
	Profile   profile
	Store     string
	Instances int
	Database  string
	Tally     *tally
	Stats     stats
	Faults    []faultEvent
	Skipped   []string
	Starts    int
	Kills     int
	PeakRSSKB int64
	// GatewayCPU is the CPU time (user+system) of the instances' last
	// processes, summed, measured when the queue had drained.
	GatewayCPU time.Duration
	// Retried counts the messages offered to more than one instance.
	Retried int
	// Ledger is the outcome of `audit checkpoint` and `audit verify-db`
	// after the drain (fleet mode): "" not run, "ok", or the error.
	Ledger string
	// Statements counts the statements PostgreSQL executed in a
	// benchmark run (pg_stat_statements); TopStatements the most frequent.
	Statements    int64
	TopStatements []string
	// ContractEnd is the contract ended during the run, if any.
	ContractEnd *contractEnd
	// LogErrors counts level=ERROR lines in the instances' logs;
	// LogSamples keeps a few distinct ones.
	LogErrors  int
	LogSamples []string
}

// ok reports whether the run lost, leaked or left nothing and, in the
// fleet mode, the ledger verified and the contract end (if any) issued a
// certificate that verified.
func (r *runReport) ok() bool {
	if !r.Tally.ok() || (r.Ledger != "" && r.Ledger != "ok") {
		return false
	}
	return r.ContractEnd == nil || (r.ContractEnd.Err == "" && r.ContractEnd.CertErr == "")
}

func (rc runConfig) database() string {
	if rc.Database == "" {
		return "sqlite"
	}
	return rc.Database
}

func isInternal(addr string) bool {
	d := addr[strings.LastIndexByte(addr, '@')+1:]
	return strings.EqualFold(d, "corp.example") || strings.HasSuffix(strings.ToLower(d), ".corp.example")
}

// inCI reports whether missing facilities must fail rather than skip.
func inCI(getenv func(string) string) bool {
	return getenv("CI") != "" || getenv("SEALGATE_REQUIRE_TOOLS") == "1"
}

// runSealgate submits rc.Messages messages to fresh `sealgate serve`
// instances (one, or a fleet sharing PostgreSQL and the bucket), injects
// the planned faults, waits for the queue to drain and reconciles.
func runSealgate(ctx context.Context, rc runConfig) (rep *runReport, err error) {
	work := filepath.Join(rc.WorkDir, rc.Name)
	n := max(rc.Instances, 1)
	data := make([]string, n)
	for i := range data {
		data[i] = filepath.Join(work, "data")
		if n > 1 {
			data[i] = filepath.Join(work, fmt.Sprintf("data%d", i+1))
		}
		if err := os.MkdirAll(data[i], 0o700); err != nil {
			return nil, fmt.Errorf("failed to create work directory: %w", err)
		}
	}
	rep = &runReport{Name: rc.Name, Target: "sealgate", Sessions: rc.Sessions, Profile: rc.Profile, Store: rc.Store,
		Instances: n, Database: rc.database()}
	plan := rc.Faults
	skip := func(what string, cause error) error {
		if rc.RequireAll {
			return fmt.Errorf("failed to set up %s: %w", what, cause)
		}
		msg := fmt.Sprintf("%s skipped: %v", what, cause)
		rep.Skipped = append(rep.Skipped, msg)
		fmt.Fprintf(rc.Log, "chaos: SKIP %s\n", msg)
		return nil
	}

	tmpfs := false
	if rc.TmpfsSize > 0 && n == 1 && rep.Database == "sqlite" {
		if err := mountTmpfs(data[0], rc.TmpfsSize); err != nil {
			if err := skip("disk-full fault (tmpfs data directory)", err); err != nil {
				return nil, err
			}
			plan.DiskFull = 0
		} else {
			tmpfs = true
			defer func() {
				if uerr := unmount(data[0]); uerr != nil && err == nil {
					err = uerr
				}
			}()
		}
	} else {
		plan.DiskFull = 0
	}
	if rep.Database != "sqlite" {
		plan.DBLock = 0 // a lock of the SQLite file; PostgreSQL is restarted instead
	} else {
		plan.DBRestart = 0
	}

	var s3srv *s3Server
	var s3cfg *s3.Config
	env := []string{}
	if rc.Store == "s3" {
		bin, ferr := findVersitygw()
		if ferr == nil {
			s3srv, ferr = newS3Server(bin, filepath.Join(work, "s3"), !rc.S3NoKeepAlive)
		}
		if ferr == nil {
			ferr = s3srv.Up(ctx)
		}
		if ferr != nil {
			if rep.Database != "sqlite" {
				return nil, fmt.Errorf("PostgreSQL needs the S3 store: %w", ferr)
			}
			if err := skip("S3 store (and the store-outage fault)", ferr); err != nil {
				return nil, err
			}
			s3srv = nil
			rep.Store = "fs"
		} else {
			defer s3srv.Down()
			bucket := "chaos-" + rc.Name
			env = append(env, s3srv.env4gateway(bucket)...)
			s3cfg = &s3.Config{Endpoint: s3srv.endpoint, Bucket: bucket, AccessKey: s3AccessKey, SecretKey: s3SecretKey,
				Region: "us-east-1", Insecure: true, PathStyle: true}
		}
	}
	if s3srv == nil && plan.Store > 0 {
		if err := skip("store-outage fault", errors.New("the fs store cannot be taken down")); err != nil {
			return nil, err
		}
		plan.Store = 0
	}

	var fl *fleet
	if rep.Database == "postgres" || n > 1 {
		if fl, err = startFleet(ctx, rc, work, data); err != nil {
			return nil, err
		}
		defer fl.close()
		env = append(env, fl.env...)
	}

	gen := newGenerator(rc.Seed, rc.Profile, rc.BigEvery)
	if fl == nil {
		plan.ContractEnd = 0 // a fault of the fleet mode
	}
	if plan.ContractEnd > 0 {
		gen.tagEvery, gen.tagCode = endTagEvery, endContract
	}
	sk, err := startSink(gen, isInternal, rc.Now, filepath.Join(work, "suspicious"))
	if err != nil {
		return nil, err
	}
	defer sk.Down()

	cfgPath := filepath.Join(work, "sealgate.toml")
	// Short retry bounds so that a run does not wait half an hour for the
	// backoff after an outage; everything else is the default.
	if err := os.WriteFile(cfgPath, []byte("[delivery]\nretry_max = \"2s\"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("failed to write config: %w", err)
	}
	env = append(env,
		"SEALGATE_CONFIG="+cfgPath,
		"SEALGATE_SMARTHOST="+sk.Addr(),
		"SEALGATE_SMARTHOST_TLS=none",
		"SEALGATE_INTERNAL_DOMAINS=corp.example",
		"SEALGATE_KEY_NOTICE_DELAY=0s",
		"SEALGATE_RETRY_MIN=250ms",
		"SEALGATE_LOG_FORMAT=text",
		"SEALGATE_LOG_LEVEL="+rc.LogLevel,
	)
	gws := make([]*gatewayProc, n)
	addrs := make([]string, n)
	for i := range gws {
		name, logName := "gw.chaos.test", "gateway.log"
		if n > 1 {
			name, logName = fmt.Sprintf("gw%d.chaos.test", i+1), fmt.Sprintf("gateway%d.log", i+1)
		}
		genv := env
		if rc.CPUProfile != "" {
			genv = append(slices.Clip(env), "SEALGATE_DEBUG_CPUPROFILE="+filepath.Join(rc.CPUProfile, fmt.Sprintf("%s-%d.pprof", rc.Name, i+1)))
		}
		if gws[i], err = newGatewayProc(name, rc.Bin, data[i], filepath.Join(work, logName), genv); err != nil {
			return nil, err
		}
		// The first start migrates the schema; the others start after it.
		if err := gws[i].start(ctx, time.Minute); err != nil {
			return nil, err
		}
		defer gws[i].stop()
		addrs[i] = gws[i].smtpAddr
	}
	fmt.Fprintf(rc.Log, "chaos: %s: %d× sealgate on %v (database %s, store %s, data dir %s%s), sink on %s, %d messages over %d sessions, seed %d\n",
		rc.Name, n, addrs, rep.Database, rep.Store, data[0], map[bool]string{true: " on tmpfs", false: ""}[tmpfs], sk.Addr(), rc.Messages, rc.Sessions, rc.Seed)
	if fl != nil && plan.ContractEnd > 0 {
		if err := fl.addContract(ctx, gws[0]); err != nil {
			return nil, err
		}
	}

	snd := &sender{addrs: addrs, retries: n - 1, gen: gen, sessions: rc.Sessions, dialWait: 2 * time.Minute, timeout: 3 * time.Minute, deferWait: time.Second, now: rc.Now}
	if rc.Rate > 0 {
		snd.interval = time.Duration(float64(time.Second) / rc.Rate)
	}
	inj := &injector{gws: gws, pick: rand.New(rand.NewPCG(rc.Seed, 0x6b696c6c)), sink: sk, s3: s3srv, tmpfs: tmpfs,
		dbPath: filepath.Join(data[0], "sealgate.db"), log: rc.Log, now: rc.Now, startUp: time.Minute}
	if fl != nil {
		inj.pg = fl.pg
		inj.ender = func(ctx context.Context) error { return fl.endContract(ctx, gws[0], rc.Now) }
	}
	schedule := plan.schedule(rand.New(rand.NewPCG(rc.Seed, 0x6661756c74)))
	trafficDone := make(chan struct{})
	faultsDone := make(chan []faultEvent, 1)
	go func() {
		faultsDone <- inj.run(ctx, schedule, rc.Messages, snd.done.Load, trafficDone)
	}()
	rssDone := make(chan int64, 1)
	go func() { rssDone <- watchRSS(ctx, gws, trafficDone) }()
	results := snd.run(ctx, rc.Messages)
	close(trafficDone)
	rep.Faults = <-faultsDone
	rep.PeakRSSKB = <-rssDone
	for _, gw := range gws {
		if gw.pid() == 0 {
			if err := inj.restart(ctx, gw); err != nil {
				return nil, err
			}
		}
	}

	state := gatewayState{dataDirs: data, s3: s3cfg}
	if fl != nil {
		state.dbURL = fl.url
	}
	if err := drain(ctx, state, sk, rc.DrainTimeout, rc.Log); err != nil {
		fmt.Fprintf(rc.Log, "chaos: %v\n", err)
	}
	for _, gw := range gws {
		rep.Starts += gw.starts
		rep.Kills += gw.kills
		rep.GatewayCPU += cpuTime(gw.pid())
	}
	if fl != nil && rc.Profile == profileBench {
		if rep.Statements, rep.TopStatements, err = fl.statements(ctx); err != nil {
			return nil, err
		}
	}
	if fl != nil {
		rep.Ledger = fl.verifyLedger(ctx, gws[0])
	}
	for _, gw := range gws {
		gw.stop()
		rep.LogErrors += countLogErrors(gw.logPath, &rep.LogSamples)
	}
	dbMsgs, err := state.messages(ctx)
	if err != nil {
		return nil, err
	}
	var end *contractEnd
	if fl != nil && plan.ContractEnd > 0 {
		if end, err = fl.ended(ctx, state); err != nil {
			return nil, err
		}
		rep.ContractEnd = end
	}
	dels := sk.Deliveries()
	rep.Tally = reconcile(gen, results, dels, dbMsgs, false, rep.Faults, end)
	if err := state.check(ctx, rep.Tally, rep.Faults); err != nil {
		return nil, err
	}
	rep.Stats = computeStats(results, dels, rep.Tally.Accepted+rep.Tally.UnknownCommitted)
	for _, r := range results {
		if r.Tries > 1 {
			rep.Retried++
		}
	}
	return rep, nil
}

// drain waits until the gateway's queue is empty and the sink has been
// quiet for a second.
func drain(ctx context.Context, st gatewayState, sk *sink, timeout time.Duration, log io.Writer) error {
	deadline := time.Now().Add(timeout)
	last, quiet := -1, 0
	for {
		n, err := st.pending(ctx)
		c := sk.Count()
		if err == nil && n == 0 && c == last {
			quiet++
			if quiet >= 4 {
				return nil
			}
		} else {
			quiet = 0
		}
		last = c
		if time.Now().After(deadline) {
			return fmt.Errorf("queue not drained after %s: %d deliveries pending (last error: %v)", timeout, n, err)
		}
		sleep(ctx, 250*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// watchRSS samples the instances' resident sets until done and returns
// the peak (kB) of any one seen across restarts.
func watchRSS(ctx context.Context, gws []*gatewayProc, done <-chan struct{}) int64 {
	var peak int64
	for {
		for _, gw := range gws {
			pid := gw.pid()
			if pid == 0 {
				continue
			}
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
						var kb int64
						fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
						peak = max(peak, kb)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return peak
		case <-done:
			return peak
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// cpuTime is the user+system CPU time of process pid (Linux), 0 if unknown.
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may contain spaces) start at ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscanf(f[11], "%d", &utime)
	fmt.Sscanf(f[12], "%d", &stime)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// print writes the report.
func (r *runReport) print(w io.Writer) {
	t, s := r.Tally, r.Stats
	fmt.Fprintf(w, "\n== %s: %s, %d sessions, profile %s", r.Name, r.Target, r.Sessions, r.Profile)
	if r.Target == "sealgate" {
		fmt.Fprintf(w, ", %d× sealgate on %s, store %s, %d starts, %d kills", r.Instances, r.Database, r.Store, r.Starts, r.Kills)
	}
	fmt.Fprintln(w)
	if len(r.Faults) > 0 {
		during := 0
		for _, f := range r.Faults {
			if f.DuringTraffic {
				during++
			}
		}
		fmt.Fprintf(w, "faults:      %s (%d of %d during traffic)\n", countFaults(r.Faults), during, len(r.Faults))
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "skipped:     %s\n", s)
	}
	fmt.Fprintf(w, "messages:    %d: accepted %d, refused %d (4xx %d, 5xx %d), lost before end of data %d, unknown %d (committed %d), not sent %d\n",
		t.Messages, t.Accepted, t.Refused, t.Refused4xx, t.Refused5xx, t.Lost, t.Unknown, t.UnknownCommitted, t.NotSent)
	fmt.Fprintf(w, "deliveries:  owed %d, delivered %d, missing %d, duplicated %d (%d across a crash or outage), bounced %d\n",
		t.Expected, t.Delivered, t.Missing, t.Duplicated, t.DupExplained, t.Bounced)
	fmt.Fprintf(w, "violations:  leaked %d, corrupt %d, incomplete %d, unsealed %d, stray %d, after refusal %d, refused-but-recorded %d, accepted-not-recorded %d\n",
		t.Leaked, t.Corrupt, t.Incomplete, t.Unsealed, t.Stray, t.AfterRefusal, t.LeftInDB, t.NotInDB)
	if r.Target == "sealgate" {
		fmt.Fprintf(w, "left behind: stuck outbound %d (%d leased past the drain), failed outbound %d, secrets %d, missing objects %d; crash leftovers: spool files or objects %d, orphan objects %d (%d not explained by a kill or a store outage)\n",
			t.StuckOutbound, t.StuckLeased, t.FailedOutbound, t.SecretsLeft, t.MissingObjects, t.SpoolLeft, t.OrphanObjects, t.Unexplained)
	}
	fmt.Fprintf(w, "throughput:  %.1f msgs/s accepted (%d in %.1fs), %.1f msgs/s end to end (%.1fs)\n",
		s.AcceptRate, t.Accepted, s.Submit.Seconds(), s.E2ERate, s.EndToEnd.Seconds())
	fmt.Fprintf(w, "latency:     250 after end of data p50 %s, p99 %s, max %s\n", s.P50.Round(10*time.Microsecond), s.P99.Round(10*time.Microsecond), s.Max.Round(time.Millisecond))
	if len(t.Queue) > 0 {
		fmt.Fprintf(w, "queue:       rows not delivered, by status, kind and last error:\n")
		for _, q := range t.Queue {
			fmt.Fprintf(w, "  - %s\n", q)
		}
	}
	if r.Instances > 1 {
		fmt.Fprintf(w, "fleet:       %d messages offered to another instance after a 4xx or a broken connection\n", r.Retried)
	}
	if e := r.ContractEnd; e != nil {
		status := "ended, certificate verified"
		switch {
		case e.Err != "":
			status = "FAILED: " + oneLine(e.Err)
		case e.CertErr != "":
			status = "ended, certificate NOT verified: " + oneLine(e.CertErr)
		}
		if e.Attempts > 1 {
			status += fmt.Sprintf(" (attempts %d; first failure: %s)", e.Attempts, oneLine(e.FirstErr))
		}
		fmt.Fprintf(w, "contract:    %s %s in %.1fs (%s); %d of its messages committed (%d in the database), %d owed deliveries cancelled by the end (rows of %d messages), %d begun after it\n",
			e.Code, status, e.Done.Sub(e.Start).Seconds(), filepath.Base(e.Cert), t.EndMessages, e.DBMessages, t.EndCancelled, e.CancelledMessages, t.AfterEnd)
	}
	if r.Ledger != "" {
		fmt.Fprintf(w, "ledger:      audit checkpoint + verify-db on the one database: %s\n", r.Ledger)
	}
	if r.LogErrors > 0 {
		fmt.Fprintf(w, "log errors:  %d level=ERROR lines in the instances' logs, e.g.:\n", r.LogErrors)
		for _, s := range r.LogSamples {
			fmt.Fprintf(w, "  - %s\n", s)
		}
	}
	if r.PeakRSSKB > 0 {
		fmt.Fprintf(w, "memory:      gateway peak RSS %d MiB\n", r.PeakRSSKB>>10)
	}
	if r.GatewayCPU > 0 && r.Kills == 0 && t.Accepted > 0 {
		fmt.Fprintf(w, "cpu:         gateway %.1fs, %.2f ms per accepted message (accept and delivery)\n", r.GatewayCPU.Seconds(), r.GatewayCPU.Seconds()*1000/float64(t.Accepted))
	}
	for _, p := range t.Problems {
		fmt.Fprintf(w, "  ! %s\n", p)
	}
	verdict := "OK: nothing lost, nothing leaked"
	if !r.ok() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "verdict:     %s\n", verdict)
}
