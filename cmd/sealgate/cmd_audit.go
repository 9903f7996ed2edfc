package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/atomicfile"
	"github.com/sealgate/sealgate/witness/cosig"
	"golang.org/x/mod/sumdb/note"
)

const auditUsage = `Usage: sealgate audit <subcommand> [flags]

  checkpoint                     署名済みチェックポイントを作成して表示 / sign and print the current checkpoint
  export [--contract C] [--from T] [--to T] [--format json|csv|html] [--previous FILE] -o FILE
                                 記録を出力 / export the ledger (JSON bundle, CSV for Excel, printable HTML)
  verify --key PUBKEY|@FILE [--previous FILE] [--witness KEY ... [--witnesses K]] BUNDLE
                                 JSON バンドルをオフラインで検証 / verify a bundle offline (no database needed)
  verify-db [--previous FILE] [--witness KEY ... [--witnesses K]]
                                 データベースの台帳全体を検証 / verify the whole ledger in the database
  prove [--json] INDEX           記録の包含証明を表示 / print the inclusion proof of one entry
  verify-certificate --key PUBKEY|@FILE [--witness KEY ... [--witnesses K]] CERT.json.gz
                                 削除証明書をオフラインで検証 / verify a destruction certificate offline

--witness KEY (or @FILE, repeatable) requires the checkpoint to be cosigned by
K of these witnesses (--witnesses, default all): a witness cosigns only a
history that extends the one it saw before.
--witness で証人の検証鍵を指定すると、そのうち K 人（既定: 全員）の連署を必須とします。

Times (T) are RFC 3339 (2026-04-01T09:00:00+09:00) or a date (2026-04-01, local time);
--to is exclusive, and a date means the end of that day.
`

// cmdAudit is `sealgate audit`: ledger checkpoints, exports, offline and
// database verification, inclusion proofs.
func cmdAudit(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"サブコマンドを指定してください / missing subcommand\n" + auditUsage}
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "checkpoint":
		return auditCheckpoint(ctx, e, rest)
	case "export":
		return auditExport(ctx, e, rest)
	case "verify":
		return auditVerify(ctx, e, rest)
	case "verify-db":
		return auditVerifyDB(ctx, e, rest)
	case "prove":
		return auditProve(ctx, e, rest)
	case "verify-certificate":
		return auditVerifyCertificate(ctx, e, rest)
	case "help", "-h", "--help":
		fmt.Fprint(e.Stdout, auditUsage)
		return nil
	}
	return usageError{fmt.Sprintf("不明なサブコマンドです / unknown subcommand %q\n%s", sub, auditUsage)}
}

// parseFlags parses flags that may come before or after the positional
// arguments (flag stops at the first non-flag) and returns the positionals.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(e *env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("audit "+name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.Stderr, "Usage: sealgate audit %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// auditErr turns a library error into the bilingual text a user reads,
// keeping the error chain for errors.Is.
func auditErr(err error) error {
	if err == nil {
		return nil
	}
	var ve *audit.VerifyError
	if errors.As(err, &ve) {
		return &userError{msg: ve.Message(), err: err}
	}
	var we *audit.WitnessError
	if errors.As(err, &we) {
		return &userError{msg: we.Message(), err: err}
	}
	ja := "失敗しました"
	switch {
	case errors.Is(err, audit.ErrWrongKey):
		ja = "検証鍵が一致しません（別のゲートウェイの鍵ではありませんか）"
	case errors.Is(err, audit.ErrBadSignature):
		ja = "署名が正しくありません（改ざんされています）"
	case errors.Is(err, audit.ErrInconsistent):
		ja = "以前のチェックポイントと一致しません（記録が書き換えられています）"
	case errors.Is(err, audit.ErrBadKey):
		ja = "鍵の形式が正しくありません"
	case errors.Is(err, audit.ErrMalformed):
		ja = "ファイルの形式が正しくありません"
	case errors.Is(err, audit.ErrNoCheckpoint):
		ja = "この記録を含むチェックポイントがありません（sealgate audit checkpoint を実行してください）"
	case errors.Is(err, audit.ErrCorrupt):
		ja = "台帳のテーブルが不整合です（sealgate audit verify-db で確認してください）"
	case errors.Is(err, audit.ErrNotFound):
		ja = "見つかりません"
	case errors.Is(err, context.Canceled):
		ja = "中断しました"
	}
	return &userError{msg: ja + " / " + err.Error(), err: err}
}

