// Package noticetest is a stand-in for the gateway's outbound queue in the
// tests of the packages that send notices: it renders what it is given with
// the real templates and keeps it.
package noticetest

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/notice"
)

// Sent is one queued notice, as its recipients would read it.
type Sent struct {
	To      []string
	About   string
	Subject string
	Text    string
	Notice  notice.Notice
}

// Queue records notices. Its QueueNotice has the gateway's signature.
type Queue struct {
	r    *notice.Renderer
	mu   sync.Mutex
	sent []Sent
}

// New returns a queue whose notices link to publicURL and show UTC.
func New(t testing.TB, publicURL string) *Queue {
	t.Helper()
	r, err := notice.New(notice.Options{PublicURL: publicURL, From: "postmaster@sealgate.test", Hostname: "sealgate.test"})
	if err != nil {
		t.Fatal(err)
	}
	return &Queue{r: r}
}

// QueueNotice renders m and keeps it (the policy of whom to mail is the
// gateway's, and not applied here).
func (q *Queue) QueueNotice(ctx context.Context, tx *database.Tx, m notice.Mail) error {
	subject, text, err := q.r.Text(m.Notice)
	if err != nil {
		return err
	}
	// Kept once the transaction commits, as the gateway's queue row
	// would be: a write function may run more than once, and a rolled
	// back one queues nothing.
	s := Sent{To: m.To, About: m.About, Subject: subject, Text: text, Notice: m.Notice}
	tx.AfterCommit(func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.sent = append(q.sent, s)
	})
	return nil
}

// Sent returns what was queued, in order.
func (q *Queue) Sent() []Sent {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]Sent(nil), q.sent...)
}

// To returns what was queued to addr whose subject or text contains s.
func (q *Queue) To(addr, s string) []Sent {
	var out []Sent
	for _, m := range q.Sent() {
		for _, to := range m.To {
			if to == addr && strings.Contains(m.Subject+"\n"+m.Text, s) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}
