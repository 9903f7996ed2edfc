package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/gateway"
)

// accounts returns the account service over the configured database.
func (e *env) accounts(ctx context.Context) (*account.Service, error) {
	db, err := e.OpenDB(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := e.Keys()
	if err != nil {
		return nil, err
	}
	led, err := e.Ledger(ctx)
	if err != nil {
		return nil, err
	}
	c, err := e.Config()
	if err != nil {
		return nil, err
	}
	return &account.Service{DB: db, Keys: keys, Ledger: led, Now: e.Now, Rand: e.Rand, AppPasswordsOnly: c.SMTP.SubmissionAppPasswordsOnly}, nil
}

// smtpAuth adapts the account service to the gateway's Authenticator.
type smtpAuth struct {
	svc *account.Service
}

func (a smtpAuth) AuthenticateSMTP(ctx context.Context, username, password, ip string) (gateway.SMTPUser, error) {
	l, err := a.svc.AuthenticateSMTP(ctx, account.Login{Name: username, Password: password, RemoteIP: ip})
	if err != nil {
		return gateway.SMTPUser{}, smtpAuthError(err)
	}
	return gateway.SMTPUser{Name: l.Account.Name, Email: strings.ToLower(l.Account.Email), Valid: func(ctx context.Context) error {
		return smtpAuthError(a.svc.StillValid(ctx, l))
	}}, nil
}

// smtpAuthError marks the account's refusals as such for the gateway
// (which gives them all the same reply); other errors are failures.
func smtpAuthError(err error) error {
	for _, refusal := range []error{account.ErrBadCredentials, account.ErrDisabled, account.ErrLocked, account.ErrAppPasswordRequired,
		account.ErrNoSendingRole, account.ErrLoginRevoked} {
		if errors.Is(err, refusal) {
			return fmt.Errorf("%w: %w", gateway.ErrAuthDisabled, err)
		}
	}
	return err
}
