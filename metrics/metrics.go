// Package metrics is sealgate's Prometheus instrumentation: the name, help
// and labels of every metric, registered on one registry per process that
// the composition root (package server) makes and serves as /metrics on
// the admin listener (metrics.listen). Nothing here is global: no default
// registry, no promauto; a *Metrics is passed to the packages that count,
// and a nil *Metrics counts nothing (metrics off), so callers need no test.
//
// # Labels
//
// Every label takes its values from a fixed set decided here; a value
// outside it is counted as "other". No label value ever carries an
// address, a token, a file name, a subject, a contract code or a message
// id: those stay in the ledger and the logs, where they are protected.
//
// # Gauges read from the database
//
// The depth and age of the outbound queue and the state of the ledger are
// read from the database when Prometheus scrapes (a collector, see
// State), so they are true at that moment and cost nothing in between.
package metrics

import (
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealgate/sealgate/outbox"
)

// Metrics are the counters and histograms of one sealgate process.
type Metrics struct {
	reg *prometheus.Registry

	smtpReplies  *prometheus.CounterVec
	messages     *prometheus.CounterVec
	sealSeconds  prometheus.Histogram
	messageBytes prometheus.Histogram
	fileBytes    prometheus.Histogram
	deliveries   *prometheus.CounterVec
	downloads    *prometheus.CounterVec
	passFailures prometheus.Counter
	linksLocked  prometheus.Counter
	storeErrors  *prometheus.CounterVec
	dbErrors     *prometheus.CounterVec
	scans        *prometheus.CounterVec
}

// Label values. Each method maps a value outside its set to Other.
const (
	Other = "other"

	// Listeners (label listener).
	ListenerRelay      = "relay"
	ListenerSubmission = "submission"
	ListenerInbound    = "inbound"

	// SMTP commands whose reply the gateway decides (label command).
	CommandMail = "mail"
	CommandRcpt = "rcpt"
	CommandData = "data" // the end of DATA or of the last BDAT chunk
	CommandAuth = "auth"

	// What became of a message (label outcome) and why (label reason).
	OutcomeAccepted = "accepted" // reason none
	OutcomeHeld     = "held"     // approval, policy, contract_ended, unscanned, send_delay
	OutcomeRefused  = "refused"  // 5xx: policy, malware, limit, malformed, contract, sender
	OutcomeDeferred = "deferred" // 4xx: transient, scan_unavailable

	ReasonNone            = "none"
	ReasonApproval        = "approval"
	ReasonPolicy          = "policy"
	ReasonContractEnded   = "contract_ended"
	ReasonUnscanned       = "unscanned"
	ReasonSendDelay       = "send_delay"
	ReasonMalware         = "malware"
	ReasonLimit           = "limit"
	ReasonMalformed       = "malformed"
	ReasonContract        = "contract"
	ReasonSender          = "sender"
	ReasonTransient       = "transient"
	ReasonScanUnavailable = "scan_unavailable"

	// Outcomes of a delivery attempt, per recipient (label outcome).
	DeliveryDelivered = "delivered"
	DeliveryDeferred  = "deferred"
	DeliveryFailed    = "failed"
	DeliveryCancelled = "cancelled"

	// Downloads (label format, label result).
	FormatPlain = "plain" // decrypted by the portal
	FormatAge   = "age"   // file.age for the age CLI
	FormatKey   = "key"   // key.age

	DownloadOK      = "ok"
	DownloadPartial = "partial" // broke off after something usable went out
	DownloadAborted = "aborted" // broke off before
	DownloadRefused = "refused" // integrity check failed
	DownloadLimit   = "limit"   // the download limit was reached

	// Malware scan verdicts, per part scanned (label verdict).
	VerdictClean       = "clean"
	VerdictInfected    = "infected"
	VerdictUnavailable = "unavailable"
)

