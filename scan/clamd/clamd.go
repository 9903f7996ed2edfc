// Package clamd is a client of the ClamAV daemon (clamd) over its socket, for scanning a part
// before it is sealed: after sealing nobody can scan it until the recipient opens it.
//
// # Protocol
//
// One connection per command, null-terminated commands ("z" prefix). A scan is INSTREAM: the
// content goes in chunks, each a 4-byte big-endian length and the bytes, ended by a zero
// length; clamd answers "stream: OK" or "stream: <signature> FOUND". [Client.Scan] returns a
// [Stream], an io.WriteCloser that sends each Write as a chunk as it comes (no copy of the part
// is kept, in memory or on disk); the verdict is known at Close.
//
// # Errors
//
// A verdict is not an error: an infected part is Verdict{Infected: true} with a nil error.
// Errors say why there is no verdict, for the caller to answer 451 or hold by configuration:
//
//   - [ErrUnavailable]: clamd could not be reached, closed the connection, answered garbage,
//     or did not answer in time ([ErrTimeout] too, in that case);
//   - [ErrLimit]: clamd refused the stream as larger than its StreamMaxLength (a configuration
//     mismatch: the part was not scanned);
//   - [ErrScanner]: clamd reported an error of its own for this scan.
//
// Error texts never contain content of the part; they may be logged.
package clamd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

var (
	ErrUnavailable = errors.New("clamd unavailable")
	ErrTimeout     = errors.New("clamd did not answer in time")
	ErrLimit       = errors.New("clamd refused the stream: larger than its StreamMaxLength")
	ErrScanner     = errors.New("clamd could not scan")
	ErrClosed      = errors.New("clamd: stream already closed")
)

// Config says how to reach clamd.
type Config struct {
	// Address is a unix socket path ("/run/clamav/clamd.ctl", or "unix:/path") or a TCP
	// address ("tcp:127.0.0.1:3310", or "127.0.0.1:3310").
	Address string
	// Timeout bounds each step: connecting, each chunk sent, and the wait for the verdict after
	// the last chunk (clamd scans then). Default 30 s.
	Timeout time.Duration
	// MaxChunk is the largest chunk sent; larger writes are split. Default 1 MiB.
	MaxChunk int
}

// Client talks to one clamd. It holds no connection between calls and is safe for concurrent
// use.
type Client struct {
	network, addr string
	timeout       time.Duration
	maxChunk      int
	dialer        net.Dialer
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	c := &Client{timeout: cfg.Timeout, maxChunk: cfg.MaxChunk}
	if c.timeout <= 0 {
		c.timeout = 30 * time.Second
	}
	if c.maxChunk <= 0 {
		c.maxChunk = 1 << 20
	}
	a := cfg.Address
	switch {
	case strings.HasPrefix(a, "unix:"):
		c.network, c.addr = "unix", strings.TrimPrefix(a, "unix:")
	case strings.HasPrefix(a, "tcp:"):
		c.network, c.addr = "tcp", strings.TrimPrefix(a, "tcp:")
	case strings.HasPrefix(a, "/") || strings.HasPrefix(a, "."):
		c.network, c.addr = "unix", a
	default:
		c.network, c.addr = "tcp", a
	}
	if c.addr == "" {
		return nil, errors.New("clamd: no address")
	}
	if c.network == "tcp" {
		if _, _, err := net.SplitHostPort(c.addr); err != nil {
			return nil, fmt.Errorf("clamd: address %q: %w", cfg.Address, err)
		}
	}
	return c, nil
}

// unavailable classifies a network error.
func unavailable(op string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("failed to %s: %w: %w: %v", op, ErrUnavailable, ErrTimeout, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("failed to %s: %w: %w: %v", op, ErrUnavailable, ErrTimeout, err)
	}
	return fmt.Errorf("failed to %s: %w: %v", op, ErrUnavailable, err)
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := c.dialer.DialContext(ctx, c.network, c.addr)
	if err != nil {
		return nil, unavailable("connect to clamd", err)
	}
	return conn, nil
}

// deadline is now plus the timeout, or the context's deadline if earlier.
func (c *Client) deadline(ctx context.Context) time.Time {
	d := time.Now().Add(c.timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// maxReply bounds a reply line (a signature name is short; VERSION is one line).
const maxReply = 4096

// readReply reads one null- or newline-terminated reply.
func readReply(conn net.Conn) (string, error) {
	r := bufio.NewReaderSize(conn, maxReply)
	line, err := r.ReadSlice(0)
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		if errors.Is(err, io.EOF) || errors.Is(err, bufio.ErrBufferFull) {
			return "", fmt.Errorf("%w: reply without end", ErrUnavailable)
		}
		return "", unavailable("read the reply of clamd", err)
	}
	return strings.TrimSpace(string(bytes.TrimRight(line, "\x00"))), nil
}

// Version is what clamd's VERSION answers: "ClamAV 1.4.6/27500/Sun Dec  6 09:30:01 2026", or
// "ClamAV 1.4.6" when only local signature databases are loaded.
type Version struct {
	Engine       string // "ClamAV 1.4.6"
	Database     string // "27500", or "" when there is no official database
	DatabaseDate string // "Sun Dec  6 09:30:01 2026", or ""
	Raw          string
}

// Version asks clamd for the engine and database versions (for the ledger).
func (c *Client) Version(ctx context.Context) (Version, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return Version{}, err
	}
	defer conn.Close()
	conn.SetDeadline(c.deadline(ctx))
	if _, err := conn.Write([]byte("zVERSION\x00")); err != nil {
		return Version{}, unavailable("send VERSION", err)
	}
	reply, err := readReply(conn)
	if err != nil {
		return Version{}, err
	}
	if !strings.HasPrefix(reply, "ClamAV ") {
		return Version{}, fmt.Errorf("%w: unexpected VERSION reply %q", ErrUnavailable, reply)
	}
	v := Version{Raw: reply}
	parts := strings.SplitN(reply, "/", 3)
	v.Engine = parts[0]
	if len(parts) > 1 {
		v.Database = parts[1]
	}
	if len(parts) > 2 {
		v.DatabaseDate = parts[2]
	}
	return v, nil
}

