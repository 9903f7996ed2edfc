package account

import (
	"context"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
)

// TestReviewOffHoursPartial: a download that stopped part-way after
// delivering part of the file is listed among downloads outside office
// hours like a complete one; a refused attempt is not.
func TestReviewOffHoursPartial(t *testing.T) {
	s, c := newService(t)
	ctx := context.Background()
	c.Advance(13 * time.Hour) // 23:00 UTC on a Monday
	for _, ev := range []audit.Event{
		{Type: audit.TypeFileDownloaded, Actor: "recipient:carol@client.example", Recipient: "carol@client.example", File: "a.pdf",
			Result: audit.ResultPartial, Details: map[string]string{"format": "plain", "bytes": "4096", "plaintext_bytes": "4096"}},
		{Type: audit.TypeFileDownloaded, Actor: "recipient:dave@client.example", Recipient: "dave@client.example", File: "a.pdf",
			Result: "refused", Reason: "download limit reached (5)"},
	} {
		if err := s.DB.Write(ctx, func(tx *database.Tx) error { _, err := s.Ledger.Append(ctx, tx, ev); return err }); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.BuildReview(ctx, ReviewOptions{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.OffHours) != 1 || r.OffHours[0].Recipient != "carol@client.example" {
		t.Fatalf("downloads outside office hours: %+v; want carol's partial download only", r.OffHours)
	}
}
