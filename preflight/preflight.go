// Package preflight checks an installation's configuration before it serves:
// what `sealgate check` reports and what `sealgate serve` runs at start.
//
// Each check yields one [Result]: OK, WARN, ERROR or SKIP (not applicable,
// or nothing to compare with), a stable name ("tls.smtp", "smarthost", …)
// and a bilingual text that says what was found and what to do. The checks:
//
//   - config: the configuration file is not readable by every user while
//     secrets (S3 secret key, smarthost password) are configured;
//   - timezone: the configured zone loads;
//   - datadir, storage: the data directory (and an fs store's folder) is
//     owned by the running user, not open to others, writable (a probe file
//     is created and removed), with free space; an S3 store writes, reads
//     and deletes a probe object (package storage/s3 does the probing);
//   - keys.master, keys.ledger: the master key and the ledger signing key
//     are present (or not yet created on a fresh installation), mode 0600 in
//     a directory others cannot write, owned by the running user;
//   - tls.smtp, tls.http, tls.client_ca: certificates load, the key matches,
//     not expired (ERROR), not expiring within 30 days (WARN), naming the
//     host; without a certificate, listeners beyond loopback are a warning;
//   - public_url: https, except on loopback;
//   - relay: trusted networks and internal domains that would make an open
//     relay;
//   - smarthost: reachable, STARTTLS as smarthost_tls demands, its
//     certificate verifies (as delivery verifies it), AUTH accepted;
//   - clamd: answers, its signatures are recent (when scanning is on);
//   - clock: compared with the S3 server's Date header and with a date in
//     the smarthost's greeting, and bounded below by the binary's commit
//     time and the database's modification time;
//   - listen (command only): each listener address can be bound.
//
// Errors fail `sealgate check` (exit status 1) and stop `serve`; warnings
// fail `sealgate check --strict` only and are logged by `serve`. A
// [Result.Transient] error is a condition of the network at that moment (a
// smarthost or clamd that does not answer): `serve` logs it as a warning
// and starts, since the queue retries.
//
// The package reads the configuration and the file system and talks to the
// configured servers; it changes nothing but a probe file in the data
// directory and a probe object in the bucket, both removed. Dependencies
// (clock, dialer, the S3 probe, the user id) come in [Deps].
package preflight

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/config"
)

// Level is a check's outcome.
type Level int

const (
	// Skip: the check does not apply, or there was nothing to compare with.
	Skip Level = iota
	OK
	Warn
	Error
)

func (l Level) String() string {
	switch l {
	case OK:
		return "OK"
	case Warn:
		return "WARN"
	case Error:
		return "ERROR"
	}
	return "SKIP"
}

// Result is the outcome of one check.
type Result struct {
	// Check names the check ("tls.smtp", "smarthost", …).
	Check string
	Level Level
	// JA and EN say what was found and, unless OK, what to do.
	JA, EN string
	// Transient marks an error caused by a server not answering now rather
	// than by the configuration.
	Transient bool
}

// Text is the result in both languages ("JA / EN"; once when they are the
// same, as a file name or a zone name is).
func (r Result) Text() string {
	if r.JA == r.EN {
		return r.EN
	}
	return r.JA + " / " + r.EN
}

// Report is the results of every check, in a fixed order.
type Report []Result

// Count returns how many results have level l.
func (r Report) Count(l Level) int {
	n := 0
	for _, x := range r {
		if x.Level == l {
			n++
		}
	}
	return n
}

// Failed reports whether `sealgate check` fails: any error, or with strict
// any warning.
func (r Report) Failed(strict bool) bool {
	return r.Count(Error) > 0 || (strict && r.Count(Warn) > 0)
}

// Blocking returns the errors that stop `serve`: every error that is not
// transient.
func (r Report) Blocking() Report {
	var out Report
	for _, x := range r {
		if x.Level == Error && !x.Transient {
			out = append(out, x)
		}
	}
	return out
}

// Write prints one line per result: level, check, text.
func (r Report) Write(w io.Writer) error {
	for _, x := range r {
		if _, err := fmt.Fprintf(w, "%-5s  %-14s %s\n", x.Level, x.Check, x.Text()); err != nil {
			return err
		}
	}
	return nil
}

// Summary is one bilingual line with the counts.
func (r Report) Summary() string {
	e, w := r.Count(Error), r.Count(Warn)
	return fmt.Sprintf("エラー %d 件、警告 %d 件 / %d error(s), %d warning(s)", e, w, e, w)
}

// Mode says who runs the checks.
type Mode int

