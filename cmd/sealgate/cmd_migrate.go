package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/migrate"
	"github.com/sealgate/sealgate/server"
)

// cmdMigrate copies the embedded installation (SQLite, fs store) into
// PostgreSQL and S3 and verifies the copy (server.System.Migrate, package
// migrate), printing each step.
func cmdMigrate(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	to := fs.String("to", "", "移行先の PostgreSQL / the target PostgreSQL database: postgres://…")
	toConfig := fs.String("to-config", "", "移行後に使う設定ファイル (storage.type = \"s3\" とバケット) / the configuration the installation runs with afterwards (its [storage] section: type \"s3\" and the bucket)")
	verifyOnly := fs.Bool("verify", false, "以前の移行を検証するだけ（コピーするのは、止まった実行がまだコピーしていなかったキュー中のメールのスプールだけ） / verify an earlier migration only (copying nothing but the spool of queued mail a stopped run had not copied yet)")
	fs.Usage = func() {
		fmt.Fprintf(e.Stderr, "Usage: sealgate [--config FILE] migrate --to postgres://… --to-config FILE [--verify]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"引数は取りません / takes no arguments"}
	}
	if *to == "" || *toConfig == "" {
		return usageError{"--to と --to-config が必要です / --to and --to-config are required"}
	}
	if !database.IsURL(*to) {
		return usageError{"--to は postgres:// の URL です / --to is a postgres:// URL"}
	}
	tc, err := config.Load(*toConfig, e.Getenv)
	if err != nil {
		return fmt.Errorf("failed to load %s: %w", *toConfig, err)
	}
	if tc.Database.URL != "" && tc.Database.URL != *to {
		return usageError{fmt.Sprintf("%s の database.url (%s) が --to と異なります / the database.url of %s (%s) differs from --to",
			*toConfig, database.Redact(tc.Database.URL), *toConfig, database.Redact(tc.Database.URL))}
	}
	tc.Database.URL = *to
	sys, err := e.System()
	if err != nil {
		return err
	}
	o := sys.Options()
	o.ConfigFile = *toConfig
	target := server.Open(&tc, o)
	e.closers = append(e.closers, target.Close)

	fmt.Fprintf(e.Stdout, "移行先 / target: %s, S3 %s バケット / bucket %s\n", database.Redact(*to), tc.Storage.S3.Endpoint, tc.Storage.S3.Bucket)
	bar := newProgress(e, "オブジェクトのコピー / copying objects")
	rep, err := sys.Migrate(ctx, target, migrate.Options{VerifyOnly: *verifyOnly, Progress: func(ev migrate.Event) {
		if ev.Kind == migrate.EventCopying {
			bar.update(ev.N, ev.Total) // on a terminal only
			return
		}
		// End the progress line (if any) before a line of output.
		bar.done()
		bar = newProgress(e, "オブジェクトのコピー / copying objects")
		printMigrateEvent(e, ev)
	}})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "移行を検証しました / migration verified: %d テーブル / tables, %d オブジェクト / objects (%d バイト / bytes copied), %d 封緘ファイル / sealed files\n",
		len(rep.Tables), countObjects(rep), rep.Bytes, rep.Files)
	if rep.Checkpoint != nil {
		fmt.Fprintf(e.Stdout, "移行前のチェックポイント / old checkpoint: %d 件 / entries, root %x (ledger/checkpoints/%d.note)\n",
			rep.Checkpoint.Size, rep.Checkpoint.Root[:], rep.Checkpoint.Size)
	}
	if !*verifyOnly {
		fmt.Fprintf(e.Stdout, "次に / next: serve を %s の設定で起動します (同じマスター鍵と keys/) / start serve with %s (same master key and keys/)\n", *toConfig, *toConfig)
	}
	return nil
}

func countObjects(rep *migrate.Report) int64 {
	var n int64
	for _, c := range rep.Objects {
		n += c
	}
	return n
}

// printMigrateEvent prints one step of the migration.
func printMigrateEvent(e *env, ev migrate.Event) {
	switch ev.Kind {
	case migrate.EventCheckpoint:
		how := "最新 / newest"
		if ev.Signed {
			how = "今署名 / signed now"
		}
		fmt.Fprintf(e.Stdout, "台帳 / ledger: 移行元を検証、チェックポイント %d 件 (%s) / source verified, checkpoint of %d entries (%s)\n", ev.N, how, ev.N, how)
	case migrate.EventObjects:
		fmt.Fprintf(e.Stdout, "オブジェクト / objects %-22s %8d\n", ev.Name, ev.N)
	case migrate.EventTable:
		fmt.Fprintf(e.Stdout, "テーブル / table    %-22s %8d 行 / rows\n", ev.Name, ev.N)
	case migrate.EventVerified:
		what := map[string]string{
			"rows":    "全テーブルの行数が一致 / row counts of every table match",
			"objects": "バケットの全オブジェクトの SHA-256 が一致 / every object in the bucket has the source's SHA-256",
			"files":   "封緘ファイルの暗号文 SHA-256 と大きさが記録と一致 / sealed files match their recorded ciphertext SHA-256 and size",
			"ledger":  "移行先の台帳を検証、移行前のチェックポイントとの一貫性証明 OK / target ledger verified, consistency proof from the old checkpoint OK",
		}[ev.Name]
		fmt.Fprintf(e.Stdout, "検証 / verified: %s (%d)\n", what, ev.N)
	}
}
