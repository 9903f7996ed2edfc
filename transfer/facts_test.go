package transfer_test

import (
	"testing"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/transfer"
)

// TestReadFacts: the facts of a transfer come from its records and its
// ledger events: downloads (complete, partial, key.age) per recipient and
// in order, what is left, and when access ended.
func TestReadFacts(t *testing.T) {
	f := newFixture(t)
	tr := f.seed(t, seed.Options{Transfers: 1, Recipients: []string{"carol@client.example", "dave@client.example"}})[0]
	ev := func(e audit.Event) {
		t.Helper()
		e.Contract, e.Transfer, e.Message = f.c.Code, tr.ID, tr.MessageID
		if e.Time.IsZero() {
			e.Time = f.Clock.Now()
		}
		if err := f.DB.Write(f.ctx, func(tx *database.Tx) error { _, err := f.Ledger.Append(f.ctx, tx, e); return err }); err != nil {
			t.Fatal(err)
		}
	}
	ev(audit.Event{Type: audit.TypeNoticeDelivered, Actor: "system", Recipient: "carol@client.example"})
	ev(audit.Event{Type: audit.TypePageViewed, Actor: "recipient:carol@client.example", Recipient: "carol@client.example"})
	ev(audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:carol@client.example", Recipient: "carol@client.example", Result: "ok",
		File: "file-0.bin", RemoteIP: "198.51.100.7", Details: map[string]string{"format": "plain"}})
	ev(audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:dave@client.example", Recipient: "dave@client.example", Result: "ok",
		Details: map[string]string{"format": "key"}})
	ev(audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:dave@client.example", Recipient: "dave@client.example", Result: audit.ResultPartial,
		File: "file-0.bin", Details: map[string]string{"format": "age", "bytes": "70000", "plaintext_bytes": "65536"}})
	ev(audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:dave@client.example", Recipient: "dave@client.example", Result: "refused",
		File: "file-0.bin", Details: map[string]string{"format": "plain"}})
	if _, err := destroy.Revoke(f.ctx, destroy.Deps{DB: f.DB, Store: f.Store, Ledger: f.Ledger, Now: f.Clock.Now}, tr.ID, "", "alice", "mis-sent"); err != nil {
		t.Fatal(err)
	}

	facts, err := transfer.ReadFacts(f.ctx, f.DB.Read(), tr.ID, contract.Defaults{DownloadLimit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if facts.T.ID != tr.ID || facts.Contract.ID != f.c.ID || facts.Limit != 3 || facts.EndedHow != audit.TypeTransferRevoked || facts.EndedAt.IsZero() {
		t.Fatalf("facts %+v", facts)
	}
	if len(facts.Downloads) != 3 || facts.Downloads[0].Recipient != "carol@client.example" || facts.Downloads[1].Format != "key" ||
		!facts.Downloads[2].Partial || facts.Downloads[2].Bytes != 65536 || facts.Downloads[2].Sent != 70000 {
		t.Fatalf("downloads %+v", facts.Downloads)
	}
	carol, dave := facts.Recipients[0], facts.Recipients[1]
	if carol.NoticeDelivered.IsZero() || carol.Views != 1 || len(carol.Downloads) != 1 || carol.Downloads[0].IP != "198.51.100.7" ||
		!carol.DownloadedBeforeRevocation() || carol.RevokedAt.IsZero() || carol.KeyDestroyedAt.IsZero() {
		t.Fatalf("carol %+v", carol)
	}
	if len(dave.Downloads) != 2 || len(dave.Remaining) != 1 || dave.Remaining[0].Left != 3 || dave.Remaining[0].File != "file-0.bin" {
		t.Fatalf("dave %+v", dave)
	}
}
