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
}

// sender submits messages over concurrent SMTP sessions. Each session
// keeps its connection for many messages (as an MTA does) and reconnects
// when it breaks. Connecting is not an attempt: while the server is down
// the session waits up to dialWait for it to come back.
type sender struct {
	addr     string
	gen      *generator
	sessions int
	dialWait time.Duration
	timeout  time.Duration // per message
	// deferWait is how long a session pauses after a 4xx, as an MTA
	// defers a message: without it a fault burns through the run's
	// messages in a burst of refusals and the later faults find no
	// traffic.
	deferWait time.Duration
	now       func() time.Time
	done      atomic.Int64 // messages with a final outcome
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
			sess := &session{s: s}
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
	for i := 0; i < n; i++ {
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
	conn net.Conn
	c    *smtp.Client
}

func (ss *session) close() {
	if ss.c != nil {
		ss.c.Close()
	}
	ss.c, ss.conn = nil, nil
}

// connect opens a session, waiting for the server to be up.
func (ss *session) connect(ctx context.Context) error {
	deadline := ss.s.now().Add(ss.s.dialWait)
	for {
		err := ss.dial()
		if err == nil {
			return nil
		}
		if ss.s.now().After(deadline) {
			return fmt.Errorf("failed to connect to %s for %s: %w", ss.s.addr, ss.s.dialWait, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (ss *session) dial() error {
	conn, err := net.DialTimeout("tcp", ss.s.addr, 5*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(ss.s.now().Add(30 * time.Second))
	host, _, _ := net.SplitHostPort(ss.s.addr)
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

func (ss *session) send(ctx context.Context, i int) result {
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
