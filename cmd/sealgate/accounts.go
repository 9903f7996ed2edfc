package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/store"
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

// alertLocked mails the administrators when an account gets locked after
// repeated failed logins (the ledger already has the events).
func alertLocked(ctx context.Context, log *slog.Logger, db *store.DB, accts *account.Service, gw *gateway.Gateway, a *account.Account, ip string) {
	log.Warn("account locked after repeated failed logins", "account", a.Name, "ip", ip, "until", a.LockedUntil)
	list, err := accts.List(ctx)
	if err != nil {
		log.Error("failed to list administrators for an alert", "error", err)
		return
	}
	var to []string
	for _, x := range list {
		if x.Status == "active" && x.Has(account.RoleAdmin, "") {
			to = append(to, x.Email)
		}
	}
	if len(to) == 0 {
		log.Warn("no active administrator to alert")
		return
	}
	text := fmt.Sprintf("アカウント %s (%s) はログインの失敗が続いたため %s までロックされました。最後の試行元: %s\n"+
		"心当たりがない場合は不正ログインの試みの可能性があります。監査ログ(login.failed)を確認してください。\n\n"+
		"The account %s (%s) was locked until %s after repeated failed sign-ins. Last attempt from: %s\n"+
		"If this was not expected, it may be an attempt at illicit access: review the ledger (login.failed).\n",
		a.Name, a.Email, a.LockedUntil.UTC().Format(time.RFC3339), ip, a.Name, a.Email, a.LockedUntil.UTC().Format(time.RFC3339), ip)
	err = db.Write(ctx, func(tx *store.Tx) error {
		return gw.QueueNotice(ctx, tx, gateway.Notice{To: to, Subject: "【警告 / Alert】アカウントがロックされました / account locked: " + a.Name, Text: text})
	})
	if err != nil {
		log.Error("failed to queue the lock alert", "error", err)
	}
}
