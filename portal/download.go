package portal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/chunkpipe"
	"github.com/sealgate/sealgate/internal/linktoken"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/pubkey"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/transfer"
)

// link is what a token opens: one recipient of one transfer.
type link struct {
	RecipientID  int64
	Address      string
	KeyWrapped   []byte
	Failed       int
	Locked       bool
	Downloads    int
	RStatus      string
	TransferID   string
	TStatus      string
	Expires      time.Time
	Sender       string
	Subject      string
	ContractID   int64
	ContractCode string
	MessageID    string
	Files        []file
	// Manager is the contract's information manager, whom a recipient
	// may ask (with the sender) when the link no longer works.
	Manager string
	// DownloadLimit is how often the recipient may download each file
	// (0: unlimited).
	DownloadLimit int
	// Registered is the fingerprint of the public key the recipient
	// registered, when their key.age is encrypted to it: there is then no
	// passphrase, and the portal serves key.age and file.age for the
	// recipient to decrypt with their private key (the server cannot).
	Registered string
}

// Remaining is how many more downloads of f the recipient has, or -1 if
// unlimited.
func (l *link) Remaining(f file) int {
	if l.DownloadLimit <= 0 {
		return -1
	}
	return max(0, l.DownloadLimit-f.Downloads)
}

type file struct {
	Index        int
	Name         string
	ContentType  string
	Size         int64
	SHA256       string
	ObjectKey    string
	CipherSize   int64
	CipherSHA256 string
	Status       string
	ID           int64
	Downloads    int // by this link's recipient
}

var errNoLink = errors.New("portal: no such link")

func (s *Server) lookup(ctx context.Context, token string) (*link, error) {
	if !linktoken.Valid(token) {
		return nil, errNoLink
	}
	db := s.DB.Read()
	tl, err := transfer.LinkByToken(ctx, db, linktoken.Hash(token))
	if errors.Is(err, transfer.ErrNotFound) {
		return nil, errNoLink
	}
	if err != nil {
		return nil, err
	}
	c, err := contract.ByID(ctx, db, tl.ContractID)
	if err != nil {
		return nil, fmt.Errorf("failed to look up link: %w", err)
	}
	l := &link{RecipientID: tl.RecipientID, Address: tl.Address, KeyWrapped: tl.KeyWrapped, Failed: tl.Failed, Locked: tl.Locked,
		Downloads: tl.Downloads, RStatus: tl.RecipientStatus, TransferID: tl.TransferID, TStatus: tl.TransferStatus, Expires: tl.ExpiresAt,
		Sender: tl.Sender, Subject: tl.Subject, ContractID: c.ID, ContractCode: c.Code, MessageID: tl.MessageID, Manager: c.Manager,
		DownloadLimit: c.DownloadLimitOr(contract.DefaultsFrom(s.Config))}
	if tl.PublicKeyID != 0 {
		switch k, err := pubkey.ByID(ctx, db, tl.PublicKeyID); {
		case err == nil:
			l.Registered = k.Fingerprint
		case !errors.Is(err, pubkey.ErrNotFound):
			return nil, fmt.Errorf("failed to look up link: %w", err)
		}
	}
	for _, f := range tl.Files {
		l.Files = append(l.Files, file{Index: f.Index, Name: f.Name, ContentType: f.ContentType, Size: f.Size, SHA256: f.SHA256,
			ObjectKey: f.Object, CipherSize: f.CipherSize, CipherSHA256: f.CipherSHA256, Status: f.Status, ID: f.ID, Downloads: f.Downloads})
	}
	return l, nil
}

// state returns the message key that explains why the link cannot be used,
// or "" when it can.
func (s *Server) state(l *link) (string, int) {
	switch {
	case l.TStatus == "destroyed" || l.RStatus == "destroyed":
		return "msg.destroyed", http.StatusGone
	case l.TStatus == "revoked" || l.RStatus == "revoked":
		return "msg.revoked", http.StatusGone
	case l.TStatus == "expired" || l.RStatus == "expired" || !s.Now().Before(l.Expires):
		return "msg.expired", http.StatusGone
	case l.Locked:
		return "msg.locked", http.StatusForbidden
	}
	return "", 0
}

