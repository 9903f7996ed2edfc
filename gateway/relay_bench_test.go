package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testsink"
)

// BenchmarkRelay sends one message with a base64 attachment over loopback
// SMTP to the relay server (DATA and BDAT), the path of bench/bigmail in
// one process, so that go test -cpuprofile sees the transport and the
// sealing pipeline together. The client sends the message file with
// sendfile(2) and costs little.
func BenchmarkRelay(b *testing.B) {
	const size = 1150 * 57 << 10 // ≈ 64 MiB, whole 57 KiB blocks: bigMessage makes only 76-column lines
	msgPath := filepath.Join(b.TempDir(), "msg.eml")
	f, err := os.Create(msgPath)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	msg, _ := bigMessage(size, "x@client.example")
	encSize, err := io.Copy(f, msg)
	if err != nil {
		b.Fatal(err)
	}
	// The transport floor: the same DATA through go-smtp into a session
	// that discards it.
	b.Run("DATA-bare", func(b *testing.B) {
		sink, err := testsink.Start("127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer sink.Stop()
		sink.Discard(true)
		b.SetBytes(encSize)
		for i := 0; i < b.N; i++ {
			if err := relayOnce(sink.Addr(), "DATA", f, encSize); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, mode := range []string{"DATA", "BDAT"} {
		b.Run(mode, func(b *testing.B) {
			g := newTestGateway(b, nil, nil)
			srv := g.NewRelayServer()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(ln)
			defer srv.Close()
			b.SetBytes(encSize)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := relayOnce(ln.Addr().String(), mode, f, encSize); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func relayOnce(addr, mode string, f *os.File, size int64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	expect := func(code string) error {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(l, code) {
				return fmt.Errorf("got %q, want %s", l, code)
			}
			if len(l) < 4 || l[3] != '-' {
				return nil
			}
		}
	}
	cmd := func(line, code string) error {
		if _, err := io.WriteString(c, line+"\r\n"); err != nil {
			return err
		}
		return expect(code)
	}
	if err := expect("220"); err != nil {
		return err
	}
	for _, s := range [][2]string{{"EHLO bench", "250"}, {"MAIL FROM:<a@corp.example>", "250"}, {"RCPT TO:<x@client.example>", "250"}} {
		if err := cmd(s[0], s[1]); err != nil {
			return err
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if mode == "DATA" {
		if err := cmd("DATA", "354"); err != nil {
			return err
		}
		if _, err := io.Copy(c, f); err != nil {
			return err
		}
		return cmd(".", "250")
	}
	const chunk = 4 << 20
	n := int((size + chunk - 1) / chunk)
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := expect("250"); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for off := int64(0); off < size; off += chunk {
		k := min(chunk, size-off)
		last := ""
		if off+k == size {
			last = " LAST"
		}
		fmt.Fprintf(c, "BDAT %d%s\r\n", k, last)
		if _, err := io.CopyN(c, f, k); err != nil {
			return err
		}
	}
	return <-errc
}