type userError struct {
	msg string
	err error
}

func (u *userError) Error() string { return u.msg }
func (u *userError) Unwrap() error { return u.err }

// progress prints a "\r" status line on a terminal.
type progress struct {
	w          io.Writer
	now        func() time.Time
	label      string
	on         bool
	start      time.Time
	last       time.Time
	printed    bool
	lastDone   int64
	finalTotal int64
}

func newProgress(e *env, label string) *progress {
	now := e.Now
	if now == nil {
		now = time.Now
	}
	return &progress{w: e.Stderr, now: now, label: label, on: e.IsTerminal, start: now()}
}

func (p *progress) update(done, total int64) {
	if !p.on {
		return
	}
	t := p.now()
	if done != total && t.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last = t
	rate := ""
	if el := t.Sub(p.start).Seconds(); el > 0 {
		rate = fmt.Sprintf(" %.0f/s", float64(done)/el)
	}
	if total > 0 {
		fmt.Fprintf(p.w, "\r%s %d/%d (%d%%)%s   ", p.label, done, total, done*100/total, rate)
	} else {
		fmt.Fprintf(p.w, "\r%s %d%s   ", p.label, done, rate)
	}
	p.printed = true
}

func (p *progress) done() {
	if p.printed {
		fmt.Fprintln(p.w)
	}
}

// parseTime accepts RFC 3339 or YYYY-MM-DD (local time). A date given as an
// end (--to) means the end of that day.
func parseTime(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseInLocation("2006-01-02", s, time.Local)
	if err != nil {
		return time.Time{}, usageError{fmt.Sprintf("日時の形式が正しくありません（RFC 3339 または YYYY-MM-DD） / invalid time %q (RFC 3339 or YYYY-MM-DD)", s)}
	}
	if end {
		d = d.AddDate(0, 0, 1)
	}
	return d, nil
}

// readKey reads a verifier key given as the key itself or @file.
func readKey(arg string) (string, error) {
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return "", fmt.Errorf("検証鍵を読めません / failed to read the verifier key: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return strings.TrimSpace(arg), nil
}

func readCheckpointFile(name string) ([]byte, error) {
	if name == "" {
		return nil, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("チェックポイントを読めません / failed to read the checkpoint: %w", err)
	}
	return b, nil
}

func cliActor(e *env) string {
	if e.Getenv != nil {
		if u := e.Getenv("USER"); u != "" && audit.Sanitize(u) == u {
			return "cli:" + u
		}
	}
	return "cli"
}

// signingLedger opens what signing a checkpoint needs: the database, the
// ledger (auditLedger) and the ledger's signing key.
func signingLedger(ctx context.Context, e *env) (*database.DB, *audit.Ledger, note.Signer, error) {
	db, err := e.OpenDB(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	l, err := auditLedger(ctx, e)
	if err != nil {
		return nil, nil, nil, err
	}
	signer, err := e.LedgerSigner()
	return db, l, signer, err
}

// auditLedger returns the configured ledger; if the object store cannot be
// opened, one without it (checkpoints are then published by serve later).
func auditLedger(ctx context.Context, e *env) (*audit.Ledger, error) {
	l, err := e.Ledger(ctx)
	if err == nil {
		return l, nil
	}
	fmt.Fprintf(e.Stderr, "警告: オブジェクトストレージを使えません。チェックポイントは後で serve が公開します / warning: object store unavailable, checkpoints will be published by serve later: %v\n", err)
	l, err2 := audit.New(audit.Options{Origin: e.LedgerOrigin(), Now: e.Now, Names: true})
	if err2 != nil {
		return nil, errors.Join(err, err2)
	}
	return l, nil
}

func auditCheckpoint(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "checkpoint", "")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{"引数が多すぎます / unexpected arguments"}
	}
	db, l, signer, err := signingLedger(ctx, e)
	if err != nil {
		return err
	}
	cp, err := l.Checkpoint(ctx, db, signer)
	if cp == nil {
		return auditErr(err)
	}
	if err != nil {
		fmt.Fprintf(e.Stderr, "警告: チェックポイントを公開できませんでした（serve が再試行します） / warning: %v\n", err)
	}
	fmt.Fprintf(e.Stderr, "チェックポイントを署名しました / signed a checkpoint: %s\n", coverage(cp.Size))
	_, err = e.Stdout.Write(cp.Note)
	return err
}

