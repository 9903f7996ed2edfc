package transfer_test

import (
	"crypto/sha256"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/transfer"
)

func tokenHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// insert records a message with a transfer of two files to two
// recipients, as the gateway does when it accepts one.
func (f *fixture) insert(t *testing.T, id string, at time.Time) []int64 {
	t.Helper()
	var rids []int64
	err := f.DB.Write(f.ctx, func(tx *database.Tx) error {
		rids = nil // a write function may run twice
		if err := transfer.InsertMessage(f.ctx, tx, transfer.Message{ID: "m" + id, ReceivedAt: at, Client: "192.0.2.1:25", HELO: "mua.corp.example",
			MailFrom: "alice@corp.example", HeaderFrom: "Alice <alice@corp.example>", Subject: "見積書 " + id, MessageID: "<" + id + "@corp.example>",
			Size: 1234, ContractID: f.c.ID, Actor: "alice"}); err != nil {
			return err
		}
		if err := transfer.InsertTransfer(f.ctx, tx, transfer.NewTransfer{ID: id, MessageID: "m" + id, ContractID: f.c.ID,
			Sender: "alice@corp.example", CreatedAt: at, ExpiresAt: at.Add(time.Hour)}); err != nil {
			return err
		}
		for i, name := range []string{"a.pdf", "b.xlsx"} {
			if err := transfer.InsertFile(f.ctx, tx, id, transfer.SealedFile{Index: i, Name: name, ContentType: "application/pdf", Size: int64(100 + i),
				SHA256: "p" + name, Object: "sealed/" + id + "/" + strconv.Itoa(i) + ".age", CipherSize: int64(300 + i), CipherSHA256: "c" + name}); err != nil {
				return err
			}
		}
		for _, addr := range []string{"carol@client.example", "dave@client.example"} {
			rid, err := transfer.InsertRecipient(f.ctx, tx, id, transfer.NewRecipient{Address: addr, TokenHash: tokenHash(id + addr), KeyWrapped: []byte("wrapped")})
			if err != nil {
				return err
			}
			rids = append(rids, rid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rids
}

// TestInsertAndRead: what the gateway's inserts record is what the reads
// return, with the contract's code from package contract.
func TestInsertAndRead(t *testing.T) {
	f := newFixture(t)
	at := f.Clock.Now().Truncate(time.Millisecond)
	rids := f.insert(t, "tone", at)
	f.insert(t, "ttwo", at.Add(time.Minute))

	got, err := transfer.Get(f.ctx, f.DB.Read(), "tone")
	if err != nil {
		t.Fatal(err)
	}
	if got.Contract != f.c.Code || got.ContractID != f.c.ID || got.Actor != "alice" || got.Subject != "見積書 tone" ||
		got.Status != transfer.StatusActive || !got.CreatedAt.Equal(at) || !got.ExpiresAt.Equal(at.Add(time.Hour)) {
		t.Fatalf("transfer %+v", got)
	}
	if len(got.Files) != 2 || got.Files[1].Name != "b.xlsx" || got.Files[1].CipherSize != 301 || got.Files[1].Object != "sealed/tone/1.age" ||
		got.Files[0].Status != "stored" {
		t.Fatalf("files %+v", got.Files)
	}
	if len(got.Recipients) != 2 || got.Recipients[0].ID != rids[0] || got.Recipients[1].Address != "dave@client.example" {
		t.Fatalf("recipients %+v", got.Recipients)
	}
	if _, err := transfer.Get(f.ctx, f.DB.Read(), "tnone"); !errors.Is(err, transfer.ErrNotFound) {
		t.Fatalf("unknown transfer: %v", err)
	}

	for _, c := range []struct {
		f    transfer.Filter
		want []string
	}{
		{transfer.Filter{}, []string{"ttwo", "tone"}},
		{transfer.Filter{Contract: "c-2026-001"}, []string{"ttwo", "tone"}}, // codes compare case-insensitively
		{transfer.Filter{Contract: "C-1999-999"}, nil},
		{transfer.Filter{Recipient: "Carol@Client.example"}, []string{"ttwo", "tone"}},
		{transfer.Filter{Recipient: "erin@client.example"}, nil},
		{transfer.Filter{Sender: "alice@corp.example", Limit: 1}, []string{"ttwo"}},
	} {
		ts, err := transfer.List(f.ctx, f.DB.Read(), c.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, tr := range ts {
			ids = append(ids, tr.ID)
			if tr.Contract != f.c.Code {
				t.Errorf("%+v: contract %q", c.f, tr.Contract)
			}
		}
		if len(ids) != len(c.want) || (len(ids) > 0 && ids[0] != c.want[0]) {
			t.Errorf("List(%+v) = %v, want %v", c.f, ids, c.want)
		}
	}

	m, err := transfer.MessageByID(f.ctx, f.DB.Read(), "mtone")
	if err != nil || m.Contract != f.c.Code || m.TransferID != "tone" || m.HELO != "mua.corp.example" || m.HeaderFrom != "Alice <alice@corp.example>" ||
		m.MessageID != "<tone@corp.example>" || m.Size != 1234 || m.Actor != "alice" || !m.ReceivedAt.Equal(at) {
		t.Fatalf("message %+v %v", m, err)
	}
	rc, err := transfer.RecipientByID(f.ctx, f.DB.Read(), rids[1])
	if err != nil || rc.TransferID != "tone" || rc.Address != "dave@client.example" || rc.Status != "active" || !rc.ExpiresAt.Equal(at.Add(time.Hour)) {
		t.Fatalf("recipient %+v %v", rc, err)
	}
	if err := f.DB.Write(f.ctx, func(tx *database.Tx) error {
		return transfer.CapExpiry(f.ctx, tx, "tone", at.Add(time.Minute))
	}); err != nil {
		t.Fatal(err)
	}
	all, err := transfer.OfContract(f.ctx, f.DB.Read(), f.c.ID)
	if err != nil || len(all) != 2 || all[0].ID != "tone" || len(all[0].Files) != 2 || len(all[1].Recipients) != 2 ||
		all[1].Files[0].Object != "sealed/ttwo/0.age" || !all[0].ExpiresAt.Equal(at.Add(time.Minute)) || all[1].Contract != f.c.Code {
		t.Fatalf("transfers of the contract %+v %v", all, err)
	}

	n, err := transfer.CountTransfers(f.ctx, f.DB.Read(), f.c.ID)
	if err != nil || n != (transfer.TransferCount{Total: 2, Active: 2}) {
		t.Fatalf("transfers %+v %v", n, err)
	}
	fc, err := transfer.CountFiles(f.ctx, f.DB.Read(), f.c.ID)
	if err != nil || fc != (transfer.FileCount{Total: 4, Stored: 4}) {
		t.Fatalf("files %+v %v", fc, err)
	}
	keys, err := transfer.KeysOfContract(f.ctx, f.DB.Read(), f.c.ID)
	if err != nil || len(keys) != 4 || keys[0].Contract != f.c.Code || keys[0].Message != "mtone" {
		t.Fatalf("keys of the contract %+v %v", keys, err)
	}
	keys, err = transfer.KeysOfTransfer(f.ctx, f.DB.Read(), "ttwo")
	if err != nil || len(keys) != 2 || keys[1].Address != "dave@client.example" || keys[1].Contract != f.c.Code {
		t.Fatalf("keys of the transfer %+v %v", keys, err)
	}
}

// TestLinkDownloads: a link opens its recipient's transfer; downloads
// are reserved within the limit, given back, counted; wrong passphrases
// are counted and lock the link.
func TestLinkDownloads(t *testing.T) {
	f := newFixture(t)
	f.insert(t, "tone", f.Clock.Now())
	if _, err := transfer.LinkByToken(f.ctx, f.DB.Read(), tokenHash("nothing")); !errors.Is(err, transfer.ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	l, err := transfer.LinkByToken(f.ctx, f.DB.Read(), tokenHash("tonecarol@client.example"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Address != "carol@client.example" || l.TransferID != "tone" || l.ContractID != f.c.ID || l.MessageID != "mtone" ||
		l.Subject != "見積書 tone" || l.Sender != "alice@corp.example" || string(l.KeyWrapped) != "wrapped" || len(l.Files) != 2 || l.Locked {
		t.Fatalf("link %+v", l)
	}
	file := l.Files[0].ID
	write := func(fn func(tx *database.Tx) error) {
		t.Helper()
		if err := f.DB.Write(f.ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	reserve := func() bool {
		t.Helper()
		var ok bool
		write(func(tx *database.Tx) (err error) {
			ok, err = transfer.ReserveDownload(f.ctx, tx, l.RecipientID, file, 2)
			return err
		})
		return ok
	}
	if !reserve() || !reserve() || reserve() {
		t.Fatal("a limit of 2 did not allow exactly two downloads")
	}
	write(func(tx *database.Tx) error { return transfer.ReleaseDownload(f.ctx, tx, l.RecipientID, file) })
	if !reserve() {
		t.Fatal("a download given back cannot be taken again")
	}
	downloads := make([]int, 2) // assigned, not appended: a write function may run twice
	for i := range downloads {
		write(func(tx *database.Tx) (err error) {
			downloads[i], err = transfer.CountDownload(f.ctx, tx, l.RecipientID, file, f.Clock.Now())
			return err
		})
	}
	if downloads[0] != 1 || downloads[1] != 2 {
		t.Fatalf("downloads counted %v", downloads)
	}
	failed := make([]int, 2)
	for i := range failed {
		write(func(tx *database.Tx) (err error) {
			failed[i], err = transfer.FailPassphrase(f.ctx, tx, l.RecipientID)
			return err
		})
	}
	write(func(tx *database.Tx) error { return transfer.LockLink(f.ctx, tx, l.RecipientID, f.Clock.Now()) })
	l, err = transfer.LinkByToken(f.ctx, f.DB.Read(), tokenHash("tonecarol@client.example"))
	if err != nil {
		t.Fatal(err)
	}
	if failed[1] != 2 || l.Failed != 2 || !l.Locked || l.Downloads != 2 || l.Files[0].Downloads != 2 || l.Files[1].Downloads != 0 {
		t.Fatalf("after counting: failed %v, link %+v", failed, l)
	}
	reach, err := transfer.ReachBySender(f.ctx, f.DB.Read(), "Alice@corp.example")
	if err != nil || reach["tone"] != (transfer.Reach{Recipients: 2, Downloaded: 1}) {
		t.Fatalf("reach %+v %v", reach, err)
	}
}

// TestPurgeExpiredActiveContractsOnly: expiry ends the expired transfers
// of active contracts; an ending contract destroys its own.
func TestPurgeExpiredActiveContractsOnly(t *testing.T) {
	f := newFixture(t)
	other, err := contract.Create(f.ctx, f.DB, f.Keys, f.Ledger, contract.Spec{Code: "C-2026-002", Domains: []string{"client.example"},
		DownloadLimit: contract.DefaultLimit}, "cli:test", f.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	past := f.Clock.Now().Add(-time.Hour)
	mine := f.seed(t, seed.Options{Transfers: 2, ExpiresAt: past})
	theirs, err := seed.Transfers(f.ctx, f.Deps(), other, seed.Options{Transfers: 2, Now: f.Clock.Now(), ExpiresAt: past, IDPrefix: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.DB.Write(f.ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(f.ctx, `UPDATE contracts SET status = 'ending' WHERE id = ?`, other.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	due, err := transfer.Expired(f.ctx, f.DB.Read(), f.Clock.Now(), 100)
	if err != nil || len(due) != 2 {
		t.Fatalf("expired %d, %v", len(due), err)
	}
	n, err := destroy.PurgeExpired(f.ctx, destroy.Deps{DB: f.DB, Store: f.Store, Ledger: f.Ledger, Now: f.Clock.Now}, 0)
	if err != nil || n != 2 {
		t.Fatalf("purged %d, %v", n, err)
	}
	for _, tr := range mine {
		if got, _ := transfer.Get(f.ctx, f.DB.Read(), tr.ID); got.Status != transfer.StatusExpired {
			t.Errorf("%s of the active contract is %s", tr.ID, got.Status)
		}
	}
	for _, tr := range theirs {
		if got, _ := transfer.Get(f.ctx, f.DB.Read(), tr.ID); got.Status != transfer.StatusActive || got.Contract != "C-2026-002" {
			t.Errorf("%s of the ending contract is %s (%s)", tr.ID, got.Status, got.Contract)
		}
	}
}
