package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sealgate/sealgate/account"
)

const userUsage = `Usage: sealgate user <command> [arguments]

  add NAME --email ADDR [--role ROLE]... [--name "Display Name"] [--password-stdin]
  list
  disable NAME [--reason TEXT]
  enable NAME
  reset-password NAME [--password-stdin]
  set-role NAME --role ROLE [--role ROLE]...
  totp NAME                 enrol a TOTP authenticator (prints the otpauth:// URL;
                            the account's portal sessions end)
  app-password add NAME --label TEXT   create an app password for SMTP AUTH (printed once)
  app-password list NAME               the account's app passwords, with their last use
  app-password revoke NAME ID|LABEL    revoke one (its mail client is refused from then on)

ROLE: sender | manager[:CONTRACT] | admin | auditor. Managers, admins and auditors must
enrol TOTP before they can log in to the portal. Managers, admins and
auditors may use SMTP AUTH (mail clients) only with an app password, never
their sign-in password; senders may use either (smtp.submission_app_passwords_only
= true: app passwords only, for everyone). Without --password-stdin a random
password is generated and printed once. reset-password ends the account's
sessions and revokes its app passwords.
`

type roleList []string

func (r *roleList) String() string     { return strings.Join(*r, ",") }
func (r *roleList) Set(s string) error { *r = append(*r, s); return nil }

func cmdUser(ctx context.Context, e *env, args []string) error {
	sub, fs, args, ok := subcommand(e, "user", userUsage, args)
	if !ok {
		return nil
	}
	if sub == "app-password" {
		return cmdAppPassword(ctx, e, args)
	}
	email := fs.String("email", "", "the person's e-mail address (the only From they may use)")
	display := fs.String("name", "", "display name")
	stdin := fs.Bool("password-stdin", false, "read the password from standard input")
	reason := fs.String("reason", "", "why (recorded in the ledger)")
	actor := fs.String("actor", "", "who is making the change (default: cli:$USER)")
	var roles roleList
	fs.Var(&roles, "role", "role (repeatable)")
	// Flags may follow the account name.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	who := *actor
	if who == "" {
		who = "cli:" + e.Getenv("USER")
		if who == "cli:" {
			who = "cli"
		}
	}
	svc, err := e.accounts(ctx)
	if err != nil {
		return err
	}
	needName := func() error {
		if name == "" {
			return usageError{"アカウント名を指定してください / an account name is required"}
		}
		return nil
	}
	password := func() (string, bool, error) {
		if *stdin {
			line, err := bufio.NewReader(e.Stdin).ReadString('\n')
			if err != nil && err != io.EOF {
				return "", false, err
			}
			return strings.TrimRight(line, "\r\n"), false, nil
		}
		p, err := account.GeneratePassword(e.Rand)
		return p, true, err
	}
	grants := func() ([]account.Grant, error) {
		var gs []account.Grant
		for _, r := range roles {
			g, err := account.ParseGrant(r)
			if err != nil {
				return nil, err
			}
			gs = append(gs, g)
		}
		return gs, nil
	}
	switch sub {
	case "add":
		if err := needName(); err != nil {
			return err
		}
		gs, err := grants()
		if err != nil {
			return err
		}
		pw, generated, err := password()
		if err != nil {
			return err
		}
		a, err := svc.Create(ctx, who, account.NewAccount{Name: name, Email: *email, DisplayName: *display, Password: pw, Grants: gs})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "アカウントを作成しました / created account %s <%s> roles=%s\n", a.Name, a.Email, grantsOf(a))
		if generated {
			fmt.Fprintf(e.Stdout, "初期パスワード / initial password (shown once): %s\n", pw)
		}
		if a.NeedsTOTP() {
			fmt.Fprintf(e.Stdout, "このロールには TOTP が必要です / this role needs TOTP: sealgate user totp %s\n", a.Name)
		}
	case "list":
		list, err := svc.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tEMAIL\tROLES\tSTATUS\tTOTP\tLAST LOGIN")
		for _, a := range list {
			last := "-"
			if !a.LastLogin.IsZero() {
				last = a.LastLogin.UTC().Format(time.RFC3339)
			}
			status := a.Status
			if !a.LockedUntil.IsZero() && e.Now().Before(a.LockedUntil) {
				status += " (locked)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", a.Name, a.Email, grantsOf(a), status, a.TOTP, last)
		}
		return tw.Flush()
	case "disable":
		if err := needName(); err != nil {
			return err
		}
		if err := svc.Disable(ctx, who, name, *reason); err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "無効化しました / disabled %s (sessions ended)\n", name)
	case "enable":
		if err := needName(); err != nil {
			return err
		}
		if err := svc.Enable(ctx, who, name); err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "有効化しました / enabled %s\n", name)
	case "reset-password":
		if err := needName(); err != nil {
			return err
		}
		pw, generated, err := password()
		if err != nil {
			return err
		}
		if err := svc.SetPassword(ctx, who, name, pw); err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "パスワードを変更しました(セッションを終了し、アプリパスワードを取り消しました) / password changed for %s (sessions ended, app passwords revoked)\n", name)
		if generated {
			fmt.Fprintf(e.Stdout, "新しいパスワード / new password (shown once): %s\n", pw)
		}
	case "set-role":
		if err := needName(); err != nil {
			return err
		}
		gs, err := grants()
		if err != nil {
			return err
		}
		if len(gs) == 0 {
			return usageError{"--role を1つ以上指定してください / give at least one --role"}
		}
		if err := svc.SetGrants(ctx, who, name, gs); err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "ロールを変更しました / roles of %s set to %s\n", name, strings.Join(roles, ","))
	case "totp":
		if err := needName(); err != nil {
			return err
		}
		u, err := svc.EnrollTOTP(ctx, who, name, "sealgate")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "認証アプリに登録してください(このアカウントのセッションは終了しました) / add this to the authenticator app (the account's sessions ended):\n%s\n", u)
	default:
		return usageError{fmt.Sprintf("不明なサブコマンドです / unknown subcommand %q\n%s", sub, userUsage)}
	}
	return nil
}

