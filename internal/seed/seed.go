// Package seed fills a sealgate database and object store with transfers
// as the gateway would have made them (messages, transfers, files,
// recipients with wrapped key files, ledger events, encrypted objects),
// without SMTP. Tests and benchmarks of revocation, expiry and contract
// destruction use it.
package seed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/transfer"
)

// Deps are where to seed.
type Deps struct {
	DB     *database.DB
	Store  storage.Store
	Ledger *audit.Ledger
	Rand   io.Reader
}

// Options shape the transfers.
type Options struct {
	Transfers        int
	FilesPerTransfer int      // default 1
	Recipients       []string // default carol@client.example
	FileSize         int      // default 1 KiB
	Sender           string   // default alice@corp.example
	// RealKeys makes a real key.age (passphrase-encrypted transfer
	// identity, ~1 ms of scrypt each) for every recipient; otherwise a
	// placeholder of the same shape is wrapped (benchmarks of destruction,
	// which only erases it).
	RealKeys  bool
	Now       time.Time
	ExpiresAt time.Time // default Now + 14 days
	Workers   int       // concurrent Puts (default 16)
	IDPrefix  string    // prefix of transfer and message ids (default "t")
}

// Transfer is one seeded transfer.
type Transfer struct {
	ID         string
	MessageID  string
	Files      []File
	Recipients []Recipient
}

// File is one seeded file.
type File struct {
	Index  int
	Name   string
	Object string
	Plain  []byte
	SHA256 string
}

// Recipient is one seeded recipient.
type Recipient struct {
	ID         int64
	Address    string
	Passphrase string // RealKeys only: with the wrapped key.age, it opens the files
}