func auditExport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "export", "[--contract C] [--from T] [--to T] [--format json|csv|html] [--previous FILE] -o FILE")
	contract := fs.String("contract", "", "契約コード / contract code (default: all)")
	from := fs.String("from", "", "開始日時（含む） / from (inclusive): RFC 3339 or YYYY-MM-DD")
	to := fs.String("to", "", "終了日時（含まない。日付はその日の終わり） / to (exclusive; a date means its end)")
	format := fs.String("format", "json", "json | csv | html")
	out := fs.String("o", "", "出力ファイル（- は標準出力） / output file (- for stdout)")
	prev := fs.String("previous", "", "以前のチェックポイント（一貫性証明を含める） / earlier checkpoint file: include a consistency proof")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{"引数が多すぎます / unexpected arguments"}
	}
	if *out == "" {
		return usageError{"-o で出力先を指定してください / -o FILE is required"}
	}
	f := audit.Format(*format)
	switch f {
	case audit.FormatJSON, audit.FormatCSV, audit.FormatHTML:
	default:
		return usageError{fmt.Sprintf("--format は json, csv, html のいずれかです / --format must be json, csv or html, not %q", *format)}
	}
	fromT, err := parseTime(*from, false)
	if err != nil {
		return err
	}
	toT, err := parseTime(*to, true)
	if err != nil {
		return err
	}
	prevNote, err := readCheckpointFile(*prev)
	if err != nil {
		return err
	}
	db, l, signer, err := signingLedger(ctx, e)
	if err != nil {
		return err
	}
	opts := audit.ExportOptions{
		Contract: *contract, From: fromT, To: toT, Format: f, Signer: signer,
		Actor: cliActor(e), Previous: prevNote, Location: time.Local,
	}
	p := newProgress(e, "出力中 / exporting")
	if *out == "-" {
		err = l.Export(ctx, db, opts, e.Stdout, p.update)
	} else {
		err = atomicfile.WriteFunc(*out, 0o644, func(w io.Writer) error { return l.Export(ctx, db, opts, w, p.update) })
	}
	p.done()
	if err != nil {
		return auditErr(err)
	}
	if *out != "-" {
		fmt.Fprintf(e.Stderr, "出力しました / exported: %s\n", *out)
	}
	return nil
}

func auditVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "verify", "--key PUBKEY|@FILE [--previous CHECKPOINT] [--witness KEY ... [--witnesses K]] BUNDLE")
	of := addOfflineFlags(fs)
	prev := fs.String("previous", "", "以前に受け取ったチェックポイントのファイル / an earlier checkpoint you hold")
	file, vkey, policy, err := of.parse(fs, args, usageError{"検証するバンドルを 1 つ指定してください / give exactly one BUNDLE"})
	if err != nil {
		return err
	}
	prevNote, err := readCheckpointFile(*prev)
	if err != nil {
		return err
	}
	var in io.Reader = e.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("バンドルを開けません / failed to open the bundle: %w", err)
		}
		defer f.Close()
		in = f
	}
	p := newProgress(e, "検証中 / verifying")
	rep, err := audit.VerifyBundle(in, vkey, audit.VerifyOptions{Previous: prevNote, Witnesses: policy}, p.update)
	p.done()
	if err != nil {
		return auditErr(err)
	}
	w := e.Stdout
	fmt.Fprintln(w, "検証に成功しました / verification succeeded")
	fmt.Fprintf(w, "  台帳 / ledger:              %s\n", rep.Origin)
	fmt.Fprintf(w, "  検証鍵 / key:               %s\n", rep.Key)
	fmt.Fprintf(w, "  チェックポイント / checkpoint: %s, root %s\n", coverage(rep.Checkpoint.Size), rep.Checkpoint.Root)
	kind := "個別の包含証明 / each with an inclusion proof"
	switch {
	case rep.Complete:
		kind = "全記録（木を再計算） / all entries (tree rebuilt)"
	case rep.Range:
		kind = "連続した範囲（木を再計算） / a contiguous range (tree rebuilt)"
	}
	if rep.Entries > 0 {
		fmt.Fprintf(w, "  記録 / entries:             %d (#%d〜#%d), %s\n", rep.Entries, rep.First, rep.Last, kind)
	} else {
		fmt.Fprintf(w, "  記録 / entries:             0\n")
	}
	if rep.Contract != "" {
		fmt.Fprintf(w, "  契約 / contract:            %s\n", rep.Contract)
	}
	if !rep.From.IsZero() || !rep.To.IsZero() {
		fmt.Fprintf(w, "  期間 / period:              %s 〜 %s\n", fmtTime(rep.From), fmtTime(rep.To))
	}
	for _, c := range rep.Previous {
		fmt.Fprintf(w, "  以前のチェックポイントと一貫 / consistent with the checkpoint of %d entries\n", c.Size)
	}
	printWitnesses(w, policy, rep.Witnesses)
	return nil
}

