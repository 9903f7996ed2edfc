package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeMetrics GETs /metrics from the admin listener at addr, parses the
// exposition (it must be valid Prometheus text format) and returns it as
// text and as its series: `name{label="value",...}` (labels sorted) →
// value; a histogram gives its _count and _sum.
func scrapeMetrics(t *testing.T, addr string) (string, map[string]float64, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body.String())
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(body.Bytes()))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	series := map[string]float64{}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			sort.Strings(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				series[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				series[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				series[name+"_count"] = float64(m.GetHistogram().GetSampleCount())
				series[name+"_sum"] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return body.String(), series, families
}

// TestMetricsEndToEnd: the real binary with metrics.listen serves /metrics
// on its own address (not on the portal's); a mail sent over SMTP, its
// delivery, a wrong passphrase and a download move the counters by
// exactly what happened; the queue is empty once delivered; no label value
// is an address, a token, a passphrase, a transfer id or a file name.
func TestMetricsEndToEnd(t *testing.T) {
	sink := startSink(t)
	metricsAddr := freeAddr(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{"SEALGATE_METRICS_LISTEN=" + metricsAddr}})

	// Not on the portal.
	if resp, _ := get(t, g.url("/metrics")); resp.StatusCode == 200 {
		t.Fatal("the portal serves /metrics")
	}
	_, before, _ := scrapeMetrics(t, metricsAddr)

	const fileName = "見積書-metrics-2026.pdf"
	data := randomBytes(30000)
	st := sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "metrics quote"},
		"body", attachment{name: fileName, contentType: "application/pdf", data: data}))
	if resp, _ := postForm(t, g.url("/t/"+st.tokens[extA]+"/download"), form("passphrase", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", "file", "0")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong passphrase: %d", resp.StatusCode)
	}
	if resp, body := postForm(t, g.url("/t/"+st.tokens[extA]+"/download"), form("passphrase", st.pass[extA], "file", "0")); resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	g.waitIdle(30 * time.Second)

	var text string
	var after map[string]float64
	var families map[string]*dto.MetricFamily
	// A delivery is recorded after the sink has the mail, a download
	// after the client has the file: wait for those two counters.
	waitFor(t, 30*time.Second, "the key notice and the download counted", func() bool {
		text, after, families = scrapeMetrics(t, metricsAddr)
		key, dl := `sealgate_deliveries_total{kind="key",outcome="delivered"}`, `sealgate_downloads_total{format="plain",result="ok"}`
		return after[key] > before[key] && after[dl] > before[dl]
	})
	for _, c := range []struct {
		series string
		delta  float64
	}{
		{`sealgate_smtp_replies_total{class="2xx",code="250",command="mail",listener="relay"}`, 1},
		{`sealgate_smtp_replies_total{class="2xx",code="250",command="rcpt",listener="relay"}`, 1},
		{`sealgate_smtp_replies_total{class="2xx",code="250",command="data",listener="relay"}`, 1},
		{`sealgate_messages_total{listener="relay",outcome="accepted",reason="none"}`, 1},
		{`sealgate_messages_total{listener="relay",outcome="refused",reason="policy"}`, 0},
		{`sealgate_seal_duration_seconds_count`, 1},
		{`sealgate_message_size_bytes_count`, 1},
		{`sealgate_sealed_file_size_bytes_count`, 1},
		{`sealgate_sealed_file_size_bytes_sum`, float64(len(data))},
		{`sealgate_deliveries_total{kind="sealed",outcome="delivered"}`, 1},
		{`sealgate_deliveries_total{kind="key",outcome="delivered"}`, 1},
		{`sealgate_deliveries_total{kind="sealed",outcome="failed"}`, 0},
		{`sealgate_downloads_total{format="plain",result="ok"}`, 1},
		{`sealgate_passphrase_failures_total`, 1},
		{`sealgate_links_locked_total`, 0},
		{`sealgate_store_errors_total{op="put"}`, 0},
		{`sealgate_database_errors_total{op="exec"}`, 0},
	} {
		got, ok := after[c.series]
		if !ok {
			t.Errorf("no series %s", c.series)
			continue
		}
		if d := got - before[c.series]; d != c.delta {
			t.Errorf("%s moved by %v, want %v", c.series, d, c.delta)
		}
	}
	// The queue is empty once everything is delivered; the ledger grew.
	for _, kind := range []string{"sealed", "key", "plain"} {
		for _, state := range []string{"held", "waiting", "queued"} {
			s := fmt.Sprintf(`{kind=%q,state=%q}`, kind, state)
			if v, ok := after["sealgate_outbound_rows"+s]; !ok || v != 0 {
				t.Errorf("sealgate_outbound_rows%s = %v (present %v), want 0", s, v, ok)
			}
			if v := after["sealgate_outbound_oldest_age_seconds"+s]; v != 0 {
				t.Errorf("sealgate_outbound_oldest_age_seconds%s = %v, want 0", s, v)
			}
		}
	}
	if after["sealgate_ledger_entries"] <= before["sealgate_ledger_entries"] {
		t.Errorf("sealgate_ledger_entries %v → %v: the ledger did not grow", before["sealgate_ledger_entries"], after["sealgate_ledger_entries"])
	}

	// No label value is anything of the mail, the link or the store.
	leaks := []string{"@", "corp.example", "client.example", sender, extA, fileName, "見積書", "metrics quote",
		st.tokens[extA], st.pass[extA], st.id, "sealed/"}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				for _, leak := range leaks {
					if strings.Contains(lp.GetValue(), leak) {
						t.Errorf("%s has label %s=%q, which carries %q", name, lp.GetName(), lp.GetValue(), leak)
					}
				}
			}
		}
	}
	for _, leak := range leaks[1:] {
		if strings.Contains(text, leak) {
			t.Errorf("the exposition carries %q", leak)
		}
	}
}
