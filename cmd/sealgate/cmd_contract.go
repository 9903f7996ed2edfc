package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/transfer"
)

const contractUsage = `Usage: sealgate contract <command> [arguments]

  add CODE --name NAME [settings]       契約を登録 / register a contract
  list                                  契約の一覧 / list contracts
  show CODE                             契約の詳細 / show a contract
  update CODE [settings]                契約を変更 / change a contract
  end CODE [--reason TEXT] [--yes]      契約を終了し、保管データをすべて破棄して削除証明書を発行
                                        end it: destroy everything held under it, issue the certificate

Settings:
  --name TEXT, --counterparty TEXT, --manager ACCOUNT|ADDRESS (情報管理責任者)
  --domains a.example,b.example         受信を許可するドメイン（サブドメインを含む） / allowed domains (and subdomains)
  --addresses x@c.example,...           受信を許可するアドレス / allowed addresses
  --add-domain D, --remove-domain D, --add-address A, --remove-address A   (update)
  --any-recipient[=false]               すべての宛先を許可 / allow any recipient
  --start DATE, --end DATE              契約期間（YYYY-MM-DD は設定のタイムゾーン、終了日はその日の終わりまで） / term
  --link-expiry 14d                     リンクの有効期間 / link lifetime ("default": configured)
  --max-expiry 90d                      延長できる上限（送信時から） / longest extension from sending
  --download-limit 5                    受信者・ファイルごとの回数（0 は無制限、default は設定値） / per recipient and file
  --approval[=false]                    持出しに承認が必要 / take-out needs the manager's approval
  --key-delivery MODE                   パスフレーズの届け方 / how recipients get the key:
                                        separate-mail 別メールで受信者へ / a separate key notice (default)
                                        public-key    登録済み公開鍵のみ（未登録の宛先は拒否） / registered keys only
                                        manual        送信者へ届け、電話等で伝える / to the sender, to hand over
  --strip-tag[=false]                   外部宛ての件名から [CODE] を除く / strip [CODE] from external subjects

Mail is routed to a contract by a subject tag [CODE] or 【CODE】, else the header
X-Sealgate-Contract: CODE, else the single contract whose counterparties include
every external recipient (several such contracts: refused, asking for a tag);
recipients no contract covers go under the default contract
(transfer.default_contract), or are refused when it is set to "".
件名タグ [CODE]/【CODE】、X-Sealgate-Contract ヘッダー、全外部宛先を含む唯一の契約の順に
契約を決めます（該当が複数ならタグを求めて拒否）。どの契約にも含まれない宛先は既定の契約へ、
既定の契約が "" なら拒否します。
`

type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}
func (l listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l.v = append(*l.v, p)
		}
	}
	return nil
}

type contractFlags struct {
	fs                                       *flag.FlagSet
	name, counterparty, manager, keyDeliver  string
	start, end, linkExpiry, maxExpiry        string
	limit                                    string
	domains, addresses                       []string
	addDomains, rmDomains, addAddrs, rmAddrs []string
	anyRecipient, approval, stripTag         bool
	reason                                   string
	yes                                      bool
}

func newContractFlags(fs *flag.FlagSet) *contractFlags {
	f := &contractFlags{fs: fs}
	fs.StringVar(&f.name, "name", "", "契約名 / contract name")
	fs.StringVar(&f.counterparty, "counterparty", "", "相手方 / counterparty")
	fs.StringVar(&f.manager, "manager", "", "情報管理責任者 / information manager")
	fs.StringVar(&f.keyDeliver, "key-delivery", "", "separate-mail | public-key | manual")
	fs.StringVar(&f.start, "start", "", "開始日 / start date")
	fs.StringVar(&f.end, "end", "", "終了日 / end date")
	fs.StringVar(&f.linkExpiry, "link-expiry", "", "リンクの有効期間 / link lifetime")
	fs.StringVar(&f.maxExpiry, "max-expiry", "", "延長の上限 / maximum lifetime")
	fs.StringVar(&f.limit, "download-limit", "", "ダウンロード回数の上限 / download limit")
	fs.Var(listFlag{&f.domains}, "domains", "許可するドメイン / allowed domains")
	fs.Var(listFlag{&f.addresses}, "addresses", "許可するアドレス / allowed addresses")
	fs.Var(listFlag{&f.addDomains}, "add-domain", "ドメインを追加 / add a domain")
	fs.Var(listFlag{&f.rmDomains}, "remove-domain", "ドメインを削除 / remove a domain")
	fs.Var(listFlag{&f.addAddrs}, "add-address", "アドレスを追加 / add an address")
	fs.Var(listFlag{&f.rmAddrs}, "remove-address", "アドレスを削除 / remove an address")
	fs.BoolVar(&f.anyRecipient, "any-recipient", false, "すべての宛先を許可 / allow any recipient")
	fs.BoolVar(&f.approval, "approval", false, "持出しに承認が必要 / take-out needs approval")
	fs.BoolVar(&f.stripTag, "strip-tag", false, "件名のタグを除く / strip the subject tag")
	fs.StringVar(&f.reason, "reason", "", "理由（台帳に記録） / reason (recorded in the ledger)")
	fs.BoolVar(&f.yes, "yes", false, "確認せずに実行 / do not ask for confirmation")
	return f
}

