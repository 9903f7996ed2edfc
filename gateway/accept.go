package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/internal/chunkpipe"
	"github.com/sealgate/sealgate/internal/linktoken"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/outbox"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/pubkey"
	"github.com/sealgate/sealgate/transfer"
)

const (
	pipeChunk = 256 << 10
	pipeDepth = 8
)

// received is a message that has been read, sealed and spooled but not yet
// committed.
type received struct {
	id       string
	env      *envelope
	internal []string
	external []string
	original *spoolFile // for internal recipients, nil if none
	skeleton *spoolFile // for external recipients, nil if none
	header   textproto.Header
	size     int64
	sealer   *sealer
	contract *contract.Contract
	routedBy string // how the contract was chosen: tag | header | recipients | default
	routeErr error  // routing refused the message (set while reading the header)
	// expiredHold: the contract is past its end date and the recipients
	// are its counterparties; the external copies wait for its manager.
	expiredHold bool
	keysOK      bool // the contract's key delivery mode was checked (at the first attachment)
	receivedAt  time.Time
	pubkeys     []*pubkey.Key // per external recipient: the registered key key.age is encrypted to, or nil
	// epoch is the master key epoch everything of this message is wrapped
	// with (spool files, waiting tokens and passphrases); the commit is
	// fenced on it (package masterkey).
	epoch *crypto.Epoch

	// The policy (policy.go): the message rules' decision, the shadow
	// policy's, what the walk reported for the shadow to judge.
	decision       policy.MessageDecision
	decided        bool
	shadowDecision policy.MessageDecision
	reports        []mimeseal.Report
	whole          bool // the message could not be parsed: sealed whole
	unscanned      bool // clamd gave no verdict and scan.on_unavailable = "hold"
}

// newMessage starts reading a message of env (accept, acceptInbound): its ID
// and reception time, and when sealing started (for the metrics).
func (g *Gateway) newMessage(env *envelope) (*received, time.Time, error) {
	if len(env.rcpts) == 0 {
		return nil, time.Time{}, errNoRecipients
	}
	started := g.Now()
	id, err := newID(g.Rand, "m")
	if err != nil {
		g.countRefused(env, err)
		return nil, started, temporary(err)
	}
	return &received{id: id, env: env, receivedAt: g.Now().UTC(), epoch: g.Keys.Current()}, started, nil
}

