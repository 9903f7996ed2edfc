package policy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

const (
	defaultKeepBuffer = 256 << 10
	maxKeepBuffer     = 16 << 20 // a caller holds this much plaintext in memory at most per part
	maxNameLen        = 64
)

type messageRule struct {
	name   string
	desc   string
	preds  []msgPred
	action Action
	reason Text
	notify []string
}

type msgPred struct {
	desc  Text
	match func(*msgCtx) bool
}

func (r *messageRule) matches(c *msgCtx) bool {
	for _, p := range r.preds {
		if !p.match(c) {
			return false
		}
	}
	return true
}

type partRule struct {
	name      string
	desc      string
	header    []partPred
	content   []partPred
	needs     Need
	sizeBelow int64
	action    Action
	reason    Text
}

type partPred struct {
	desc  Text
	need  Need
	match func(*Part, *Content) bool
}

func (r *partRule) matchHeader(f *Part) bool {
	for _, p := range r.header {
		if !p.match(f, nil) {
			return false
		}
	}
	return true
}

func (r *partRule) matchContent(c *Content) bool {
	for _, p := range r.content {
		if !p.match(nil, c) {
			return false
		}
	}
	return true
}

// compiler collects errors with the rule they belong to.
type compiler struct {
	groups     map[string][]addrPattern
	errs       []error
	usesInline bool
}

func (c *compiler) errorf(where, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
}

func compile(doc *fileDoc) (*Policy, error) {
	c := &compiler{groups: map[string][]addrPattern{}}
	if doc.Version != 1 {
		c.errorf("version", "must be 1 (got %d)", doc.Version)
	}
	p := &Policy{keepBuffer: defaultKeepBuffer}
	if doc.KeepBuffer != "" {
		n, err := parseSize(doc.KeepBuffer)
		switch {
		case err != nil:
			c.errorf("keep_buffer", "%v", err)
		case n <= 0 || n > maxKeepBuffer:
			c.errorf("keep_buffer", "must be between 1 B and %d MiB", maxKeepBuffer>>20)
		default:
			p.keepBuffer = n
		}
	}
	groupNames := make([]string, 0, len(doc.Groups))
	for g := range doc.Groups {
		groupNames = append(groupNames, g)
	}
	slices.Sort(groupNames)
	for _, g := range groupNames {
		where := "groups." + g
		if !validName(g) {
			c.errorf(where, "a group name is letters, digits, '-', '_' and '.'")
		}
		if len(doc.Groups[g]) == 0 {
			c.errorf(where, "empty group")
		}
		for _, s := range doc.Groups[g] {
			ap, err := parseAddrPattern(s)
			if err != nil {
				c.errorf(where, "%v", err)
				continue
			}
			c.groups[g] = append(c.groups[g], ap)
		}
	}
	p.message, p.messageDef = compileStage(c, "message", doc.Message, doc.MessageDefault, "seal_attachments",
		func(f *fileMessageRule) *string { return &f.Name }, c.messageRule)
	p.part, p.partDef = compileStage(c, "part", doc.Part, doc.PartDefault, "seal",
		func(f *filePartRule) *string { return &f.Name }, c.partRule)
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	p.usesInline = c.usesInline
	return p, nil
}

// compileStage compiles one stage's rules and its default; rule names are unique per stage.
func compileStage[F any, R any](c *compiler, stage string, list []F, def *F, usual string,
	name func(*F) *string, build func(where string, f *F, isDefault bool) R) ([]R, R) {
	names := map[string]bool{}
	checkName := func(where, n string) {
		switch {
		case n == "":
			c.errorf(where, "name is required")
		case !validName(n):
			c.errorf(where, "name %q: letters, digits, '-', '_' and '.' only, at most %d", n, maxNameLen)
		case names[n]:
			c.errorf(where, "name %q is used twice", n)
		}
		names[n] = true
	}
	var rules []R
	for i := range list {
		n := *name(&list[i])
		where := fmt.Sprintf("%s rule %d (%s)", stage, i+1, n)
		checkName(where, n)
		rules = append(rules, build(where, &list[i], false))
	}
	where := stage + "_default"
	if def == nil {
		c.errorf(where, "the default is required (action = %q is sealgate's usual behaviour)", usual)
		var zero R
		return rules, zero
	}
	if *name(def) == "" {
		*name(def) = "default"
	}
	checkName(where, *name(def))
	return rules, build(where, def, true)
}