func (f *contractFlags) set() map[string]bool {
	m := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { m[fl.Name] = true })
	return m
}

// parseDate reads YYYY-MM-DD in loc (the start of the day, or the end of
// it for an end date) or RFC 3339; "" is the zero time.
// given points *dst at v when the flag name was given.
func given[T any](set map[string]bool, name string, v *T, dst **T) {
	if set[name] {
		*dst = v
	}
}

// parseSet sets *dst to the parsed value of a flag when the flag was given.
func parseSet[T any](set map[string]bool, name, val string, parse func(string) (T, error), dst **T) error {
	if !set[name] {
		return nil
	}
	v, err := parse(val)
	if err != nil {
		return err
	}
	*dst = &v
	return nil
}

func parseDate(s string, loc *time.Location, end bool) (time.Time, error) {
	if s == "" || s == "-" || s == "none" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	d, err := time.ParseInLocation("2006-01-02", s, loc)
	if err != nil {
		return time.Time{}, usageError{fmt.Sprintf("日付の形式が正しくありません（YYYY-MM-DD または RFC 3339） / invalid date %q", s)}
	}
	if end {
		d = d.AddDate(0, 0, 1)
	}
	return d.UTC(), nil
}

func parseDur(s string) (time.Duration, error) {
	if s == "" || s == "default" {
		return 0, nil
	}
	var d config.Duration
	if err := d.UnmarshalText([]byte(s)); err != nil || d <= 0 {
		return 0, usageError{fmt.Sprintf("期間の形式が正しくありません（例 14d, 36h） / invalid duration %q (e.g. 14d, 36h)", s)}
	}
	return d.D(), nil
}

func parseLimit(s string) (int, error) {
	switch s {
	case "default":
		return contract.DefaultLimit, nil
	case "unlimited":
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, usageError{fmt.Sprintf("回数が正しくありません（0 は無制限） / invalid download limit %q (0 = unlimited)", s)}
	}
	return n, nil
}

// contractErr turns library errors into what a user reads.
func contractErr(err error) error {
	if err == nil {
		return nil
	}
	var ue usageError
	if errors.As(err, &ue) {
		return err
	}
	ja := "失敗しました"
	switch {
	case errors.Is(err, contract.ErrNotFound), errors.Is(err, transfer.ErrNotFound):
		ja = "見つかりません"
	case errors.Is(err, contract.ErrExists):
		ja = "同じコードの契約がすでにあります"
	case errors.Is(err, contract.ErrInvalid), errors.Is(err, transfer.ErrInvalid):
		ja = "値が正しくありません"
	case errors.Is(err, contract.ErrNotActive), errors.Is(err, transfer.ErrNotActive):
		ja = "すでに終了・取消し済みです"
	case errors.Is(err, contract.ErrNotStarted):
		ja = "契約がまだ開始していません"
	case errors.Is(err, contract.ErrExpired):
		ja = "契約の終了日を過ぎています"
	case errors.Is(err, transfer.ErrTooLate):
		ja = "契約で許される期限を超えています"
	case errors.Is(err, destroy.ErrStillPresent):
		ja = "削除したはずのファイルがまだ存在します（破棄は完了していません。再実行してください）"
	case errors.Is(err, destroy.ErrIncomplete):
		ja = "破棄が完了していません（再実行してください）"
	case errors.Is(err, context.Canceled):
		ja = "中断しました（再実行すると続きから再開します）"
	}
	return &userError{msg: ja + " / " + err.Error(), err: err}
}