// accept reads one message from r (go-smtp's DATA or BDAT reader), seals
// it and commits it. It returns the gateway message id once the message is
// durable; on error nothing of it remains (objects and spool files are
// removed) and the error says whether the failure is transient.
//
// Reading DATA happens on this goroutine; the MIME walk, the spooling and
// the sealing run on others, so that go-smtp's byte-at-a-time DATA reader
// and the cryptography use both cores.
func (g *Gateway) accept(ctx context.Context, env *envelope, r io.Reader) (string, error) {
	m, started, err := g.newMessage(env)
	if err != nil {
		return "", err
	}
	for _, rc := range env.rcpts {
		if g.Config.IsInternal(rc) {
			m.internal = append(m.internal, rc)
		} else {
			m.external = append(m.external, rc)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	pw, pr := chunkpipe.New(pipeDepth, pipeChunk)
	done := make(chan error, 1)
	go func() {
		err := g.process(ctx, m, pr)
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.Close()
		}
		done <- err
	}()
	n, copyErr := io.Copy(pw, mimeseal.NewCRLFReader(mimeseal.SkipMboxFrom(r)))
	m.size = n
	pw.CloseWithError(copyErr)
	procErr := <-done
	if procErr == nil && copyErr != nil {
		// The walker finished but not all of DATA could be read (client
		// gone, size limit, or input after the end the walker ignored).
		procErr = copyErr
	}
	if procErr != nil {
		g.discard(m)
		g.recordRefusal(m, procErr)
		g.countRefused(env, procErr)
		return "", procErr
	}
	// The commit point: after this returns nil the message is durable and
	// the client is told 250.
	err = g.commit(ctx, m)
	if errors.Is(err, crypto.ErrStaleEpoch) && g.rekey(ctx, m) == nil {
		// The master key was rotated while the message was read: its
		// spool files are now sealed with the new key; commit once more.
		err = g.commit(ctx, m)
	}
	if err != nil {
		g.discard(m)
		g.countRefused(env, err)
		return "", err
	}
	return g.accepted("message accepted", m, r, started), nil
}

// accepted logs a message just committed, wakes the queue and counts it;
// it returns the message's id for the 250.
func (g *Gateway) accepted(what string, m *received, r io.Reader, started time.Time) string {
	g.logAccepted(what, m, r)
	g.Kick()
	g.countAccepted(m, started)
	return m.id
}

// logAccepted logs a message that was just committed: the id the client
// was given with its 250, who sent it, how many recipients, its size, and
// whether the client sent it with DATA or BDAT (CHUNKING, the fast path:
// Postfix uses it when offered). No content, token or passphrase.
func (g *Gateway) logAccepted(msg string, m *received, r io.Reader) {
	args := []any{"id", m.id, "client", m.env.client, "from", m.env.from, "rcpts", len(m.env.rcpts), "size", m.size, "smtp", bodyCommand(r)}
	if m.env.actor != "" {
		args = append(args, "account", m.env.actor)
	}
	g.Log.Info(msg, args...)
}

// bodyCommand names the SMTP command that carried the message read from r:
// go-smtp (v0.25) hands Session.Data the chunks of BDAT through an io.Pipe
// and the text of DATA through its own dot-unstuffing reader
// (TestBodyCommandLogged pins this).
func bodyCommand(r io.Reader) string {
	if _, ok := r.(*io.PipeReader); ok {
		return "BDAT"
	}
	return "DATA"
}

// walkLimits are the MIME walker's limits from the configuration.
func (g *Gateway) walkLimits() mimeseal.Limits {
	l := g.Config.Limits
	return mimeseal.Limits{
		MaxDepth:       l.MaxMIMEDepth,
		MaxParts:       l.MaxMIMEParts,
		MaxHeaderBytes: int(l.MaxHeaderBytes),
		MaxLineBytes:   int(l.MaxHeaderBytes),
		MaxTextBytes:   int(l.MaxTextBytes),
	}
}

// rekey moves a message read under a master key epoch that a rotation
// has since retired to the current one: its spool files are re-encrypted
// (the secrets are wrapped by commit, with m.epoch). The fence that
// refused the commit has reloaded the keyring.
func (g *Gateway) rekey(ctx context.Context, m *received) error {
	to := g.Keys.Current()
	if to.Number <= m.epoch.Number {
		return crypto.ErrStaleEpoch
	}
	for _, sf := range []*spoolFile{m.original, m.skeleton} {
		if sf == nil {
			continue
		}
		if sf.staged != nil {
			if err := sf.rekeyStaged(m.epoch, to); err != nil {
				return err
			}
			continue
		}
		if err := g.spool.rekey(ctx, sf.name, m.epoch, to); err != nil {
			return err
		}
	}
	m.epoch = to
	return nil
}

// process runs on its own goroutine: it consumes the normalized message
// from in, writes the original and/or the skeleton to the spool and the
// sealed parts to storage.
func (g *Gateway) process(ctx context.Context, m *received, in io.Reader) (err error) {
	var origDone chan error
	var origPipe *chunkpipe.Writer
	if len(m.internal) > 0 {
		if m.original, err = g.spool.create(ctx, m.id+".orig.age", m.epoch); err != nil {
			return err
		}
		var origRead *chunkpipe.Reader
		origPipe, origRead = chunkpipe.New(pipeDepth, pipeChunk)
		origDone = make(chan error, 1)
		go func() {
			_, err := origRead.WriteTo(m.original)
			if err != nil {
				origRead.CloseWithError(err)
			}
			origDone <- err
		}()
		in = io.TeeReader(in, origPipe)
		defer func() {
			if err != nil {
				origPipe.CloseWithError(err)
				<-origDone
				return
			}
			origPipe.Close()
			if err = <-origDone; err == nil {
				err = m.original.commitLater()
			}
		}()
	}

	if len(m.external) == 0 {
		// Internal recipients only: nothing to seal, the original goes out
		// unchanged. Keep the header for the records.
		head := &headSniffer{max: int(g.Config.Limits.MaxHeaderBytes) * 4}
		if _, err := io.Copy(head, in); err != nil {
			return err
		}
		m.header = head.header()
		return g.route(ctx, m)
	}

	if m.skeleton, err = g.spool.create(ctx, m.id+".skel.age", m.epoch); err != nil {
		return err
	}
	tid, err := newID(g.Rand, "t")
	if err != nil {
		return temporary(err)
	}
	m.sealer = newSealer(ctx, g, tid, len(m.external))
	if err := g.registeredKeys(ctx, m); err != nil {
		return err
	}
	opts := g.walkOptions(ctx, m)
	ret := g.newRetainer()
	defer ret.release()
	bw := bufio.NewWriterSize(m.skeleton, 64<<10)
	res, err := mimeseal.Rewrite(bw, io.TeeReader(in, ret), routedSealer{ctx, g, m}, opts)
	if mimeseal.KindOf(err) == mimeseal.Malformed {
		bw, res, err = g.sealWhole(ctx, m, opts, ret, in, err)
	}
	if err != nil {
		return err
	}
	m.header = res.Header
	m.sealer.settle(res.Attachments)
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := m.skeleton.commitLater(); err != nil {
		return err
	}
	return g.route(ctx, m)
}

// sealWhole starts m over when the walker found it malformed (cause): what the walk wrote and
// sealed is discarded, and the whole message — what the walker read, kept by ret, and the rest
// of the input — is sealed as one .eml (mimeseal.SealWhole). Broken mail still flows, and
// nothing of it in clear; only limits and transient failures refuse.
func (g *Gateway) sealWhole(ctx context.Context, m *received, opts mimeseal.Options, ret *retainer, rest io.Reader, cause error) (*bufio.Writer, *mimeseal.Result, error) {
	src, err := ret.replay()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", err, cause)
	}
	g.Log.Info("message cannot be parsed: sealed whole", "message", m.id, "cause", cause)
	m.skeleton.Abort()
	old := m.sealer
	old.discard()
	if m.skeleton, err = g.spool.create(ctx, m.id+".skel.age", m.epoch); err != nil {
		return nil, nil, err
	}
	tid, err := newID(g.Rand, "t")
	if err != nil {
		return nil, nil, temporary(err)
	}
	m.sealer = newSealer(ctx, g, tid, len(m.external))
	m.sealer.registered = old.registered
	m.reports, m.whole = nil, true
	bw := bufio.NewWriterSize(m.skeleton, 64<<10)
	res, err := mimeseal.SealWhole(bw, io.MultiReader(src, rest), routedSealer{ctx, g, m}, opts)
	if err != nil {
		return nil, nil, err
	}
	if !m.decided {
		// The header could not be parsed strictly: the message rules see its well-formed
		// fields. Whatever they say, the message stays sealed whole (it is never passed in
		// clear for being unparseable); a refusal or a hold still applies.
		if d := g.decideMessage(m, &res.Header); d.Action == policy.Refuse {
			return nil, nil, &mimeseal.Error{Kind: mimeseal.Refused, Err: &mimeseal.Refusal{Rule: d.Rule, Reason: d.Reason}}
		}
	}
	return bw, res, nil
}

