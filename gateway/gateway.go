// Package gateway is sealgate's mail side: the SMTP listeners, the sealing of
// attachments while DATA streams in, the per-recipient rewritten copies and
// key notices, and the delivery workers of the durable outbound queue
// (whose rows package outbox keeps).
// The gateway starts no background loop of its own: the scheduler (package
// schedule) calls DeliverDue and RetryDiscards when they are due.
//
// # What 250 means
//
// A message is accepted (250) only when everything needed to deliver it is
// durable: every sealed attachment is stored (fsynced or acknowledged by S3),
// the spool files (the original for internal recipients, the skeleton for
// external ones, both sealed with the queue key) are fsynced with their
// directory or, in the bucket a fleet shares (spool.go), acknowledged by S3,
// and one database transaction has recorded the message, the
// transfer, its files and recipients, the outbound queue entries and the
// ledger events. That commit is in accept.go (see "the commit point"). A
// crash before it leaves the sender's MTA to retry; a crash after it loses
// nothing.
//
// # Failing closed
//
// A part the walker cannot understand is sealed whole; a message it cannot
// parse is sealed whole too, as one .eml (accept.go, sealWhole); only
// limits, the policy and malware refuse (5xx); a transient failure of
// storage, disk, database or the malware scanner is a 4xx. An attachment is
// never delivered in clear because something went wrong: external
// recipients only ever receive copies rendered from the skeleton, which by
// construction holds no byte of a sealed part.
//
// # Held messages and registered keys
//
// Under a contract that requires the information manager's approval, or
// while the configured send delay runs, a message's external copies are
// committed in status 'held' with a hold (package hold, held.go): nothing
// external leaves until the hold is released, and a refused, expired or
// cancelled hold destroys the transfer. A recipient who registered a
// public key (package pubkey) has file.age encrypted to that key instead
// of a transfer identity: no passphrase exists for them, and their key
// notice says so.
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

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/hold"
	"github.com/sealgate/sealgate/internal/ratelimit"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/notice"
	"github.com/sealgate/sealgate/storage"
)

// Deps are the gateway's dependencies, passed in explicitly.
type Deps struct {
	Config *config.Config
	DB     *database.DB
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
	// Holds keeps messages held for approval or by the send delay; nil
	// makes one from these dependencies (New), which Gateway.Holds returns.
	Holds *hold.Service
	// Metrics counts replies, messages, sealing and deliveries
	// (observe.go); nil counts nothing.
	Metrics *metrics.Metrics
	// Spool is where the spool files are kept (spool.go): nil is the
	// directory <data_dir>/spool of this machine; server/ gives the
	// shared bucket (BucketSpool) on PostgreSQL.
	Spool SpoolStore
	// Limits makes the counters of the submission listener's AUTH
	// failures (nil: in this process, ratelimit.InMemory); with several
	// instances, counters shared through the database (ratelimit.Store).
	Limits ratelimit.Maker
}

// Gateway is the mail side of sealgate.
type Gateway struct {
	Deps
	trusted   []netip.Prefix
	certTrust *certTrust // nil: no client certificate is trusted
	spool     *spool
	queue     *queue
	discards  *discards // objects of refused messages to delete again
	loc       *time.Location
	bufs      *mimeseal.Buffers // Rewrite's buffers, recycled between messages
	notices   *notice.Renderer
	policy    notice.Policy // whom system notices may go to
	rules     *ruleSet      // the policy file, its shadow, the malware scanner (policy.go)

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
	if d.Spool == nil {
		d.Spool = &DBSpool{DB: d.DB, Next: NewDirSpool(d.Config.Path("spool")), Now: d.Now}
	}
	sp := &spool{st: d.Spool, keys: d.Keys}
	loc, err := time.LoadLocation(d.Config.Timezone)
	if err != nil {
		return nil, fmt.Errorf("failed to load time zone %q: %w", d.Config.Timezone, err)
	}
	if def := d.Config.Transfer.DefaultContract; def != "" {
		if _, err := contract.Ensure(ctx, d.DB, d.Keys, d.Ledger, def, "Default contract / 既定の契約", d.Now()); err != nil {
			return nil, fmt.Errorf("failed to prepare the default contract: %w", err)
		}
	} else if err := warnAnyRecipient(ctx, d); err != nil {
		return nil, err
	}
	ct, err := newCertTrust(d.Config.SMTP.ClientCAFile, d.Config.SMTP.TrustedClientNames)
	if err != nil {
		return nil, err
	}
	notices, err := notice.New(notice.Options{PublicURL: d.Config.PublicURL, From: d.Config.Delivery.NoticeFrom, Hostname: d.Config.Hostname, Location: loc})
	if err != nil {
		return nil, err
	}
	g := &Gateway{Deps: d, trusted: trusted, certTrust: ct, spool: sp, loc: loc, bufs: mimeseal.NewBuffers(), notices: notices,
		policy: notice.Policy{Internal: d.Config.IsInternalDomain, Active: account.HasActiveEmail}}
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
			// The configuration checks (preflight) warn about it at start.
			g.Transport = md
		}
	}
	g.queue = newQueue(g)
	g.discards = newDiscards()
	if g.Holds == nil {
		g.Holds = hold.New(hold.Deps{
			DB: d.DB, Ledger: d.Ledger, Now: d.Now, Log: d.Log, Notices: g, Kick: g.Kick,
			Transfer: destroy.Deps{DB: d.DB, Store: d.Store, Ledger: d.Ledger, Now: d.Now, Log: d.Log, RemoveSpool: sp.remove},
		})
	}
	if err := g.collectSpool(ctx); err != nil {
		return nil, err
	}
	if err := g.loadRules(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// SharedSpoolGrace is how old a spool file of a store shared by a fleet
// (BucketSpool) must be before the collection at start removes it
// unreferenced: another instance may be between its upload and its
// message's commit. It is the orphan sweep's default grace (schedule).
const SharedSpoolGrace = 24 * time.Hour

// collectSpool prepares the spool at start (DirSpool: its directory, and
// the temporary files of sessions that died before their commit removed)
// and removes the files no pending delivery references (spool.go,
// collectGarbage).
func (g *Gateway) collectSpool(ctx context.Context) error {
	if p, ok := g.Spool.(interface{ prepare() error }); ok {
		if err := p.prepare(); err != nil {
			return err
		}
	}
	grace := spoolGraceLocal
	if g.Spool.Shared() {
		grace = SharedSpoolGrace
	}
	_, err := g.spool.collectGarbage(ctx, g.DB, grace, g.Now())
	return err
}

// warnAnyRecipient logs the active contracts that allow any recipient while
// the default contract is off: a tag or header naming one still sends to
// recipients no other contract covers.
func warnAnyRecipient(ctx context.Context, d Deps) error {
	all, err := contract.List(ctx, d.DB.Read())
	if err != nil {
		return err
	}
	for _, c := range all {
		if c.AnyRecipient && c.Status == contract.StatusActive {
			d.Log.Warn("the default contract is off, but this active contract allows any recipient: mail tagged with it still reaches recipients no contract covers; end it or turn off its any-recipient setting",
				"contract", c.Code)
		}
	}
	return nil
}

// Kick wakes the delivery scheduler (after a commit that queued mail).
func (g *Gateway) Kick() { g.queue.kick() }