func cmdContract(ctx context.Context, e *env, args []string) error {
	sub, fs, args, ok := subcommand(e, "contract", contractUsage, args)
	if !ok {
		return nil
	}
	f := newContractFlags(fs)
	pos, err := parseFlags(f.fs, args)
	if err != nil {
		return err
	}
	code := ""
	if len(pos) > 0 {
		code = pos[0]
	}
	if sub != "list" && (len(pos) != 1 || code == "") {
		return usageError{"契約コードを 1 つ指定してください / give exactly one contract CODE\n" + contractUsage}
	}
	c, loc, db, err := e.configDB(ctx)
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		return contractErr(contractAdd(ctx, e, f, code, loc))
	case "update":
		return contractErr(contractUpdate(ctx, e, f, code, loc))
	case "list":
		list, err := contract.List(ctx, db.Read())
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CODE\tSTATUS\tNAME\tCOUNTERPARTY\tALLOWED\tTERM")
		for _, k := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Code, k.Status, k.Name, k.Counterparty, allowed(k), contractTerm(k, loc))
		}
		return tw.Flush()
	case "show":
		k, err := contract.ByCode(ctx, db.Read(), code)
		if err != nil {
			return contractErr(err)
		}
		return showContract(ctx, e, k, loc, contract.DefaultsFrom(c))
	case "end":
		return contractErr(contractEnd(ctx, e, f, code))
	}
	return usageError{fmt.Sprintf("不明なサブコマンドです / unknown subcommand %q\n%s", sub, contractUsage)}
}

func contractAdd(ctx context.Context, e *env, f *contractFlags, code string, loc *time.Location) error {
	s := contract.Spec{Code: code, Name: f.name, Counterparty: f.counterparty, Manager: f.manager, KeyDelivery: f.keyDeliver,
		Domains: f.domains, Addresses: f.addresses, AnyRecipient: f.anyRecipient, ApprovalRequired: f.approval, StripTag: f.stripTag,
		DownloadLimit: contract.DefaultLimit}
	var err error
	if s.StartsAt, err = parseDate(f.start, loc, false); err != nil {
		return err
	}
	if s.EndsAt, err = parseDate(f.end, loc, true); err != nil {
		return err
	}
	c, _ := e.Config()
	// New contracts state their link expiry and limit explicitly (the
	// configured values unless given); "default" keeps following them.
	s.LinkExpiry, s.DownloadLimit = c.Transfer.LinkExpiry.D(), c.Transfer.DownloadLimit
	if f.linkExpiry != "" {
		if s.LinkExpiry, err = parseDur(f.linkExpiry); err != nil {
			return err
		}
	}
	if f.maxExpiry != "" {
		if s.MaxExpiry, err = parseDur(f.maxExpiry); err != nil {
			return err
		}
	}
	if f.limit != "" {
		if s.DownloadLimit, err = parseLimit(f.limit); err != nil {
			return err
		}
	}
	if !s.AnyRecipient && len(s.Domains) == 0 && len(s.Addresses) == 0 {
		return usageError{"--domains、--addresses または --any-recipient で受信を許可する相手を指定してください / give --domains, --addresses or --any-recipient"}
	}
	db, _ := e.OpenDB(ctx)
	keys, err := e.Keys()
	if err != nil {
		return err
	}
	led, err := e.Ledger(ctx)
	if err != nil {
		return err
	}
	k, err := contract.Create(ctx, db, keys, led, s, cliActor(e), e.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "契約を登録しました / registered contract %s (%s)\n", k.Code, allowed(k))
	return nil
}

