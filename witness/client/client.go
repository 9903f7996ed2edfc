// Package client is the gateway's side of the witness protocol
// (c2sp.org/tlog-witness): it sends each ledger checkpoint to the
// configured witnesses and returns their cosignatures, for package audit
// to record and publish with the checkpoint (it implements
// audit.Cosigner).
//
// For each witness it sends the checkpoint with a consistency proof from
// the largest checkpoint that witness is known to have cosigned (the
// ledger's recorded cosignatures). A witness that answers 409 Conflict
// states the size it cosigned last: the request is made again with a
// proof from that size. The cosignature lines returned are verified
// against the witness's configured key (cosignature/v1, Ed25519) and their
// timestamp against the clock; lines by other keys are ignored.
//
// A witness that is down, refuses or answers wrongly never holds up the
// checkpoint (nor mail: checkpoints are signed on their own). It is
// logged at error level each time, counted in Status (for metrics:
// consecutive and total failures, last success), and the Alert hook is
// called when the witness goes down, comes back, or refuses a checkpoint
// as inconsistent with what it cosigned before — the one answer that
// means the ledger's history changed (rewritten, or rolled back to a
// backup).
package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/witness/cosig"
)

// Witness is one configured witness.
type Witness struct {
	// Name is how people call it (default: its key's name).
	Name string
	// URL is its submission prefix: requests go to URL + "/add-checkpoint".
	URL string
	// Key is its verifier key (cosignature/v1 vkey).
	Key string
}

// Problem is what an Alert reports.
type Problem int

const (
	// Down: the witness did not answer, or answered with an error that
	// is not about the checkpoint (5xx, a bad response).
	Down Problem = iota + 1
	// Rejected: the witness refused the request for what it is, not for
	// the ledger's history: unknown log (404), key not accepted (403),
	// malformed (400). Its configuration or ours needs fixing.
	Rejected
	// Refused: the witness refused the checkpoint as inconsistent with
	// what it cosigned before (422, or 409 for a different tree of the
	// same size), or it has cosigned a larger tree than the ledger holds.
	// The ledger's history is not the one the witness saw.
	Refused
	// Recovered: a witness that was down or rejected requests cosigned
	// again.
	Recovered
)

func (p Problem) String() string {
	switch p {
	case Down:
		return "down"
	case Rejected:
		return "rejected"
	case Refused:
		return "refused"
	case Recovered:
		return "recovered"
	}
	return "unknown"
}

// Alert is one event worth telling the administrators.
type Alert struct {
	Problem  Problem
	Witness  string // name
	URL      string
	Key      string    // "<name>+<key ID>"
	Size     int64     // the checkpoint concerned
	Since    time.Time // first failure of the run that is alerted (Down, Rejected)
	Failures int       // consecutive failures so far
	Detail   string    // what happened, in English (error text, HTTP status)
}

// Status is a witness's state as this process saw it (for metrics).
type Status struct {
	Name string
	URL  string
	Key  string // "<name>+<key ID>"
	// LastSuccess is when it last cosigned, LastSize the size it cosigned.
	LastSuccess time.Time
	LastSize    int64
	LastAttempt time.Time
	// ConsecutiveFailures counts failures since the last success;
	// Failures and Refusals are totals since start (Refusals: the
	// checkpoint refused as inconsistent).
	ConsecutiveFailures int
	Failures            int64
	Refusals            int64
	LastError           string
}

// Options configures a Client.
type Options struct {
	Witnesses []Witness
	// HTTP sends the requests (default: a client with Timeout); redirects
	// are never followed, whatever its CheckRedirect.
	HTTP *http.Client
	// Timeout bounds each request (default 10 s).
	Timeout time.Duration
	// Now is the clock cosignature timestamps are checked against
	// (default time.Now); MaxSkew is how far they may be off (default
	// 10 minutes).
	Now     func() time.Time
	MaxSkew time.Duration
	// Log receives every failure at error level (default: discard).
	Log *slog.Logger
	// AlertAfter is how many consecutive failures make a witness down
	// (default 1: the first).
	AlertAfter int
	// Alert, if set, is told when a witness goes down, recovers, or
	// refuses a checkpoint. It must not block for long.
	Alert func(ctx context.Context, a Alert)
	// Quorum: a checkpoint cosigned by fewer witnesses is logged at error
	// level (0: no check).
	Quorum int
}