// coverage describes the entries a checkpoint of the given size covers.
func coverage(size int64) string {
	if size == 0 {
		return "記録なし / no entries"
	}
	return fmt.Sprintf("記録 #0〜#%d / entries #0-#%d", size-1, size-1)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 -07:00")
}

func auditVerifyDB(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "verify-db", "[--previous CHECKPOINT] [--key PUBKEY|@FILE] [--witness KEY ... [--witnesses K]]")
	prev := fs.String("previous", "", "外部に保管したチェックポイント / a checkpoint held outside the gateway")
	keyArg := fs.String("key", "", "検証鍵（既定: 設定の鍵） / verifier key (default: the configured one)")
	wf := addWitnessFlags(fs)
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{"引数が多すぎます / unexpected arguments"}
	}
	policy, err := wf.policy()
	if err != nil {
		return err
	}
	if len(policy.Keys) == 0 && e.Config != nil {
		// By default, the configured witnesses and quorum.
		c, err := e.Config()
		if err != nil {
			return err
		}
		for _, w := range c.Ledger.Witnesses {
			policy.Keys = append(policy.Keys, w.Key)
		}
		if len(policy.Keys) > 0 && policy.Quorum == 0 {
			policy.Quorum = c.Ledger.Quorum()
		}
	}
	var vkey string
	if *keyArg != "" {
		vkey, err = readKey(*keyArg)
	} else {
		vkey, err = e.LedgerVerifierKey()
	}
	if err != nil {
		return err
	}
	prevNote, err := readCheckpointFile(*prev)
	if err != nil {
		return err
	}
	db, err := e.OpenDB(ctx)
	if err != nil {
		return err
	}
	opts := audit.VerifyOptions{Previous: prevNote, Witnesses: policy}
	// The checkpoint published to object storage, if any: a database
	// rolled back or cut short is caught against it.
	if e.OpenStore != nil {
		if st, err := e.OpenStore(ctx); err != nil {
			fmt.Fprintf(e.Stderr, "警告: オブジェクトストレージのチェックポイントを確認できません / warning: cannot check the published checkpoint: %v\n", err)
		} else if note, err := audit.PublishedCheckpoint(ctx, st); err == nil {
			opts.Checkpoints = append(opts.Checkpoints, note)
		} else if !errors.Is(err, audit.ErrNotFound) {
			fmt.Fprintf(e.Stderr, "警告: オブジェクトストレージのチェックポイントを読めません / warning: %v\n", err)
		}
	}
	p := newProgress(e, "検証中 / verifying")
	rep, err := audit.VerifyDB(ctx, db, vkey, opts, p.update)
	p.done()
	if err != nil {
		return auditErr(err)
	}
	w := e.Stdout
	fmt.Fprintln(w, "検証に成功しました / verification succeeded")
	fmt.Fprintf(w, "  記録 / entries:             %d\n", rep.Size)
	fmt.Fprintf(w, "  検証鍵 / key:               %s\n", rep.Key)
	fmt.Fprintf(w, "  署名済みチェックポイント / signed checkpoints: %d\n", rep.Checkpoints)
	if rep.Checkpoint != nil {
		fmt.Fprintf(w, "  最新 / latest:               %s, root %s\n", coverage(rep.Checkpoint.Size), rep.Checkpoint.Root)
	}
	for _, c := range rep.Previous {
		fmt.Fprintf(w, "  外部のチェックポイントと一致 / matches the external checkpoint of %d entries\n", c.Size)
	}
	if rep.Unanchored > 0 {
		fmt.Fprintf(w, "  注意: 最新のチェックポイント以降の %d 件はまだ署名されていません / note: %d entries after the latest checkpoint are not signed yet (sealgate audit checkpoint)\n",
			rep.Unanchored, rep.Unanchored)
	}
	if rep.Witnessed != nil {
		fmt.Fprintf(w, "  証人が連署した最新 / latest witnessed: %s, root %s\n", coverage(rep.Witnessed.Size), rep.Witnessed.Root)
		if rep.Unwitnessed > 0 {
			fmt.Fprintf(w, "  注意: その後の %d 件はまだ証人が連署していません / note: %d entries after it are not cosigned by the witnesses yet\n",
				rep.Unwitnessed, rep.Unwitnessed)
		}
	}
	printWitnesses(w, policy, rep.Witnesses)
	return nil
}