type pageData struct {
	L        lang
	Link     *link
	Token    string
	Attempts int
	Message  string
	Error    string
	Path     string
	CSRF     string
	Contact  bool // show whom to ask (sender, information manager)
	// The link page of a passphrase recipient: the decryption script
	// (browser.go) and the largest file it assembles in memory.
	ScriptSrc, ScriptIntegrity string
	MemoryLimit                int64
}

// recordsPerMinute bounds, per link and minute, the requests that cost
// nothing yet are each a ledger entry and a write on the database's
// single writer, which mail's commit waits for too: views of the page,
// key.age fetches for the age command, downloads refused at the limit.
// Whoever holds a link must not be able to flood them; people and mail
// scanners make a few. Past it: 429, nothing recorded.
const recordsPerMinute = 30

// linkPage is GET /t/{token}. It changes no state: it only records, in the
// ledger, that the page was viewed (with address and user agent, so that a
// scanner's visit can be told from a person's). Past recordsPerMinute
// (shared with key.age fetches and refusals at the limit) it answers 429
// and records nothing.
func (s *Server) linkPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	token := r.PathValue("token")
	l, err := s.lookup(r.Context(), token)
	if err != nil {
		s.lookupFailed(w, r, err)
		return
	}
	if !s.recordAllowed(w, r, l) {
		return
	}
	s.record(r, audit.Event{Type: audit.TypePageViewed, Actor: "recipient:" + l.Address}, l, nil)
	if key, code := s.state(l); key != "" {
		s.message(w, r, code, key, l)
		return
	}
	s.render(w, r, http.StatusOK, "link.html", pageData{Link: l, Token: token, Attempts: s.Config.Transfer.MaxPassphraseFailure - l.Failed})
}

func (s *Server) lookupFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errNoLink) {
		s.message(w, r, http.StatusNotFound, "msg.notfound", nil)
		return
	}
	s.Log.Error("link lookup failed", "error", err)
	s.message(w, r, http.StatusServiceUnavailable, "msg.unavailable", nil)
}

// usableLink reads the form and the link of a POST to /t/{token}/…, and
// answers (false) when there is none or it can no longer be used. Pages
// that carry a token are never cached.
func (s *Server) usableLink(w http.ResponseWriter, r *http.Request) (*link, string, bool) {
	w.Header().Set("Cache-Control", "no-store")
	token := r.PathValue("token")
	if err := r.ParseForm(); err != nil {
		s.message(w, r, http.StatusBadRequest, "msg.badrequest", nil)
		return nil, "", false
	}
	l, err := s.lookup(r.Context(), token)
	if err != nil {
		s.lookupFailed(w, r, err)
		return nil, "", false
	}
	if key, code := s.state(l); key != "" {
		s.message(w, r, code, key, l)
		return nil, "", false
	}
	return l, token, true
}

// download is POST /t/{token}/download: passphrase + file index → the
// decrypted file.
func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	l, token, ok := s.usableLink(w, r)
	if !ok {
		return
	}
	if l.Registered != "" {
		// No passphrase exists: key.age is encrypted to the recipient's
		// own key, which the server never holds.
		s.message(w, r, http.StatusBadRequest, "msg.registeredkey", l)
		return
	}
	f, ok := pickFile(l, r.PostForm.Get("file"))
	if !ok {
		s.message(w, r, http.StatusBadRequest, "msg.badrequest", l)
		return
	}
	if l.Remaining(f) == 0 {
		// Before the passphrase: a spent link does not cost an attempt.
		s.limitReached(w, r, l, f, metrics.FormatPlain)
		return
	}
	if key, code := s.allowed(r.Context(), w, s.ipCount(r), s.linkCount(l)); key != "" {
		s.message(w, r, code, key, l)
		return
	}
	id, err := s.unlock(r.Context(), l, r.PostForm.Get("passphrase"))
	if errors.Is(err, crypto.ErrWrongPassphrase) {
		s.wrongPassphrase(w, r, l, token)
		return
	}
	if err != nil {
		s.unavailable(w, r, l, err)
		return
	}
	s.serve(w, r, l, f, func(dst io.Writer, src io.Reader) error {
		_, err := crypto.DecryptFile(dst, src, id)
		return err
	}, f.Name, f.Size, metrics.FormatPlain, "")
}