// Client sends checkpoints to witnesses. Safe for concurrent use.
type Client struct {
	opts Options
	ws   []*target
	http *http.Client

	mu sync.Mutex // guards the status of every witness
}

type target struct {
	Witness
	v      *cosig.Verifier
	status Status
	since  time.Time // first failure of the current run
	down   bool      // alerted as down or rejected, not yet recovered
}

// New returns a Client for the witnesses of opts.
func New(opts Options) (*Client, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxSkew <= 0 {
		opts.MaxSkew = 10 * time.Minute
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.AlertAfter <= 0 {
		opts.AlertAfter = 1
	}
	c := &Client{opts: opts, http: opts.HTTP}
	if c.http == nil {
		c.http = &http.Client{Timeout: opts.Timeout}
	}
	// The protocol has no redirects: a witness that answers with one is
	// not followed to another address (which could be on the gateway's
	// internal network), and the answer counts as a failure.
	hc := *c.http
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.http = &hc
	seen := map[string]string{} // public key → "<name>+<key ID>"
	for _, w := range opts.Witnesses {
		v, err := cosig.NewVerifier(w.Key)
		if err != nil {
			return nil, fmt.Errorf("witness %q: %w", w.Name, err)
		}
		// By public key: a cosignature does not cover the witness's name.
		if prev, ok := seen[string(v.PublicKey())]; ok {
			return nil, fmt.Errorf("witness key %s is configured twice (as %s)", v.ID(), prev)
		}
		seen[string(v.PublicKey())] = v.ID()
		if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			return nil, fmt.Errorf("witness %q: URL %q must be http:// or https://", w.Name, w.URL)
		}
		w.URL = strings.TrimRight(w.URL, "/")
		if w.Name == "" {
			w.Name = v.Name()
		}
		c.ws = append(c.ws, &target{Witness: w, v: v, status: Status{Name: w.Name, URL: w.URL, Key: v.ID()}})
	}
	return c, nil
}

// Status returns each witness's status, in the configured order.
func (c *Client) Status() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Status, len(c.ws))
	for i, w := range c.ws {
		out[i] = w.status
	}
	return out
}