func contractUpdate(ctx context.Context, e *env, f *contractFlags, code string, loc *time.Location) error {
	set := f.set()
	var ch contract.Changes
	given(set, "name", &f.name, &ch.Name)
	given(set, "counterparty", &f.counterparty, &ch.Counterparty)
	given(set, "manager", &f.manager, &ch.Manager)
	given(set, "key-delivery", &f.keyDeliver, &ch.KeyDelivery)
	date := func(end bool) func(string) (time.Time, error) {
		return func(s string) (time.Time, error) { return parseDate(s, loc, end) }
	}
	if err := cmp.Or(
		parseSet(set, "start", f.start, date(false), &ch.StartsAt),
		parseSet(set, "end", f.end, date(true), &ch.EndsAt),
		parseSet(set, "link-expiry", f.linkExpiry, parseDur, &ch.LinkExpiry),
		parseSet(set, "max-expiry", f.maxExpiry, parseDur, &ch.MaxExpiry),
		parseSet(set, "download-limit", f.limit, parseLimit, &ch.DownloadLimit),
	); err != nil {
		return err
	}
	given(set, "any-recipient", &f.anyRecipient, &ch.AnyRecipient)
	given(set, "approval", &f.approval, &ch.ApprovalRequired)
	given(set, "strip-tag", &f.stripTag, &ch.StripTag)
	given(set, "domains", &f.domains, &ch.Domains)
	given(set, "addresses", &f.addresses, &ch.Addresses)
	ch.AddDomains, ch.RemoveDomains, ch.AddAddresses, ch.RemoveAddresses = f.addDomains, f.rmDomains, f.addAddrs, f.rmAddrs
	db, _ := e.OpenDB(ctx)
	led, err := e.Ledger(ctx)
	if err != nil {
		return err
	}
	k, err := contract.Update(ctx, db, led, code, ch, cliActor(e), e.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "契約を変更しました / updated contract %s (%s)\n", k.Code, allowed(k))
	return nil
}

func allowed(k *contract.Contract) string {
	if k.AnyRecipient {
		return "*"
	}
	return strings.Join(append(append([]string{}, k.Domains...), k.Addresses...), ",")
}

func contractTerm(k *contract.Contract, loc *time.Location) string {
	day := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.In(loc).Format("2006-01-02")
	}
	end := ""
	if !k.EndsAt.IsZero() {
		end = day(k.EndsAt.Add(-time.Nanosecond))
	}
	if day(k.StartsAt) == "" && end == "" {
		return "-"
	}
	return day(k.StartsAt) + "〜" + end
}

func showContract(ctx context.Context, e *env, k *contract.Contract, loc *time.Location, d contract.Defaults) error {
	db, err := e.OpenDB(ctx)
	if err != nil {
		return err
	}
	transfers, err := transfer.CountTransfers(ctx, db.Read(), k.ID)
	if err != nil {
		return err
	}
	files, err := transfer.CountFiles(ctx, db.Read(), k.ID)
	if err != nil {
		return err
	}
	certificate := ""
	if !k.EndedAt.IsZero() {
		c, err := destroy.LatestCertificate(ctx, db.Read(), k.ID)
		switch {
		case errors.Is(err, destroy.ErrNoCertificate):
			certificate = "なし / none"
		case err != nil:
			return fmt.Errorf("failed to read the destruction certificate of %s: %w", k.Code, err)
		default:
			certificate = c.ID
		}
	}
	yes := func(b bool) string {
		if b {
			return "はい / yes"
		}
		return "いいえ / no"
	}
	limit := strconv.Itoa(k.DownloadLimitOr(d))
	if k.DownloadLimitOr(d) == 0 {
		limit = "無制限 / unlimited"
	}
	if k.DownloadLimit == contract.DefaultLimit {
		limit += "（設定値 / configured default）"
	}
	w := tabwriter.NewWriter(e.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "契約コード / code\t%s\n", k.Code)
	fmt.Fprintf(w, "状態 / status\t%s\n", k.Status)
	fmt.Fprintf(w, "契約名 / name\t%s\n", k.Name)
	fmt.Fprintf(w, "相手方 / counterparty\t%s\n", k.Counterparty)
	fmt.Fprintf(w, "情報管理責任者 / manager\t%s\n", k.Manager)
	fmt.Fprintf(w, "許可する受信者 / allowed recipients\t%s\n", allowed(k))
	fmt.Fprintf(w, "契約期間 / term\t%s\n", contractTerm(k, loc))
	fmt.Fprintf(w, "リンクの有効期間 / link expiry\t%s\n", days(k.LinkExpiryOr(d)))
	fmt.Fprintf(w, "延長の上限 / max expiry\t%s\n", days(k.MaxExpiryOr(d)))
	fmt.Fprintf(w, "ダウンロード回数 / download limit\t%s\n", limit)
	fmt.Fprintf(w, "持出し承認 / approval required\t%s\n", yes(k.ApprovalRequired))
	fmt.Fprintf(w, "鍵の送付 / key delivery\t%s\n", k.KeyDelivery)
	fmt.Fprintf(w, "件名タグを除く / strip tag\t%s\n", yes(k.StripTag))
	fmt.Fprintf(w, "契約鍵 / contract key\t%s\n", k.KEKRecipient)
	fmt.Fprintf(w, "送付 / transfers\t%d（有効 / active %d）\n", transfers.Total, transfers.Active)
	fmt.Fprintf(w, "ファイル / files\t%d（保管中 / stored %d）\n", files.Total, files.Stored)
	if !k.EndingAt.IsZero() {
		fmt.Fprintf(w, "終了 / ended\t%s by %s %s\n", k.EndingAt.In(loc).Format("2006-01-02 15:04:05"), k.EndOperator, k.EndReason)
	}
	if !k.EndedAt.IsZero() {
		fmt.Fprintf(w, "破棄完了 / destroyed\t%s（削除証明書 / certificate %s）\n", k.EndedAt.In(loc).Format("2006-01-02 15:04:05"), certificate)
	}
	return w.Flush()
}

