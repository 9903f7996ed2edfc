package gateway

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/internal/chunkpipe"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/outbox"
	"github.com/sealgate/sealgate/transfer"
)

// The inbound listener (smtp.inbound_addr) takes mail from outside — in a
// real deployment handed over by the company's MTA — for internal
// recipients only (it never relays), passes it through unchanged to the
// smarthost, and keeps a receipt record (受領記録): a message.received
// event with sender, recipients and subject, and one file.received event
// per attachment with its name, size and the SHA-256 of its content. The
// records go under the contract that allows the sender's address (as a
// recipient: the contract's counterparty), chosen like outgoing mail
// (subject tag or X-Sealgate-Contract among those, else the single one);
// mail from anyone else is passed through and recorded without a contract.
//
// The original is spooled (encrypted to the master key) exactly as
// received while the MIME walker, with a Sealer that only hashes, finds
// the attachments; the walker's output is discarded. A message the walker
// cannot parse is still passed through (it is not ours to refuse), with
// its receipt recorded as unparsed.

var replyInboundRelayDenied = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
	Message: "この宛先への中継は許可されていません（社内宛てのみ受け付けます）。\nRelay access denied: only internal recipients are accepted here"}

// NewInboundServer returns the SMTP server of the inbound listener.
func (g *Gateway) NewInboundServer() *smtp.Server {
	return g.newServer(metrics.ListenerInbound, func(c *smtp.Conn) smtp.Session {
		return &inboundSession{session: g.newSession(c, metrics.ListenerInbound)}
	})
}

type inboundSession struct {
	*session
}

func (s *inboundSession) Mail(from string, opts *smtp.MailOptions) error {
	canon, err := canonicalSender(from)
	if err != nil {
		s.g.Log.Warn("inbound: sender address refused", "client", s.env.client, "from", from, "error", err)
		return addressReply(err, false)
	}
	s.env.from = canon
	s.env.rcpts = nil
	return nil
}

// Rcpt accepts internal recipients only, on their canonical form: an
// address with routing syntax (eve%evil.example@corp.example) is refused
// before anything else, or the next hop would relay it outside.
func (s *inboundSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	a, err := s.parseRcpt(to)
	if err != nil {
		return err
	}
	if !s.g.Config.IsInternalDomain(a.Domain) {
		s.g.Log.Warn("inbound: recipient is not internal, refused", "client", s.env.client, "from", s.env.from, "to", to)
		return replyInboundRelayDenied
	}
	s.addRcpt(a)
	return nil
}

func (s *inboundSession) Data(r io.Reader) error {
	env := s.env.snapshot()
	id, err := s.g.acceptInbound(context.Background(), env, r)
	if err != nil {
		reply := smtpReply(err)
		s.g.Log.Warn("inbound message refused", "client", env.client, "from", env.from, "code", reply.Code, "error", err)
		return reply
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + id}
}

// receivedFile is one attachment of an inbound message, hashed.
type receivedFile struct {
	name        string
	contentType string
	size        int64
	sha256      string
}

// hashSealer is a mimeseal.Sealer that only hashes each part.
type hashSealer struct{ files []receivedFile }

func (h *hashSealer) Begin(a mimeseal.Attachment) (mimeseal.PartWriter, error) {
	return &hashPart{s: h, f: receivedFile{name: mimeseal.SafeName(a), contentType: a.ContentType}, h: sha256.New()}, nil
}

type hashPart struct {
	s *hashSealer
	f receivedFile
	h hash.Hash
}

func (p *hashPart) Write(b []byte) (int, error) {
	p.h.Write(b)
	p.f.size += int64(len(b))
	return len(b), nil
}

func (p *hashPart) Close() error {
	p.f.sha256 = hex.EncodeToString(p.h.Sum(nil))
	p.s.files = append(p.s.files, p.f)
	return nil
}

func (p *hashPart) Abort(error) {}

// acceptInbound reads one inbound message, spools it unchanged and commits
// it with its receipt record. Like accept, it returns only once the
// message is durable (the 250).
func (g *Gateway) acceptInbound(ctx context.Context, env *envelope, r io.Reader) (string, error) {
	m, started, err := g.newMessage(env)
	if err != nil {
		return "", err
	}
	m.internal = env.rcpts
	hs := &hashSealer{}
	var parseErr error
	pw, pr := chunkpipe.New(pipeDepth, pipeChunk)
	done := make(chan error, 1)
	go func() {
		err := g.processInbound(ctx, m, pr, hs, &parseErr)
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.Close()
		}
		done <- err
	}()
	n, copyErr := io.Copy(pw, mimeseal.NewCRLFReader(r))
	m.size = n
	pw.CloseWithError(copyErr)
	procErr := <-done
	if procErr == nil && copyErr != nil {
		procErr = copyErr
	}
	if procErr == nil {
		// The commit point: after this returns nil the message is durable
		// and the client is told 250.
		procErr = g.commitInbound(ctx, m, hs.files, parseErr)
		if errors.Is(procErr, crypto.ErrStaleEpoch) && g.rekey(ctx, m) == nil {
			procErr = g.commitInbound(ctx, m, hs.files, parseErr)
		}
	}
	if procErr != nil {
		g.discard(m)
		g.recordRefusal(m, procErr)
		g.countRefused(env, procErr)
		return "", procErr
	}
	return g.accepted("inbound message accepted", m, r, started), nil
}