// downloadAge is POST /t/{token}/age: the encrypted file.age of one file,
// or (what=key) the recipient's key.age, for the stock age CLI. Neither
// needs the passphrase: key.age is encrypted with it. mode=browser marks
// file.age fetched by the recipient's page to decrypt in the browser
// (browser.go).
func (s *Server) downloadAge(w http.ResponseWriter, r *http.Request) {
	l, _, ok := s.usableLink(w, r)
	if !ok {
		return
	}
	if r.PostForm.Get("what") == "key" {
		// key.age: the transfer identity under the recipient's passphrase,
		// or encrypted to the public key they registered.
		if !s.recordAllowed(w, r, l) {
			return
		}
		kf, ok := s.keyFile(w, r, l)
		if !ok {
			return
		}
		s.record(r, audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:" + l.Address, Result: "ok",
			Details: map[string]string{"format": "key"}}, l, nil)
		s.Metrics.Download(metrics.FormatKey, metrics.DownloadOK)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "key.age"}))
		w.Header().Set("Content-Length", strconv.Itoa(len(kf)))
		w.Write(kf)
		return
	}
	f, ok := pickFile(l, r.PostForm.Get("file"))
	if !ok {
		s.message(w, r, http.StatusBadRequest, "msg.badrequest", l)
		return
	}
	mode := ""
	if r.PostForm.Get("mode") == "browser" {
		mode = "browser"
	}
	s.serve(w, r, l, f, func(dst io.Writer, src io.Reader) error {
		_, err := io.Copy(dst, src)
		return err
	}, f.Name+".age", f.CipherSize, metrics.FormatAge, mode)
}

// keyFile returns the recipient's key.age with the contract key's layer
// removed: what the passphrase (or the registered key) alone opens. On
// failure it has answered the request.
func (s *Server) keyFile(w http.ResponseWriter, r *http.Request, l *link) ([]byte, bool) {
	kek, err := contract.OpenKEK(r.Context(), s.DB.Read(), s.Keys, l.ContractID)
	if err != nil {
		s.unavailable(w, r, l, err)
		return nil, false
	}
	kf, err := kek.UnwrapKeyFile(l.KeyWrapped)
	if err != nil {
		s.unavailable(w, r, l, err)
		return nil, false
	}
	return kf, true
}

func pickFile(l *link, v string) (file, bool) {
	i, err := strconv.Atoi(v)
	if err != nil {
		return file{}, false
	}
	for _, f := range l.Files {
		if f.Index == i && f.Status == "stored" {
			return f, true
		}
	}
	return file{}, false
}

// unlock opens the recipient's transfer identity: contract KEK → key.age →
// passphrase.
func (s *Server) unlock(ctx context.Context, l *link, typed string) (*crypto.Identity, error) {
	pass, ok := crypto.NormalizePassphrase(typed)
	if !ok {
		return nil, crypto.ErrWrongPassphrase
	}
	kek, err := contract.OpenKEK(ctx, s.DB.Read(), s.Keys, l.ContractID)
	if err != nil {
		return nil, err
	}
	kf, err := kek.UnwrapKeyFile(l.KeyWrapped)
	if err != nil {
		return nil, err
	}
	return crypto.OpenKeyFile(kf, pass)
}