// Ping checks that clamd answers (PING → PONG).
func (c *Client) Ping(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(c.deadline(ctx))
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return unavailable("send PING", err)
	}
	reply, err := readReply(conn)
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("%w: unexpected PING reply %q", ErrUnavailable, reply)
	}
	return nil
}

// Verdict is clamd's answer for one stream.
type Verdict struct {
	Infected  bool
	Signature string // the signature name when Infected, e.g. "Eicar-Test-Signature"
}

// Stream sends one part to clamd. Write sends p as it comes; Close ends the stream, waits for
// the verdict and closes the connection; Verdict reports it. Abort drops the stream without a
// verdict. The caller must call Close or Abort. Not safe for concurrent use.
type Stream struct {
	c       *Client
	ctx     context.Context
	conn    net.Conn
	err     error // the first error: Write keeps returning it
	done    bool
	verdict Verdict
	hdr     [4]byte
}

// Scan opens a stream to clamd (INSTREAM). ctx bounds the whole stream (its deadline and
// cancellation apply to every step).
func (c *Client) Scan(ctx context.Context) (*Stream, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	s := &Stream{c: c, ctx: ctx, conn: conn}
	conn.SetWriteDeadline(c.deadline(ctx))
	if _, err := conn.Write([]byte("zINSTREAM\x00")); err != nil {
		conn.Close()
		return nil, unavailable("send INSTREAM", err)
	}
	return s, nil
}

// Write sends p to clamd in chunks of at most Config.MaxChunk, without copying it.
func (s *Stream) Write(p []byte) (int, error) {
	if s.done {
		return 0, ErrClosed
	}
	if s.err != nil {
		return 0, s.err
	}
	n := 0
	for len(p) > 0 {
		if err := s.ctx.Err(); err != nil {
			s.err = unavailable("send a chunk to clamd", err)
			return n, s.err
		}
		k := min(len(p), s.c.maxChunk)
		binary.BigEndian.PutUint32(s.hdr[:], uint32(k))
		s.conn.SetWriteDeadline(s.c.deadline(s.ctx))
		bufs := net.Buffers{s.hdr[:], p[:k]}
		if _, err := bufs.WriteTo(s.conn); err != nil {
			s.err = s.writeFailed(err)
			return n, s.err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// writeFailed explains a failed write: clamd closes the connection after answering "INSTREAM
// size limit exceeded", so read what it said before blaming the network.
func (s *Stream) writeFailed(err error) error {
	s.conn.SetReadDeadline(time.Now().Add(min(s.c.timeout, time.Second)))
	if reply, rerr := readReply(s.conn); rerr == nil && strings.Contains(reply, "size limit exceeded") {
		return fmt.Errorf("failed to send a chunk: %w", ErrLimit)
	}
	return unavailable("send a chunk to clamd", err)
}

// Close ends the stream and waits for clamd's verdict (Verdict reports it). A nil error means
// there is a verdict.
func (s *Stream) Close() error {
	if s.done {
		return s.err
	}
	s.done = true
	defer s.conn.Close()
	if s.err != nil {
		return s.err
	}
	s.conn.SetWriteDeadline(s.c.deadline(s.ctx))
	if _, err := s.conn.Write([]byte{0, 0, 0, 0}); err != nil {
		s.err = s.writeFailed(err)
		return s.err
	}
	s.conn.SetReadDeadline(s.c.deadline(s.ctx))
	reply, err := readReply(s.conn)
	if err != nil {
		s.err = err
		return err
	}
	s.verdict, s.err = parseVerdict(reply)
	return s.err
}

// Abort drops the stream without waiting for a verdict.
func (s *Stream) Abort() {
	if !s.done {
		s.done = true
		s.conn.Close()
	}
}

// Verdict is clamd's answer; valid when Close returned nil.
func (s *Stream) Verdict() Verdict { return s.verdict }

// parseVerdict reads "stream: OK", "stream: <name> FOUND", "<message> ERROR".
func parseVerdict(reply string) (Verdict, error) {
	rest, ok := strings.CutPrefix(reply, "stream: ")
	switch {
	case ok && rest == "OK":
		return Verdict{}, nil
	case ok && strings.HasSuffix(rest, " FOUND"):
		return Verdict{Infected: true, Signature: strings.TrimSuffix(rest, " FOUND")}, nil
	case strings.Contains(reply, "size limit exceeded"):
		return Verdict{}, fmt.Errorf("failed to scan: %w", ErrLimit)
	case strings.HasSuffix(reply, " ERROR"):
		return Verdict{}, fmt.Errorf("failed to scan: %w: %q", ErrScanner, reply)
	}
	return Verdict{}, fmt.Errorf("failed to scan: %w: unexpected reply %q", ErrUnavailable, reply)
}
