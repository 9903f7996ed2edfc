package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// client is a minimal SMTP client that costs the benchmark as little CPU as
// possible: message bytes go from the page cache to the socket with
// sendfile(2) (TCPConn.ReadFrom of an *os.File), never through user space,
// so the process measured (the gateway or the bare server) has the machine
// to itself.
type client struct {
	conn *net.TCPConn
	r    *bufio.Reader
	caps map[string]string
}

type reply struct {
	code int
	text string
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.code, r.text) }

func dial(addr string) (*client, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("failed to connect to %s: %w", addr, err)
	}
	cl := &client{conn: c.(*net.TCPConn), r: bufio.NewReader(c), caps: map[string]string{}}
	// Generous: a 1 GiB message through DATA takes tens of seconds on a
	// slow run, and nothing here should hang forever.
	c.SetDeadline(time.Now().Add(30 * time.Minute))
	if _, err := cl.expect(220); err != nil {
		c.Close()
		return nil, err
	}
	if err := cl.send("EHLO bench.corp.example"); err != nil {
		c.Close()
		return nil, err
	}
	rep, err := cl.expect(250)
	if err != nil {
		c.Close()
		return nil, err
	}
	for _, l := range strings.Split(rep.text, "\n")[1:] {
		k, v, _ := strings.Cut(l, " ")
		cl.caps[strings.ToUpper(k)] = v
	}
	return cl, nil
}

func (c *client) close() {
	c.send("QUIT")
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	c.readReply()
	c.conn.Close()
}

func (c *client) send(line string) error {
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return fmt.Errorf("failed to send %q: %w", line, err)
	}
	return nil
}

// readReply reads one (possibly multi-line) reply; text joins the lines
// with "\n".
func (c *client) readReply() (reply, error) {
	var rep reply
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return rep, fmt.Errorf("failed to read reply: %w", err)
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 3 {
			return rep, fmt.Errorf("failed to parse reply %q", l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil {
			return rep, fmt.Errorf("failed to parse reply %q: %w", l, err)
		}
		rep.code = code
		lines = append(lines, strings.TrimSpace(l[min(4, len(l)):]))
		if len(l) == 3 || l[3] != '-' {
			break
		}
	}
	rep.text = strings.Join(lines, "\n")
	return rep, nil
}

func (c *client) expect(code int) (reply, error) {
	rep, err := c.readReply()
	if err != nil {
		return rep, err
	}
	if rep.code != code {
		return rep, fmt.Errorf("failed to get reply %d: got %s", code, rep)
	}
	return rep, nil
}

func (c *client) envelope(from, to string) error {
	if err := c.send("MAIL FROM:<" + from + ">"); err != nil {
		return err
	}
	if _, err := c.expect(250); err != nil {
		return fmt.Errorf("failed to send MAIL FROM: %w", err)
	}
	if err := c.send("RCPT TO:<" + to + ">"); err != nil {
		return err
	}
	if _, err := c.expect(250); err != nil {
		return fmt.Errorf("failed to send RCPT TO: %w", err)
	}
	return nil
}

// sendBDAT sends the file as BDAT chunks of chunk bytes, pipelined (the
// server offers PIPELINING; RFC 3030 allows BDAT commands to be pipelined),
// and returns the time from the first BDAT command to the final reply.
//
// Both senders also return the tail: the time from the end of the client's
// last write to the reply, i.e. the part of the work that did not overlap
// with the transfer (less what the socket buffers still held).
func (c *client) sendBDAT(f *os.File, size, chunk int64) (elapsed, tail time.Duration, rep reply, err error) {
	if _, ok := c.caps["CHUNKING"]; !ok {
		return 0, 0, reply{}, errors.New("failed to use BDAT: the server does not offer CHUNKING")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, reply{}, fmt.Errorf("failed to rewind message: %w", err)
	}
	nchunks := int((size + chunk - 1) / chunk)
	type result struct {
		rep reply
		at  time.Time
		err error
	}
	final := make(chan result, 1)
	go func() {
		// Every chunk gets a reply; only the last one is the verdict on
		// the message. An earlier failure is reported as it is.
		var res result
		for i := 0; i < nchunks; i++ {
			rep, err := c.readReply()
			if err != nil {
				res = result{err: err}
				break
			}
			if rep.code != 250 || i == nchunks-1 {
				res = result{rep: rep, at: time.Now()}
				if rep.code != 250 {
					res.err = fmt.Errorf("failed to send chunk %d of %d: %s", i+1, nchunks, rep)
				}
				break
			}
		}
		final <- res
	}()
	start := time.Now()
	var werr error
	for off := int64(0); off < size && werr == nil; off += chunk {
		n := min(chunk, size-off)
		cmd := fmt.Sprintf("BDAT %d", n)
		if off+n == size {
			cmd += " LAST"
		}
		if werr = c.send(cmd); werr != nil {
			break
		}
		if _, err := io.CopyN(c.conn, f, n); err != nil {
			werr = fmt.Errorf("failed to send chunk: %w", err)
		}
	}
	sent := time.Now()
	if werr != nil {
		c.conn.Close()
		<-final
		return 0, 0, reply{}, werr
	}
	res := <-final
	if res.err != nil {
		return 0, 0, res.rep, res.err
	}
	return res.at.Sub(start), res.at.Sub(sent), res.rep, nil
}

// sendDATA sends the file as DATA and returns the time from the first byte
// of the message to the final reply. The file needs no dot-stuffing (see
// generate) and ends with CRLF.
func (c *client) sendDATA(f *os.File) (elapsed, tail time.Duration, rep reply, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, reply{}, fmt.Errorf("failed to rewind message: %w", err)
	}
	if err := c.send("DATA"); err != nil {
		return 0, 0, reply{}, err
	}
	if _, err := c.expect(354); err != nil {
		return 0, 0, reply{}, fmt.Errorf("failed to start DATA: %w", err)
	}
	start := time.Now()
	if _, err := io.Copy(c.conn, f); err != nil {
		return 0, 0, reply{}, fmt.Errorf("failed to send message: %w", err)
	}
	if err := c.send("."); err != nil {
		return 0, 0, reply{}, err
	}
	sent := time.Now()
	rep, err = c.readReply()
	end := time.Now()
	if err != nil {
		return 0, 0, rep, err
	}
	if rep.code != 250 {
		return 0, 0, rep, fmt.Errorf("failed to send message: %s", rep)
	}
	return end.Sub(start), end.Sub(sent), rep, nil
}
