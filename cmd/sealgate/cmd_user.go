package main

import (
	"bufio"
	"context"
	"flag"
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
  totp NAME                 enrol a TOTP authenticator (prints the otpauth:// URL)

ROLE: sender | manager[:CONTRACT] | admin | auditor. Managers and admins must
enrol TOTP before they can log in to the portal. Without --password-stdin a
random password is generated and printed once.
`

type roleList []string

func (r *roleList) String() string     { return strings.Join(*r, ",") }
func (r *roleList) Set(s string) error { *r = append(*r, s); return nil }

func cmdUser(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(e.Stdout, userUsage)
		return nil
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
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
		p, err := randomPassword(e.Rand)
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
		fmt.Fprintf(e.Stdout, "パスワードを変更しました / password changed for %s (sessions ended)\n", name)
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
		fmt.Fprintf(e.Stdout, "認証アプリに登録してください / add this to the authenticator app:\n%s\n", u)
	default:
		return usageError{fmt.Sprintf("不明なサブコマンドです / unknown subcommand %q\n%s", sub, userUsage)}
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

// randomPassword returns 20 symbols from an unambiguous alphabet of 57
// (~116 bits), without modulo bias.
func randomPassword(rand io.Reader) (string, error) {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	const limit = 256 - 256%len(alphabet)
	out := make([]byte, 0, 20)
	b := make([]byte, 1)
	for len(out) < 20 {
		if _, err := io.ReadFull(rand, b); err != nil {
			return "", err
		}
		if int(b[0]) < limit {
			out = append(out, alphabet[int(b[0])%len(alphabet)])
		}
	}
	return string(out), nil
}