const (
	// Command is `sealgate check`: every check, listeners included.
	Command Mode = iota
	// Start is `serve` starting: the listeners are not tried (serve binds
	// them itself right after).
	Start
)

// Deps are what the checks read and whom they talk to.
type Deps struct {
	Config *config.Config
	// ConfigFile is the configuration file ("" = defaults and environment).
	ConfigFile string
	Mode       Mode
	Now        func() time.Time
	// UID is the user the gateway runs as (os.Getuid()).
	UID int
	// MasterKeyInEnv: the master key comes from $SEALGATE_MASTER_KEY.
	MasterKeyInEnv bool
	// ProbeS3 opens the configured S3 store (and the ledger bucket), which
	// writes, reads and deletes a probe object; an error wraps
	// s3.ErrNoBucket when a bucket does not exist. Called only for the S3
	// store.
	ProbeS3 func(ctx context.Context) error
	// Clamd is clamd's address when malware scanning is on, else "".
	Clamd string
	// BuildTime is the commit time of the running binary (zero: unknown).
	BuildTime time.Time

	// Dial connects to the smarthost (default net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// SmarthostRoots verifies the smarthost's certificate (nil: the
	// system's roots, as delivery does).
	SmarthostRoots *x509.CertPool
	// HTTP fetches the S3 server's Date header (default: a client with the
	// system's roots).
	HTTP *http.Client
	// Timeout bounds each network check (default 10 s).
	Timeout time.Duration
}

// Thresholds.
const (
	// ExpiryWarning: a certificate that expires sooner is a warning.
	ExpiryWarning = 30 * 24 * time.Hour
	// ClockWarning and ClockError bound the clock's offset from a server's
	// date. TOTP codes are accepted within ±30 s, so beyond ClockError
	// sign-in with a second factor fails.
	ClockWarning = 5 * time.Second
	ClockError   = 30 * time.Second
	// MinFreeSpace: less free space in the data directory is a warning
	// (or less than four of the largest messages, if that is more).
	MinFreeSpace = 1 << 30
)

// Run runs every check and returns the report in a fixed order. It does not
// fail: whatever goes wrong is a result.
func Run(ctx context.Context, d Deps) Report {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Timeout <= 0 {
		d.Timeout = 10 * time.Second
	}
	if d.Dial == nil {
		var nd net.Dialer
		d.Dial = nd.DialContext
	}
	if d.HTTP == nil {
		d.HTTP = &http.Client{Timeout: d.Timeout}
	}
	r := &run{Deps: d, c: d.Config}
	// The network checks run at the same time; the clock check then reads
	// the dates they saw.
	checks := []func(context.Context) Result{
		r.configFile, r.timezone, r.dataDir, r.storage, r.masterKey, r.ledgerKey,
		r.tlsSMTP, r.tlsHTTP, r.clientCA, r.publicURL, r.relay, r.smarthost, r.clamd,
	}
	if d.Mode == Command {
		checks = append(checks, r.listen)
	}
	out := make(Report, len(checks), len(checks)+1)
	var wg sync.WaitGroup
	for i, f := range checks {
		wg.Go(func() { out[i] = f(ctx) })
	}
	wg.Wait()
	return append(out, r.clock(ctx))
}

// run is one run of the checks: the deps and what the checks saw that
// another check reads (the clock references).
type run struct {
	Deps
	c *config.Config

	mu   sync.Mutex
	refs []clockRef
}

// finding collects what one check found: the result has the worst level
// and every text, joined.
type finding struct {
	check     string
	level     Level
	ja, en    []string
	transient bool
}

func newFinding(check string) *finding { return &finding{check: check, level: Skip} }

func (f *finding) add(l Level, ja, en string) {
	if l > f.level {
		f.level = l
	}
	f.ja = append(f.ja, ja)
	f.en = append(f.en, en)
}

func (f *finding) ok(ja, en string)   { f.add(OK, ja, en) }
func (f *finding) warn(ja, en string) { f.add(Warn, ja, en) }
func (f *finding) fail(ja, en string) { f.add(Error, ja, en) }

func (f *finding) result() Result {
	return Result{Check: f.check, Level: f.level, JA: strings.Join(f.ja, "; "), EN: strings.Join(f.en, "; "), Transient: f.transient}
}

func skip(check, ja, en string) Result { return Result{Check: check, Level: Skip, JA: ja, EN: en} }

// loopbackHost reports whether host (an IP address or a name) is loopback.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackAddr reports whether a listen address ("host:port") binds
// loopback only; an empty host, 0.0.0.0 or :: bind every interface.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && loopbackHost(host)
}

// days formats a duration in whole days.
func days(d time.Duration) int { return int(d / (24 * time.Hour)) }
