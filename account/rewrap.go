package account

import (
	"context"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/masterkey"
)

// Name implements masterkey.Holder: the service holds the TOTP secrets,
// wrapped to the master key.
func (s *Service) Name() string { return "TOTP secrets" }

// Rewrap implements masterkey.Holder.
func (s *Service) Rewrap(ctx context.Context, from *crypto.Keyring, to *crypto.Epoch) (held, moved int, err error) {
	return masterkey.RewrapColumn(ctx, s.DB, masterkey.Column{Table: "accounts", Key: "id", Name: "totp_wrapped"}, from, to)
}
