// Command sealgate is the secure file-exchange gateway: an SMTP relay that
// seals attachments, a download portal, and the tools to manage contracts
// and prove what happened (see README.md).
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // notices show times in the configured zone on any host

	"golang.org/x/term"

	"github.com/sealgate/sealgate/internal/buildinfo"
)

type command struct {
	run     func(ctx context.Context, e *env, args []string) error
	summary string
}

func commands() map[string]command {
	return map[string]command{
		"serve": {cmdServe, "run the gateway: SMTP relay, portal, delivery, scheduler / ゲートウェイを起動"},
		"init":  {cmdInit, "write a commented configuration and generate keys / 設定ファイルと鍵を生成"},
		"audit": {cmdAudit, "ledger: checkpoint, export, verify, prove / 監査ログの署名・出力・検証"},
		"user":  {cmdUser, "accounts: add, list, disable, enable, reset-password, set-role, totp / アカウント管理"},
		"key":   {cmdKey, "master key: status, rotate (re-wrap every secret, erase the old key) / マスター鍵の世代と更新"},

		"check": {cmdCheck, "check the configuration without serving (exit 1 on errors) / 設定を確認 (エラーで終了コード 1)"},

		"contract": {cmdContract, "contracts: add, list, show, update, end (destruction + certificate) / 契約の管理と終了"},
		"transfer": {cmdTransfer, "transfers: list, show, revoke, extend / 送付の取消し・延長"},
		"witness":  {cmdWitness, "a witness of a gateway's ledger, run by the client company: init, add-log, logs, serve / 台帳の証人"},
		"policy":   {cmdPolicy, "the policy file: check, test (dry run, --diff) / ポリシーの検証と試行"},
		"migrate":  {cmdMigrate, "copy this embedded installation into PostgreSQL + S3, verified / PostgreSQL と S3 へ移行"},
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		Stdin:      os.Stdin,
		IsTerminal: term.IsTerminal(int(os.Stderr.Fd())),
		Now:        time.Now,
		Rand:       rand.Reader,
		Getenv:     os.Getenv,
	}
	fs := flag.NewFlagSet("sealgate", flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.StringVar(&e.ConfigPath, "config", os.Getenv("SEALGATE_CONFIG"), "configuration file (TOML); default: embedded defaults + SEALGATE_* environment")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { usage(e.Stderr, fs) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		printVersion(e.Stdout, buildinfo.Read())
		return 0
	}
	rest := fs.Args()
	if len(rest) == 0 {
		usage(e.Stderr, fs)
		return 2
	}
	name := rest[0]
	switch name {
	case "help", "-h", "--help":
		usage(e.Stdout, fs)
		return 0
	case "version":
		printVersion(e.Stdout, buildinfo.Read())
		return 0
	}
	cmd, ok := commands()[name]
	if !ok {
		fmt.Fprintf(e.Stderr, "sealgate: 不明なコマンドです / unknown command %q\n\n", name)
		usage(e.Stderr, fs)
		return 2
	}
	e.wire()
	defer e.close()
	if err := cmd.run(ctx, e, rest[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(e.Stderr, "sealgate %s: %v\n", name, err)
			return 2
		}
		fmt.Fprintf(e.Stderr, "sealgate %s: %v\n", name, err)
		return 1
	}
	return 0
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: sealgate [--config FILE] <command> [arguments]\n\nCommands:\n")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n\nRun `sealgate <command> -h` for a command's flags.\n", "version", "module version and VCS revision (also --version) / バージョンとリビジョン")
	fmt.Fprintf(w, "Configuration: --config or $SEALGATE_CONFIG; every key can be set with SEALGATE_* (see `sealgate init`).\n")
	_ = strings.TrimSpace
}

// printVersion prints the module version, the VCS revision and the
// toolchain the binary was built with.
func printVersion(w io.Writer, bi buildinfo.Info) {
	v := bi.Version
	if v == "" {
		v = "(unknown)"
	}
	fmt.Fprintf(w, "sealgate %s\n", v)
	if bi.Revision == "" {
		fmt.Fprintln(w, "リビジョン / revision: 不明 / unknown (built without VCS information)")
	} else {
		when := ""
		if !bi.Time.IsZero() {
			when = bi.Time.UTC().Format(time.RFC3339)
		}
		if bi.Modified {
			when += ", 未コミットの変更を含む / with uncommitted changes"
		}
		fmt.Fprintf(w, "リビジョン / revision: %s (%s)\n", bi.Revision, strings.TrimPrefix(when, ", "))
	}
	fmt.Fprintf(w, "Go: %s %s\n", bi.GoVersion, bi.Platform)
}