// wrongPassphrase counts the failure and locks the link at the limit.
func (s *Server) wrongPassphrase(w http.ResponseWriter, r *http.Request, l *link, token string) {
	max := s.Config.Transfer.MaxPassphraseFailure
	var failed int
	var locked bool
	// Counted even if the client goes away before the answer.
	ctx := context.WithoutCancel(r.Context())
	err := s.DB.Write(ctx, func(tx *database.Tx) error {
		locked = false // the function may run more than once (database.DB.Write)
		var err error
		if failed, err = transfer.FailPassphrase(ctx, tx, l.RecipientID); err != nil {
			return err
		}
		if err := s.appendEvent(r, tx, audit.Event{Type: audit.TypePassphraseFailed, Actor: "recipient:" + l.Address,
			Result: fmt.Sprintf("%d/%d", failed, max)}, l); err != nil {
			return err
		}
		if failed >= max {
			locked = true
			if err := transfer.LockLink(ctx, tx, l.RecipientID, s.Now()); err != nil {
				return err
			}
			return s.appendEvent(r, tx, audit.Event{Type: audit.TypeLinkLocked, Actor: "system", Reason: "too many wrong passphrases"}, l)
		}
		return nil
	})
	if err != nil {
		s.unavailable(w, r, l, err)
		return
	}
	s.Metrics.PassphraseFailed(locked)
	if locked {
		s.message(w, r, http.StatusForbidden, "msg.locked", l)
		return
	}
	s.render(w, r, http.StatusUnauthorized, "link.html", pageData{Link: l, Token: token, Attempts: max - failed, Error: "msg.wrongpass"})
}

func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, l *link, err error) {
	if errors.Is(err, crypto.ErrKeyDestroyed) {
		s.message(w, r, http.StatusGone, "msg.destroyed", l)
		return
	}
	s.Log.Error("download failed", "transfer", l.TransferID, "error", err)
	s.message(w, r, http.StatusServiceUnavailable, "msg.unavailable", l)
}

// serve streams one stored object through transform to the client. The
// ciphertext is hashed on the way; the last holdBack bytes of the response
// are released only once the hash matches the one recorded at sealing, so a
// swapped or corrupted object is never served whole.
//
// A response that stops before its end (the client went away, storage
// failed, the hash did not match) still counts as a download — a partial
// one, with the bytes sent — when anything the recipient can use went out:
// any plaintext byte (format plain) or at least one complete age payload
// chunk after the header (format age, see crypto.DecryptablePrefix).
// "Sent" is what the connection accepted; the recipient may have received
// less, never more. mode is "browser" for file.age fetched by the
// recipient's page to decrypt in the browser, else "".
func (s *Server) serve(w http.ResponseWriter, r *http.Request, l *link, f file, transform func(io.Writer, io.Reader) error, name string, size int64, format, mode string) {
	// The download is counted before it is served, so that concurrent
	// requests cannot pass the limit; it is given back only if nothing
	// usable was delivered.
	if ok, err := s.reserve(r.Context(), l, f); err != nil {
		s.unavailable(w, r, l, err)
		return
	} else if !ok {
		s.limitReached(w, r, l, f, format)
		return
	}
	spent := false
	defer func() {
		if !spent {
			s.release(l, f)
		}
	}()
	rc, info, err := s.Store.Get(r.Context(), f.ObjectKey)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			err = fmt.Errorf("sealed object %s missing: %w", f.ObjectKey, err)
		}
		s.unavailable(w, r, l, err)
		return
	}
	defer rc.Close()
	if info.Size != f.CipherSize && info.Size > 0 {
		s.integrityFailure(w, r, l, f, format, fmt.Errorf("stored size %d, recorded %d", info.Size, f.CipherSize), false)
		return
	}
	h := sha256.New()
	src, stop := hashAhead(rc, h)
	defer stop()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	stall := s.StallTimeout
	if stall <= 0 {
		stall = DefaultStallTimeout
	}
	ctl := http.NewResponseController(w)
	defer ctl.SetWriteDeadline(time.Time{}) // the connection may serve more requests
	out := &countingWriter{w: stallGuard{w: w, rc: ctl, d: stall}}
	hb := &holdBack{w: out, keep: 64 << 10}
	err = writeBehind(hb, func(dst io.Writer) error { return transform(dst, src) })
	if err == nil {
		// Read to the end so the hash covers the whole object.
		_, err = io.Copy(io.Discard, src)
	}
	stop() // h is complete once src reached its end
	if err == nil && hex.EncodeToString(h.Sum(nil)) != f.CipherSHA256 {
		err = errIntegrity
	}
	if err == nil {
		err = hb.flush()
	}
	if err == nil {
		spent = true
		s.recordDownload(r, l, f, format, mode, nil)
		s.Metrics.Download(format, metrics.DownloadOK)
		return
	}
	// The response stopped before its end: the client went away (a write
	// failed, or a read from storage saw the request's context cancelled),
	// or storage or the hash failed.
	clientGone := out.err != nil || r.Context().Err() != nil
	usable := out.n
	if format == "age" {
		usable = crypto.DecryptablePrefix(f.Size, f.CipherSize, out.n)
	}
	if usable > 0 {
		spent = true // something usable went out: the download counts
		reason := "the connection ended before the end of the file"
		if !clientGone {
			s.Log.Error("stopped serving a file part-way", "transfer", l.TransferID, "object", f.ObjectKey, "error", err)
			reason = err.Error()
		}
		s.recordDownload(r, l, f, format, mode, &partialDownload{format: format, sent: out.n, plaintext: usable, reason: reason})
		s.Metrics.Download(format, metrics.DownloadPartial)
		if !clientGone {
			// Cut the connection so the client sees an incomplete
			// download instead of a short file.
			panic(http.ErrAbortHandler)
		}
		return
	}
	if clientGone {
		details := map[string]string{"format": format, "bytes": strconv.FormatInt(out.n, 10)}
		if mode != "" {
			details["mode"] = mode
		}
		s.record(r, audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:" + l.Address, Result: "aborted",
			Reason: "the connection ended before any usable part of the file was sent", Details: details}, l, &f)
		s.Metrics.Download(format, metrics.DownloadAborted)
		return
	}
	s.integrityFailure(w, r, l, f, format, err, hb.started)
}