var (
	listeners     = []string{ListenerRelay, ListenerSubmission, ListenerInbound}
	commands      = []string{CommandMail, CommandRcpt, CommandData, CommandAuth}
	outcomeReason = map[string][]string{
		OutcomeAccepted: {ReasonNone},
		OutcomeHeld:     {ReasonApproval, ReasonPolicy, ReasonContractEnded, ReasonUnscanned, ReasonSendDelay},
		OutcomeRefused:  {ReasonPolicy, ReasonMalware, ReasonLimit, ReasonMalformed, ReasonContract, ReasonSender},
		OutcomeDeferred: {ReasonTransient, ReasonScanUnavailable},
	}
	// Kinds of outbound rows (package outbox).
	kinds            = []string{outbox.KindPlain, outbox.KindCopy, outbox.KindSealed, outbox.KindKey, outbox.KindBounce, outbox.KindNotice}
	deliveryOutcomes = []string{DeliveryDelivered, DeliveryDeferred, DeliveryFailed, DeliveryCancelled}
	formats          = []string{FormatPlain, FormatAge, FormatKey}
	downloadResults  = []string{DownloadOK, DownloadPartial, DownloadAborted, DownloadRefused, DownloadLimit}
	verdicts         = []string{VerdictClean, VerdictInfected, VerdictUnavailable}
	// Operations of the object store (package storage) and the database
	// (package database).
	storeOps = []string{"put", "put_locked", "get", "get_range", "stat", "delete", "delete_many", "list"}
	dbOps    = []string{"begin", "commit", "exec", "query"}
)

// oneOf returns v if it is in set, else Other.
func oneOf(v string, set []string) string {
	if slices.Contains(set, v) {
		return v
	}
	return Other
}

// New returns the metrics of a process on a new registry, with Go runtime
// and process metrics. Every labelled series a process can have is
// created at zero, so that rates and alerts see it before its first event.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		smtpReplies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_smtp_replies_total",
			Help: "SMTP replies the gateway gave, by listener, command (mail, rcpt, data, auth), reply code and its class (2xx, 4xx, 5xx)."},
			[]string{"listener", "command", "class", "code"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_messages_total",
			Help: "Messages received, by listener and outcome (accepted, held, refused with 5xx, deferred with 4xx) with its reason."},
			[]string{"listener", "outcome", "reason"}),
		sealSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sealgate_seal_duration_seconds",
			Help:    "Time from the start of DATA to the durable commit (the 250) of messages in which something was sealed.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}}),
		messageBytes: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sealgate_message_size_bytes",
			Help:    "Size of accepted messages as received.",
			Buckets: prometheus.ExponentialBuckets(1<<10, 4, 11)}),
		fileBytes: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sealgate_sealed_file_size_bytes",
			Help:    "Plaintext size of each file sealed in an accepted message.",
			Buckets: prometheus.ExponentialBuckets(1<<10, 4, 11)}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_deliveries_total",
			Help: "Outcomes of delivery attempts, per recipient, by kind of outbound row (plain, copy, sealed, key, bounce, notice)."},
			[]string{"kind", "outcome"}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_downloads_total",
			Help: "Downloads from the portal by format (plain: decrypted by the portal, age: file.age, key: key.age) and result."},
			[]string{"format", "result"}),
		passFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealgate_passphrase_failures_total",
			Help: "Wrong passphrases typed on download links."}),
		linksLocked: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealgate_links_locked_total",
			Help: "Download links locked after too many wrong passphrases."}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_store_errors_total",
			Help: "Failures of the object store (objects and ledger checkpoints), by operation."},
			[]string{"op"}),
		dbErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_database_errors_total",
			Help: "Failures of the metadata database (statements, begin, commit), by operation."},
			[]string{"op"}),
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_scan_verdicts_total",
			Help: "Malware scan verdicts per part scanned (unavailable: clamd gave none)."},
			[]string{"verdict"}),
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.smtpReplies, m.messages, m.sealSeconds, m.messageBytes, m.fileBytes, m.deliveries, m.downloads,
		m.passFailures, m.linksLocked, m.storeErrors, m.dbErrors, m.scans)
	for _, l := range listeners {
		for o, reasons := range outcomeReason {
			for _, r := range reasons {
				m.messages.WithLabelValues(l, o, r)
			}
		}
	}
	for _, k := range kinds {
		for _, o := range deliveryOutcomes {
			m.deliveries.WithLabelValues(k, o)
		}
	}
	for _, f := range formats {
		for _, r := range downloadResults {
			m.downloads.WithLabelValues(f, r)
		}
	}
	for _, op := range storeOps {
		m.storeErrors.WithLabelValues(op)
	}
	for _, op := range dbOps {
		m.dbErrors.WithLabelValues(op)
	}
	for _, v := range verdicts {
		m.scans.WithLabelValues(v)
	}
	return m
}