// actorOf is who makes a change from the CLI: --actor, else cli:$USER.
func actorOf(e *env, actor string) string {
	if actor != "" {
		return actor
	}
	if u := e.Getenv("USER"); u != "" {
		return "cli:" + u
	}
	return "cli"
}

// cmdAppPassword is `sealgate user app-password add|list|revoke NAME`.
func cmdAppPassword(ctx context.Context, e *env, args []string) error {
	op, fs, args, ok := subcommand(e, "user app-password", userUsage, args)
	if !ok {
		return nil
	}
	label := fs.String("label", "", "what the app password is for (e.g. \"iPhone\")")
	actor := fs.String("actor", "", "who is making the change (default: cli:$USER)")
	// Flags may follow the positional arguments.
	var pos []string
	for len(args) > 0 {
		if !strings.HasPrefix(args[0], "-") {
			pos, args = append(pos, args[0]), args[1:]
			continue
		}
		if err := fs.Parse(args); err != nil {
			return err
		}
		if rest := fs.Args(); len(rest) == len(args) { // "-" alone: a positional argument
			pos, args = append(pos, rest[0]), rest[1:]
		} else {
			args = rest
		}
	}
	if len(pos) == 0 {
		return usageError{"アカウント名を指定してください / an account name is required"}
	}
	name := pos[0]
	svc, err := e.accounts(ctx)
	if err != nil {
		return err
	}
	switch op {
	case "add":
		if len(pos) != 1 {
			return usageError{"使い方 / usage: sealgate user app-password add NAME --label TEXT"}
		}
		secret, p, err := svc.AddAppPassword(ctx, actorOf(e, *actor), name, *label)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "アプリパスワードを作成しました / app password created for %s: #%d %q\n", name, p.ID, p.Label)
		fmt.Fprintf(e.Stdout, "メールソフトのパスワード欄に入力してください。二度と表示されません / enter it as the mail client's password; it is shown only once:\n\n    %s\n\n", secret)
	case "list":
		if len(pos) != 1 {
			return usageError{"使い方 / usage: sealgate user app-password list NAME"}
		}
		list, err := svc.AppPasswords(ctx, name)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tLABEL\tCREATED\tBY\tLAST USED\tFROM\tSTATUS")
		for _, p := range list {
			last, from := "-", "-"
			if !p.LastUsed.IsZero() {
				last, from = p.LastUsed.UTC().Format(time.RFC3339), p.LastUsedIP
			}
			status := "active"
			if !p.Active() {
				status = "revoked " + p.RevokedAt.UTC().Format(time.RFC3339) + " by " + p.RevokedBy
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Label, p.CreatedAt.UTC().Format(time.RFC3339), p.CreatedBy, last, from, status)
		}
		return tw.Flush()
	case "revoke":
		if len(pos) != 2 {
			return usageError{"使い方 / usage: sealgate user app-password revoke NAME ID|LABEL"}
		}
		p, err := svc.RevokeAppPassword(ctx, actorOf(e, *actor), name, pos[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "アプリパスワードを取り消しました / app password revoked for %s: #%d %q\n", name, p.ID, p.Label)
	default:
		return usageError{fmt.Sprintf("不明なサブコマンドです / unknown subcommand %q\n%s", op, userUsage)}
	}
	return nil
}

func grantsOf(a *account.Account) string {
	s := make([]string, len(a.Grants))
	for i, g := range a.Grants {
		s[i] = g.String()
	}
	return strings.Join(s, ",")
}