// days shows a duration in days when it is whole days ("14d").
func days(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}

func contractEnd(ctx context.Context, e *env, f *contractFlags, code string) error {
	db, err := e.OpenDB(ctx)
	if err != nil {
		return err
	}
	k, err := contract.ByCode(ctx, db.Read(), code)
	if err != nil {
		return err
	}
	if k.Status == contract.StatusActive && !f.yes {
		if !e.IsTerminal {
			return usageError{"契約の終了は取り消せません。--yes を付けて実行してください / ending a contract cannot be undone: run with --yes"}
		}
		fmt.Fprintf(e.Stderr, "契約 %s を終了し、保管しているファイルと鍵をすべて破棄します。取り消せません。\n"+
			"This ends contract %s and destroys every file and key held under it. It cannot be undone.\n"+
			"確認のため契約コードを入力してください / type the contract code to confirm: ", k.Code, k.Code)
		line, _ := bufio.NewReader(e.Stdin).ReadString('\n')
		if strings.TrimSpace(line) != k.Code {
			return errors.New("中止しました / aborted")
		}
	}
	pp := &phaseProgress{e: e}
	d, err := e.destroyDeps(pp.update)
	if err != nil {
		return err
	}
	switch k.Status {
	case contract.StatusEnding:
		fmt.Fprintf(e.Stderr, "中断していた破棄を再開します / resuming the interrupted destruction of %s\n", k.Code)
	case contract.StatusActive:
		fmt.Fprintf(e.Stderr, "契約 %s を終了します / ending contract %s\n", k.Code, k.Code)
	}
	iss, err := destroy.EndContract(ctx, d, k.Code, cliActor(e), f.reason)
	pp.finish()
	if err != nil {
		return err
	}
	w := e.Stdout
	if iss.WasEnded {
		fmt.Fprintf(w, "契約 %s は終了済みです。削除証明書を書き出しました / contract %s had ended; its certificate was written again\n", k.Code, k.Code)
	} else {
		s := iss.Certificate.Summary
		fmt.Fprintf(w, "契約 %s を終了し、保管データをすべて破棄しました / contract %s ended; everything held under it is destroyed\n", k.Code, k.Code)
		fmt.Fprintf(w, "  鍵 / keys destroyed:        %d\n", s.Keys)
		fmt.Fprintf(w, "  オブジェクト / objects:      %d（削除と不存在を確認 / deleted, proven absent）\n", s.Objects)
		fmt.Fprintf(w, "  削除前のダウンロード / downloaded before: %d\n", s.Downloaded)
	}
	fmt.Fprintf(w, "  削除証明書 / certificate:   %s\n", iss.ID)
	fmt.Fprintf(w, "    JSON: %s\n", iss.JSONPath)
	fmt.Fprintf(w, "    HTML: %s\n", iss.HTMLPath)
	for _, key := range iss.ObjectKeys {
		fmt.Fprintf(w, "    object: %s\n", key)
	}
	if iss.PublishErr != nil {
		fmt.Fprintf(e.Stderr, "警告: 証明書をオブジェクトストレージに保存できませんでした（再実行で再試行します） / warning: %v\n", iss.PublishErr)
	}
	if c, err := e.Config(); err == nil {
		fmt.Fprintf(w, "  検証 / verify: sealgate audit verify-certificate --key @%s %s\n", c.Path("keys", "ledger.pub"), iss.JSONPath)
	}
	return nil
}
