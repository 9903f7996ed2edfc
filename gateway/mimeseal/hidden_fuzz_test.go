package mimeseal

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"unicode/utf16"

	"golang.org/x/net/html"
)

// FuzzHiddenText is the differential check for files hidden in text parts: a text part the
// walker keeps must hold nothing that a mail client decodes as a file. The oracle is written
// independently of the walker's scanner: the rules of the clients themselves (Thunderbird's
// uuencode, yEnc and BinHex recognisers, GNU uudecode, a browser's URL parsing) applied to the
// content as decoded by the standard library, and the HTML tokenised by golang.org/x/net/html
// (its own entity decoder). Sealed parts are checked by the invariants of FuzzRewrite: nothing
// of them reaches the output.
func FuzzHiddenText(f *testing.F) {
	for _, c := range hiddenCases() {
		kind := uint8(0)
		switch {
		case strings.HasPrefix(c.ct, "text/html"):
			kind = 1
		case strings.Contains(c.ct, "format=flowed"):
			kind = 2
		}
		content := c.content
		if c.raw != "" {
			continue
		}
		for _, enc := range []uint8{0, 1, 2} {
			f.Add([]byte(content), kind+3*enc)
		}
	}
	f.Add([]byte("<img src=\"x.png\">data: no"), uint8(1))
	f.Fuzz(func(t *testing.T, content []byte, kind uint8) {
		ct := []string{"text/plain; charset=utf-8", "text/html; charset=utf-8", "text/plain; charset=utf-8; format=flowed"}[kind%3]
		cte := []string{"7bit", "quoted-printable", "base64"}[(kind/3)%3]
		msg := textMail(ct, cte, encodeBody(cte, content))
		checkInvariants(t, msg)
		skel, res, _, _, err := run(t, msg, Options{})
		if err != nil {
			return // refused (bare line ending in a 7bit part): nothing delivered
		}
		if len(res.Attachments) > 0 {
			return // sealed
		}
		out := render(t, skel, "NOTICE-TOKEN")
		l, err := leaves(out, opaquePolicy)
		if err != nil || len(l) != 2 {
			t.Fatalf("output: %v, %d leaves", err, len(l))
		}
		decoded := l[0].decoded(t)
		if why := clientSeesFile(decoded, kind%3 == 1); why != "" {
			t.Fatalf("kept a %s part (%s) in which a client finds a file: %s\ncontent %q", ct, cte, why, decoded)
		}
	})
}

var (
	// Thunderbird (MimeUntypedText): "begin " and 3 or 4 octal digits and a space.
	tbUUBegin = regexp.MustCompile(`^begin [0-7]{3,4} +\S`)
	// GNU sharutils uudecode: "begin" or "begin-base64", a mode, a name.
	gnuUUBegin  = regexp.MustCompile(`^begin(-base64)?[ \t]+[0-7]+[ \t]+\S`)
	yencBegin   = regexp.MustCompile(`(?i)^=ybegin[ \t]`)
	binhexMagic = "(This file must be converted with BinHex"
	pgpMessage  = "-----BEGIN PGP MESSAGE-----"
)

// clientSeesFile returns why a mail client would offer a file from this decoded text part,
// or "". Clients look for uuencode, yEnc, BinHex and PGP blocks in plain text only.
func clientSeesFile(content []byte, isHTML bool) string {
	if len(content) >= 2 && (content[0] == 0xff && content[1] == 0xfe || content[0] == 0xfe && content[1] == 0xff) {
		content = []byte(fromUTF16(content)) // a byte order mark wins over the declared charset
	}
	if isHTML {
		return htmlFile(content)
	}
	lines := strings.FieldsFunc(string(content), func(r rune) bool { return r == '\r' || r == '\n' })
	for _, line := range lines {
		switch {
		case tbUUBegin.MatchString(line), gnuUUBegin.MatchString(line):
			return "uuencode: " + line
		case yencBegin.MatchString(line):
			return "yEnc: " + line
		case strings.HasPrefix(line, binhexMagic):
			return "BinHex: " + line
		case strings.HasPrefix(line, pgpMessage):
			return "PGP: " + line
		}
	}
	return ""
}