// Cosign implements audit.Cosigner: it asks every witness that has not
// cosigned req's checkpoint (or a larger one) at once, and returns the
// cosignatures that verified.
func (c *Client) Cosign(ctx context.Context, req audit.CosignRequest) []cosig.Cosigned {
	var mu sync.Mutex
	var out []cosig.Cosigned
	var wg sync.WaitGroup
	for _, w := range c.ws {
		last := req.LastCosigned[w.v.ID()]
		if last >= req.Checkpoint.Size {
			continue // it cosigned this checkpoint, or a later one, already
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := c.ask(ctx, w, req, last)
			c.record(ctx, w, req.Checkpoint.Size, err)
			if err == nil && got != nil {
				mu.Lock()
				out = append(out, *got)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if c.opts.Quorum > 0 && ctx.Err() == nil {
		have := len(out)
		for _, w := range c.ws {
			if req.LastCosigned[w.v.ID()] == req.Checkpoint.Size {
				have++
			}
		}
		if have < c.opts.Quorum {
			c.opts.Log.Error("witness alert: the checkpoint is cosigned by fewer witnesses than required",
				"size", req.Checkpoint.Size, "cosigned_by", have, "required", c.opts.Quorum, "witnesses", len(c.ws))
		}
	}
	return out
}

// failure is why a witness did not cosign.
type failure struct {
	problem Problem
	detail  string
}

func (f *failure) Error() string { return f.detail }

// errSuperseded: the witness already cosigned a larger checkpoint of this
// ledger (another process's); nothing is wrong.
var errSuperseded = errors.New("the witness has cosigned a later checkpoint of this ledger")

const maxConflicts = 3

// ask obtains w's cosignature of req's checkpoint, starting from the old
// size last.
func (c *Client) ask(ctx context.Context, w *target, req audit.CosignRequest, last int64) (*cosig.Cosigned, error) {
	cp := req.Checkpoint
	old := last
	for range maxConflicts {
		proof, err := req.Prove(ctx, old)
		if err != nil {
			if errors.Is(err, audit.ErrInconsistent) {
				return nil, &failure{Refused, fmt.Sprintf("no consistency proof from size %d, which the witness cosigned: %v", old, err)}
			}
			return nil, err // the database: not the witness's fault
		}
		body := (&cosig.Request{OldSize: old, Proof: proof, Checkpoint: req.Note}).Marshal()
		status, resp, err := c.post(ctx, w, body)
		if err != nil {
			return nil, err
		}
		switch status {
		case http.StatusOK:
			return c.verify(w, req.Note, resp)
		case http.StatusConflict:
			known, err := strconv.ParseInt(strings.TrimSpace(string(resp)), 10, 64)
			if err != nil || known < 0 {
				return nil, &failure{Down, fmt.Sprintf("409 Conflict without a valid size (%q)", truncate(resp))}
			}
			switch {
			case known == old:
				// Same size as ours, yet a conflict: it holds another
				// tree of this size.
				return nil, &failure{Refused, fmt.Sprintf("409 Conflict: the witness cosigned a different tree of size %d: the ledger's history is not the one it saw", known)}
			case known > req.LedgerSize:
				return nil, &failure{Refused, fmt.Sprintf("409 Conflict: the witness has cosigned a tree of size %d but the ledger holds %d entries: the ledger was rolled back (restored from a backup?) or another gateway signs with this ledger's name",
					known, req.LedgerSize)}
			case known >= cp.Size:
				return nil, errSuperseded
			}
			old = known
		case http.StatusUnprocessableEntity:
			return nil, &failure{Refused, fmt.Sprintf("422: the witness refused the checkpoint of size %d: its consistency proof from size %d does not verify against the tree the witness cosigned: the ledger's history is not the one it saw (%s)",
				cp.Size, old, truncate(resp))}
		case http.StatusNotFound:
			return nil, &failure{Rejected, fmt.Sprintf("404: the witness does not know this ledger (%s): its operator must add it (sealgate witness add-log --key ledger.pub)", truncate(resp))}
		case http.StatusForbidden:
			return nil, &failure{Rejected, fmt.Sprintf("403: the witness does not accept the ledger's signing key (%s)", truncate(resp))}
		case http.StatusBadRequest:
			return nil, &failure{Rejected, fmt.Sprintf("400: the witness could not read the request (%s)", truncate(resp))}
		default:
			return nil, &failure{Down, fmt.Sprintf("HTTP %d: %s", status, truncate(resp))}
		}
	}
	return nil, &failure{Down, fmt.Sprintf("409 Conflict %d times in a row", maxConflicts)}
}

const maxResponse = 64 << 10

func (c *Client) post(ctx context.Context, w *target, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL+"/add-checkpoint", bytes.NewReader(body))
	if err != nil {
		return 0, nil, &failure{Rejected, fmt.Sprintf("bad witness URL: %v", err)}
	}
	hr.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := c.http.Do(hr)
	if err != nil {
		return 0, nil, &failure{Down, fmt.Sprintf("unreachable: %v", err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return 0, nil, &failure{Down, fmt.Sprintf("failed to read the answer: %v", err)}
	}
	return resp.StatusCode, b, nil
}

// verify checks the cosignature lines of a 200 answer against w's key and
// the clock.
func (c *Client) verify(w *target, signed, resp []byte) (*cosig.Cosigned, error) {
	if len(resp) == 0 || resp[len(resp)-1] != '\n' {
		return nil, &failure{Down, "the answer is not signature lines"}
	}
	got, err := cosig.Open(append(bytes.Clone(signed), resp...), []*cosig.Verifier{w.v})
	if err != nil {
		return nil, &failure{Down, fmt.Sprintf("the cosignature does not verify with the witness key %s: %v", w.v.ID(), err)}
	}
	if len(got) == 0 {
		return nil, &failure{Down, fmt.Sprintf("the answer holds no cosignature by the witness key %s", w.v.ID())}
	}
	now := c.opts.Now()
	if d := got[0].Time.Sub(now); d > c.opts.MaxSkew || d < -c.opts.MaxSkew {
		return nil, &failure{Down, fmt.Sprintf("the cosignature's time %s is %s off this clock (more than %s): check both clocks",
			got[0].Time.Format(time.RFC3339), d.Round(time.Second), c.opts.MaxSkew)}
	}
	return &got[0], nil
}

// record updates w's status after an attempt and raises what must be.
func (c *Client) record(ctx context.Context, w *target, size int64, err error) {
	if errors.Is(err, errSuperseded) {
		c.opts.Log.Info("witness: a later checkpoint was cosigned already", "witness", w.Name, "size", size)
		return
	}
	if err != nil && ctx.Err() != nil {
		return // shutting down
	}
	now := c.opts.Now()
	c.mu.Lock()
	st := &w.status
	st.LastAttempt = now
	var alert *Alert
	if err == nil {
		recovered := w.down
		w.down, w.since = false, time.Time{}
		st.LastSuccess, st.LastSize, st.ConsecutiveFailures, st.LastError = now, size, 0, ""
		if recovered {
			alert = &Alert{Problem: Recovered, Witness: w.Name, URL: w.URL, Key: st.Key, Size: size}
		}
	} else {
		var f *failure
		if !errors.As(err, &f) {
			f = &failure{Down, err.Error()}
		}
		if st.ConsecutiveFailures == 0 {
			w.since = now
		}
		st.ConsecutiveFailures++
		st.Failures++
		st.LastError = f.detail
		if f.problem == Refused {
			st.Refusals++
		}
		a := Alert{Problem: f.problem, Witness: w.Name, URL: w.URL, Key: st.Key, Size: size, Since: w.since,
			Failures: st.ConsecutiveFailures, Detail: f.detail}
		switch {
		case f.problem == Refused:
			alert = &a // every refusal: each is evidence
		case !w.down && st.ConsecutiveFailures >= c.opts.AlertAfter:
			w.down = true
			alert = &a
		}
	}
	fails := st.ConsecutiveFailures
	c.mu.Unlock()

	switch {
	case err == nil:
		c.opts.Log.Info("witness cosigned the checkpoint", "witness", w.Name, "size", size)
		if alert != nil {
			c.opts.Log.Warn("witness alert: the witness cosigns again", "witness", w.Name, "url", w.URL, "size", size)
		}
	case alert != nil && alert.Problem == Refused:
		c.opts.Log.Error("witness alert: the witness REFUSED the checkpoint: the ledger's history is not the one it cosigned before",
			"witness", w.Name, "url", w.URL, "size", size, "consecutive_failures", fails, "reason", alert.Detail)
	default:
		c.opts.Log.Error("witness alert: the witness did not cosign the checkpoint (mail is not affected)",
			"witness", w.Name, "url", w.URL, "size", size, "consecutive_failures", fails, "reason", err.Error())
	}
	if alert != nil && c.opts.Alert != nil {
		c.opts.Alert(ctx, *alert)
	}
}

func truncate(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