func auditProve(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "prove", "[--json] INDEX")
	asJSON := fs.Bool("json", false, "JSON で出力 / print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"記録番号を 1 つ指定してください / give exactly one INDEX"}
	}
	idx, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || idx < 0 {
		return usageError{fmt.Sprintf("記録番号が正しくありません / invalid index %q", pos[0])}
	}
	db, err := e.OpenDB(ctx)
	if err != nil {
		return err
	}
	l, err := auditLedger(ctx, e)
	if err != nil {
		return err
	}
	tx, err := db.Read().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	cp, err := l.LatestCheckpoint(ctx, tx)
	if err != nil {
		return auditErr(err)
	}
	proof, err := l.Prove(ctx, tx, idx, cp)
	if err != nil {
		return auditErr(err)
	}
	w := e.Stdout
	if *asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(proof)
	}
	fmt.Fprintf(w, "記録 / entry #%d\n%s\n\n", proof.Index, proof.Line)
	fmt.Fprintf(w, "葉ハッシュ / leaf hash: %s\n", proof.LeafHash)
	fmt.Fprintf(w, "包含証明 / inclusion proof (%d):\n", len(proof.Proof))
	for _, h := range proof.Proof {
		fmt.Fprintf(w, "  %s\n", h)
	}
	fmt.Fprintf(w, "\nチェックポイント / checkpoint:\n%s", proof.Checkpoint)
	return nil
}

// auditVerifyCertificate is `sealgate audit verify-certificate`: a
// destruction certificate checked offline with the public key alone.
func auditVerifyCertificate(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "verify-certificate", "--key PUBKEY|@FILE [--witness KEY ... [--witnesses K]] CERT.json.gz")
	of := addOfflineFlags(fs)
	file, vkey, policy, err := of.parse(fs, args, usageError{"検証する証明書を 1 つ指定してください / give exactly one CERT.json.gz (or CERT.json of format v1–v3)"})
	if err != nil {
		return err
	}
	var data []byte
	if file == "-" {
		data, err = io.ReadAll(e.Stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("証明書を読めません / failed to read the certificate: %w", err)
	}
	cert, rep, err := audit.VerifyCertificateWitnessed(data, vkey, policy)
	if err != nil {
		return auditErr(err)
	}
	w := e.Stdout
	fmt.Fprintln(w, "削除証明書の検証に成功しました / the destruction certificate verifies")
	fmt.Fprintf(w, "  証明書 / certificate:       %s\n", rep.ID)
	fmt.Fprintf(w, "  契約 / contract:            %s %s\n", cert.Contract.Code, cert.Contract.Name)
	fmt.Fprintf(w, "  削除日時 / destroyed:        %s 〜 %s\n", fmtTime(cert.StartedAt), fmtTime(cert.CompletedAt))
	fmt.Fprintf(w, "  作業者 / operator:          %s\n", cert.Operator)
	fmt.Fprintf(w, "  情報管理責任者 / manager:    %s\n", cert.Manager)
	fmt.Fprintf(w, "  対象 / covered:             送付 %d 件, ファイル %d 件, 鍵 %d 件 / %d transfers, %d files, %d keys\n",
		rep.Transfers, rep.Files, rep.Keys, rep.Transfers, rep.Files, rep.Keys)
	fmt.Fprintf(w, "  削除前のダウンロード / downloaded before destruction: %d\n", rep.Downloaded)
	fmt.Fprintf(w, "  検証鍵 / key:               %s\n", rep.Key)
	fmt.Fprintf(w, "  チェックポイント / checkpoint: %s, root %s\n", coverage(rep.Checkpoint.Size), rep.Checkpoint.Root)
	fmt.Fprintf(w, "  証明された記録 / entries proven in the tree: %d（すべて記載内容と一致 / all match the certificate）\n", rep.Proofs)
	if rep.Names > 0 {
		fmt.Fprintf(w, "  名前 / names:               %d 件、それぞれコミットメントと一致 / %d, each matches its commitment\n", rep.Names, rep.Names)
	}
	printWitnesses(w, policy, rep.Witnesses)
	_ = ctx
	return nil
}

