package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/transfer"
)

const transferUsage = `Usage: sealgate transfer <command> [arguments]

  list [--contract C] [--sender ADDR] [--status S] [--limit N]   送付の一覧 / list transfers
  show ID                                   送付の詳細 / show a transfer, its files and recipients
  revoke ID [--recipient ADDR] [--reason TEXT]
        送付全体または受信者 1 人を取り消し、その鍵を直ちに消去（受信者が残らなければファイルも削除）
        revoke the whole transfer or one recipient: their key is destroyed at once
        (and the files deleted when no recipient remains)
  extend ID (--until DATE | --by DURATION)  有効期限の延長（契約の上限・終了日まで） / extend the expiry
`

func cmdTransfer(ctx context.Context, e *env, args []string) error {
	sub, fs, args, ok := subcommand(e, "transfer", transferUsage, args)
	if !ok {
		return nil
	}
	contractCode := fs.String("contract", "", "契約コード / contract code")
	sender := fs.String("sender", "", "送信者 / sender")
	status := fs.String("status", "", "active | revoked | expired | destroyed")
	limit := fs.Int("limit", 100, "件数 / how many")
	recipient := fs.String("recipient", "", "取り消す受信者（省略時は送付全体） / the recipient to revoke (default: all)")
	reason := fs.String("reason", "", "理由（台帳に記録） / reason (recorded in the ledger)")
	until := fs.String("until", "", "新しい有効期限 / new expiry (YYYY-MM-DD or RFC 3339)")
	by := fs.String("by", "", "延長する期間 / extend by (e.g. 7d)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if sub != "list" && len(pos) != 1 {
		return usageError{"送付 ID を 1 つ指定してください / give exactly one transfer ID\n" + transferUsage}
	}
	c, loc, db, err := e.configDB(ctx)
	if err != nil {
		return err
	}
	show := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.In(loc).Format("2006-01-02 15:04")
	}
	switch sub {
	case "list":
		ts, err := transfer.List(ctx, db.Read(), transfer.Filter{Contract: *contractCode, Sender: *sender, Status: *status, Limit: *limit})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCONTRACT\tSTATUS\tSENDER\tSENT\tEXPIRES\tSUBJECT")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Contract, t.Status, t.Sender, show(t.CreatedAt), show(t.ExpiresAt), audit.ShownName(t.Subject))
		}
		return tw.Flush()
	case "show":
		// The facts the portal's transfer and incident pages show.
		f, err := transfer.ReadFacts(ctx, db.Read(), pos[0], contract.DefaultsFrom(c))
		if err != nil {
			return contractErr(err)
		}
		t, w := f.T, e.Stdout
		fmt.Fprintf(w, "送付 / transfer  %s (%s)\n", t.ID, t.Status)
		fmt.Fprintf(w, "契約 / contract  %s\n送信者 / sender  %s\n件名 / subject   %s\n", t.Contract, t.Sender, audit.ShownName(t.Subject))
		fmt.Fprintf(w, "送信 / sent      %s\n期限 / expires   %s\n", show(t.CreatedAt), show(t.ExpiresAt))
		if !t.EndedAt.IsZero() {
			fmt.Fprintf(w, "終了 / ended     %s\n", show(t.EndedAt))
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nFILE\tSIZE\tSHA-256\tSTATUS\tDELETED\tABSENT")
		for _, f := range t.Files {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", audit.ShownName(f.Name), f.Size, f.SHA256, f.Status, show(f.DeletedAt), show(f.AbsentAt))
		}
		fmt.Fprintln(tw, "\nRECIPIENT\tSTATUS\tDOWNLOADS\tFIRST DOWNLOAD\tKEY DESTROYED")
		for _, r := range t.Recipients {
			st := r.Status
			if r.Locked {
				st += " (locked)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", audit.ShownName(r.Address), st, r.Downloads, show(r.FirstDownloadAt), show(r.KeyDestroyedAt))
		}
		// Every download of a file, partial ones with what they
		// delivered (key.age alone carries no file content).
		fmt.Fprintln(tw, "\nDOWNLOADED\tRECIPIENT\tFILE\tFORMAT\tEXTENT\tFROM")
		for _, d := range f.Downloads {
			if d.Format == "key" {
				continue
			}
			extent := "完全 / complete"
			if d.Partial {
				extent = fmt.Sprintf("一部 / partial, %d bytes", d.Bytes)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", show(d.At), audit.ShownName(d.Recipient), audit.ShownName(d.File), d.Format, extent, d.IP)
		}
		return tw.Flush()
	case "revoke":
		d, err := e.destroyDeps(nil)
		if err != nil {
			return err
		}
		pp := &phaseProgress{e: e}
		d.Progress = pp.update
		out, err := destroy.Revoke(ctx, d, pos[0], *recipient, cliActor(e), *reason)
		pp.finish()
		if err != nil {
			return contractErr(err)
		}
		if len(out.Revoked) > 0 {
			fmt.Fprintf(e.Stdout, "取り消しました / revoked: %s（鍵を消去 / keys destroyed: %d）\n", strings.Join(out.Revoked, ", "), out.KeysDestroyed)
		}
		if out.TransferEnded {
			fmt.Fprintf(e.Stdout, "受信者が残っていないため、ファイルを削除し不存在を確認しました / no recipient remains: %d file(s) deleted and proven absent\n", out.ObjectsRemoved)
		}
		return nil
	case "extend":
		t, err := transfer.Get(ctx, db.Read(), pos[0])
		if err != nil {
			return contractErr(err)
		}
		var to time.Time
		switch {
		case *until != "" && *by == "":
			if to, err = parseDate(*until, loc, true); err != nil {
				return err
			}
		case *by != "" && *until == "":
			d, err := parseDur(*by)
			if err != nil || d == 0 {
				return usageError{fmt.Sprintf("--by の期間が正しくありません / invalid --by %q", *by)}
			}
			to = t.ExpiresAt.Add(d)
		default:
			return usageError{"--until または --by のどちらか一方を指定してください / give --until or --by"}
		}
		d, err := e.destroyDeps(nil)
		if err != nil {
			return err
		}
		got, err := transfer.Extend(ctx, d.DB, d.Ledger, contract.DefaultsFrom(c), t.ID, to, cliActor(e), e.Now())
		if err != nil {
			return contractErr(err)
		}
		fmt.Fprintf(e.Stdout, "有効期限を延長しました / expiry extended: %s → %s\n", show(t.ExpiresAt), show(got))
		return nil
	}
	return usageError{fmt.Sprintf("不明なサブコマンドです / unknown subcommand %q\n%s", sub, transferUsage)}
}