// Handler serves the registry in the Prometheus text format. A collector
// that fails (the database cannot be read) is logged and left out; the
// rest is served.
func (m *Metrics) Handler(log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // promhttp_metric_handler_errors_total
		Timeout:       30 * time.Second,
	})
}

// Registry is the registry the metrics are on (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SMTPReply counts one reply the gateway gave to command on listener.
func (m *Metrics) SMTPReply(listener, command string, code int) {
	if m == nil {
		return
	}
	class, c := Other, Other
	if code >= 200 && code < 600 {
		class, c = strconv.Itoa(code/100)+"xx", strconv.Itoa(code)
	}
	m.smtpReplies.WithLabelValues(oneOf(listener, listeners), oneOf(command, commands), class, c).Inc()
}

// Message counts one message received on listener with its outcome and
// reason (Outcome*, Reason*).
func (m *Metrics) Message(listener, outcome, reason string) {
	if m == nil {
		return
	}
	reasons, ok := outcomeReason[outcome]
	if !ok {
		outcome = Other
	}
	m.messages.WithLabelValues(oneOf(listener, listeners), outcome, oneOf(reason, reasons)).Inc()
}

// Accepted observes an accepted message: its size, and — when something
// was sealed — how long it took from the start of DATA to the commit and
// the plaintext size of each sealed file.
func (m *Metrics) Accepted(size int64, took time.Duration, sealedFiles []int64) {
	if m == nil {
		return
	}
	m.messageBytes.Observe(float64(size))
	if len(sealedFiles) == 0 {
		return
	}
	m.sealSeconds.Observe(took.Seconds())
	for _, n := range sealedFiles {
		m.fileBytes.Observe(float64(n))
	}
}

// Delivery counts the outcome of one delivery attempt of an outbound row of
// kind for n recipients.
func (m *Metrics) Delivery(kind, outcome string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.deliveries.WithLabelValues(oneOf(kind, kinds), oneOf(outcome, deliveryOutcomes)).Add(float64(n))
}

// Download counts one download (or refused download) from the portal.
func (m *Metrics) Download(format, result string) {
	if m == nil {
		return
	}
	m.downloads.WithLabelValues(oneOf(format, formats), oneOf(result, downloadResults)).Inc()
}

// PassphraseFailed counts a wrong passphrase; locked says it locked the link.
func (m *Metrics) PassphraseFailed(locked bool) {
	if m == nil {
		return
	}
	m.passFailures.Inc()
	if locked {
		m.linksLocked.Inc()
	}
}

// StoreError counts a failure of the object store (storage.Observe).
func (m *Metrics) StoreError(op string) {
	if m == nil {
		return
	}
	m.storeErrors.WithLabelValues(oneOf(op, storeOps)).Inc()
}

// DatabaseError counts a failure of the database (database.Options.Failed).
func (m *Metrics) DatabaseError(op string) {
	if m == nil {
		return
	}
	m.dbErrors.WithLabelValues(oneOf(op, dbOps)).Inc()
}

// ScanVerdict counts one verdict of the malware scanner (Verdict*).
func (m *Metrics) ScanVerdict(verdict string) {
	if m == nil {
		return
	}
	m.scans.WithLabelValues(oneOf(verdict, verdicts)).Inc()
}
