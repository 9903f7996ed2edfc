package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/sealgate/sealgate/gateway/dryrun"
	"github.com/sealgate/sealgate/policy"
)

const policyUsage = `Usage: sealgate policy <command> [arguments]

  check FILE     ポリシーを検証し、規則を日本語と英語で表示 / validate a policy file and state its rules
  test [--policy FILE] [--contract CODE] [--default-contract] [--sender ADDR] MAIL.eml|DIR ...
                 メールごと・部分ごとの判定（試行、送信なし）と集計 / dry run: each message's and
                 each part's decision, the rule and why, and a summary table
                 (default policy: policy.file of the configuration, else the built-in one)
  test --diff OLD NEW MAIL.eml|DIR ...
                 ポリシー変更で判定が変わるメール / what changing OLD to NEW would change
`

func cmdPolicy(ctx context.Context, e *env, args []string) error {
	sub, fs, args, ok := subcommand(e, "policy", policyUsage, args)
	if !ok {
		return nil
	}
	file := fs.String("policy", "", "ポリシーファイル / policy file")
	diff := fs.Bool("diff", false, "OLD NEW の 2 つのポリシーを比べる / compare two policies, OLD and NEW")
	contractCode := fs.String("contract", "", "メールが属する契約 / the contract the mail goes under")
	defContract := fs.Bool("default-contract", false, "既定の契約の下とみなす / take the mail to go under the default contract")
	sender := fs.String("sender", "", "エンベロープ送信者（省略時は From） / envelope sender (default: the From header)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	switch sub {
	case "check":
		if len(pos) != 1 {
			return usageError{"ポリシーファイルを 1 つ指定してください / give one policy file\n" + policyUsage}
		}
		p, err := policy.Load(pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "%s: OK\n\n%s\n%s", pos[0], p.Describe("ja"), p.Describe("en"))
		return nil
	case "test":
	default:
		return usageError{fmt.Sprintf("不明なコマンドです / unknown command %q\n%s", sub, policyUsage)}
	}
	o := dryrun.Options{Contract: *contractCode, DefaultContract: *defContract, Sender: *sender}
	if c, err := e.Config(); err == nil {
		o.Limits.MaxDepth, o.Limits.MaxParts = c.Limits.MaxMIMEDepth, c.Limits.MaxMIMEParts
		o.Limits.MaxHeaderBytes, o.Limits.MaxLineBytes = int(c.Limits.MaxHeaderBytes), int(c.Limits.MaxHeaderBytes)
		o.Limits.MaxTextBytes = int(c.Limits.MaxTextBytes)
		if *file == "" && !*diff {
			*file = c.Policy.File
		}
	}
	if *diff {
		if len(pos) < 3 {
			return usageError{"--diff OLD NEW とメールを指定してください / give --diff OLD NEW and the mail\n" + policyUsage}
		}
		oldP, err := policy.Load(pos[0])
		if err != nil {
			return err
		}
		newP, err := policy.Load(pos[1])
		if err != nil {
			return err
		}
		files, err := dryrun.Files(pos[2:])
		if err != nil {
			return err
		}
		changes, renamed, total := dryrun.Diff(files, oldP, newP, o)
		printDiff(e.Stdout, oldP, newP, changes, renamed, total)
		return nil
	}
	if len(pos) == 0 {
		return usageError{"メールファイルかフォルダを指定してください / give mail files or folders\n" + policyUsage}
	}
	p, name := policy.Default(), "組み込みの既定 / built-in default"
	if *file != "" {
		if p, err = policy.Load(*file); err != nil {
			return err
		}
		name = *file
	}
	files, err := dryrun.Files(pos)
	if err != nil {
		return err
	}
	o.Policy = p
	printResults(e.Stdout, p, name, dryrun.RunFiles(files, o))
	return nil
}

// outcomeText is what an outcome means, in both languages.
var outcomeText = map[string]string{
	"seal_attachments": "添付ファイルを封印 / attachments sealed",
	"seal_message":     "メッセージ全体を封印 / whole message sealed",
	"hold":             "承認待ちで保留 / held for approval",
	"refuse":           "拒否 / refused",
	"pass":             "そのまま送信 / sent as it is",
	"sealed_whole":     "解析できないため全体を封印 / cannot be parsed: sealed whole",
	"limit":            "制限超過で拒否 / refused: over a limit",
	"error":            "読み取れない / could not be read",
}

