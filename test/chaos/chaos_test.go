package main

import (
	"bytes"
	"context"
	"os"
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
	seed := uint64(time.Now().UnixNano()) >> 1
	if v := os.Getenv("SEALGATE_CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SEALGATE_CHAOS_SEED: %v", err)
		}
		seed = s
	}
	messages := 2000
	if v := os.Getenv("SEALGATE_CHAOS_MESSAGES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("SEALGATE_CHAOS_MESSAGES: %v", err)
		}
		messages = n
	}
	t.Logf("seed %d (replay with SEALGATE_CHAOS_SEED=%d)", seed, seed)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	work := t.TempDir()
	bin, err := buildSealgate(ctx, work, false)
	if err != nil {
		t.Fatal(err)
	}
	log := &testLog{t: t}
	require := inCI(os.Getenv) || os.Getenv("SEALGATE_REQUIRE_S3") == "1"
	rc := runConfig{
		Name: "chaos", Messages: messages, Sessions: 10, Profile: profileMixed, BigEvery: 100, Seed: seed, Store: "s3",
		Faults:    faultPlan{Kills: 4, Smarthost: 1, Store: 1, DiskFull: 1, DBLock: 2, Hold: 3 * time.Second, LockHold: 3 * time.Second},
		TmpfsSize: 1 << 30, RequireAll: require, DrainTimeout: 3 * time.Minute,
		Bin: bin, WorkDir: work, LogLevel: "info", Log: log, Now: time.Now,
	}
	rep, err := runSealgate(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.print(&out)
	t.Log("\n" + out.String())

	tl := rep.Tally
	if !tl.ok() {
		t.Errorf("the run lost, leaked or left something (see the report above; gateway log in %s)", work)
	}
	if tl.Leaked != 0 || tl.Missing != 0 {
		t.Errorf("leaked %d, missing %d", tl.Leaked, tl.Missing)
	}
	during := map[string]int{}
	for _, f := range rep.Faults {
		if f.Err != "" {
			t.Errorf("fault %s could not be injected: %s", f.Kind, f.Err)
		}
		during[f.Kind]++
	}
	if rep.Kills < 3 {
		t.Errorf("%d kills, want at least 3", rep.Kills)
	}
	if during[faultSmarthost] < 1 {
		t.Error("no smarthost outage")
	}
	if rep.Store == "s3" && during[faultStore] < 1 {
		t.Error("no object-store outage")
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