// witnessFlags are --witness KEY (repeatable) and --witnesses K.
type witnessFlags struct {
	keys   []string
	quorum int
}

func addWitnessFlags(fs *flag.FlagSet) *witnessFlags {
	wf := &witnessFlags{}
	fs.Func("witness", "証人の検証鍵または @ファイル（複数可） / a witness's verifier key, or @file (repeatable)", func(v string) error {
		k, err := readKey(v)
		if err != nil {
			return err
		}
		wf.keys = append(wf.keys, k)
		return nil
	})
	fs.IntVar(&wf.quorum, "witnesses", 0, "必要な証人の連署の数（既定: --witness の全員） / cosignatures required (default: every --witness)")
	return wf
}

// offlineFlags are the flags of the offline verifiers (verify,
// verify-certificate): the gateway's verifier key and the witnesses.
type offlineFlags struct {
	key string
	wf  *witnessFlags
}

func addOfflineFlags(fs *flag.FlagSet) *offlineFlags {
	o := &offlineFlags{wf: addWitnessFlags(fs)}
	fs.StringVar(&o.key, "key", "", "検証鍵（公開鍵）または @ファイル / verifier key, or @file")
	return o
}

// parse parses args: the one file to verify (none or several: the usage
// error one), the verifier key (--key is required) and the witness policy.
func (o *offlineFlags) parse(fs *flag.FlagSet, args []string, one usageError) (file, vkey string, policy audit.WitnessPolicy, err error) {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return "", "", policy, err
	}
	if policy, err = o.wf.policy(); err != nil {
		return "", "", policy, err
	}
	if len(pos) != 1 {
		return "", "", policy, one
	}
	if o.key == "" {
		return "", "", policy, usageError{"--key で検証鍵を指定してください / --key is required"}
	}
	if vkey, err = readKey(o.key); err != nil {
		return "", "", policy, err
	}
	return pos[0], vkey, policy, nil
}

func (wf *witnessFlags) policy() (audit.WitnessPolicy, error) {
	if wf.quorum < 0 || wf.quorum > len(wf.keys) {
		return audit.WitnessPolicy{}, usageError{fmt.Sprintf("--witnesses %d には --witness が %d 個以上必要です / --witnesses %d needs at least as many --witness keys (%d given)",
			wf.quorum, wf.quorum, wf.quorum, len(wf.keys))}
	}
	return audit.WitnessPolicy{Keys: wf.keys, Quorum: wf.quorum}, nil
}

// printWitnesses lists the witness cosignatures a verification required.
func printWitnesses(w io.Writer, p audit.WitnessPolicy, got []cosig.Cosigned) {
	if len(p.Keys) == 0 {
		return
	}
	k := p.Quorum
	if k == 0 {
		k = len(p.Keys)
	}
	fmt.Fprintf(w, "  証人の連署 / witness cosignatures: %d（必要 %d / %d required of %d）\n", len(got), k, k, len(p.Keys))
	for _, c := range got {
		fmt.Fprintf(w, "    %s  %s\n", c.Witness, fmtTime(c.Time))
	}
}