// route picks the contract the message is sent under and checks that it
// may be.
func (g *Gateway) route(ctx context.Context, m *received) error {
	if m.env.actor != "" {
		if err := checkHeaderFrom(m.header.Get("From"), m.env.email); err != nil {
			return err
		}
	}
	if m.env.clientCert != "" {
		if err := g.checkHeaderFromInternal(m.header.Get("From")); err != nil {
			return err
		}
	}
	if m.routeErr == nil && m.contract == nil {
		// Internal recipients only: nothing was rewritten; route by the
		// header as received (route.go).
		h := m.header.Copy()
		g.routeHeader(ctx, m, &h)
	}
	return m.routeErr
}

// prepared recipient secrets, computed before the database write so that
// the single writer does no cryptography.
type preparedRecipient struct {
	address      string
	tokenHash    []byte
	tokenWrapped []byte
	keyWrapped   []byte // nil when nothing was sealed
	passWrapped  []byte // nil for a registered key: no passphrase exists
	publicKeyID  int64  // the recipient's registered key (key.age is encrypted to it), or 0
}

func (g *Gateway) prepareRecipients(m *received) ([]preparedRecipient, error) {
	sealed := m.sealer != nil && len(m.sealer.files) > 0
	out := make([]preparedRecipient, len(m.external))
	for i, addr := range m.external {
		p := preparedRecipient{address: addr}
		if sealed {
			token, err := linktoken.New(g.Rand)
			if err != nil {
				return nil, err
			}
			p.tokenHash = linktoken.Hash(token)
			if p.tokenWrapped, err = m.epoch.WrapTransient([]byte(token)); err != nil {
				return nil, err
			}
			tk := m.sealer.keys[i]
			kf, err := tk.KeyFile()
			if err != nil {
				return nil, err
			}
			if p.keyWrapped, err = crypto.WrapKeyFile(m.contract.KEKRecipient, kf); err != nil {
				return nil, err
			}
			if tk.Passphrase == "" {
				// A registered public key protects key.age: no passphrase.
				p.publicKeyID = m.pubkeys[i].ID
				out[i] = p
				continue
			}
			if p.passWrapped, err = m.epoch.WrapTransient([]byte(tk.Passphrase)); err != nil {
				return nil, err
			}
		}
		out[i] = p
	}
	return out, nil
}

