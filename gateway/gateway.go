// Package gateway is sealgate's mail side: the SMTP listeners, the sealing of
// attachments while DATA streams in, the per-recipient rewritten copies and
// key notices, and the durable outbound queue with its delivery workers.
//
// # What 250 means
//
// A message is accepted (250) only when everything needed to deliver it is
// durable: every sealed attachment is stored (fsynced or acknowledged by S3),
// the spool files (the original for internal recipients, the skeleton for
// external ones, both age-encrypted to the master key) are fsynced with their
// directory, and one database transaction has recorded the message, the
// transfer, its files and recipients, the outbound queue entries and the
// ledger events. That commit is in accept.go (see "the commit point"). A
// crash before it leaves the sender's MTA to retry; a crash after it loses
// nothing.
//
// # Failing closed
//
// A part the walker cannot understand is sealed whole; a message it cannot
// parse is refused (5xx); a transient failure of storage, disk or database
// is a 4xx. An attachment is never delivered in clear because something went
// wrong: external recipients only ever receive copies rendered from the
// skeleton, which by construction holds no byte of a sealed part.
//
// The gateway does not import age: all cryptography is in package crypto.
package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/store"
)

// Deps are the gateway's dependencies, passed in explicitly.
type Deps struct {
	Config *config.Config
	DB     *store.DB
	Store  storage.Store
	Keys   *crypto.Keyring
	Ledger *audit.Ledger
	Log    *slog.Logger
	Now    func() time.Time
	Rand   io.Reader
	// TLS is the certificate offered with STARTTLS on the listeners (may
	// be nil: no STARTTLS).
	TLS *tls.Config
	// Transport overrides delivery (tests); nil selects the smarthost or
	// the Maildir outbox from the configuration.
	Transport Transport
}

// Gateway is the mail side of sealgate.
type Gateway struct {
	Deps
	trusted  []netip.Prefix
	spool    *spool
	queue    *queue
	loc      *time.Location
	contract *contract.Contract

	mu     sync.Mutex
	closed bool
}

// New prepares the gateway: it opens the spool, makes sure the default
// contract exists and cleans up what a crash may have left.
func New(ctx context.Context, d Deps) (*Gateway, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	trusted, err := d.Config.SMTP.Prefixes()
	if err != nil {
		return nil, err
	}
	sp, err := openSpool(d.Config.Path("spool"), d.Keys)
	if err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(d.Config.Timezone)
	if err != nil {
		return nil, fmt.Errorf("failed to load time zone %q: %w", d.Config.Timezone, err)
	}
	c, err := contract.Ensure(ctx, d.DB, d.Keys, d.Ledger, d.Config.Transfer.DefaultContract, "Default contract / 既定の契約", d.Now())
	if err != nil {
		return nil, fmt.Errorf("failed to prepare the default contract: %w", err)
	}
	g := &Gateway{Deps: d, trusted: trusted, spool: sp, loc: loc, contract: c}
	if g.Transport == nil {
		if d.Config.Delivery.Smarthost != "" {
			g.Transport = &SMTPTransport{
				Addr:     d.Config.Delivery.Smarthost,
				TLSMode:  d.Config.Delivery.SmarthostTLS,
				Hostname: d.Config.Hostname,
				Username: d.Config.Delivery.SmarthostUser,
				Password: d.Config.Delivery.SmarthostPass,
			}
		} else {
			md, err := NewMaildir(d.Config.Path("outbox"), d.Config.Hostname, d.Now)
			if err != nil {
				return nil, err
			}
			g.Transport = md
			d.Log.Warn("no smarthost configured: outbound mail is written in clear to the Maildir outbox; configure delivery.smarthost for production",
				"outbox", d.Config.Path("outbox"))
		}
	}
	g.queue = newQueue(g)
	if err := g.spool.collectGarbage(ctx, d.DB); err != nil {
		return nil, err
	}
	return g, nil
}

// Run delivers queued mail until ctx is cancelled.
func (g *Gateway) Run(ctx context.Context) error { return g.queue.run(ctx) }

// Kick wakes the delivery scheduler (after a commit that queued mail).
func (g *Gateway) Kick() { g.queue.kick() }
