package portal

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// browserResolve resolves a Location header as a browser does: the URL
// parser drops tabs and newlines anywhere and leading/trailing spaces and
// C0 controls, and reads a backslash as a slash in http(s) URLs.
func browserResolve(t *testing.T, base, loc string) *url.URL {
	t.Helper()
	loc = strings.Map(func(r rune) rune {
		switch r {
		case '\t', '\n', '\r':
			return -1
		case '\\':
			return '/'
		}
		return r
	}, strings.TrimFunc(loc, func(r rune) bool { return r <= ' ' }))
	b, _ := url.Parse(base)
	u, err := b.Parse(loc)
	if err != nil {
		return b // unparsable: the browser stays here
	}
	return u
}

// openRedirects are known open-redirect payloads for a "next" parameter.
var openRedirects = []string{
	"/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example", "/\t\t/evil.example",
	"/%09/evil.example", "/%0a/evil.example", "/%0D%0A/evil.example",
	"//evil.example", "///evil.example", "////evil.example", "//evil.example/home",
	"/\\evil.example", "\\\\evil.example", "/\\/evil.example", "\\/evil.example",
	"/%2F%2Fevil.example", "/%2f/evil.example", "/%2F/evil.example", "/%5Cevil.example", "/%5c%5cevil.example",
	"/.//evil.example", "/./\\evil.example", "/../evil.example", "/./evil.example", "/home/../..//evil.example", "/%2e/%2e//evil.example",
	"/／evil.example", "／／evil.example", "/＼evil.example", "/%EF%BC%8F%EF%BC%8Fevil.example", "/%EF%BC%8Fevil.example",
	"javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "data:text/html,<script>alert(1)</script>",
	"http://evil.example", "https://evil.example/home", "https:evil.example", "http:/evil.example", "//user@evil.example",
	"/\x00/evil.example", "/%00/evil.example", "/ /evil.example", " /home", "/home\x7f",
	"/home#//evil.example",
	"/" + strings.Repeat("a", 3000),
}

func TestSafeNextRefusesOpenRedirects(t *testing.T) {
	for _, p := range openRedirects {
		got := safeNext(p)
		show := p
		if len(show) > 80 {
			show = show[:80] + "…"
		}
		if u := browserResolve(t, "https://portal.test/login", got); u.Host != "portal.test" || u.Scheme != "https" {
			t.Errorf("safeNext(%q) = %q: a browser goes to %s", show, got, u)
		}
		if got != "/" && !strings.HasPrefix(p, "/home#") {
			t.Errorf("safeNext(%q) = %.80q, want the default /", show, got)
		}
	}
}

func TestSafeNextKeepsLocalPaths(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "/",
		"/":                                "/",
		"/home":                            "/home",
		"/home#top":                        "/home",
		"/transfers/T-2026-abc":            "/transfers/T-2026-abc",
		"/manage/contracts/C-2026-001/end": "/manage/contracts/C-2026-001/end",
		"/manage/ledger?contract=APP&type=message.held":      "/manage/ledger?contract=APP&type=message.held",
		"/manage/transfers?recipient=carol%40client.example": "/manage/transfers?recipient=carol%40client.example",
		"/manage/ledger?q=%E5%A5%91%E7%B4%84":                "/manage/ledger?q=%E5%A5%91%E7%B4%84",
		"/manage/ledger?next=//evil.example":                 "/manage/ledger?next=%2F%2Fevil.example",
		"/held/M-1/cancel":                                   "/held/M-1/cancel",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

var nextFieldRE = regexp.MustCompile(`name="next" value="([^"]*)"`)

// Over HTTP: /login?next=… carries the payload into the form, and the
// redirect after sign-in stays on the portal.
func TestLoginNextOverHTTP(t *testing.T) {
	f := newStaffFixture(t, nil)
	for _, p := range append(openRedirects[:12:12], "/%09/evil.example", "/\\evil.example", "/／evil.example") {
		b := f.browser()
		_, body := b.get("/login?next=" + url.QueryEscape(p))
		m := nextFieldRE.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no next field for %q", p)
		}
		field := html.UnescapeString(m[1])
		resp, _ := b.post("/login", "/login", url.Values{"name": {"alice"}, "password": {testPassword}, "next": {field}})
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%q: %d", p, resp.StatusCode)
		}
		if u := browserResolve(t, f.srv.URL+"/login", loc); u.Host != strings.TrimPrefix(f.srv.URL, "http://") {
			t.Errorf("next=%q: Location %q takes the browser to %s", p, loc, u)
		}
		// Posted directly, not from the form.
		b = f.browser()
		resp, _ = b.post("/login", "/login", url.Values{"name": {"alice"}, "password": {testPassword}, "next": {p}})
		loc = resp.Header.Get("Location")
		if u := browserResolve(t, f.srv.URL+"/login", loc); u.Host != strings.TrimPrefix(f.srv.URL, "http://") {
			t.Errorf("posted next=%q: Location %q takes the browser to %s", p, loc, u)
		}
	}
}
