package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"

	"github.com/sealgate/sealgate/witness"
)

const witnessUsage = `Usage: sealgate witness <subcommand> [flags]

A witness cosigns a gateway's ledger checkpoints only if each extends the ones
it cosigned before (c2sp.org/tlog-witness). The client company runs it.
証人は、以前に連署したチェックポイントの続きであるチェックポイントにだけ連署します。委託元が運用します。

  init --dir DIR --name NAME      鍵を生成 / create the witness key (DIR/witness.key, DIR/witness.pub)
  add-log --dir DIR [--origin O] LOGKEY|@FILE
                                  台帳を受け付ける / accept the ledger signed by LOGKEY (the gateway's keys/ledger.pub)
  logs --dir DIR                  受け付ける台帳と連署済みのサイズ / list the ledgers, what was cosigned, what was refused
  serve --dir DIR [--listen ADDR] [--tls-cert FILE --tls-key FILE]
                                  POST /add-checkpoint を提供 / serve the witness protocol
`

// cmdWitness is `sealgate witness`: the witness the client company runs
// (package witness). It does not use the gateway's configuration.
func cmdWitness(ctx context.Context, e *env, args []string) error {
	sub, fs, args, ok := subcommand(e, "witness", witnessUsage, args)
	if !ok {
		return nil
	}
	dir := fs.String("dir", "", "証人のディレクトリ / the witness's directory")
	name := fs.String("name", "", "証人の名前（init） / the witness's name (init)")
	origin := fs.String("origin", "", "台帳の origin（add-log、既定: 鍵の名前） / the ledger's origin line (add-log; default: the key's name)")
	listen := fs.String("listen", "127.0.0.1:7380", "待ち受けるアドレス（serve） / address to listen on (serve)")
	cert := fs.String("tls-cert", "", "TLS 証明書（serve、PEM） / TLS certificate (serve, PEM)")
	key := fs.String("tls-key", "", "TLS 秘密鍵（serve、PEM） / TLS key (serve, PEM)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	want := 0
	if sub == "add-log" {
		want = 1 // LOGKEY
	}
	if len(pos) != want {
		return usageError{"引数の数が正しくありません / wrong number of arguments\n" + witnessUsage}
	}
	switch sub {
	case "init":
		return witnessInit(e, *dir, *name)
	case "add-log":
		return witnessAddLog(ctx, e, *dir, *origin, pos[0])
	case "logs":
		return witnessLogs(ctx, e, *dir)
	case "serve":
		return witnessServe(ctx, e, *dir, *listen, *cert, *key)
	}
	return usageError{fmt.Sprintf("不明なサブコマンドです / unknown subcommand %q\n%s", sub, witnessUsage)}
}

func witnessOpen(ctx context.Context, e *env, dir string) (*witness.Witness, error) {
	if dir == "" {
		return nil, usageError{"--dir で証人のディレクトリを指定してください / --dir is required"}
	}
	log := slog.New(slog.NewTextHandler(e.Stderr, nil)).With("component", "witness")
	return witness.Open(ctx, dir, witness.Options{Now: e.Now, Log: log})
}

func witnessInit(e *env, dir, name string) error {
	if dir == "" || name == "" {
		return usageError{"--dir と --name を指定してください / --dir and --name are required"}
	}
	vkey, err := witness.GenerateKeyFiles(dir, name, e.Rand)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stderr, "証人の鍵を作成しました / created the witness key: %s (秘密鍵 / secret), %s (検証鍵 / verifier key)\n",
		filepath.Join(dir, witness.KeyFile), filepath.Join(dir, witness.PubFile))
	fmt.Fprintln(e.Stderr, "検証鍵をゲートウェイの ledger.witnesses と監査する人に渡してください / give the verifier key to the gateway (ledger.witnesses) and to auditors:")
	fmt.Fprintln(e.Stdout, vkey)
	return nil
}

func witnessAddLog(ctx context.Context, e *env, dir, origin, logKey string) error {
	vkey, err := readKey(logKey)
	if err != nil {
		return err
	}
	w, err := witnessOpen(ctx, e, dir)
	if err != nil {
		return err
	}
	defer w.Close()
	o, err := w.AddLog(ctx, origin, vkey)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "台帳を受け付けます / accepting the ledger: %s\n", o)
	return nil
}

func witnessLogs(ctx context.Context, e *env, dir string) error {
	w, err := witnessOpen(ctx, e, dir)
	if err != nil {
		return err
	}
	defer w.Close()
	logs, err := w.Logs(ctx)
	if err != nil {
		return err
	}
	out := e.Stdout
	fmt.Fprintf(out, "証人 / witness: %s\n", w.VerifierKey())
	if len(logs) == 0 {
		fmt.Fprintln(out, "受け付ける台帳はありません / no ledger accepted yet (sealgate witness add-log)")
	}
	for _, l := range logs {
		fmt.Fprintf(out, "\n台帳 / ledger: %s\n", l.Origin)
		for _, k := range l.Keys {
			fmt.Fprintf(out, "  検証鍵 / key:       %s\n", k)
		}
		if l.Updated.IsZero() {
			fmt.Fprintln(out, "  連署 / cosigned:    まだありません / nothing yet")
		} else {
			fmt.Fprintf(out, "  連署 / cosigned:    %s, root %s (%s)\n", coverage(l.Size), l.Root, fmtTime(l.Updated))
		}
		fmt.Fprintf(out, "  拒否 / refused:     %d\n", l.Refused)
		if l.Refused == 0 {
			continue
		}
		ref, err := w.Refused(ctx, l.Origin)
		if err != nil {
			return err
		}
		for _, r := range ref {
			fmt.Fprintf(out, "    %s size %d (held %d): %s\n", fmtTime(r.At), r.Size, r.OldSize, r.Reason)
		}
	}
	return nil
}

func witnessServe(ctx context.Context, e *env, dir, listen, cert, key string) error {
	if (cert == "") != (key == "") {
		return usageError{"--tls-cert と --tls-key は両方指定してください / give both --tls-cert and --tls-key"}
	}
	w, err := witnessOpen(ctx, e, dir)
	if err != nil {
		return err
	}
	defer w.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("failed to listen on %s: %w", listen, err)
	}
	scheme := "http"
	if cert != "" {
		scheme = "https"
	}
	fmt.Fprintf(e.Stderr, "証人 %s が待ち受けています / witness listening: %s://%s (%s)\n",
		w.Name(), scheme, ln.Addr(), strings.TrimSpace(w.VerifierKey()))
	return w.Serve(ctx, ln, cert, key)
}
