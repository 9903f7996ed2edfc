package gateway

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/outbox"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/fs"
)

// Regressions found by the chaos harness (test/chaos) and the hostile-input
// tests (test/hostile).

// TestStaleRowNotDeliveredTwice: due() hands out rows from a read snapshot;
// a row whose delivery was recorded after that snapshot must not be sent
// again (the chaos run saw a key notice delivered twice 12 ms apart, with
// no crash in between).
func TestStaleRowNotDeliveredTwice(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	ctx := context.Background()
	msg, _ := bigMessage(1000, "x@client.example")
	if _, err := g.accept(ctx, &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}}, msg); err != nil {
		t.Fatal(err)
	}
	// The link notice first; it releases the key notice.
	rows, _, err := g.queue.due(ctx, g.Now(), 2)
	if err != nil || len(rows) != 1 || rows[0].Kind != outbox.KindSealed {
		t.Fatalf("due: %+v, %v", rows, err)
	}
	g.queue.deliver(ctx, rows[0])
	rows, _, err = g.queue.due(ctx, g.Now(), 2)
	if err != nil || len(rows) != 1 || rows[0].Kind != outbox.KindKey {
		t.Fatalf("due: %+v, %v", rows, err)
	}
	stale := rows[0]
	g.queue.deliver(ctx, stale)
	// The same row again, as a scan of a snapshot taken before the
	// delivery was recorded would hand it out.
	g.queue.deliver(ctx, stale)
	keys := 0
	for _, m := range g.tr.sent {
		if strings.Contains(string(m.data), "X-Sealgate-Notice: key") {
			keys++
		}
	}
	if keys != 1 {
		t.Fatalf("the key notice was sent %d times, want once", keys)
	}
}

// TestTooLongLineIsPermanent: a DATA line over go-smtp's limit does not go
// away on a retry, so it is refused with 5xx, not deferred with 4xx.
func TestTooLongLineIsPermanent(t *testing.T) {
	for _, err := range []error{
		smtp.ErrTooLongLine,
		&mimeseal.Error{Kind: mimeseal.IO, Err: fmt.Errorf("failed to read message: %w", smtp.ErrTooLongLine)},
	} {
		if r := smtpReply(err); r.Code/100 != 5 || !strings.Contains(r.Message, "\n") {
			t.Errorf("%v → %d %q, want a bilingual 5xx", err, r.Code, r.Message)
		}
	}
}

// outageStore stores the first object, fails the second Put (the store
// goes down mid-message) and fails the first deletes, as during an outage.
type outageStore struct {
	storage.Store
	mu          sync.Mutex
	puts        int
	failDeletes int
}

func (o *outageStore) Put(ctx context.Context, key string, r io.Reader) (storage.Info, error) {
	o.mu.Lock()
	o.puts++
	n := o.puts
	o.mu.Unlock()
	if n == 2 {
		io.Copy(io.Discard, r)
		return storage.Info{}, fmt.Errorf("simulated outage: %w", storage.ErrUnavailable)
	}
	return o.Store.Put(ctx, key, r)
}

func (o *outageStore) Delete(ctx context.Context, key string) error {
	o.mu.Lock()
	fail := o.failDeletes > 0
	if fail {
		o.failDeletes--
	}
	o.mu.Unlock()
	if fail {
		return fmt.Errorf("simulated outage: %w", storage.ErrUnavailable)
	}
	return o.Store.Delete(ctx, key)
}

// TestRefusedLeavesNoObjectAfterOutage: a message refused because the store
// went down mid-message leaves no object once the store is back (the chaos
// harness found such orphans after every store outage).
func TestRefusedLeavesNoObjectAfterOutage(t *testing.T) {
	dir := t.TempDir()
	fst, err := fs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := &outageStore{Store: fst, failDeletes: 1}
	g := newTestGateway(t, st, nil)
	part := base64.StdEncoding.EncodeToString(make([]byte, 3000))
	var b strings.Builder
	b.WriteString("From: a@corp.example\r\nTo: x@client.example\r\nSubject: two\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n")
	for i := 0; i < 2; i++ {
		fmt.Fprintf(&b, "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"f%d.bin\"\r\n\r\n%s\r\n", i, part)
	}
	b.WriteString("--b--\r\n")
	_, err = g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}}, strings.NewReader(b.String()))
	if r := smtpReply(err); err == nil || r.Code != 451 {
		t.Fatalf("accept with the store failing: %v", err)
	}
	count := func() int {
		n := 0
		filepath.Walk(filepath.Join(dir, "objects"), func(_ string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	// The first deletion failed: the object waits for its retry, a
	// second later. Before then nothing is retried; at its time the
	// object goes, and nothing is left to retry.
	if n := count(); n != 1 {
		t.Fatalf("%d objects stored after the failed deletion, want 1", n)
	}
	select {
	case <-g.DiscardWake():
	default:
		t.Fatal("a failed deletion did not wake the scheduler")
	}
	next := g.RetryDiscards(context.Background(), g.Now())
	if next.IsZero() || count() != 1 {
		t.Fatalf("retried before its time (next %v, %d objects)", next, count())
	}
	if again := g.RetryDiscards(context.Background(), next); !again.IsZero() {
		t.Fatalf("still retrying at %v", again)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d objects of the refused message still stored", n)
	}
}

// TestRefusedObjectsGiveUp: an object that cannot be deleted is retried
// with a growing delay, and given up after discardPatience (the orphan
// sweep removes it later).
func TestRefusedObjectsGiveUp(t *testing.T) {
	dir := t.TempDir()
	fst, err := fs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := &outageStore{Store: fst, failDeletes: 1 << 30}
	g := newTestGateway(t, st, nil)
	start := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	g.discards.add([]string{"sealed/t1/0.age"}, start)
	var delays []time.Duration
	now := start
	for range 40 {
		next := g.RetryDiscards(context.Background(), now)
		if next.IsZero() {
			break
		}
		delays = append(delays, next.Sub(now))
		now = next
	}
	if len(delays) < 6 || delays[0] != time.Second || delays[1] != 2*time.Second || delays[len(delays)-1] != time.Minute {
		t.Fatalf("delays %v", delays)
	}
	if gave := now.Sub(start); gave < discardPatience || gave > discardPatience+time.Minute {
		t.Fatalf("gave up after %v, want %v", gave, discardPatience)
	}
}