func fromUTF16(b []byte) string {
	be := b[0] == 0xfe
	var u []uint16
	for i := 2; i+1 < len(b); i += 2 {
		if be {
			u = append(u, uint16(b[i])<<8|uint16(b[i+1]))
		} else {
			u = append(u, uint16(b[i+1])<<8|uint16(b[i]))
		}
	}
	return string(utf16.Decode(u))
}

// urlIsData applies the URL parser's preprocessing (strip leading and trailing C0 controls and
// spaces, remove tabs and newlines, scheme case-insensitive).
func urlIsData(v string) bool {
	v = strings.TrimFunc(v, func(r rune) bool { return r <= ' ' })
	v = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, v)
	return strings.HasPrefix(strings.ToLower(v), "data:")
}

// cssDataURL is a data: URL in CSS text (white space removed): "data:" where a URL may start,
// not inside a longer scheme or word ("metadata:", "0data:" are not data URLs).
var cssDataURL = regexp.MustCompile(`(^|[^a-z0-9+.\-])data:`)

func cssHasData(s string) bool {
	return cssDataURL.MatchString(strings.ToLower(strings.Join(strings.Fields(s), "")))
}

func htmlFile(content []byte) string {
	z := html.NewTokenizer(bytes.NewReader(content))
	inStyle := false
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return ""
		case html.TextToken:
			if inStyle && cssHasData(string(z.Text())) {
				return "data: URI in a style element"
			}
		case html.EndTagToken:
			if name, _ := z.TagName(); string(name) == "style" {
				inStyle = false
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, more := z.TagName()
			switch string(name) {
			case "object", "embed", "applet":
				return "<" + string(name) + ">"
			case "style":
				inStyle = tt == html.StartTagToken
			}
			for more {
				var k, v []byte
				k, v, more = z.TagAttr()
				key, val := string(k), string(v)
				switch {
				case key == "srcdoc":
					return "srcdoc"
				case urlIsData(val):
					return "data: URI in " + key
				case key == "style" && cssHasData(val):
					return "data: URI in a style attribute"
				case key == "srcset":
					for _, cand := range strings.Split(val, ",") {
						if urlIsData(cand) {
							return "data: URI in srcset"
						}
					}
				case key == "content" && strings.Contains(strings.ToLower(strings.Join(strings.Fields(val), "")), "url=data:"):
					return "data: URI in a refresh"
				}
			}
		}
	}
}

// The oracle itself finds what it should (so that the differential check cannot pass by
// finding nothing).
func TestClientSeesFileOracle(t *testing.T) {
	for _, c := range hiddenCases() {
		if c.raw != "" || c.reason == "" || c.reason == "large-text" || c.reason == "unparseable" {
			continue
		}
		isHTML := strings.HasPrefix(c.ct, "text/html")
		got := clientSeesFile([]byte(c.content), isHTML)
		// The oracle models clients, not every variant the walker refuses to guess about.
		wantFound := map[string]bool{
			"uuencode 7bit": true, "uuencode no cte": true, "uuencode quoted-printable": true, "uuencode base64": true,
			"uuencode mode 0644": true, "uuencode Outlook mode 600": true, "uuencode GNU begin-base64": true,
			"uuencode LF line ends": true, "uuencode CR line ends": true, "binhex": true, "yenc 8bit": true,
			"yenc upper case": true, "pgp message": true, "html img data": true, "html a data": true, "html object": true,
			"html embed": true, "html iframe srcdoc": true, "html css style element": true, "html entity decimal": true,
			"html entity hex": true, "html entity colon": true, "html entity tab in scheme": true, "html upper case": true,
			"html tab in scheme": true, "html newline in scheme": true, "html unquoted": true, "html srcset": true,
			"html meta refresh": true, "html svg image": true, "charset BOM": true, "html uuencode": false,
		}
		if wantFound[c.name] && got == "" {
			t.Errorf("%s: the oracle finds nothing", c.name)
		}
	}
	for _, c := range hiddenCases() {
		if c.reason == "" && clientSeesFile([]byte(c.content), strings.HasPrefix(c.ct, "text/html")) != "" {
			t.Errorf("%s: the oracle finds a file in a clean text", c.name)
		}
	}
}
