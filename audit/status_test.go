package audit

import (
	"testing"
	"time"
)

func TestStatus(t *testing.T) {
	f := newFixture(t)
	status := func() Status {
		t.Helper()
		st, err := f.l.Status(f.ctx, f.db.Read())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status(); st != (Status{Checkpoint: -1}) {
		t.Fatalf("empty ledger: %+v", st)
	}
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	f.clock.Set(t0)
	// The time of the event at idx (the clock advances at each reading, a
	// write function may run twice: not a fixed offset from t0).
	eventTime := func(idx int64) time.Time {
		t.Helper()
		data, err := f.l.Record(f.ctx, f.db.Read(), idx)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := ParseRecord(data)
		if err != nil {
			t.Fatal(err)
		}
		return ev.Time
	}
	f.appendN(3, event)
	st := status()
	if st.Size != 3 || st.Checkpoint != -1 || !st.CheckpointAt.IsZero() || st.Unsigned != 3 || !st.UnsignedSince.Equal(eventTime(0)) || st.UnsignedSince.Before(t0) {
		t.Fatalf("three entries, no checkpoint: %+v", st)
	}
	f.clock.Set(t0.Add(time.Hour))
	f.checkpoint() // covers 0..2; its own event is entry 3
	st = status()
	if st.Size != 4 || st.Checkpoint != 3 || st.Unsigned != 0 || !st.UnsignedSince.IsZero() ||
		st.CheckpointAt.Before(t0.Add(time.Hour)) || st.CheckpointAt.After(t0.Add(time.Hour+time.Second)) {
		t.Fatalf("after a checkpoint: %+v", st)
	}
	f.clock.Set(t0.Add(2 * time.Hour))
	f.appendN(2, event)
	st = status()
	if st.Size != 6 || st.Unsigned != 2 || !st.UnsignedSince.Equal(eventTime(4)) || st.UnsignedSince.Before(t0.Add(2*time.Hour)) {
		t.Fatalf("two entries after the checkpoint: %+v", st)
	}
}
