package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/internal/devcert"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/outbox"
)

// scrapeMetrics returns the exposition of m as /metrics serves it.
func scrapeMetrics(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, b)
	}
	return string(b)
}

// The replies on the relay listener, what became of each message, the
// sealing histograms and the outcome of each delivery are counted as the
// flow goes; no label value is an address or a file name.
func TestMetricsCountTheFlow(t *testing.T) {
	g := newTestGateway(t, nil, func(c *config.Config) { c.SMTP.MaxMessageSize = 64 << 10 })
	m := metrics.New()
	g.Metrics = m
	addr := serve(t, g.NewRelayServer())

	// Accepted, with one file sealed (q.bin, 9 bytes).
	if err := relayVia(t, addr, false, nil, "alice@corp.example", "carol@client.example"); err != nil {
		t.Fatal(err)
	}
	// Refused at MAIL: not an internal sender.
	if err := relayVia(t, addr, false, nil, "eve@evil.example", "carol@client.example"); err == nil || !strings.HasPrefix(err.Error(), "550") {
		t.Fatalf("outside sender: %v", err)
	}
	// Refused at the end of DATA: over the size limit.
	c := dialRaw(t, addr)
	c.cmd("EHLO client.test")
	c.cmd("MAIL FROM:<alice@corp.example>")
	c.cmd("RCPT TO:<carol@client.example>")
	big, _ := bigMessage(80<<10, "carol@client.example")
	bigMsg, _ := io.ReadAll(big)
	if code, text := c.data(bigMsg); code != 552 {
		t.Fatalf("over the limit: %d %s", code, text)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.runJobs(ctx) }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var pending int
		g.DB.Read().QueryRow(`SELECT COUNT(*) FROM outbound WHERE status != 'delivered'`).Scan(&pending)
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d outbound rows not delivered", pending)
		}
	}
	cancel()
	<-done

	body := scrapeMetrics(t, m)
	for _, want := range []string{
		`sealgate_smtp_replies_total{class="2xx",code="250",command="mail",listener="relay"} 2`,
		`sealgate_smtp_replies_total{class="5xx",code="550",command="mail",listener="relay"} 1`,
		`sealgate_smtp_replies_total{class="2xx",code="250",command="rcpt",listener="relay"} 2`,
		`sealgate_smtp_replies_total{class="2xx",code="250",command="data",listener="relay"} 1`,
		`sealgate_smtp_replies_total{class="5xx",code="552",command="data",listener="relay"} 1`,
		`sealgate_messages_total{listener="relay",outcome="accepted",reason="none"} 1`,
		`sealgate_messages_total{listener="relay",outcome="refused",reason="limit"} 1`,
		`sealgate_seal_duration_seconds_count 1`,
		`sealgate_message_size_bytes_count 1`,
		`sealgate_sealed_file_size_bytes_count 1`,
		`sealgate_sealed_file_size_bytes_sum 9`,
		`sealgate_deliveries_total{kind="sealed",outcome="delivered"} 1`,
		`sealgate_deliveries_total{kind="key",outcome="delivered"} 1`,
		`sealgate_deliveries_total{kind="sealed",outcome="failed"} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	for _, leak := range []string{"@", "client.example", "corp.example", "q.bin", "relayed"} {
		if strings.Contains(body, leak) {
			t.Errorf("the scrape carries %q", leak)
		}
	}
}

// A held message is counted as held with its reason, a failed delivery
// as failed, and each scan verdict under its own label.
func TestMetricsHeldFailedAndVerdicts(t *testing.T) {
	g := newTestGateway(t, nil, func(c *config.Config) { c.Delivery.SendDelay = config.Duration(time.Hour) })
	m := metrics.New()
	g.Metrics = m
	env := &envelope{listener: metrics.ListenerRelay, client: "127.0.0.1:1", from: "alice@corp.example", rcpts: []string{"carol@client.example"}}
	if _, err := g.accept(context.Background(), env, bytes.NewReader(routeMessage("held", "carol@client.example", "", []byte("x")))); err != nil {
		t.Fatal(err)
	}
	g.scanVerdict(mimeseal.Verdict{Scanned: true}, nil)
	g.scanVerdict(mimeseal.Verdict{Scanned: true, Infected: true, Signature: "Eicar-Test-Signature"}, nil)
	g.scanVerdict(mimeseal.Verdict{}, io.ErrUnexpectedEOF)
	g.queue.fail(context.Background(), outboxRow(t, g), []string{"carol@client.example"}, io.ErrUnexpectedEOF)
	body := scrapeMetrics(t, m)
	for _, want := range []string{
		`sealgate_messages_total{listener="relay",outcome="held",reason="send_delay"} 1`,
		`sealgate_messages_total{listener="relay",outcome="accepted",reason="none"} 0`,
		`sealgate_scan_verdicts_total{verdict="clean"} 1`,
		`sealgate_scan_verdicts_total{verdict="infected"} 1`,
		`sealgate_scan_verdicts_total{verdict="unavailable"} 1`,
		`sealgate_deliveries_total{kind="sealed",outcome="failed"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(body, "Eicar") {
		t.Error("the scrape carries the signature name")
	}
}

// A clamd that cannot be reached defers the message (451): counted as
// deferred for scan_unavailable, with the verdict unavailable.
func TestMetricsScanUnavailable(t *testing.T) {
	g := newTestGateway(t, nil, func(c *config.Config) {
		c.Scan.Clamd = "unix:" + filepath.Join(t.TempDir(), "no-clamd.sock")
		c.Scan.Timeout = config.Duration(time.Second)
	})
	m := metrics.New()
	g.Metrics = m
	env := &envelope{listener: metrics.ListenerSubmission, client: "127.0.0.1:1", from: "alice@corp.example", rcpts: []string{"carol@client.example"}}
	_, err := g.accept(context.Background(), env, bytes.NewReader(routeMessage("scan", "carol@client.example", "", []byte("x"))))
	if r := smtpReply(err); err == nil || r.Code != 451 {
		t.Fatalf("without clamd: %v", err)
	}
	body := scrapeMetrics(t, m)
	for _, want := range []string{
		`sealgate_messages_total{listener="submission",outcome="deferred",reason="scan_unavailable"} 1`,
		`sealgate_scan_verdicts_total{verdict="unavailable"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// outboxRow returns the sealed copy's outbound row, enough of it for
// queue.fail.
func outboxRow(t *testing.T, g *testGW) outbox.Row {
	t.Helper()
	r := outbox.Row{Kind: outbox.KindSealed, Rcpts: []string{"carol@client.example"}, MailFrom: "alice@corp.example"}
	if err := g.DB.Read().QueryRow(`SELECT id, message_id FROM outbound WHERE kind = 'sealed'`).Scan(&r.ID, &r.MessageID); err != nil {
		t.Fatal(err)
	}
	return r
}

// On the submission listener the outcome of AUTH is counted: 535 for a
// wrong password, 235 for a right one.
func TestMetricsCountAuth(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	m := metrics.New()
	g.Metrics = m
	cert, err := devcert.New(rand.Reader, "gw.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	g.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	addr := serve(t, g.NewSubmissionServer(&fakeAuth{}))
	for _, c := range []struct {
		pass string
		code int
	}{{"wrong password", 535}, {"right password", 235}} {
		conn := dialFrom(t, addr, "")
		conn.cmd("EHLO client.test")
		conn.startTLS()
		if code, text := conn.cmd(plain("alice", c.pass)); code != c.code {
			t.Fatalf("AUTH with %q: %d %s", c.pass, code, text)
		}
	}
	body := scrapeMetrics(t, m)
	for _, want := range []string{
		`sealgate_smtp_replies_total{class="5xx",code="535",command="auth",listener="submission"} 1`,
		`sealgate_smtp_replies_total{class="2xx",code="235",command="auth",listener="submission"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(body, "alice") {
		t.Error("the scrape carries the account name")
	}
}
