package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
)

// outcome is what the sender learned about one message.
type outcome uint8

const (
	notSent  outcome = iota // never attempted (the run was cut short)
	accepted                // 250 after the end of data
	refused                 // a 4xx or 5xx reply at some stage
	lost                    // the connection failed before the end of data was sent: nothing may remain
	unknown                 // the end of data was sent and no reply came (the gateway was killed)
)

func (o outcome) String() string {
	return [...]string{"not sent", "accepted", "refused", "lost", "unknown"}[o]
}

// result is one message's submission.
type result struct {
	Outcome outcome
	Code    int    // SMTP reply code of a refusal
	Stage   string // mail | rcpt | data | dot
	Reply   string
	Latency time.Duration // from the end of data to the reply
	Start   time.Time
	End     time.Time
	// Tries is how many instances the message was offered to (a fleet
	// client offers a message refused with 4xx, or whose connection broke
	// before the end of data, to the next instance).
	Tries int
}

// sender submits messages over concurrent SMTP sessions. Each session
// keeps its connection for many messages (as an MTA does) and reconnects
// when it breaks. Connecting is not an attempt: while the server is down
// the session waits up to dialWait for it to come back.
//
// With several addresses (a fleet: one MX entry per instance) session k
// starts on instance k mod N, moves to the next instance when it cannot
// connect, and offers a message that was refused with 4xx or cut off
// before the end of data to the next instance, up to retries more times,
// as an MTA tries the next MX. A message whose end of data was sent and
// whose reply never came ("unknown") is not offered again: the harness
// keeps one outcome per message and the database decides it.
type sender struct {
	addrs    []string
	retries  int
	gen      *generator
	sessions int
	dialWait time.Duration
	timeout  time.Duration // per message
	// deferWait is how long a session pauses after a 4xx, as an MTA
	// defers a message: without it a fault burns through the run's
	// messages in a burst of refusals and the later faults find no
	// traffic.
	deferWait time.Duration
	// interval, when > 0, paces the run: one message handed to the
	// sessions per interval at most (so that a short run lasts long
	// enough for its faults to happen during traffic).
	interval time.Duration
	now      func() time.Time
	done     atomic.Int64 // messages with a final outcome
}

// run submits messages 0..n-1 and returns their results.
func (s *sender) run(ctx context.Context, n int) []result {
	results := make([]result, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < s.sessions; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess := &session{s: s, at: w % len(s.addrs)}
			defer sess.close()
			for i := range jobs {
				results[i] = sess.send(ctx, i)
				s.done.Add(1)
				if r := results[i]; r.Outcome == refused && r.Code >= 400 && r.Code < 500 && s.deferWait > 0 {
					select {
					case <-time.After(s.deferWait):
					case <-ctx.Done():
					}
				}
			}
		}()
	}
	var tick <-chan time.Time
	if s.interval > 0 {
		t := time.NewTicker(s.interval)
		defer t.Stop()
		tick = t.C
	}
	for i := 0; i < n; i++ {
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
			}
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	return results
}

type session struct {
	s    *sender
	at   int // index in s.addrs of the instance this session talks to
	conn net.Conn
	c    *smtp.Client
}

func (ss *session) close() {
	if ss.c != nil {
		ss.c.Close()
	}
	ss.c, ss.conn = nil, nil
}

// next moves the session to the next instance.
func (ss *session) next() {
	ss.close()
	ss.at = (ss.at + 1) % len(ss.s.addrs)
}

// connect opens a session, waiting for a server to be up (trying the
// instances in turn).
func (ss *session) connect(ctx context.Context) error {
	deadline := ss.s.now().Add(ss.s.dialWait)
	for {
		err := ss.dial()
		if err == nil {
			return nil
		}
		if ss.s.now().After(deadline) {
			return fmt.Errorf("failed to connect to %v for %s: %w", ss.s.addrs, ss.s.dialWait, err)
		}
		if len(ss.s.addrs) > 1 {
			ss.at = (ss.at + 1) % len(ss.s.addrs)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (ss *session) dial() error {
	addr := ss.s.addrs[ss.at]
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(ss.s.now().Add(30 * time.Second))
	host, _, _ := net.SplitHostPort(addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("failed to read the greeting: %w", err)
	}
	if err := c.Hello("client.chaos.test"); err != nil {
		c.Close()
		return fmt.Errorf("failed to greet: %w", err)
	}
	ss.conn, ss.c = conn, c
	return nil
}

// send offers message i, to the next instance again while it is refused
// with 4xx or cut off before the end of data and retries remain.
func (ss *session) send(ctx context.Context, i int) result {
	var r result
	for try := 1; ; try++ {
		r = ss.sendOnce(ctx, i)
		r.Tries = try
		retry := r.Outcome == lost || (r.Outcome == refused && r.Code/100 == 4)
		if !retry || try > ss.s.retries || ctx.Err() != nil {
			return r
		}
		ss.next()
	}
}

func (ss *session) sendOnce(ctx context.Context, i int) result {
	m := ss.s.gen.spec(i)
	msg := ss.s.gen.render(&m)
	if ss.c == nil {
		if err := ss.connect(ctx); err != nil {
			return result{Outcome: notSent, Reply: err.Error()}
		}
	}
	r := result{Start: ss.s.now()}
	ss.conn.SetDeadline(r.Start.Add(ss.s.timeout))
	fail := func(stage string, err error, after outcome) result {
		r.Stage = stage
		r.End = ss.s.now()
		var te *textproto.Error
		if errors.As(err, &te) {
			r.Outcome, r.Code, r.Reply = refused, te.Code, te.Msg
			if stage != "dot" {
				if ss.c.Reset() != nil {
					ss.close()
				}
			}
			return r
		}
		r.Outcome, r.Reply = after, err.Error()
		ss.close()
		return r
	}
	if err := ss.c.Mail(m.From); err != nil {
		return fail("mail", err, lost)
	}
	for _, rc := range m.Rcpts() {
		if err := ss.c.Rcpt(rc); err != nil {
			return fail("rcpt", err, lost)
		}
	}
	w, err := ss.c.Data()
	if err != nil {
		return fail("data", err, lost)
	}
	if _, err := w.Write(msg); err != nil {
		return fail("data", err, lost)
	}
	t0 := ss.s.now()
	err = w.Close() // writes the final dot and reads the reply
	r.Latency = ss.s.now().Sub(t0)
	if err != nil {
		return fail("dot", err, unknown)
	}
	r.Outcome = accepted
	r.End = ss.s.now()
	return r
}
