package audit

import (
	"testing"
	"time"
)

// TestEachOfType: every record of one type from a time on, oldest first.
func TestEachOfType(t *testing.T) {
	f := newFixture(t)
	f.appendN(80, event) // every 8th is a download: 10
	var all []Found
	if err := EachOfType(f.ctx, f.db.Read(), TypeFileDownloaded, time.Time{}, func(fd Found) error {
		all = append(all, fd)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(all) != 10 {
		t.Fatalf("%d downloads, want 10", len(all))
	}
	for i, fd := range all {
		if fd.Event.Type != TypeFileDownloaded || fd.Raw != nil || (i > 0 && fd.Index <= all[i-1].Index) {
			t.Fatalf("record %d: %+v", i, fd)
		}
	}
	var from []int64
	if err := EachOfType(f.ctx, f.db.Read(), TypeFileDownloaded, all[4].Event.Time, func(fd Found) error {
		from = append(from, fd.Index)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(from) != 6 || from[0] != all[4].Index {
		t.Fatalf("from the 5th download: %v", from)
	}
}
