package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// delivery is what the sink keeps of one accepted message: a summary, not
// the body (a long run would not fit in memory otherwise).
type delivery struct {
	Tag     string // Message-ID of the original (References for a key notice)
	Kind    string // plain | sealed | copy | key | bounce | unknown
	From    string
	Rcpts   []string
	Size    int
	SHA256  [32]byte
	Notices int  // X-Sealgate-Sealed parts
	HasLink bool // a download link is present
	Leaks   []leak
	// Via is the name the delivering client gave in EHLO (each instance
	// of a fleet has its own).
	Via string
	// MailAt is when the transaction began (MAIL FROM); At when the sink
	// had read and checked the message. The gateway may have been killed
	// anywhere in between without seeing the reply.
	MailAt time.Time
	At     time.Time
}

// sink is the smarthost of the gateway (and of Postfix): an SMTP server in
// the harness process, so it survives gateway restarts. It can be taken
// down and brought back on the same port (a smarthost outage).
type sink struct {
	gen      *generator
	internal func(addr string) bool
	now      func() time.Time
	badDir   string // bodies of suspicious deliveries are written here
	// relay marks a plain relay (Postfix): copies to external recipients
	// are the original, so they are not checked for leaks.
	relay bool

	mu         sync.Mutex
	addr       string
	srv        *smtp.Server
	ln         net.Listener
	deliveries []delivery
	bad        int
	count      atomic.Int64
}

func startSink(gen *generator, internal func(string) bool, now func() time.Time, badDir string) (*sink, error) {
	s := &sink{gen: gen, internal: internal, now: now, badDir: badDir}
	if err := s.listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sink) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("failed to listen for the sink: %w", err)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s, conn: c}, nil }))
	srv.Domain = "sink.chaos.test"
	srv.MaxMessageBytes = 1 << 30
	srv.ReadTimeout = 2 * time.Minute
	srv.WriteTimeout = 2 * time.Minute
	srv.ErrorLog = nopLogger{}
	s.mu.Lock()
	s.addr, s.srv, s.ln = ln.Addr().String(), srv, ln
	s.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

func (s *sink) Addr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.addr }

// Down closes the listener and every open connection.
func (s *sink) Down() {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.srv, s.ln = nil, nil
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	if srv != nil {
		srv.Close()
	}
}

// Up listens again on the same address.
func (s *sink) Up() error {
	var err error
	for i := 0; i < 100; i++ {
		if err = s.listen(s.Addr()); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Deliveries returns a copy of the summaries so far.
func (s *sink) Deliveries() []delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivery(nil), s.deliveries...)
}

// Count is the number of deliveries so far.
func (s *sink) Count() int { return int(s.count.Load()) }

type sinkSession struct {
	s      *sink
	conn   *smtp.Conn
	via    string
	from   string
	mailAt time.Time
	to     []string
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from, ss.mailAt, ss.via = from, ss.s.now(), ss.conn.Hostname()
	return nil
}
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	d := ss.s.summarize(ss.from, ss.to, buf.Bytes())
	d.MailAt, d.Via = ss.mailAt, ss.via
	ss.s.mu.Lock()
	ss.s.deliveries = append(ss.s.deliveries, d)
	keep := (len(d.Leaks) > 0 || d.Kind == "unknown") && ss.s.bad < 20
	if keep {
		ss.s.bad++
	}
	n := ss.s.bad
	ss.s.mu.Unlock()
	ss.s.count.Add(1)
	if keep && ss.s.badDir != "" {
		os.MkdirAll(ss.s.badDir, 0o700)
		os.WriteFile(filepath.Join(ss.s.badDir, fmt.Sprintf("%03d-%s.eml", n, d.Kind)), buf.Bytes(), 0o600)
	}
	return nil
}

// summarize classifies one delivery and checks it for leaks.
func (s *sink) summarize(from string, to []string, data []byte) delivery {
	d := delivery{From: from, Rcpts: append([]string(nil), to...), Size: len(data), SHA256: sha256.Sum256(data), At: s.now()}
	hdr, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(data))).ReadMIMEHeader()
	allInternal := true
	for _, r := range to {
		if !s.internal(r) {
			allInternal = false
		}
	}
	switch {
	case hdr.Get("X-Sealgate-Notice") == "key":
		d.Kind, d.Tag = "key", strings.TrimSpace(hdr.Get("References"))
	case from == "" && strings.HasPrefix(strings.ToLower(hdr.Get("Content-Type")), "multipart/report"):
		d.Kind = "bounce"
		if i := bytes.Index(data, []byte("\r\nMessage-ID: <chaos.")); i >= 0 {
			line, _, _ := bytes.Cut(data[i+len("\r\nMessage-ID: "):], []byte("\r\n"))
			d.Tag = string(line)
		}
	case allInternal:
		d.Kind, d.Tag = "plain", strings.TrimSpace(hdr.Get("Message-Id"))
	default:
		d.Tag = strings.TrimSpace(hdr.Get("Message-Id"))
		d.Notices = bytes.Count(data, []byte("\r\nX-Sealgate-Sealed: "))
		d.HasLink = bytes.Contains(data, []byte("/t/"))
		if d.Notices > 0 {
			d.Kind = "sealed"
		} else {
			d.Kind = "copy"
		}
	}
	if _, ok := s.gen.parseTag(d.Tag); !ok {
		d.Kind = "unknown"
	}
	if d.Kind != "plain" && !s.relay {
		d.Leaks = s.gen.findLeaks(data)
	}
	return d
}