// processInbound spools the original while the walker hashes the
// attachments.
func (g *Gateway) processInbound(ctx context.Context, m *received, in io.Reader, hs *hashSealer, parseErr *error) error {
	var err error
	if m.original, err = g.spool.create(ctx, m.id+".orig.age", m.epoch); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(m.original, 64<<10)
	head := &headSniffer{max: int(g.Config.Limits.MaxHeaderBytes) * 4}
	tee := io.TeeReader(in, io.MultiWriter(bw, head))
	_, rerr := mimeseal.Rewrite(io.Discard, tee, hs, mimeseal.Options{
		Limits: g.walkLimits(),
	})
	if rerr != nil {
		switch mimeseal.KindOf(rerr) {
		case mimeseal.Malformed, mimeseal.LimitExceeded:
			*parseErr = rerr // passed through all the same; recorded as unparsed
		default:
			return rerr
		}
	}
	// Whatever the walker left unread still belongs to the original.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return err
	}
	m.header = head.header()
	if err := bw.Flush(); err != nil {
		return err
	}
	return m.original.Commit()
}

// inboundContract picks the contract an inbound message is recorded under:
// among the active contracts that allow the sender, the one the subject tag
// or X-Sealgate-Contract names, else the only one; nil if none or several.
func (g *Gateway) inboundContract(ctx context.Context, m *received) (*contract.Contract, error) {
	if m.env.from == "" {
		return nil, nil
	}
	cands, err := contract.Candidates(ctx, g.DB.Read(), []string{m.env.from}, g.Now())
	if err != nil {
		return nil, err
	}
	if len(cands) == 0 {
		return nil, nil
	}
	pick := func(code string) *contract.Contract {
		for _, c := range cands {
			if strings.EqualFold(c.Code, code) {
				return c
			}
		}
		return nil
	}
	if code, _, ok := contract.ParseTag(decodeHeader(m.header.Get("Subject")), func(code string) bool { return pick(code) != nil }); ok {
		return pick(code), nil
	}
	if c := pick(strings.TrimSpace(m.header.Get("X-Sealgate-Contract"))); c != nil {
		return c, nil
	}
	if len(cands) == 1 {
		return cands[0], nil
	}
	g.Log.Info("inbound message matches several contracts; recorded without one", "message", m.id, "from", m.env.from)
	return nil, nil
}

func (g *Gateway) commitInbound(ctx context.Context, m *received, files []receivedFile, parseErr error) error {
	c, err := g.inboundContract(ctx, m)
	if err != nil {
		return temporary(err)
	}
	var contractID int64
	code := ""
	if c != nil {
		contractID, code = c.ID, c.Code
	}
	subject := decodeHeader(m.header.Get("Subject"))
	headerFrom := decodeHeader(m.header.Get("From"))
	err = g.DB.Write(ctx, func(tx *database.Tx) error {
		if err := masterkey.Fence(ctx, tx, m.epoch); err != nil {
			return err
		}
		if err := transfer.InsertMessage(ctx, tx, transfer.Message{ID: m.id, ReceivedAt: m.receivedAt, Client: m.env.client, HELO: m.env.helo,
			MailFrom: m.env.from, HeaderFrom: headerFrom, Subject: subject, MessageID: m.header.Get("Message-Id"), Size: m.size,
			ContractID: contractID}); err != nil {
			return err
		}
		details := map[string]string{
			"direction": "inbound", "from": m.env.from, "header_from": headerFrom, "subject": subject,
			"message_id": m.header.Get("Message-Id"), "to": strings.Join(m.internal, ", "),
			"attachments": fmt.Sprint(len(files)),
		}
		if parseErr != nil {
			details["parse"] = "unparsed: " + oneLine(parseErr.Error())
		}
		if _, err := g.Ledger.Append(ctx, tx, audit.Event{Time: m.receivedAt, Type: audit.TypeMessageReceived, Actor: "smtp:" + m.env.client,
			Contract: code, Message: m.id, Size: m.size, RemoteIP: hostOf(m.env.client), Details: details}); err != nil {
			return err
		}
		for _, f := range files {
			if _, err := g.Ledger.Append(ctx, tx, audit.Event{Time: m.receivedAt, Type: audit.TypeFileReceived, Actor: "smtp:" + m.env.client,
				Contract: code, Message: m.id, File: f.name, SHA256: f.sha256, Size: f.size,
				Details: map[string]string{"content_type": f.contentType, "from": m.env.from}}); err != nil {
				return err
			}
		}
		return outbox.InsertPlain(ctx, tx, outbox.Plain{MessageID: m.id, From: m.env.from, To: m.internal, Spool: m.original.name, At: m.receivedAt})
	})
	if err != nil {
		return temporary(err)
	}
	return nil
}
