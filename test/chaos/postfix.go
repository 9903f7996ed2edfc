package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sealgate/sealgate/internal/testpostfix"
)

// runPostfix is the same workload against Postfix relaying to a sink.
func runPostfix(ctx context.Context, rc runConfig) (*runReport, error) {
	work := filepath.Join(rc.WorkDir, rc.Name)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("failed to create work directory: %w", err)
	}
	gen := newGenerator(rc.Seed, rc.Profile, rc.BigEvery)
	sk, err := startSink(gen, isInternal, rc.Now, "")
	if err != nil {
		return nil, err
	}
	sk.relay = true
	defer sk.Down()
	// A plain relay to the sink, as in the gateway's runs.
	pf, err := testpostfix.Start(ctx, testpostfix.Options{Dir: filepath.Join(work, "postfix"), Root: rc.WorkDir,
		Hostname: "postfix.chaos.test", Relayhost: sk.Addr()})
	if err != nil {
		return nil, err
	}
	defer pf.Stop()
	fmt.Fprintf(rc.Log, "chaos: %s: postfix on %s relaying to %s, %d messages over %d sessions\n", rc.Name, pf.Addr, sk.Addr(), rc.Messages, rc.Sessions)
	snd := &sender{addrs: []string{pf.Addr}, gen: gen, sessions: rc.Sessions, dialWait: 30 * time.Second, timeout: 3 * time.Minute, now: rc.Now}
	results := snd.run(ctx, rc.Messages)
	owed := 0
	for i, r := range results {
		if r.Outcome == accepted {
			m := gen.spec(i)
			owed += len(m.External)
			if len(m.Internal) > 0 {
				owed++
			}
		}
	}
	deadline := time.Now().Add(rc.DrainTimeout)
	for sk.Count() < owed && time.Now().Before(deadline) {
		sleep(ctx, 50*time.Millisecond)
	}
	dels := sk.Deliveries()
	rep := &runReport{Name: rc.Name, Target: "postfix", Sessions: rc.Sessions, Profile: rc.Profile}
	rep.Tally = reconcile(gen, results, dels, nil, true, nil, nil)
	rep.Stats = computeStats(results, dels, rep.Tally.Accepted)
	return rep, nil
}
