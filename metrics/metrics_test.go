package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/outbox"
)

// Every metric follows the Prometheus naming conventions (promlint).
func TestLint(t *testing.T) {
	m := metrics.New()
	m.Watch(metrics.State{
		Queue:  func(context.Context) ([]outbox.Pending, error) { return nil, nil },
		Ledger: func(context.Context) (audit.Status, error) { return audit.Status{CheckpointAt: time.Now()}, nil },
		Now:    time.Now,
	})
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// Label values come from fixed sets: anything else is "other".
func TestLabelsAreFixed(t *testing.T) {
	m := metrics.New()
	m.SMTPReply("relay", "data", 554)
	m.SMTPReply("carol@client.example", "RCPT TO:<carol@client.example>", 9999)
	m.Message("submission", metrics.OutcomeRefused, "見積書.pdf")
	m.Message("relay", "C-ACME-2026", metrics.ReasonNone)
	m.Delivery("sealed", metrics.DeliveryDelivered, 2)
	m.Delivery("abcdefghijklmnopqrstuvwxyz234567", "delivered to carol@client.example", 1)
	m.Download("見積書.pdf", metrics.DownloadOK)
	m.StoreError("sealed/t123/0.age")
	m.DatabaseError("SELECT * FROM recipients")
	m.ScanVerdict("Eicar-Test-Signature")
	for _, c := range []struct {
		got  float64
		want float64
		what string
	}{
		{value(t, m, "sealgate_smtp_replies_total", "listener", "relay", "command", "data", "class", "5xx", "code", "554"), 1, "554 to DATA on the relay"},
		{value(t, m, "sealgate_smtp_replies_total", "listener", "other", "command", "other", "class", "other", "code", "other"), 1, "unknown listener, command and code"},
		{value(t, m, "sealgate_messages_total", "listener", "submission", "outcome", "refused", "reason", "other"), 1, "refused for an unknown reason"},
		{value(t, m, "sealgate_messages_total", "listener", "relay", "outcome", "other", "reason", "other"), 1, "unknown outcome"},
		{value(t, m, "sealgate_deliveries_total", "kind", "sealed", "outcome", "delivered"), 2, "two recipients delivered"},
		{value(t, m, "sealgate_deliveries_total", "kind", "other", "outcome", "other"), 1, "unknown kind"},
		{value(t, m, "sealgate_store_errors_total", "op", "other"), 1, "unknown store operation"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	// No value the calls above passed in reaches the exposition.
	body := scrape(t, m)
	for _, leak := range []string{"@", "見積書", "C-ACME", "abcdefghijklmnopqrstuvwxyz234567", "sealed/t123", "SELECT", "Eicar"} {
		if strings.Contains(body, leak) {
			t.Errorf("the scrape carries %q", leak)
		}
	}
}

// value returns the value of the counter series of name with the given
// label pairs (-1: no such series).
func value(t *testing.T, m *metrics.Metrics, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range s.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue series
				}
			}
			return s.GetCounter().GetValue()
		}
	}
	return -1
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// The queue and ledger gauges are read at the scrape, ages measured on
// State.Now; a read that fails leaves its gauges out and the rest is served.
func TestStateAtScrape(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	queue := []outbox.Pending{
		{Kind: "key", Status: "queued", Rows: 3, Oldest: now.Add(-90 * time.Second)},
		{Kind: "sealed", Status: "held", Rows: 1, Oldest: now.Add(-time.Hour)},
	}
	var queueErr error
	m := metrics.New()
	m.Watch(metrics.State{
		Queue: func(context.Context) ([]outbox.Pending, error) { return queue, queueErr },
		Ledger: func(context.Context) (audit.Status, error) {
			return audit.Status{Size: 42, Checkpoint: 30, CheckpointAt: now.Add(-10 * time.Minute), Unsigned: 11, UnsignedSince: now.Add(-5 * time.Minute)}, nil
		},
		Now: func() time.Time { return now },
	})
	body := scrape(t, m)
	for _, want := range []string{
		`sealgate_outbound_rows{kind="key",state="queued"} 3`,
		`sealgate_outbound_oldest_age_seconds{kind="key",state="queued"} 90`,
		`sealgate_outbound_rows{kind="sealed",state="held"} 1`,
		`sealgate_outbound_oldest_age_seconds{kind="sealed",state="held"} 3600`,
		`sealgate_outbound_rows{kind="plain",state="queued"} 0`,
		`sealgate_outbound_oldest_age_seconds{kind="plain",state="queued"} 0`,
		`sealgate_ledger_entries 42`,
		`sealgate_ledger_unsigned_entries 11`,
		`sealgate_ledger_checkpoint_age_seconds 600`,
		`sealgate_ledger_unsigned_age_seconds 300`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	queueErr = errors.New("database is locked")
	body = scrape(t, m)
	if strings.Contains(body, "sealgate_outbound_rows{") || !strings.Contains(body, "sealgate_ledger_entries 42\n") {
		t.Errorf("with the queue unreadable:\n%s", body)
	}
}

// The witnesses' state is read at the scrape and summed without a label per
// witness; with none configured no witness metric is exposed.
func TestWitnessesAtScrape(t *testing.T) {
	ledger := func(context.Context) (audit.Status, error) { return audit.Status{}, nil }
	none := func(context.Context) ([]outbox.Pending, error) { return nil, nil }
	ws := []metrics.Witness{{Failing: true, Failures: 3, Refusals: 1}, {Failures: 2}}
	m := metrics.New()
	m.Watch(metrics.State{Queue: none, Ledger: ledger, Now: time.Now, Witnesses: func() []metrics.Witness { return ws }})
	body := scrape(t, m)
	for _, want := range []string{"sealgate_witnesses 2", "sealgate_witnesses_failing 1", "sealgate_witness_failures_total 5", "sealgate_witness_refusals_total 1"} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	ws[0].Failing = false
	if body := scrape(t, m); !strings.Contains(body, "sealgate_witnesses_failing 0\n") {
		t.Errorf("after the witness recovered:\n%s", body)
	}
	m = metrics.New()
	m.Watch(metrics.State{Queue: none, Ledger: ledger, Now: time.Now})
	if body := scrape(t, m); strings.Contains(body, "sealgate_witness") {
		t.Errorf("witness metrics without witnesses:\n%s", body)
	}
}

// A nil *Metrics (metrics off) counts nothing and does not fail.
func TestNilCountsNothing(t *testing.T) {
	var m *metrics.Metrics
	m.SMTPReply("relay", "data", 250)
	m.Message("relay", metrics.OutcomeAccepted, metrics.ReasonNone)
	m.Accepted(1, time.Second, []int64{1})
	m.Delivery("plain", metrics.DeliveryDelivered, 1)
	m.Download(metrics.FormatPlain, metrics.DownloadOK)
	m.PassphraseFailed(true)
	m.StoreError("put")
	m.DatabaseError("exec")
	m.ScanVerdict(metrics.VerdictClean)
	m.Watch(metrics.State{})
}

// Accepted observes the message size always, and the seal time and file
// sizes only when something was sealed; a wrong passphrase that locks the
// link counts in both counters.
func TestAcceptedAndPassphrase(t *testing.T) {
	m := metrics.New()
	m.Accepted(2048, time.Second, nil)
	m.Accepted(4096, 300*time.Millisecond, []int64{10, 20})
	m.PassphraseFailed(false)
	m.PassphraseFailed(true)
	body := scrape(t, m)
	for _, want := range []string{
		"sealgate_message_size_bytes_count 2",
		"sealgate_message_size_bytes_sum 6144",
		"sealgate_seal_duration_seconds_count 1",
		"sealgate_seal_duration_seconds_sum 0.3",
		"sealgate_sealed_file_size_bytes_count 2",
		"sealgate_sealed_file_size_bytes_sum 30",
		"sealgate_passphrase_failures_total 2",
		"sealgate_links_locked_total 1",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
}
