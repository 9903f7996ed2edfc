package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/masterkey"
)

// cmdKey manages the master key: its epochs and rotation.
func cmdKey(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"usage: sealgate key status | rotate [--reason TEXT] [--all-stopped]"}
	}
	switch args[0] {
	case "status":
		return keyStatus(ctx, e)
	case "rotate":
		fs := flag.NewFlagSet("key rotate", flag.ContinueOnError)
		fs.SetOutput(e.Stderr)
		reason := fs.String("reason", "operator request", "why the key is rotated (recorded in the ledger)")
		allStopped := fs.Bool("all-stopped", false, "PostgreSQL: every instance of the fleet is stopped (required there) / PostgreSQL: 全インスタンスを停止済み（必須）")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		rot, err := e.rotateKey(ctx, masterkey.Cause{Actor: cliActor(e), Reason: *reason}, *allStopped)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "マスター鍵を第 %d 世代から第 %d 世代に更新し、旧鍵を消去しました / rotated the master key from epoch %d to %d and erased the old key (ledger #%d)\n",
			rot.From, rot.To, rot.From, rot.To, rot.Event)
		for name, n := range rot.Held {
			fmt.Fprintf(e.Stdout, "  %s: %d (再暗号化 / re-wrapped %d)\n", name, n, rot.Moved[name])
		}
		fmt.Fprintf(e.Stdout, "第 %d 世代以前のマスター鍵の複製（バックアップ等）があれば破棄してください / destroy any copy of the master keys of epochs ≤ %d kept elsewhere (backups of %s).\n",
			rot.From, rot.From, rot.KeyFile)
		if sys, err := e.System(); err == nil && sys.Config.Database.IsPostgres() {
			fmt.Fprintf(e.Stdout, "ほかのすべてのインスタンスに %s と keys/ledger.key.age をコピーしてから起動してください / copy %s and keys/ledger.key.age to every other instance before starting them.\n",
				rot.KeyFile, rot.KeyFile)
		}
		return nil
	}
	return usageError{"usage: sealgate key status | rotate [--reason TEXT] [--all-stopped]"}
}

func keyStatus(ctx context.Context, e *env) error {
	db, err := e.OpenDB(ctx)
	if err != nil {
		return err
	}
	if _, err := e.Keys(); err != nil {
		return err
	}
	infos, err := masterkey.Epochs(ctx, db.Read())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "%-6s %-10s %-20s %-20s %s\n", "epoch", "state", "created", "destroyed", "recipient")
	for _, i := range infos {
		destroyed := "-"
		if !i.DestroyedAt.IsZero() {
			destroyed = i.DestroyedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(e.Stdout, "%-6d %-10s %-20s %-20s %s\n", i.Epoch, i.State, i.CreatedAt.Format(time.RFC3339), destroyed, i.Recipient)
	}
	return nil
}