func (g *Gateway) commit(ctx context.Context, m *received) error {
	recips, err := g.prepareRecipients(m)
	if err != nil {
		return temporary(err)
	}
	sealed := m.sealer != nil && len(m.sealer.files) > 0
	now := m.receivedAt
	var contractID int64
	code := ""
	var expires time.Time
	if c := m.contract; c != nil {
		contractID, code = c.ID, c.Code
		expires = c.ExpiresAt(now, contract.DefaultsFrom(g.Config))
		if m.expiredHold {
			// The end date is past: the links get their full lifetime,
			// cut to the new end date when the manager, having extended
			// the contract, approves (hold.Approve).
			expires = now.Add(c.LinkExpiryOr(contract.DefaultsFrom(g.Config)))
		}
	} else if len(m.external) > 0 {
		return fmt.Errorf("gateway: message %s with external recipients has no contract", m.id)
	}
	subject := decodeHeader(m.header.Get("Subject"))
	headerFrom := decodeHeader(m.header.Get("From"))
	actor := "smtp:" + m.env.client
	if m.env.actor != "" {
		actor = m.env.actor
	}
	delay := g.Config.Delivery.KeyNoticeDelay.D()
	held, err := g.holdSpec(m, sealed)
	if err != nil {
		return temporary(err)
	}
	// The sealed files' ledger details, before the write: they may ask
	// clamd for its version (up to 5 s), and a write function blocks on
	// nothing but the database (every write of the process waits on it).
	var fileDetails []map[string]string
	if sealed {
		for _, f := range m.sealer.files {
			fileDetails = append(fileDetails, g.fileDetails(ctx, m, f))
		}
	}
	err = g.DB.Write(ctx, func(tx *database.Tx) error {
		// Wrapped to a master key epoch a rotation has retired meanwhile:
		// 451, the sender's MTA retries with the new key.
		if err := masterkey.Fence(ctx, tx, m.epoch); err != nil {
			return err
		}
		// The spool files kept in the database commit with the message.
		if err := m.original.commitTx(ctx, tx); err != nil {
			return err
		}
		if err := m.skeleton.commitTx(ctx, tx); err != nil {
			return err
		}
		if err := checkContractOpen(ctx, tx, m); err != nil {
			return err
		}
		if err := transfer.InsertMessage(ctx, tx, transfer.Message{ID: m.id, ReceivedAt: now, Client: m.env.client, HELO: m.env.helo,
			MailFrom: m.env.from, HeaderFrom: headerFrom, Subject: subject, MessageID: m.header.Get("Message-Id"), Size: m.size,
			ContractID: contractID, Actor: m.env.actor}); err != nil {
			return err
		}
		details := map[string]string{
			"from": m.env.from, "header_from": headerFrom, "subject": subject,
			"message_id": m.header.Get("Message-Id"),
			"internal":   fmt.Sprint(len(m.internal)), "external": fmt.Sprint(len(m.external)),
			"contract_by": m.routedBy,
		}
		if len(m.internal) > 0 {
			details["internal_to"] = strings.Join(m.internal, ", ")
		}
		if m.env.clientCert != "" {
			details["client_certificate"] = m.env.clientCert
		}
		if len(m.external) > 0 {
			g.policyDetails(m, details)
		}
		ev := audit.Event{Type: audit.TypeMessageReceived, Actor: actor, Contract: code, Message: m.id,
			Size: m.size, RemoteIP: hostOf(m.env.client), Details: details}
		if sealed {
			ev.Transfer = m.sealer.transferID
		}
		if _, err := g.Ledger.Append(ctx, tx, ev); err != nil {
			return err
		}
		if sealed {
			if err := transfer.InsertTransfer(ctx, tx, transfer.NewTransfer{ID: m.sealer.transferID, MessageID: m.id, ContractID: contractID,
				Sender: m.env.from, CreatedAt: now, ExpiresAt: expires}); err != nil {
				return err
			}
			for i, f := range m.sealer.files {
				if err := transfer.InsertFile(ctx, tx, m.sealer.transferID, transfer.SealedFile{Index: f.index, Name: f.name, ContentType: f.contentType,
					Size: f.size, SHA256: f.sha256, Object: f.key, CipherSize: f.cipherSize, CipherSHA256: f.cipherSHA256}); err != nil {
					return err
				}
				if _, err := g.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeFileSealed, Actor: "system", Contract: code,
					Message: m.id, Transfer: m.sealer.transferID, File: f.name, SHA256: f.sha256, Size: f.size,
					CipherSHA256: f.cipherSHA256, CipherSize: f.cipherSize, Object: f.key,
					Details: fileDetails[i]}); err != nil {
					return err
				}
			}
		}
		for _, p := range recips {
			var recipientID int64
			if sealed {
				rid, err := transfer.InsertRecipient(ctx, tx, m.sealer.transferID, transfer.NewRecipient{Address: p.address,
					TokenHash: p.tokenHash, KeyWrapped: p.keyWrapped, PublicKeyID: p.publicKeyID})
				if err != nil {
					return err
				}
				recipientID = rid
			}
			// Held: nothing external leaves before the hold is released.
			copyID, err := outbox.InsertCopy(ctx, tx, outbox.Copy{MessageID: m.id, RecipientID: recipientID, From: m.env.from, To: p.address,
				Spool: m.skeleton.name, Token: p.tokenWrapped, Held: held != nil, At: now})
			if err != nil {
				return err
			}
			ev := audit.Event{Type: audit.TypeNoticeQueued, Actor: "system", Contract: code, Message: m.id, Recipient: p.address}
			if sealed {
				ev.Transfer = m.sealer.transferID
				keyTo := p.address
				if m.contract.KeyDelivery == contract.KeyManual && p.publicKeyID == 0 {
					keyTo = m.env.from // the sender hands the passphrase over by another channel
				}
				if err := outbox.InsertKey(ctx, tx, outbox.Key{MessageID: m.id, RecipientID: recipientID, From: m.env.from, To: keyTo,
					Passphrase: p.passWrapped, After: copyID, Delay: delay, At: now}); err != nil {
					return err
				}
			}
			if _, err := g.Ledger.Append(ctx, tx, ev); err != nil {
				return err
			}
		}
		if len(m.internal) > 0 {
			if err := outbox.InsertPlain(ctx, tx, outbox.Plain{MessageID: m.id, From: m.env.from, To: m.internal, Spool: m.original.name, At: now}); err != nil {
				return err
			}
		}
		if err := g.recordShadow(ctx, tx, m, code); err != nil {
			return err
		}
		if err := g.queuePolicyAlerts(ctx, tx, m, m.decision.Action.String()); err != nil {
			return err
		}
		if held != nil {
			return g.Holds.Create(ctx, tx, *held)
		}
		return nil
	})
	if err != nil {
		return temporary(err)
	}
	return nil
}