var errIntegrity = errors.New("ciphertext does not match the SHA-256 recorded at sealing")

func (s *Server) integrityFailure(w http.ResponseWriter, r *http.Request, l *link, f file, format string, err error, started bool) {
	s.Log.Error("refusing to serve a file", "transfer", l.TransferID, "object", f.ObjectKey, "error", err)
	s.record(r, audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:" + l.Address, Result: "refused",
		Reason: err.Error()}, l, &f)
	s.Metrics.Download(format, metrics.DownloadRefused)
	if started {
		// Headers are out: cut the connection so the client sees an
		// incomplete download instead of a short file.
		panic(http.ErrAbortHandler)
	}
	if errors.Is(err, errIntegrity) || !started {
		w.Header().Del("Content-Disposition")
		w.Header().Del("Content-Length")
		s.message(w, r, http.StatusInternalServerError, "msg.integrity", l)
	}
}

// partialDownload is what a download that stopped part-way delivered.
type partialDownload struct {
	format    string // plain | age
	sent      int64  // bytes of the response body the connection accepted
	plaintext int64  // bytes of plaintext the recipient can have from them
	reason    string // why it stopped
}

// recordDownload records a download of f (complete when p is nil, else
// partial) and spends it: the recipient's count, the first-download
// receipt, the file's first and last download times and the ledger event,
// in one transaction that a client closing the connection does not cancel.
//
// A partial download is a file.downloaded event with result "partial",
// its reason, and details "bytes" (sent) and "plaintext_bytes" (what the
// recipient can decrypt from them; for format plain the same number).
//
// A complete download in mode browser gives back one passphrase attempt
// the recipient's page made (details "attempt": "given back"; see
// browser.go).
func (s *Server) recordDownload(r *http.Request, l *link, f file, format, mode string, p *partialDownload) {
	ctx := context.WithoutCancel(r.Context())
	err := s.DB.Write(ctx, func(tx *database.Tx) error {
		downloads, err := transfer.CountDownload(ctx, tx, l.RecipientID, f.ID, s.Now())
		if err != nil {
			return err
		}
		if downloads == 1 {
			if err := s.downloadReceipt(ctx, r, tx, l, f, p); err != nil {
				return err
			}
		}
		ev := audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:" + l.Address, Result: "ok",
			File: f.Name, SHA256: f.SHA256, Size: f.Size, Details: map[string]string{"format": format}}
		if mode != "" {
			ev.Details["mode"] = mode
		}
		if mode == "browser" && p == nil {
			settled, err := transfer.SettleBrowserAttempt(ctx, tx, l.RecipientID)
			if err != nil {
				return err
			}
			if settled {
				ev.Details["attempt"] = "given back"
			}
		}
		if p != nil {
			ev.Result, ev.Reason = audit.ResultPartial, p.reason
			ev.Details["bytes"] = strconv.FormatInt(p.sent, 10)
			ev.Details["plaintext_bytes"] = strconv.FormatInt(p.plaintext, 10)
		}
		return s.appendEvent(r, tx, ev, l)
	})
	if err != nil {
		s.Log.Error("failed to record a download", "transfer", l.TransferID, "error", err)
	}
	switch {
	case format == metrics.FormatPlain:
		s.Log.Info("file decrypted on the server and sent", "transfer", l.TransferID, "file", f.Index, "complete", p == nil)
	case mode == "browser":
		s.Log.Info("file.age sent for decryption in the browser", "transfer", l.TransferID, "file", f.Index, "complete", p == nil)
	}
}

