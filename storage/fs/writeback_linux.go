package fs

import (
	"os"

	"golang.org/x/sys/unix"
)

// writebackStep is how often Put asks the kernel to start writing what it
// has written so far. Without it a big object stays dirty in the page cache
// (the background threshold is 10% of RAM) until the final fsync, which then
// writes all of it while the client waits: ~2 s for 1 GiB here. With it the
// disk works while the data arrives and the fsync finds at most two steps
// to write. Durability still comes only from that fsync.
const writebackStep = 8 << 20

// writeback is the file of a Put: every writebackStep bytes it starts the
// write-back of the step just written (sync_file_range SYNC_FILE_RANGE_WRITE
// does not wait) and waits for the step before it, so that a writer faster
// than the disk holds at most two steps of dirty pages instead of filling
// the page cache. Errors of sync_file_range are ignored: it is only a hint,
// and a failed write surfaces at the fsync.
type writeback struct {
	f       *os.File
	off     int64 // bytes written
	started int64 // write-back started up to here
	waited  int64 // write-back waited for up to here
}

func newWriteback(f *os.File) *writeback { return &writeback{f: f} }

func (w *writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.started >= writebackStep {
		fd := int(w.f.Fd())
		unix.SyncFileRange(fd, w.started, w.off-w.started, unix.SYNC_FILE_RANGE_WRITE)
		if w.waited < w.started {
			unix.SyncFileRange(fd, w.waited, w.started-w.waited,
				unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		}
		w.waited, w.started = w.started, w.off
	}
	return n, err
}