func printResults(w io.Writer, p *policy.Policy, name string, rs []*dryrun.Result) {
	fmt.Fprintf(w, "ポリシー / policy: %s (sha256:%s)\n", name, p.Hash())
	msgRules, partRules := map[string]bool{}, map[string]bool{}
	for _, r := range rs {
		fmt.Fprintf(w, "\n%s\n", r.Name)
		fmt.Fprintf(w, "  判定 / outcome: %s — %s", r.Outcome, outcomeText[r.Outcome])
		if r.Rule != "" {
			fmt.Fprintf(w, " [%s]", r.Rule)
		}
		fmt.Fprintln(w)
		if r.Message.Rule != "" {
			msgRules[r.Message.Rule] = true
			if r.Outcome != r.Message.Action.String() {
				fmt.Fprintf(w, "  メッセージの規則 / message rule: %s [%s]\n", r.Message.Action, r.Message.Rule)
			}
		}
		if r.Outcome == "refuse" {
			fmt.Fprintf(w, "  理由 / reason: %s\n", r.Reason.In(""))
		}
		if len(r.Message.Notify) > 0 {
			fmt.Fprintf(w, "  通知 / notify: %s\n", strings.Join(r.Message.Notify, ", "))
		}
		if r.Err != nil {
			fmt.Fprintf(w, "  エラー / error: %v\n", r.Err)
		}
		if len(r.Parts) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, pt := range r.Parts {
			num := "-"
			if pt.Number > 0 {
				num = fmt.Sprint(pt.Number)
			}
			what := strings.Repeat("  ", pt.Depth) + pt.MediaType
			if pt.Filename != "" {
				what += " " + pt.Filename
			}
			facts := ""
			if pt.Sniffed != "" {
				facts = fmt.Sprintf("\t(%s, %d B)", pt.Sniffed, pt.Size)
			}
			rule := "[" + pt.Rule + "]"
			if pt.Hidden != "" {
				rule += " " + pt.Hidden
			}
			if pt.Rule != "unparseable" && pt.Rule != policy.WalkRule {
				partRules[pt.Rule] = true
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s%s\n", num, what, pt.Action, rule, facts)
		}
		tw.Flush()
	}

	fmt.Fprintf(w, "\n規則 / the rules that decided:\n")
	for _, rule := range sortedKeys(msgRules) {
		fmt.Fprintf(w, "  %s\n  %s\n", p.DescribeMessageRule(rule, "ja"), p.DescribeMessageRule(rule, "en"))
	}
	for _, rule := range sortedKeys(partRules) {
		if d := p.DescribePartRule(rule, "ja"); d != "" {
			fmt.Fprintf(w, "  %s\n  %s\n", d, p.DescribePartRule(rule, "en"))
		}
	}

	s := dryrun.Summarize(rs)
	fmt.Fprintf(w, "\n集計 / summary: %d 通 / messages\n", s.Messages)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  判定 / OUTCOME\tメール / MESSAGES")
	for _, k := range sortedKeys(s.Outcomes) {
		fmt.Fprintf(tw, "  %s\t%d\n", k, s.Outcomes[k])
	}
	fmt.Fprintln(tw, "  部分の判定 / PART DECISION\t部分 / PARTS")
	for _, k := range sortedKeys(s.Parts) {
		fmt.Fprintf(tw, "  %s\t%d\n", k, s.Parts[k])
	}
	tw.Flush()
}

func printDiff(w io.Writer, oldP, newP *policy.Policy, changes []dryrun.Change, renamed, total int) {
	fmt.Fprintf(w, "旧 / old: sha256:%s\n新 / new: sha256:%s\n", oldP.Hash(), newP.Hash())
	for _, c := range changes {
		fmt.Fprintf(w, "\n%s\n", c.Name)
		if c.Old.Outcome != c.New.Outcome || c.Old.Rule != c.New.Rule {
			fmt.Fprintf(w, "  判定 / outcome: %s [%s] → %s [%s]\n", c.Old.Outcome, c.Old.Rule, c.New.Outcome, c.New.Rule)
		}
		for _, p := range c.Parts {
			fmt.Fprintf(w, "  部分 / part %s\n", p)
		}
	}
	fmt.Fprintf(w, "\n変更 / changed: %d / %d 通 / messages", len(changes), total)
	if renamed > 0 {
		fmt.Fprintf(w, " (ほかに規則名だけが変わったもの / and decided alike by rules of other names: %d)", renamed)
	}
	fmt.Fprintln(w)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
