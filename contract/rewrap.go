package contract

import (
	"context"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/masterkey"
)

// KEKs holds the contract keys (masterkey.Holder): the KEK of every
// contract not yet destroyed, wrapped to the master key.
type KEKs struct{ DB *database.DB }

// Name implements masterkey.Holder.
func (KEKs) Name() string { return "contract keys" }

// Rewrap implements masterkey.Holder.
func (k KEKs) Rewrap(ctx context.Context, from *crypto.Keyring, to *crypto.Epoch) (held, moved int, err error) {
	return masterkey.RewrapColumn(ctx, k.DB, masterkey.Column{Table: "contracts", Key: "id", Name: "kek_wrapped"}, from, to)
}