// record appends one ledger event in its own transaction.
func (s *Server) record(r *http.Request, ev audit.Event, l *link, f *file) {
	if f != nil {
		ev.File, ev.SHA256, ev.Size, ev.Object = f.Name, f.SHA256, f.Size, f.ObjectKey
	}
	err := s.DB.Write(context.WithoutCancel(r.Context()), func(tx *database.Tx) error { return s.appendEvent(r, tx, ev, l) })
	if err != nil {
		s.Log.Error("failed to record a portal event", "type", ev.Type, "error", err)
	}
}

func (s *Server) appendEvent(r *http.Request, tx *database.Tx, ev audit.Event, l *link) error {
	ev.RemoteIP = s.clientIP(r)
	ev.UserAgent = userAgent(r)
	if l != nil {
		ev.Contract, ev.Transfer, ev.Recipient, ev.Message = l.ContractCode, l.TransferID, l.Address, l.MessageID
	}
	// A client that goes away does not cancel what the transaction
	// records.
	_, err := s.Ledger.Append(context.WithoutCancel(r.Context()), tx, ev)
	return err
}

// countingWriter counts the bytes w accepted and keeps its first error.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// stallGuard gives each write to the connection d to complete (see
// DefaultStallTimeout). A deadline is set on the socket, so it is taken
// from the system clock, not the portal's (Deps.Now). Where the response
// writer cannot set one (http.ErrNotSupported), writes are not limited.
type stallGuard struct {
	w  io.Writer
	rc *http.ResponseController
	d  time.Duration
}

func (g stallGuard) Write(p []byte) (int, error) {
	g.rc.SetWriteDeadline(time.Now().Add(g.d))
	return g.w.Write(p)
}

// hashAhead reads r on its own goroutine, hashing what it reads into h,
// and hands it on through a chunk pipe, so that the hash of the ciphertext
// (SHA-256: as costly as the decryption) runs beside the decryption instead
// of before each of its reads. stop ends the goroutine and waits for it; it
// may be called more than once. h covers everything read once the returned
// reader has reported io.EOF and stop has returned.
func hashAhead(r io.ReadCloser, h hash.Hash) (src io.Reader, stop func()) {
	pw, pr := chunkpipe.New(hashAheadDepth, hashAheadChunk)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := pw.ReadFrom(io.TeeReader(r, h))
		pw.CloseWithError(err)
	}()
	var once sync.Once
	return pr, func() {
		once.Do(func() {
			pr.CloseWithError(errStopped)
			r.Close() // unblocks a read from storage in progress
			<-done
		})
	}
}