func validName(n string) bool {
	if n == "" || len(n) > maxNameLen || n[0] == '(' {
		return false
	}
	for _, r := range n {
		if !(r == '-' || r == '_' || r == '.' || r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return false
		}
	}
	return true
}

func (c *compiler) reason(where string, action Action, ja, en string) Text {
	if action == Refuse {
		if strings.TrimSpace(ja) == "" || strings.TrimSpace(en) == "" {
			c.errorf(where, "refuse needs reason_ja and reason_en: the sender reads them")
		}
		return Text{JA: ja, EN: en}
	}
	if ja != "" || en != "" {
		c.errorf(where, "reason_ja and reason_en are for action = \"refuse\" only")
	}
	return Text{}
}

// actionName is an action as a rule names it in a policy file.
type actionName struct {
	name   string
	action Action
}

// action returns the action a rule names among choices; an empty or unknown name is an error
// that lists the choices (and gives the zero Action).
func (c *compiler) action(where, name string, choices []actionName) Action {
	names := make([]string, len(choices))
	for i, ch := range choices {
		if ch.name == name {
			return ch.action
		}
		names[i] = ch.name
	}
	list := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	if name == "" {
		c.errorf(where, "action is required: %s", list)
	} else {
		c.errorf(where, "unknown action %q: %s", name, list)
	}
	return 0
}

