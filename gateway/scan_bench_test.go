package gateway

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/internal/testclamd"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/scan/clamd"
)

func startBenchClamd(b *testing.B) *testclamd.Instance {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	in, err := testclamd.Start(ctx, b.TempDir(), testclamd.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(in.Stop)
	return in
}

type discardSealer struct{}

func (discardSealer) Begin(mimeseal.Attachment) (mimeseal.PartWriter, error) {
	return discardPart{}, nil
}

type discardPart struct{}

func (discardPart) Write(p []byte) (int, error) { return len(p), nil }
func (discardPart) Close() error                { return nil }
func (discardPart) Abort(error)                 {}

// BenchmarkPolicyScan20KB is the per-message cost of a policy with content rules and of the
// clamd round trip, for the small message of BenchmarkThroughput (a text body and one 20 KiB
// attachment): the walk under the built-in policy, under the example policy whose content
// rules make every part wait for its content (sniffing, encrypted-archive check), and the
// same with the attachment streamed to a real clamd (INSTREAM over its unix socket, verdict
// before the part is committed). Reported in ms per message.
func BenchmarkPolicyScan20KB(b *testing.B) {
	msg, _ := bigMessage(20<<10, "x@client.example")
	raw, _ := io.ReadAll(msg)
	example, err := policy.Load(filepath.Join("..", "policy", "examples", "contracts-and-confidential.toml"))
	if err != nil {
		b.Fatal(err)
	}
	cd := startBenchClamd(b)
	client, err := clamd.New(clamd.Config{Address: cd.Socket, Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	bufs := mimeseal.NewBuffers()
	for _, c := range []struct {
		name string
		p    *policy.Policy
		scan bool
	}{{"default", policy.Default(), false}, {"content-rules", example, false}, {"content-rules+clamd", example, true}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				o := mimeseal.Options{Buffers: bufs, Policy: c.p}
				if c.scan {
					o.Scanner = &msgScanner{ctx: context.Background(), r: &ruleSet{clamd: client}, m: &received{}}
				}
				if _, err := mimeseal.Rewrite(io.Discard, bytes.NewReader(raw), discardSealer{}, o); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/msg")
		})
	}
}

// BenchmarkThroughputScan is BenchmarkThroughput with every attachment scanned by a real
// clamd before it is sealed (scan.clamd set): the change in messages per second that
// scanning costs on the small-message path.
func BenchmarkThroughputScan(b *testing.B) {
	cd := startBenchClamd(b)
	benchThroughput(b, func(c *config.Config) { c.Scan.Clamd = "unix:" + cd.Socket })
}