// writeBehind runs produce with a writer whose bytes reach hb on a goroutine
// of their own, so that producing the next bytes (decrypting them) overlaps
// writing the previous ones to the connection; it returns once every byte
// produce wrote has gone to hb (also when produce failed) or hb failed (the
// client went away: produce's later writes fail with that error, which is
// returned). hb is not used after it returns — nor after a panic of produce
// has left it — and its held tail is left for the caller to flush.
func writeBehind(hb *holdBack, produce func(dst io.Writer) error) error {
	pw, pr := chunkpipe.New(writeBehindDepth, writeBehindChunk)
	done := make(chan error, 1)
	go func() {
		_, err := hb.ReadFrom(pr)
		pr.CloseWithError(err) // produce's next write fails with hb's error
		done <- err
	}()
	returned := false
	defer func() {
		if !returned {
			// produce panicked: the writer stops before the panic goes
			// on, so nothing writes to the response once the handler
			// has ended.
			pr.CloseWithError(errStopped)
			pw.CloseWithError(errStopped)
			<-done
		}
	}()
	err := produce(pw)
	returned = true
	if err == nil {
		err = pw.Close()
	} else {
		pw.Flush() // what produce wrote before it failed still goes out
		pw.CloseWithError(err)
	}
	if werr := <-done; werr != nil && (err == nil || errors.Is(err, chunkpipe.ErrClosedPipe) || errors.Is(err, werr)) {
		err = werr // the connection's error explains produce's
	}
	return err
}

// The write-behind and the read-ahead of a download: each at most
// (depth+2)·chunk bytes (768 KiB) per response, allocated as the stream
// needs them (a small file costs one 32 KiB chunk in each). A 1 GiB
// download (bench/bigmail -modes portal, two runs each, alternating, age
// -d 0.58–0.63 s) took 1.23–1.29 s with the read-ahead 2 deep and no
// write-behind, 1.27–1.29 s with the write-behind at depth 2, where the
// three goroutines (read and hash, decrypt, write) waited on one another,
// and 1.17–1.18 s with both 4 deep. In a build with GOGC=200, depth 4
// and depth 8 both took 1.02–1.10 s, so the smaller depth is kept.
const (
	writeBehindDepth = 4
	writeBehindChunk = 128 << 10
	hashAheadDepth   = 4
	hashAheadChunk   = 128 << 10
)

var errStopped = errors.New("download stopped")

// holdBack passes writes through but keeps the last keep bytes until flush.
type holdBack struct {
	w       io.Writer
	keep    int
	buf     []byte
	started bool
}

func (h *holdBack) Write(p []byte) (int, error) {
	n := len(p)
	over := len(h.buf) + len(p) - h.keep
	if over <= 0 {
		h.buf = append(h.buf, p...)
		return n, nil
	}
	// Release the oldest over bytes: what is held first, then the head of
	// p; hold the rest.
	h.started = true
	if k := min(over, len(h.buf)); k > 0 {
		if _, err := h.w.Write(h.buf[:k]); err != nil {
			return 0, err
		}
		h.buf = h.buf[:copy(h.buf, h.buf[k:])]
		over -= k
	}
	if over > 0 {
		if _, err := h.w.Write(p[:over]); err != nil {
			return 0, err
		}
		p = p[over:]
	}
	h.buf = append(h.buf, p...)
	return n, nil
}

// holdBackChunk is the size of the buffers ReadFrom rotates (at least
// keep); holdBackFirst that of its first, smaller one.
const (
	holdBackChunk = 128 << 10
	holdBackFirst = 32 << 10
)

