package mimeseal

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSafeName(t *testing.T) {
	long := strings.Repeat("あ", 1000) + ".pdf"
	for _, c := range []struct {
		a    Attachment
		want string
	}{
		{Attachment{Filename: "quote.pdf"}, "quote.pdf"},
		{Attachment{Filename: "見積書.pdf"}, "見積書.pdf"},
		{Attachment{Filename: ""}, "attachment-1.bin"},
		{Attachment{Index: 4, Whole: true}, "attachment-5.eml"},
		{Attachment{Filename: "Fwd: plan", Whole: true}, "Fwd_ plan.eml"},
		{Attachment{Filename: "plan.EML", Whole: true}, "plan.EML"},
		{Attachment{Filename: "invoice\u202Efdp.exe"}, "invoicefdp.exe"},
		{Attachment{Filename: "a\u2066b\u2069c\u200E\u200Fd\ufeff.txt"}, "abcd.txt"},
		{Attachment{Filename: "nul\x00byte.txt"}, "nulbyte.txt"},
		{Attachment{Filename: "../../etc/passwd"}, "_.._etc_passwd"},
		{Attachment{Filename: "..\\..\\windows\\system32.dll"}, "_.._windows_system32.dll"},
		{Attachment{Filename: ".htaccess"}, "htaccess"},
		{Attachment{Filename: "...."}, "attachment-1.bin"},
		{Attachment{Filename: "evil\r\nContent-Type: text/html"}, "evilContent-Type_ text_html"},
		{Attachment{Filename: "invoice.pdf                    .exe"}, "invoice.pdf .exe"},
		{Attachment{Filename: "trailing. . ."}, "trailing"},
		{Attachment{Filename: "CON.txt"}, "_CON.txt"},
		{Attachment{Filename: "bad\xff\xfeutf8.txt"}, "bad_utf8.txt"},
		{Attachment{Filename: "q\"uote<>|*?.txt"}, "q_uote_____.txt"},
		{Attachment{Filename: "全角　スペース.txt"}, "全角　スペース.txt"},
	} {
		if got := SafeName(c.a); got != c.want {
			t.Errorf("SafeName(%q) = %q, want %q", c.a.Filename, got, c.want)
		}
	}
	got := SafeName(Attachment{Filename: long})
	if utf8.RuneCountInString(got) != maxNameRunes || !strings.HasSuffix(got, ".pdf") {
		t.Errorf("long name: %d runes, %q...", utf8.RuneCountInString(got), got[len(got)-10:])
	}
	got = SafeName(Attachment{Filename: strings.Repeat("x", 1000)})
	if len(got) != maxNameRunes {
		t.Errorf("long name without extension: %d", len(got))
	}
	got = SafeName(Attachment{Filename: strings.Repeat("x", 1000), Whole: true})
	if len(got) != maxNameRunes || !strings.HasSuffix(got, ".eml") {
		t.Errorf("long whole name: %q", got)
	}
}

func TestFinalExtension(t *testing.T) {
	for in, want := range map[string]string{
		"invoice.pdf.exe":            ".exe",
		"a.PDF":                      ".pdf",
		"noext":                      "",
		".bashrc":                    "",
		"dot.":                       "",
		"x.averyveryveryverylongext": "",
		"a.b c":                      "",
	} {
		if got := FinalExtension(in); got != want {
			t.Errorf("FinalExtension(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSafeName(f *testing.F) {
	f.Add("invoice\u202Efdp.exe", false)
	f.Add("../..\\x\r\n", true)
	f.Fuzz(func(t *testing.T, name string, whole bool) {
		got := SafeName(Attachment{Filename: name, Whole: whole})
		if !utf8.ValidString(got) || got == "" || utf8.RuneCountInString(got) > maxNameRunes+4 {
			t.Fatalf("%q", got)
		}
		if strings.ContainsAny(got, "/\\\r\n\x00\"\u202e\u2066") || strings.HasPrefix(got, ".") {
			t.Fatalf("unsafe %q", got)
		}
		if whole && FinalExtension(got) != ".eml" {
			t.Fatalf("whole without .eml: %q", got)
		}
	})
}
