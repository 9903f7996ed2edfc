package portal

import (
	"errors"
	"net/http"
	"strings"

	"github.com/sealgate/sealgate/pubkey"
)

// Recipients register their own age or SSH public key here (package
// pubkey): the form asks for the address and the key, a confirmation link
// is mailed to the address, and its page (GET, which changes nothing)
// shows the key's fingerprint with a button whose POST makes it active.

type keysPage struct {
	Address   string
	PublicKey string
	Key       *pubkey.Key
	Token     string
	Sent      bool // the confirmation mail was queued
	Confirmed bool
	Invalid   string // the field in error: address | key
}

// keysPage is GET /keys.
func (s *Server) keysPage(w http.ResponseWriter, r *http.Request) {
	s.renderAuth(w, r, http.StatusOK, "keys.html", authData{Data: keysPage{}})
}

// keysRequest is POST /keys.
func (s *Server) keysRequest(w http.ResponseWriter, r *http.Request) {
	p := keysPage{Address: strings.TrimSpace(r.PostFormValue("address")), PublicKey: strings.TrimSpace(r.PostFormValue("public_key"))}
	ip := s.clientIP(r)
	if key, code := s.allowed(r.Context(), w, s.ipCount(r), count{s.limits.login, "keys:" + ip}); key != "" {
		s.renderAuth(w, r, code, "keys.html", authData{Error: key, Data: p})
		return
	}
	if _, err := pubkey.NormalizeAddress(p.Address); err != nil {
		p.Invalid = "address"
		s.renderAuth(w, r, http.StatusBadRequest, "keys.html", authData{Error: "keys.badaddress", Data: p})
		return
	}
	k, err := s.PubKeys.Request(r.Context(), pubkey.Request{Address: p.Address, PublicKey: p.PublicKey, RemoteIP: ip, UserAgent: userAgent(r)})
	switch {
	case errors.Is(err, pubkey.ErrTooMany):
		s.renderAuth(w, r, http.StatusTooManyRequests, "keys.html", authData{Error: "keys.toomany", Data: p})
		return
	case errors.Is(err, pubkey.ErrInvalid):
		key := "keys.badkey"
		p.Invalid = "key"
		if strings.Contains(err.Error(), "internal") {
			key, p.Invalid = "keys.internal", "address"
		}
		s.renderAuth(w, r, http.StatusBadRequest, "keys.html", authData{Error: key, Data: p})
		return
	case err != nil:
		s.failed(w, r, err)
		return
	}
	s.renderAuth(w, r, http.StatusOK, "keys.html", authData{Data: keysPage{Sent: true, Key: k, Address: k.Address}})
}

// keysVerifyPage is GET /keys/verify/{token}: what the link would register.
func (s *Server) keysVerifyPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	token := r.PathValue("token")
	k, err := s.PubKeys.Pending(r.Context(), token)
	if s.keyLinkFailed(w, r, k, err) {
		return
	}
	s.renderAuth(w, r, http.StatusOK, "keyverify.html", authData{Data: keysPage{Key: k, Token: token}})
}

// keysVerify is POST /keys/verify/{token}: activates the key.
func (s *Server) keysVerify(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if key, code := s.allowed(r.Context(), w, s.ipCount(r)); key != "" {
		s.message(w, r, code, key, nil)
		return
	}
	k, err := s.PubKeys.Confirm(r.Context(), r.PathValue("token"), s.clientIP(r), userAgent(r))
	if s.keyLinkFailed(w, r, k, err) {
		return
	}
	s.renderAuth(w, r, http.StatusOK, "keyverify.html", authData{Data: keysPage{Key: k, Confirmed: true}})
}

// keyLinkFailed answers the request itself when a verification link could
// not be used (unknown, expired, used: the page says which; anything else:
// 500) and reports whether it did.
func (s *Server) keyLinkFailed(w http.ResponseWriter, r *http.Request, k *pubkey.Key, err error) bool {
	if key, code := keyLinkError(err); key != "" {
		s.renderAuth(w, r, code, "keyverify.html", authData{Error: key, Data: keysPage{Key: k}})
		return true
	}
	if err != nil {
		s.failed(w, r, err)
		return true
	}
	return false
}

func keyLinkError(err error) (string, int) {
	switch {
	case errors.Is(err, pubkey.ErrNotFound):
		return "msg.notfound", http.StatusNotFound
	case errors.Is(err, pubkey.ErrExpired):
		return "keys.linkexpired", http.StatusGone
	case errors.Is(err, pubkey.ErrUsed):
		return "keys.linkused", http.StatusGone
	}
	return "", 0
}