// Transfers seeds o.Transfers transfers under contract c.
func Transfers(ctx context.Context, d Deps, c *contract.Contract, o Options) ([]Transfer, error) {
	if o.FilesPerTransfer <= 0 {
		o.FilesPerTransfer = 1
	}
	if len(o.Recipients) == 0 {
		o.Recipients = []string{"carol@client.example"}
	}
	if o.FileSize <= 0 {
		o.FileSize = 1024
	}
	if o.Sender == "" {
		o.Sender = "alice@corp.example"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.ExpiresAt.IsZero() {
		o.ExpiresAt = o.Now.Add(14 * 24 * time.Hour)
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.IDPrefix == "" {
		o.IDPrefix = "t"
	}
	out := make([]prepared, o.Transfers)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int)
	errs := make(chan error, o.Workers)
	var wg sync.WaitGroup
	var randMu sync.Mutex
	readRand := func(b []byte) error {
		randMu.Lock()
		defer randMu.Unlock()
		_, err := io.ReadFull(d.Rand, b)
		return err
	}
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				p, err := prepare(pctx, d, c, o, i, readRand)
				if err != nil {
					errs <- err
					cancel()
					return
				}
				out[i] = *p
			}
		}()
	}
	go func() {
		defer close(jobs)
		for i := range o.Transfers {
			select {
			case jobs <- i:
			case <-pctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	const batch = 250
	for start := 0; start < len(out); start += batch {
		chunk := out[start:min(start+batch, len(out))]
		err := d.DB.Write(ctx, func(tx *database.Tx) error {
			for i := range chunk {
				p := &chunk[i]
				// The same records the gateway writes when it seals a
				// message (package transfer), and the same ledger events.
				if err := transfer.InsertMessage(ctx, tx, transfer.Message{ID: p.t.MessageID, ReceivedAt: o.Now, Client: "127.0.0.1:1",
					MailFrom: o.Sender, Subject: "seeded " + p.t.ID, Size: int64(o.FileSize * o.FilesPerTransfer), ContractID: c.ID}); err != nil {
					return err
				}
				if _, err := d.Ledger.Append(ctx, tx, audit.Event{Time: o.Now, Type: audit.TypeMessageReceived, Actor: "smtp:127.0.0.1",
					Contract: c.Code, Message: p.t.MessageID, Transfer: p.t.ID, Details: map[string]string{"from": o.Sender}}); err != nil {
					return err
				}
				if err := transfer.InsertTransfer(ctx, tx, transfer.NewTransfer{ID: p.t.ID, MessageID: p.t.MessageID, ContractID: c.ID,
					Sender: o.Sender, CreatedAt: o.Now, ExpiresAt: o.ExpiresAt}); err != nil {
					return err
				}
				for _, f := range p.files {
					if err := transfer.InsertFile(ctx, tx, p.t.ID, transfer.SealedFile{Index: f.index, Name: f.name, ContentType: "application/octet-stream",
						Size: f.size, SHA256: f.sha, Object: f.key, CipherSize: f.csize, CipherSHA256: f.csha}); err != nil {
						return err
					}
					if _, err := d.Ledger.Append(ctx, tx, audit.Event{Time: o.Now, Type: audit.TypeFileSealed, Actor: "system", Contract: c.Code,
						Message: p.t.MessageID, Transfer: p.t.ID, File: f.name, SHA256: f.sha, Size: f.size, Object: f.key,
						CipherSHA256: f.csha, CipherSize: f.csize}); err != nil {
						return err
					}
				}
				for j := range p.t.Recipients {
					r := &p.t.Recipients[j]
					token := sha256.Sum256([]byte(p.t.ID + "/" + r.Address))
					id, err := transfer.InsertRecipient(ctx, tx, p.t.ID, transfer.NewRecipient{Address: r.Address, TokenHash: token[:], KeyWrapped: p.wrapped[j]})
					if err != nil {
						return err
					}
					r.ID = id
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	ts := make([]Transfer, len(out))
	for i := range out {
		ts[i] = out[i].t
	}
	return ts, nil
}

type sealed struct {
	index       int
	name, key   string
	size, csize int64
	sha, csha   string
}

type prepared struct {
	t       Transfer
	wrapped [][]byte
	files   []sealed
}

func prepare(ctx context.Context, d Deps, c *contract.Contract, o Options, i int, readRand func([]byte) error) (*prepared, error) {
	p := &prepared{}
	p.t.ID = fmt.Sprintf("%s%07d", o.IDPrefix, i)
	p.t.MessageID = "m" + p.t.ID
	var keys []*crypto.TransferKey
	for _, addr := range o.Recipients {
		var seedBytes [32]byte
		if err := readRand(seedBytes[:]); err != nil {
			return nil, err
		}
		tk, err := crypto.NewTransferKey(bytes.NewReader(seedBytes[:]))
		if err != nil {
			return nil, err
		}
		keys = append(keys, tk)
		r := Recipient{Address: addr}
		var kf []byte
		if o.RealKeys {
			if kf, err = tk.KeyFile(); err != nil {
				return nil, err
			}
			r.Passphrase = tk.Passphrase
		} else {
			kf = []byte("-----BEGIN AGE ENCRYPTED FILE-----\nseeded placeholder for a key file of " + p.t.ID + "\n-----END AGE ENCRYPTED FILE-----\n")
		}
		w, err := crypto.WrapKeyFile(c.KEKRecipient, kf)
		if err != nil {
			return nil, err
		}
		p.wrapped = append(p.wrapped, w)
		p.t.Recipients = append(p.t.Recipients, r)
	}
	for j := range o.FilesPerTransfer {
		plain := make([]byte, o.FileSize)
		if err := readRand(plain); err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		ew, err := crypto.EncryptFile(&buf, keys)
		if err != nil {
			return nil, err
		}
		if _, err := ew.Write(plain); err != nil {
			return nil, err
		}
		if err := ew.Close(); err != nil {
			return nil, err
		}
		key := fmt.Sprintf("sealed/%s/%d.age", p.t.ID, j)
		csum := sha256.Sum256(buf.Bytes())
		size := int64(buf.Len())
		if _, err := d.Store.Put(ctx, key, &buf); err != nil {
			return nil, fmt.Errorf("failed to seed object: %w", err)
		}
		sum := sha256.Sum256(plain)
		f := File{Index: j, Name: fmt.Sprintf("file-%d.bin", j), Object: key, SHA256: hex.EncodeToString(sum[:])}
		if o.FileSize <= 64<<10 {
			f.Plain = plain
		}
		p.t.Files = append(p.t.Files, f)
		p.files = append(p.files, sealed{index: j, name: f.Name, key: key, size: int64(len(plain)), csize: size,
			sha: f.SHA256, csha: hex.EncodeToString(csum[:])})
	}
	return p, nil
}
