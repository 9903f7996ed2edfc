package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestChaosShort is the CI form of the harness: 2,000 mixed messages over
// 10 sessions to the real binary with the S3 store (versitygw), while the
// gateway is killed four times and the smarthost, the object store, the
// disk and the database each fail for a while. Nothing may be lost and
// nothing may leak. SEALGATE_CHAOS_SEED replays a run; SEALGATE_CHAOS_MESSAGES
// changes its size.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos run takes a minute or two; skipped with -short")
	}
	ctx, base := prepareRun(t, "SEALGATE_CHAOS_MESSAGES", 2000)
	messages := base.Messages
	rc := base
	rc.Name, rc.Sessions, rc.Profile, rc.BigEvery, rc.Store = "chaos", 10, profileMixed, 100, "s3"
	rc.Faults = faultPlan{Kills: 4, Smarthost: 1, Store: 1, DiskFull: 1, DBLock: 2, Hold: 3 * time.Second, LockHold: 3 * time.Second}
	rc.TmpfsSize, rc.DrainTimeout = 1<<30, 3*time.Minute
	rc.RequireAll = inCI(os.Getenv) || os.Getenv("SEALGATE_REQUIRE_S3") == "1"
	// Paced so that the faults (one after another, about 35 s of them)
	// fall while messages flow: unpaced, the gateway took the 2,000
	// messages in about ten seconds and most faults came after traffic.
	rc.Rate = 30
	rep, _, during := runChecked(ctx, t, rc)
	tl := rep.Tally
	if rep.Kills < 3 || during[faultKill] < 3 {
		t.Errorf("%d kills (%d during traffic), want at least 3 during traffic", rep.Kills, during[faultKill])
	}
	if during[faultSmarthost] < 1 {
		t.Error("no smarthost outage during traffic")
	}
	if rep.Store == "s3" && during[faultStore] < 1 {
		t.Error("no object-store outage during traffic")
	}
	// A run that refuses nearly everything proves nothing.
	if tl.Accepted < messages/4 {
		t.Errorf("only %d of %d messages accepted", tl.Accepted, messages)
	}
	if tl.Delivered == 0 || tl.Expected != tl.Delivered {
		t.Errorf("owed %d deliveries, %d delivered", tl.Expected, tl.Delivered)
	}
}

// testLog sends the harness's progress lines to t.Log.
type testLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf []byte
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.t.Log(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// TestChaosFleet is the CI form of the fleet mode (issue 13): three
// `sealgate serve` instances sharing a private PostgreSQL and one bucket
// (versitygw), a few hundred mixed messages spread over all three while
// instances are killed with kill -9 six times, PostgreSQL restarts, the
// object store goes down and a contract that one message in ten names is
// ended through one instance's CLI. Every accepted message must be
// delivered to every recipient (but those of the ended contract whose
// deliveries the end cancelled), nothing may leak, duplicates only across
// a kill of the instance that sent the first copy; the certificate of the
// end verifies, and so does the one ledger. SEALGATE_CHAOS_SEED replays a
// run; SEALGATE_CHAOS_FLEET_MESSAGES changes its size.
func TestChaosFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("the fleet chaos run takes a few minutes; skipped with -short")
	}
	if _, err := findVersitygw(); err != nil {
		if inCI(os.Getenv) || os.Getenv("SEALGATE_REQUIRE_S3") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if _, err := exec.LookPath("pg_ctl"); err != nil {
		if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl"); len(m) == 0 {
			if inCI(os.Getenv) {
				t.Fatal("PostgreSQL is not installed (apt-get install postgresql)")
			}
			t.Skip("PostgreSQL is not installed (apt-get install postgresql)")
		}
	}
	ctx, base := prepareRun(t, "SEALGATE_CHAOS_FLEET_MESSAGES", 500)
	messages := base.Messages
	rc := base
	rc.Name, rc.Sessions, rc.Profile, rc.BigEvery, rc.Store = "fleet", 9, profileMixed, 0, "s3"
	rc.Instances, rc.Database = 3, "postgres"
	rc.Faults = faultPlan{Kills: 6, Store: 1, DBRestart: 1, ContractEnd: 1, Hold: 3 * time.Second}
	rc.RequireAll, rc.DrainTimeout, rc.Rate, rc.Lease = true, 2*time.Minute, 15, time.Minute
	rep, _, during := runChecked(ctx, t, rc)
	tl := rep.Tally
	if rep.Kills < 6 || during[faultKill] < 6 {
		t.Errorf("%d kills (%d during traffic), want at least 6 during traffic", rep.Kills, during[faultKill])
	}
	for _, k := range []string{faultDBRestart, faultStore, faultContractEnd} {
		if during[k] < 1 {
			t.Errorf("no %s during traffic", k)
		}
	}
	if e := rep.ContractEnd; e == nil || e.Err != "" || e.CertErr != "" || e.Cert == "" {
		t.Errorf("the contract end did not yield a certificate that verifies: %+v", e)
	}
	if rep.Ledger != "ok" {
		t.Errorf("the ledger: %s", rep.Ledger)
	}
	if tl.Accepted < messages/2 {
		t.Errorf("only %d of %d messages accepted", tl.Accepted, messages)
	}
	if tl.Delivered == 0 || tl.Expected != tl.Delivered+tl.EndCancelled {
		t.Errorf("owed %d deliveries, %d delivered, %d cancelled by the contract end", tl.Expected, tl.Delivered, tl.EndCancelled)
	}
}

// prepareRun builds the binary and returns the run's context (10
// minutes) and its base configuration: the seed (SEALGATE_CHAOS_SEED, or
// a new one, logged for a replay), the number of messages (sizeVar, or
// def), the binary, a work directory and the test's log.
func prepareRun(t *testing.T, sizeVar string, def int) (context.Context, runConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	seed := uint64(time.Now().UnixNano()) >> 1
	if v := os.Getenv("SEALGATE_CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SEALGATE_CHAOS_SEED: %v", err)
		}
		seed = s
	}
	messages := def
	if v := os.Getenv(sizeVar); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s: %v", sizeVar, err)
		}
		messages = n
	}
	t.Logf("seed %d (replay with SEALGATE_CHAOS_SEED=%d)", seed, seed)
	work := t.TempDir()
	bin, err := buildSealgate(ctx, work, false)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, runConfig{Messages: messages, Seed: seed, Bin: bin, WorkDir: work, LogLevel: "info", Log: &testLog{t: t}, Now: time.Now}
}

// runChecked runs rc, logs the report and fails the test when the run lost,
// leaked or left something (or, in the fleet mode, the ledger or the
// certificate did not verify) or a fault could not be injected. It
// returns the report, the faults injected and those that ended during
// traffic, by kind.
func runChecked(ctx context.Context, t *testing.T, rc runConfig) (rep *runReport, injected, during map[string]int) {
	t.Helper()
	rep, err := runSealgate(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	injected, during = map[string]int{}, map[string]int{}
	var out bytes.Buffer
	rep.print(&out)
	t.Log("\n" + out.String())
	if !rep.ok() {
		t.Errorf("the run lost, leaked or left something, or did not verify (see the report above; logs in %s)", rc.WorkDir)
	}
	if tl := rep.Tally; tl.Leaked != 0 || tl.Missing != 0 {
		t.Errorf("leaked %d, missing %d", tl.Leaked, tl.Missing)
	}
	for _, f := range rep.Faults {
		if f.Err != "" {
			t.Errorf("fault %s could not be injected: %s", f.Kind, f.Err)
		}
		injected[f.Kind]++
		if f.DuringTraffic {
			during[f.Kind]++
		}
	}
	return rep, injected, during
}
