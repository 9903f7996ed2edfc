package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/outbox"
)

// State is where the gauges read at each scrape come from: typed reads of
// the owners of the outbound queue (package outbox) and the ledger
// (package audit), and the clock ages are measured on.
type State struct {
	Queue  func(ctx context.Context) ([]outbox.Pending, error)
	Ledger func(ctx context.Context) (audit.Status, error)
	Now    func() time.Time
	// Witnesses reads the state of the ledger's witnesses (nil: none
	// configured, and no witness metric is exposed).
	Witnesses func() []Witness
}

// Witness is what the metrics show of one of the ledger's witnesses, as
// this process saw it since it started (witness/client's Status).
type Witness struct {
	Failing  bool  // its last request failed (down, refused, bad cosignature)
	Failures int64 // failed requests
	Refusals int64 // checkpoints it refused as inconsistent with what it cosigned before
}

// pendingStates are the states of an outbound row that is still to be
// delivered (package outbox).
var pendingStates = []string{outbox.StatusHeld, outbox.StatusWaiting, outbox.StatusQueued}

var (
	descQueueRows = prometheus.NewDesc("sealgate_outbound_rows",
		"Outbound rows still to be delivered, by kind (plain, copy, sealed, key, bounce, notice) and state (held, waiting, queued); kind=\"key\" are the key notices pending.",
		[]string{"kind", "state"}, nil)
	descQueueAge = prometheus.NewDesc("sealgate_outbound_oldest_age_seconds",
		"Age of the oldest outbound row still to be delivered, by kind and state, counted from when the row was created (the message accepted, the notice written); 0 when there is none.",
		[]string{"kind", "state"}, nil)
	descLedgerEntries = prometheus.NewDesc("sealgate_ledger_entries",
		"Entries in the ledger.", nil, nil)
	descLedgerUnsigned = prometheus.NewDesc("sealgate_ledger_unsigned_entries",
		"Ledger entries no signed checkpoint covers yet.", nil, nil)
	descCheckpointAge = prometheus.NewDesc("sealgate_ledger_checkpoint_age_seconds",
		"Age of the newest signed ledger checkpoint (absent before the first).", nil, nil)
	descWitnesses = prometheus.NewDesc("sealgate_witnesses",
		"Witnesses configured for the ledger (ledger.witnesses).", nil, nil)
	descWitnessesFailing = prometheus.NewDesc("sealgate_witnesses_failing",
		"Witnesses whose last request failed (down, refused, a bad cosignature); mail flows regardless.", nil, nil)
	descWitnessFailures = prometheus.NewDesc("sealgate_witness_failures_total",
		"Failed requests to the ledger's witnesses since the process started.", nil, nil)
	descWitnessRefusals = prometheus.NewDesc("sealgate_witness_refusals_total",
		"Checkpoints a witness refused as inconsistent with one it cosigned before, since the process started.", nil, nil)
	descUnsignedAge = prometheus.NewDesc("sealgate_ledger_unsigned_age_seconds",
		"Age of the oldest ledger entry no signed checkpoint covers yet; 0 when every entry is covered.", nil, nil)
)

// Watch registers the collector of s: the gauges are read from the
// database at every scrape, within 10 seconds. A read that fails is left
// out of that scrape (and reported by the handler).
func (m *Metrics) Watch(s State) {
	if m == nil {
		return
	}
	m.reg.MustRegister(stateCollector{s})
}

type stateCollector struct{ s State }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueRows, descQueueAge, descLedgerEntries, descLedgerUnsigned, descCheckpointAge, descUnsignedAge,
		descWitnesses, descWitnessesFailing, descWitnessFailures, descWitnessRefusals} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := c.s.Now()
	age := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return max(now.Sub(t).Seconds(), 0)
	}
	if pending, err := c.s.Queue(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(descQueueRows, err)
	} else {
		type key struct{ kind, state string }
		got := map[key]outbox.Pending{}
		for _, p := range pending {
			k := key{oneOf(p.Kind, kinds), oneOf(p.Status, pendingStates)}
			q := got[k]
			if q.Rows == 0 || p.Oldest.Before(q.Oldest) {
				q.Oldest = p.Oldest
			}
			q.Rows += p.Rows
			got[k] = q
		}
		for _, kind := range kinds {
			for _, state := range pendingStates {
				q := got[key{kind, state}]
				ch <- prometheus.MustNewConstMetric(descQueueRows, prometheus.GaugeValue, float64(q.Rows), kind, state)
				ch <- prometheus.MustNewConstMetric(descQueueAge, prometheus.GaugeValue, age(q.Oldest), kind, state)
			}
		}
	}
	if c.s.Witnesses != nil {
		ws := c.s.Witnesses()
		var failing, failures, refusals int64
		for _, w := range ws {
			if w.Failing {
				failing++
			}
			failures += w.Failures
			refusals += w.Refusals
		}
		ch <- prometheus.MustNewConstMetric(descWitnesses, prometheus.GaugeValue, float64(len(ws)))
		ch <- prometheus.MustNewConstMetric(descWitnessesFailing, prometheus.GaugeValue, float64(failing))
		ch <- prometheus.MustNewConstMetric(descWitnessFailures, prometheus.CounterValue, float64(failures))
		ch <- prometheus.MustNewConstMetric(descWitnessRefusals, prometheus.CounterValue, float64(refusals))
	}
	st, err := c.s.Ledger(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descLedgerEntries, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descLedgerEntries, prometheus.GaugeValue, float64(st.Size))
	ch <- prometheus.MustNewConstMetric(descLedgerUnsigned, prometheus.GaugeValue, float64(st.Unsigned))
	ch <- prometheus.MustNewConstMetric(descUnsignedAge, prometheus.GaugeValue, age(st.UnsignedSince))
	if !st.CheckpointAt.IsZero() {
		ch <- prometheus.MustNewConstMetric(descCheckpointAge, prometheus.GaugeValue, age(st.CheckpointAt))
	}
}
