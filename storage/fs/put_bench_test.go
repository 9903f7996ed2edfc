package fs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPutSmall puts one 28 KiB object per new directory, as sealing a
// small attachment does (sealed/<transfer>/1.age): the fsyncs and
// directory operations dominate. Run it on a real disk
// (SEALGATE_BENCH_DIR), not tmpfs:
//
//	SEALGATE_BENCH_DIR=/var/tmp go test -run '^$' -bench PutSmall ./storage/fs/
func BenchmarkPutSmall(b *testing.B) {
	dir := b.TempDir()
	if d := os.Getenv("SEALGATE_BENCH_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "putbench"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 28<<10)
	ctx := context.Background()
	cpu := cpuTime(b)
	n := 0
	for i := 0; b.Loop(); i++ {
		n++
		if _, err := s.Put(ctx, fmt.Sprintf("sealed/t%08d/1.age", i), bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(n)/1e3, "cpu-µs/op")
}