// ReadFrom reads r to its end through three rotating buffers and writes
// each once at least keep bytes have been read after it: what io.Copy
// would do through Write, without copying every byte once more into the
// held tail.
func (h *holdBack) ReadFrom(r io.Reader) (int64, error) {
	size := max(holdBackChunk, h.keep)
	var held [][]byte // oldest first; the first may be h.buf
	heldN := len(h.buf)
	if heldN > 0 {
		held = append(held, h.buf)
		h.buf = nil
	}
	// Buffers are made as the stream needs them, the first small: a
	// response of up to 32 KiB costs one of 32 KiB, a large one at most
	// three of size besides.
	var free [][]byte
	first := true
	var total int64
	var rerr error
	for rerr == nil {
		var b []byte
		switch n := len(free); {
		case n > 0:
			b, free = free[n-1], free[:n-1]
		case first:
			b, first = make([]byte, min(size, holdBackFirst)), false
		default:
			b = make([]byte, size)
		}
		n, err := io.ReadFull(r, b)
		total += int64(n)
		if n > 0 {
			held, heldN = append(held, b[:n]), heldN+n
		} else {
			free = append(free, b)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		rerr = err
		for len(held) > 0 && heldN-len(held[0]) >= h.keep {
			h.started = true
			if _, err := h.w.Write(held[0]); err != nil {
				return total, err
			}
			heldN -= len(held[0])
			if cap(held[0]) == size {
				free = append(free, held[0][:size])
			}
			held = held[1:]
		}
	}
	// What is still held (less than keep bytes after its first segment)
	// waits for flush.
	for _, b := range held {
		h.buf = append(h.buf, b...)
	}
	if rerr == io.EOF {
		rerr = nil
	}
	return total, rerr
}

func (h *holdBack) flush() error {
	h.started = true
	_, err := h.w.Write(h.buf)
	h.buf = h.buf[:0]
	return err
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, d pageData) {
	d.L = pickLang(w, r)
	d.Path = r.URL.Path
	d.CSRF = csrfToken(r)
	if name == "link.html" && d.Link != nil && d.Link.Registered == "" {
		// The one page with a script: exactly that script, by its hash.
		w.Header().Set("Content-Security-Policy", s.script.csp)
		d.ScriptSrc, d.ScriptIntegrity, d.MemoryLimit = s.script.src, s.script.integrity, memoryLimit
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := s.tmpl.ExecuteTemplate(w, name, d); err != nil {
		s.Log.Error("failed to render page", "page", name, "error", err)
	}
}

func (s *Server) message(w http.ResponseWriter, r *http.Request, code int, key string, l *link) {
	d := pageData{Message: key, Link: l}
	switch key {
	case "msg.expired", "msg.revoked", "msg.destroyed", "msg.limit", "msg.locked":
		d.Contact = l != nil // say whom to ask: the sender and the contract's manager
	}
	s.render(w, r, code, "message.html", d)
}

// recordAllowed counts one request on l that is recorded without costing
// anything, and answers 429 (false) past recordsPerMinute, 503 (false)
// when it cannot be counted.
func (s *Server) recordAllowed(w http.ResponseWriter, r *http.Request, l *link) bool {
	key, code := s.allowed(r.Context(), w, count{s.limits.record, strconv.FormatInt(l.RecipientID, 10)})
	if key == "" {
		return true
	}
	s.message(w, r, code, key, l)
	return false
}

// reserve counts one download of f by the link's recipient if the limit
// allows it (atomically: the writer is single).
func (s *Server) reserve(ctx context.Context, l *link, f file) (bool, error) {
	ok := false
	err := s.DB.Write(context.WithoutCancel(ctx), func(tx *database.Tx) error {
		var err error
		ok, err = transfer.ReserveDownload(ctx, tx, l.RecipientID, f.ID, l.DownloadLimit)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("failed to count the download: %w", err)
	}
	return ok, nil
}

// release gives back a reserved download that delivered nothing.
func (s *Server) release(l *link, f file) {
	err := s.DB.Write(context.Background(), func(tx *database.Tx) error {
		return transfer.ReleaseDownload(context.Background(), tx, l.RecipientID, f.ID)
	})
	if err != nil {
		s.Log.Error("failed to give back a download that was not served", "transfer", l.TransferID, "error", err)
	}
}

// limitReached refuses a download of f in format beyond the limit, with a
// ledger event.
func (s *Server) limitReached(w http.ResponseWriter, r *http.Request, l *link, f file, format string) {
	if !s.recordAllowed(w, r, l) {
		return
	}
	s.record(r, audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:" + l.Address, Result: "refused",
		Reason: fmt.Sprintf("download limit reached (%d)", l.DownloadLimit)}, l, &f)
	s.Metrics.Download(format, metrics.DownloadLimit)
	s.message(w, r, http.StatusForbidden, "msg.limit", l)
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