func (c *compiler) messageRule(where string, fr *fileMessageRule, isDefault bool) *messageRule {
	r := &messageRule{name: fr.Name, desc: fr.Description}
	r.action = c.action(where, fr.Action, []actionName{{"seal_attachments", SealAttachments}, {"seal_message", SealMessage},
		{"hold", Hold}, {"refuse", Refuse}, {"pass", Pass}, {"notify", notify}})
	if r.action == notify {
		if isDefault {
			c.errorf(where, "the default must decide: notify is not allowed here (add notify = [...] to it)")
		}
		if len(fr.Notify) == 0 {
			c.errorf(where, "action notify needs notify = [addresses]")
		}
	}
	r.reason = c.reason(where, r.action, fr.ReasonJA, fr.ReasonEN)
	for _, n := range fr.Notify {
		if g, ok := strings.CutPrefix(n, "group:"); ok {
			pats, known := c.groups[g]
			if !known {
				c.errorf(where, "notify: unknown group %q", g)
			}
			for _, ap := range pats {
				if ap.kind != addrExact {
					c.errorf(where, "notify: group %q holds %q, which is not one address", g, ap.text)
					continue
				}
				r.notify = append(r.notify, ap.value)
			}
			continue
		}
		ap, err := parseAddrPattern(n)
		if err != nil || ap.kind != addrExact {
			c.errorf(where, "notify: %q is not an address", n)
			continue
		}
		r.notify = append(r.notify, ap.value)
	}

	hasPred := false
	add := func(p msgPred) {
		r.preds = append(r.preds, p)
		hasPred = true
	}
	if len(fr.Sender) > 0 {
		m := c.addrMatcher(where+": sender", fr.Sender)
		add(msgPred{
			desc:  Text{JA: "送信者が " + m.desc + " のいずれか", EN: "the sender is one of " + m.desc},
			match: func(x *msgCtx) bool { return m.match(x.m.Sender) },
		})
	}
	if len(fr.Recipient) > 0 {
		m := c.addrMatcher(where+": recipient", fr.Recipient)
		add(msgPred{
			desc: Text{JA: "宛先のいずれかが " + m.desc + " のいずれか", EN: "a recipient is one of " + m.desc},
			match: func(x *msgCtx) bool {
				return slices.ContainsFunc(x.m.Recipients, m.match)
			},
		})
	}
	if len(fr.Contract) > 0 {
		pats := c.globs(where+": contract", fr.Contract, false)
		add(msgPred{
			desc: Text{JA: "契約が " + quoteList(fr.Contract) + " のいずれか", EN: "the contract is one of " + quoteList(fr.Contract)},
			match: func(x *msgCtx) bool {
				return x.m.Contract != "" && globAny(pats, x.m.Contract)
			},
		})
	}
	if fr.DefaultContract != nil {
		want := *fr.DefaultContract
		t := Text{JA: "どの契約にも該当しない（既定の契約）", EN: "no contract covers the recipients (default contract)"}
		if !want {
			t = Text{JA: "契約の下の送信", EN: "the message goes under a contract"}
		}
		add(msgPred{desc: t, match: func(x *msgCtx) bool { return x.m.DefaultContract == want }})
	}
	if fr.Subject != nil {
		re := c.regexp(where+": subject", *fr.Subject)
		add(msgPred{
			desc: Text{JA: "件名が正規表現 " + strconv.Quote(*fr.Subject) + " に一致", EN: "the subject matches " + strconv.Quote(*fr.Subject)},
			match: func(x *msgCtx) bool {
				return re != nil && slices.ContainsFunc(x.values("Subject"), re.MatchString)
			},
		})
	}
	fields := make([]string, 0, len(fr.Header))
	for f := range fr.Header {
		fields = append(fields, f)
	}
	slices.Sort(fields)
	for _, f := range fields {
		if !validFieldName(f) {
			c.errorf(where, "header: %q is not a header field name", f)
			continue
		}
		re := c.regexp(where+": header "+f, fr.Header[f])
		add(msgPred{
			desc: Text{
				JA: "ヘッダ " + f + " が正規表現 " + strconv.Quote(fr.Header[f]) + " に一致",
				EN: "header " + f + " matches " + strconv.Quote(fr.Header[f]),
			},
			match: func(x *msgCtx) bool {
				return re != nil && slices.ContainsFunc(x.values(f), re.MatchString)
			},
		})
	}
	if len(fr.MSIPLabel) > 0 {
		var want []msipLabel
		var descs []string
		for _, l := range fr.MSIPLabel {
			id, site := strings.ToLower(strings.Trim(l.ID, "{}")), strings.ToLower(strings.Trim(l.Site, "{}"))
			if !isGUID(id) {
				c.errorf(where, "msip_label: id %q is not a GUID", l.ID)
			}
			if site != "" && !isGUID(site) {
				c.errorf(where, "msip_label: site %q is not a GUID", l.Site)
			}
			want = append(want, msipLabel{id: id, site: site})
			d := id
			if site != "" {
				d += " (SiteId " + site + ")"
			}
			descs = append(descs, d)
		}
		add(msgPred{
			desc: Text{
				JA: "Microsoft Purview の秘密度ラベルが " + strings.Join(descs, ", ") + " のいずれか",
				EN: "a Microsoft Purview sensitivity label is one of " + strings.Join(descs, ", "),
			},
			match: func(x *msgCtx) bool {
				for _, have := range x.msipLabels() {
					for _, w := range want {
						if have.id == w.id && (w.site == "" || have.site == w.site) {
							return true
						}
					}
				}
				return false
			},
		})
	}
	if len(fr.Sensitivity) > 0 {
		var want []string
		for _, s := range fr.Sensitivity {
			want = append(want, norm.NFKC.String(strings.TrimSpace(s)))
		}
		add(msgPred{
			desc: Text{JA: "Sensitivity ヘッダが " + quoteList(fr.Sensitivity) + " のいずれか", EN: "the Sensitivity header is one of " + quoteList(fr.Sensitivity)},
			match: func(x *msgCtx) bool {
				for _, v := range x.values("Sensitivity") {
					for _, w := range want {
						if strings.EqualFold(strings.TrimSpace(v), w) {
							return true
						}
					}
				}
				return false
			},
		})
	}
	if isDefault && hasPred {
		c.errorf(where, "the default has no predicates: it applies when no rule matched")
	}
	if !isDefault && !hasPred && r.action != notify {
		c.errorf(where, "a rule without predicates matches every message: use message_default instead")
	}
	return r
}

