package policy

import (
	"fmt"
	"strings"
)

var actionText = map[Action]Text{
	SealAttachments: {JA: "添付ファイルを封印する（部分の規則へ進む）", EN: "seal the attachments (go on to the part rules)"},
	SealMessage:     {JA: "本文を含めメッセージ全体を封印する", EN: "seal the whole message, body included"},
	Hold:            {JA: "承認待ちとして保留する", EN: "hold it for approval"},
	Refuse:          {JA: "送信を拒否する", EN: "refuse the message"},
	Pass:            {JA: "封印せずそのまま送る", EN: "send it as it is, nothing sealed"},
	notify:          {JA: "通知して次の規則へ進む", EN: "notify, then go on to the next rule"},
	Keep:            {JA: "そのまま送る", EN: "keep it as it is"},
	Seal:            {JA: "封印する（ダウンロードリンクに置き換える）", EN: "seal it (replaced by a download link)"},
	Descend:         {JA: "中の部分を一つずつ判断する", EN: "walk into it (its parts are decided one by one)"},
}

// Describe states every rule in plain language, in lang ("ja" or "en"), for `sealgate policy
// check`: one numbered line per rule, in the order they are tried, with the defaults.
func (p *Policy) Describe(lang string) string {
	if lang != "ja" {
		lang = "en"
	}
	var b strings.Builder
	l := func(ja, en string) string {
		if lang == "ja" {
			return ja
		}
		return en
	}
	fmt.Fprintf(&b, "%s sha256:%s\n", l("ポリシー", "Policy"), p.hash)
	fmt.Fprintf(&b, "\n%s\n", l("メッセージの規則（上から順に、最初に一致したもの）:", "Message rules (tried in order, the first that matches decides):"))
	for i, r := range p.message {
		fmt.Fprintf(&b, "%2d. %s\n", i+1, describeMessageRule(r, lang))
	}
	fmt.Fprintf(&b, "%s %s\n", l("既定:", "Default:"), describeMessageRule(p.messageDef, lang))
	fmt.Fprintf(&b, "\n%s\n", l("部分（添付・本文）の規則（上から順に、最初に一致したもの。どの規則も封印・拒否しないマルチパートは中へ進む）:",
		"Part rules (tried in order, the first that matches decides; a multipart that no rule seals or refuses is walked into):"))
	for i, r := range p.part {
		fmt.Fprintf(&b, "%2d. %s\n", i+1, describePartRule(r, lang))
	}
	fmt.Fprintf(&b, "%s %s\n", l("既定:", "Default:"), describePartRule(p.partDef, lang))
	if p.needsHolding() {
		fmt.Fprintf(&b, "\n%s\n", l(
			fmt.Sprintf("内容で判断する「そのまま送る」規則のため、部分を最大 %s メモリに保持します。", sizeText(p.keepBuffer)),
			fmt.Sprintf("Keep rules decided on content hold a part in memory, up to %s.", sizeText(p.keepBuffer))))
	}
	return b.String()
}

// DescribeMessageRule states one message rule in plain language, or "" if there is none by
// that name: `sealgate policy test` prints it next to each decision.
func (p *Policy) DescribeMessageRule(name, lang string) string {
	for _, r := range append(p.message[:len(p.message):len(p.message)], p.messageDef) {
		if r.name == name {
			return describeMessageRule(r, lang)
		}
	}
	return ""
}

// DescribePartRule states one part rule in plain language, or "" if there is none by that name.
func (p *Policy) DescribePartRule(name, lang string) string {
	for _, r := range append(p.part[:len(p.part):len(p.part)], p.partDef) {
		if r.name == name {
			return describePartRule(r, lang)
		}
	}
	return ""
}

func (p *Policy) needsHolding() bool {
	for _, r := range p.part {
		if r.action == Keep && r.needs != 0 && r.sizeBelow == 0 {
			return true
		}
	}
	return false
}

func sizeText(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func joinConds(descs []Text, lang string) string {
	var s []string
	for _, d := range descs {
		s = append(s, d.In(lang))
	}
	if lang == "ja" {
		return strings.Join(s, "、かつ ")
	}
	return strings.Join(s, ", and ")
}

func describeMessageRule(r *messageRule, lang string) string {
	var descs []Text
	for _, p := range r.preds {
		descs = append(descs, p.desc)
	}
	return describeRule(r.name, r.desc, descs, r.action, r.reason, r.notify, lang)
}

func describePartRule(r *partRule, lang string) string {
	var descs []Text
	for _, p := range r.header {
		descs = append(descs, p.desc)
	}
	for _, p := range r.content {
		descs = append(descs, p.desc)
	}
	return describeRule(r.name, r.desc, descs, r.action, r.reason, nil, lang)
}

func describeRule(name, desc string, conds []Text, a Action, reason Text, notify []string, lang string) string {
	var b strings.Builder
	b.WriteString("[" + name + "] ")
	if len(conds) > 0 {
		if lang == "ja" {
			b.WriteString(joinConds(conds, lang) + " なら → ")
		} else {
			b.WriteString("if " + joinConds(conds, lang) + " → ")
		}
	} else if lang == "ja" {
		b.WriteString("→ ")
	} else {
		b.WriteString("→ ")
	}
	b.WriteString(actionText[a].In(lang))
	if a == Refuse {
		if lang == "ja" {
			b.WriteString("（理由: " + reason.JA + "）")
		} else {
			b.WriteString(" (reason: " + reason.EN + ")")
		}
	}
	if len(notify) > 0 {
		if lang == "ja" {
			b.WriteString("；通知先: " + strings.Join(notify, ", "))
		} else {
			b.WriteString("; notify " + strings.Join(notify, ", "))
		}
	}
	if desc != "" {
		b.WriteString(" — " + desc)
	}
	return b.String()
}