// discard removes what a refused message left: spool files and stored
// objects. The objects are encrypted to transfer identities that were never
// written anywhere, so even one that cannot be deleted now is unreadable.
func (g *Gateway) discard(m *received) {
	// Only a file the store was asked to commit can be there: one
	// aborted before (the message refused while it was read) left
	// nothing, and a staged one was never written (its transaction did
	// not commit). Removing those would cost a write, and on PostgreSQL
	// bucket requests, for every refused message.
	for _, sf := range []*spoolFile{m.original, m.skeleton} {
		if sf == nil {
			continue
		}
		sf.Abort()
		if sf.committing {
			g.spool.remove(sf.name)
		}
	}
	if m.sealer != nil {
		m.sealer.discard()
	}
}

// recordRefusal writes a message.refused ledger event (best effort: the
// refusal itself has already been decided).
func (g *Gateway) recordRefusal(m *received, cause error) {
	reply := smtpReply(cause)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	details := map[string]string{"from": m.env.from, "rcpts": fmt.Sprint(len(m.env.rcpts))}
	var ref *mimeseal.Refusal
	var mal *mimeseal.Malware
	switch {
	case errors.As(cause, &ref):
		details["policy_rule"], details["policy_hash"] = ref.Rule, g.rules.live.Hash()
	case errors.As(cause, &mal):
		details["malware"], details["policy_hash"] = mal.Signature, g.rules.live.Hash()
		if g.rules.clamd != nil {
			details["scan_engine"] = g.scanVersion(ctx).Engine
		}
	}
	err := g.DB.Write(ctx, func(tx *database.Tx) error {
		if _, err := g.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeMessageRefused, Actor: "smtp:" + m.env.client,
			Message: m.id, RemoteIP: hostOf(m.env.client), Result: fmt.Sprint(reply.Code), Details: details}); err != nil {
			return err
		}
		if ref != nil || mal != nil {
			// A refusal by policy or for malware is final: tell whom the rules name.
			return g.queuePolicyAlerts(ctx, tx, m, policy.Refuse.String())
		}
		return nil
	})
	if err != nil {
		g.Log.Error("failed to record refusal in the ledger", "message", m.id, "error", err)
	}
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

// decodeHeader decodes RFC 2047 words for records and notices.
func decodeHeader(s string) string {
	dec := mime.WordDecoder{CharsetReader: charset.Reader}
	d, err := dec.DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

// headSniffer keeps the first bytes of a message to parse its header.
type headSniffer struct {
	buf bytes.Buffer
	max int
}

func (h *headSniffer) Write(p []byte) (int, error) {
	if room := h.max - h.buf.Len(); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		h.buf.Write(p[:room])
	}
	return len(p), nil
}

func (h *headSniffer) header() textproto.Header {
	hdr, _ := textproto.ReadHeader(bufio.NewReader(&h.buf))
	return hdr
}