func (c *compiler) partRule(where string, fr *filePartRule, isDefault bool) *partRule {
	r := &partRule{name: fr.Name, desc: fr.Description}
	r.action = c.action(where, fr.Action, []actionName{{"keep", Keep}, {"seal", Seal}, {"refuse", Refuse}, {"walk", Descend}})
	if r.action == Descend {
		multipartOnly := len(fr.MediaType) > 0
		for _, m := range fr.MediaType {
			multipartOnly = multipartOnly && strings.HasPrefix(strings.ToLower(m), "multipart/")
		}
		if !multipartOnly || isDefault {
			c.errorf(where, "action walk is for multiparts: give media_type = [\"multipart/...\"]")
		}
	}
	r.reason = c.reason(where, r.action, fr.ReasonJA, fr.ReasonEN)
	hdr := func(p partPred) { r.header = append(r.header, p) }
	cnt := func(p partPred) {
		r.content = append(r.content, p)
		r.needs |= p.need
	}
	if len(fr.MediaType) > 0 {
		pats := c.globs(where+": media_type", fr.MediaType, true)
		hdr(partPred{
			desc:  Text{JA: "宣言された形式が " + quoteList(fr.MediaType) + " のいずれか", EN: "the declared type is one of " + quoteList(fr.MediaType)},
			match: func(f *Part, _ *Content) bool { return globAny(pats, f.MediaType) },
		})
	}
	if len(fr.Disposition) > 0 {
		var want []string
		for _, d := range fr.Disposition {
			want = append(want, strings.ToLower(d))
		}
		hdr(partPred{
			desc:  Text{JA: "Content-Disposition が " + quoteList(fr.Disposition) + " のいずれか", EN: "Content-Disposition is one of " + quoteList(fr.Disposition)},
			match: func(f *Part, _ *Content) bool { return slices.Contains(want, f.Disposition) },
		})
	}
	if len(fr.DispositionNot) > 0 {
		var not []string
		for _, d := range fr.DispositionNot {
			not = append(not, strings.ToLower(d))
		}
		hdr(partPred{
			desc: Text{JA: "Content-Disposition が " + quoteList(fr.DispositionNot) + " のいずれでもない（空は指定なし）",
				EN: "Content-Disposition is none of " + quoteList(fr.DispositionNot) + " (empty: absent)"},
			match: func(f *Part, _ *Content) bool { return !slices.Contains(not, f.Disposition) },
		})
	}
	if fr.HasFilename != nil {
		want := *fr.HasFilename
		t := Text{JA: "ファイル名がある", EN: "it has a file name"}
		if !want {
			t = Text{JA: "ファイル名がない", EN: "it has no file name"}
		}
		hdr(partPred{desc: t, match: func(f *Part, _ *Content) bool { return f.HasFilename == want }})
	}
	if len(fr.Filename) > 0 {
		pats := c.globs(where+": filename", fr.Filename, true)
		hdr(partPred{
			desc: Text{JA: "ファイル名が " + quoteList(fr.Filename) + " のいずれかに一致", EN: "the file name matches one of " + quoteList(fr.Filename)},
			match: func(f *Part, _ *Content) bool {
				name := f.Filename
				if i := strings.LastIndexAny(name, `/\`); i >= 0 {
					name = name[i+1:]
				}
				return f.HasFilename && globAny(pats, strings.ToLower(norm.NFKC.String(name)))
			},
		})
	}
	if fr.Inline != nil {
		c.usesInline = true
		want := *fr.Inline
		t := Text{JA: "HTML 本文が cid: で参照する画像等（インライン）", EN: "it is referenced by a cid: URL of the HTML body (inline)"}
		if !want {
			t = Text{JA: "HTML 本文から cid: で参照されていない", EN: "it is not referenced by a cid: URL of the HTML body"}
		}
		hdr(partPred{desc: t, match: func(f *Part, _ *Content) bool { return f.Inline == want }})
	}
	if fr.IndexAtLeast != nil || fr.IndexBelow != nil {
		lo, hi := 0, -1
		var ja, en []string
		if fr.IndexAtLeast != nil {
			lo = *fr.IndexAtLeast
			ja = append(ja, fmt.Sprintf("%d 番目以降", lo+1))
			en = append(en, fmt.Sprintf("number %d or later", lo+1))
		}
		if fr.IndexBelow != nil {
			hi = *fr.IndexBelow
			ja = append(ja, fmt.Sprintf("%d 番目まで", hi))
			en = append(en, fmt.Sprintf("among the first %d", hi))
		}
		if lo < 0 || fr.IndexBelow != nil && hi <= lo {
			c.errorf(where, "index_at_least must be ≥ 0 and below index_below")
		}
		hdr(partPred{
			desc:  Text{JA: "メッセージの中で " + strings.Join(ja, "、") + " の部分", EN: "the part is " + strings.Join(en, " and ") + " of the message's parts"},
			match: func(f *Part, _ *Content) bool { return f.Index >= lo && (hi < 0 || f.Index < hi) },
		})
	}
	if len(fr.SniffedType) > 0 {
		pats := c.globs(where+": sniffed_type", fr.SniffedType, true)
		cnt(partPred{
			desc:  Text{JA: "内容から判定した形式が " + quoteList(fr.SniffedType) + " のいずれか", EN: "the type sniffed from the content is one of " + quoteList(fr.SniffedType)},
			need:  NeedSniff,
			match: func(_ *Part, x *Content) bool { return globAny(pats, bareType(x.Sniffed)) },
		})
	}
	if fr.SizeBelow != "" {
		n, err := parseSize(fr.SizeBelow)
		if err != nil || n <= 0 {
			c.errorf(where, "size_below: %q is not a positive size (e.g. \"64KiB\")", fr.SizeBelow)
		}
		if r.action == Keep && n > maxKeepBuffer {
			c.errorf(where, "size_below: a keep rule holds the part in memory: at most %d MiB", maxKeepBuffer>>20)
		}
		r.sizeBelow = n
		cnt(partPred{
			desc:  Text{JA: fr.SizeBelow + " 未満", EN: "it is smaller than " + fr.SizeBelow},
			need:  NeedSize,
			match: func(_ *Part, x *Content) bool { return x.Size < n },
		})
	}
	if fr.SizeAtLeast != "" {
		n, err := parseSize(fr.SizeAtLeast)
		if err != nil || n < 0 {
			c.errorf(where, "size_at_least: %q is not a size (e.g. \"10MiB\")", fr.SizeAtLeast)
		}
		cnt(partPred{
			desc:  Text{JA: fr.SizeAtLeast + " 以上", EN: "it is " + fr.SizeAtLeast + " or larger"},
			need:  NeedSize,
			match: func(_ *Part, x *Content) bool { return x.Size >= n },
		})
	}
	if fr.Encrypted != nil {
		want := *fr.Encrypted
		t := Text{JA: "パスワード付き（暗号化された）アーカイブまたは文書", EN: "it is an encrypted (password-protected) archive or document"}
		if !want {
			t = Text{JA: "暗号化されていない", EN: "it is not an encrypted archive or document"}
		}
		cnt(partPred{desc: t, need: NeedEncrypted, match: func(_ *Part, x *Content) bool { return x.Encrypted == want }})
	}
	if fr.Malware != nil {
		want := *fr.Malware
		t := Text{JA: "ウイルス検査でマルウェアが検出された", EN: "the malware scanner found malware"}
		if !want {
			t = Text{JA: "ウイルス検査で検出なし", EN: "the malware scanner found nothing"}
		}
		cnt(partPred{desc: t, need: NeedMalware, match: func(_ *Part, x *Content) bool { return x.Malware == want }})
	}
	hasPred := len(r.header)+len(r.content) > 0
	if isDefault && hasPred {
		c.errorf(where, "the default has no predicates: it applies when no rule matched")
	}
	if !isDefault && !hasPred {
		c.errorf(where, "a rule without predicates matches every part: use part_default instead")
	}
	return r
}

// Address patterns: "user@example.com" (that address), "@example.com" (any address at that
// domain), "@*.example.com" (any address at a subdomain of it), "group:NAME" (a group).
type addrKind int

const (
	addrExact addrKind = iota + 1
	addrDomain
	addrSubdomain
)

type addrPattern struct {
	kind  addrKind
	value string // lower-case address or domain (without "*.")
	text  string
}

func parseAddrPattern(s string) (addrPattern, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	ap := addrPattern{text: s}
	switch {
	case strings.HasPrefix(t, "@*."):
		ap.kind, ap.value = addrSubdomain, t[3:]
	case strings.HasPrefix(t, "@"):
		ap.kind, ap.value = addrDomain, t[1:]
	default:
		local, domain, ok := strings.Cut(t, "@")
		if !ok || local == "" || strings.Contains(domain, "@") {
			return ap, fmt.Errorf("%q is not an address pattern (user@example.com, @example.com, @*.example.com or group:NAME)", s)
		}
		ap.kind, ap.value = addrExact, t
		return ap, nil
	}
	if ap.value == "" || strings.ContainsAny(ap.value, "@* \t") || strings.HasPrefix(ap.value, ".") || strings.HasSuffix(ap.value, ".") {
		return ap, fmt.Errorf("%q is not an address pattern (user@example.com, @example.com, @*.example.com or group:NAME)", s)
	}
	return ap, nil
}

func (ap addrPattern) match(addr string) bool {
	addr = strings.ToLower(addr)
	switch ap.kind {
	case addrExact:
		return addr == ap.value
	case addrDomain:
		_, d, ok := cutLast(addr, "@")
		return ok && d == ap.value
	case addrSubdomain:
		_, d, ok := cutLast(addr, "@")
		return ok && strings.HasSuffix(d, "."+ap.value)
	}
	return false
}

func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

type addrMatcher struct {
	pats []addrPattern
	desc string
}

func (m addrMatcher) match(addr string) bool {
	for _, p := range m.pats {
		if p.match(addr) {
			return true
		}
	}
	return false
}

func (c *compiler) addrMatcher(where string, list []string) addrMatcher {
	var m addrMatcher
	for _, s := range list {
		if g, ok := strings.CutPrefix(s, "group:"); ok {
			pats, known := c.groups[g]
			if !known {
				c.errorf(where, "unknown group %q", g)
			}
			m.pats = append(m.pats, pats...)
			continue
		}
		ap, err := parseAddrPattern(s)
		if err != nil {
			c.errorf(where, "%v", err)
			continue
		}
		m.pats = append(m.pats, ap)
	}
	m.desc = quoteList(list)
	return m
}

// globs checks shell patterns (path.Match: *, ?, [...]); lower-cased when fold.
func (c *compiler) globs(where string, list []string, fold bool) []string {
	out := make([]string, 0, len(list))
	for _, g := range list {
		if fold {
			g = strings.ToLower(norm.NFKC.String(g))
		}
		if _, err := path.Match(g, ""); err != nil || g == "" {
			c.errorf(where, "%q is not a valid pattern", g)
			continue
		}
		out = append(out, g)
	}
	return out
}

func globAny(pats []string, s string) bool {
	for _, g := range pats {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

// regexp compiles an RE2 expression, NFKC-normalised like the text it is matched against.
func (c *compiler) regexp(where, expr string) *regexp.Regexp {
	re, err := regexp.Compile(norm.NFKC.String(expr))
	if err != nil {
		c.errorf(where, "%v", err)
		return nil
	}
	return re
}

func validFieldName(f string) bool {
	if f == "" {
		return false
	}
	for i := 0; i < len(f); i++ {
		if f[i] <= ' ' || f[i] >= 0x7f || f[i] == ':' {
			return false
		}
	}
	return true
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdef", rune(s[i])) {
				return false
			}
		}
	}
	return true
}

// parseSize reads "512", "64KiB", "10 MiB", "1GiB" (binary units only: "KB" is ambiguous).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("%q is not a size: a number of bytes, or with KiB, MiB or GiB", s)
	}
	return n * mult, nil
}

func quoteList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// bareType is the media type without parameters, lower-case.
func bareType(s string) string {
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	return strings.ToLower(strings.TrimSpace(s))
}
