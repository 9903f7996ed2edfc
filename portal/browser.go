package portal

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/transfer"
)

// Decryption in the recipient's browser.
//
// The link page of a passphrase recipient offers two ways, labelled as
// such: "your browser decrypts" and "the server decrypts" (POST
// …/download, the path that works without JavaScript). The first is the
// page's one script, static/decrypt.js (built from portal/webcrypto by
// its build.sh with the age JavaScript implementation; the page's CSP
// allows it by its SHA-256 and allows no other script), which:
//
//  1. POST /t/{token}/key — gets key.age: the server removes the contract
//     KEK layer and sends what is left, the transfer identity encrypted
//     with the passphrase, which only the passphrase opens (the same file
//     the age command path offers). The page opens it with the
//     passphrase; the passphrase is never sent.
//  2. POST /t/{token}/age with mode=browser — gets file.age through the
//     counted download path (serve: the download limit, the ciphertext
//     hash held back until it matches, partial downloads recorded) and
//     decrypts it as it streams in, into a file the recipient picks or,
//     where the browser cannot write files, into memory up to
//     memoryLimit and then a download.
//  3. POST /t/{token}/decrypted — reports the SHA-256 of the plaintext it
//     decrypted; the ledger records whether it is the one recorded at
//     sealing (file.decrypted)) and answers with the attempts left,
//     which the page shows.
//
// The server never sees the passphrase and never decrypts in this flow:
// the ledger shows file.downloaded with format key and then age, both
// with mode browser, never format plain.
//
// Lockout. A passphrase typed in the browser cannot be checked by the
// server, so each key request counts as one attempt against the same
// limit as wrong passphrases on the server path
// (transfer.max_passphrase_failures), right or wrong; a complete download
// of file.age in mode browser gives one such attempt back
// (transfer.SettleBrowserAttempt), so that a recipient who downloads
// spends nothing. The page keeps the opened identity for its lifetime:
// more files in the same visit need no new attempt, a passphrase typed
// again after a wrong one does. A key request that finds the limit
// reached locks the link. The count does not bound guessing — anyone
// holding the link can take key.age from the age command path and try
// passphrases offline; the passphrase's 125 bits do.

// memoryLimit is the largest file the page assembles in the browser's
// memory where it cannot write to a file the recipient picks (the File
// System Access API: Chrome and Edge have it; Firefox and Safari do not).
const memoryLimit = 512 << 20

// script is the page's decryption script as the CSP and the script
// element name it.
type script struct {
	src       string // path, with the hash so that no cache serves another
	integrity string // "sha256-<base64>", the Subresource Integrity value
	csp       string // the link page's Content-Security-Policy
}

func loadScript(static fs.FS) (script, error) {
	b, err := fs.ReadFile(static, "decrypt.js")
	if err != nil {
		return script{}, fmt.Errorf("failed to read the page script: %w", err)
	}
	sum := sha256.Sum256(b)
	hash := "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
	return script{
		src:       "/static/decrypt.js?v=" + hex.EncodeToString(sum[:8]),
		integrity: hash,
		csp: "default-src 'none'; script-src '" + hash + "'; connect-src 'self'; style-src 'self'; img-src 'self'; " +
			"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	}, nil
}

// anyLeft reports whether the recipient may still download some file.
func (l *link) anyLeft() bool {
	for _, f := range l.Files {
		if f.Status == "stored" && l.Remaining(f) != 0 {
			return true
		}
	}
	return false
}

// browserKey is POST /t/{token}/key: key.age for the recipient's page to
// open with the passphrase, counted as one passphrase attempt.
func (s *Server) browserKey(w http.ResponseWriter, r *http.Request) {
	l, _, ok := s.usableLink(w, r)
	if !ok {
		return
	}
	if l.Registered != "" {
		s.message(w, r, http.StatusBadRequest, "msg.registeredkey", l)
		return
	}
	if !l.anyLeft() {
		// Before counting: a spent link does not cost an attempt.
		s.message(w, r, http.StatusForbidden, "msg.limit", l)
		return
	}
	if key, code := s.allowed(r.Context(), w, s.ipCount(r), s.linkCount(l)); key != "" {
		s.message(w, r, code, key, l)
		return
	}
	kf, ok := s.keyFile(w, r, l)
	if !ok {
		return
	}
	max := s.Config.Transfer.MaxPassphraseFailure
	var n int
	counted := false
	// Counted even if the client goes away before the answer.
	ctx := context.WithoutCancel(r.Context())
	err := s.DB.Write(ctx, func(tx *database.Tx) error {
		var err error
		if n, counted, err = transfer.BrowserAttempt(ctx, tx, l.RecipientID, max); err != nil {
			return err
		}
		if !counted {
			if err := transfer.LockLink(ctx, tx, l.RecipientID, s.Now()); err != nil {
				return err
			}
			return s.appendEvent(r, tx, audit.Event{Type: audit.TypeLinkLocked, Actor: "system",
				Reason: "too many passphrase attempts", Details: map[string]string{"mode": "browser"}}, l)
		}
		return s.appendEvent(r, tx, audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:" + l.Address, Result: "ok",
			Details: map[string]string{"format": metrics.FormatKey, "mode": "browser", "attempt": fmt.Sprintf("%d/%d", n, max)}}, l)
	})
	if err != nil {
		s.unavailable(w, r, l, err)
		return
	}
	if !counted {
		s.message(w, r, http.StatusForbidden, "msg.locked", l)
		return
	}
	s.Log.Info("key.age sent for decryption in the browser", "transfer", l.TransferID, "attempt", n, "max", max)
	s.Metrics.Download(metrics.FormatKey, metrics.DownloadOK)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(kf)))
	w.Header().Set("X-Sealgate-Attempts-Left", strconv.Itoa(max-n))
	w.Write(kf)
}

// browserDecrypted is POST /t/{token}/decrypted: the recipient's page
// reports the SHA-256 of a file it decrypted (after downloading its
// file.age); the ledger records whether it is the one recorded at sealing.
// It is the page's word, recorded as such.
func (s *Server) browserDecrypted(w http.ResponseWriter, r *http.Request) {
	l, _, ok := s.usableLink(w, r)
	if !ok {
		return
	}
	f, ok := pickFile(l, r.PostForm.Get("file"))
	sum := strings.ToLower(r.PostForm.Get("sha256"))
	if !ok || f.Downloads == 0 || (sum != "" && !isSHA256Hex(sum)) {
		// Nothing downloaded, nothing to report.
		s.message(w, r, http.StatusBadRequest, "msg.badrequest", l)
		return
	}
	if key, code := s.allowed(r.Context(), w, s.ipCount(r), s.linkCount(l)); key != "" {
		s.message(w, r, code, key, l)
		return
	}
	ev := audit.Event{Type: audit.TypeFileDecrypted, Actor: "recipient:" + l.Address, Result: "ok",
		Details: map[string]string{"mode": "browser"}}
	if sum != f.SHA256 {
		ev.Result = "mismatch"
		ev.Reason = "the page reports a SHA-256 other than the one recorded at sealing"
		if sum != "" {
			ev.Details["reported_sha256"] = sum
		}
		s.Log.Error("the recipient's page reports a decrypted file that is not the one sealed", "transfer", l.TransferID, "file", f.Index)
	}
	s.record(r, ev, l, &f)
	// The attempts left now that the download gave the page's back.
	w.Header().Set("X-Sealgate-Attempts-Left", strconv.Itoa(s.Config.Transfer.MaxPassphraseFailure-l.Failed))
	w.WriteHeader(http.StatusNoContent)
}

func isSHA256Hex(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}
