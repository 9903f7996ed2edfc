package address

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"bob@corp.example", "bob@corp.example", nil},
		{"Bob.Smith+tag@CORP.EXAMPLE.", "Bob.Smith+tag@corp.example", nil},
		{"o'neil@x.corp.example", "o'neil@x.corp.example", nil},
		{"bob@corp。example", "bob@corp.example", nil},        // U+3002 as a dot
		{"bob@ｃｏｒｐ．ｅｘａｍｐｌｅ", "bob@corp.example", nil},        // full-width letters and stop
		{"bob@corp.example。", "bob@corp.example", nil},       // the root, ideographic
		{"bob@corp.exаmple", "bob@corp.xn--exmple-4nf", nil}, // Cyrillic а: another domain
		{"bob@日本語.jp", "bob@xn--wgv71a119e.jp", nil},
		{"bob@XN--WGV71A119E.JP", "bob@xn--wgv71a119e.jp", nil},
		{"bob@corp.example.evil.example", "bob@corp.example.evil.example", nil},

		{"eve%evil.example@corp.example", "", ErrRouting},
		{"eve!evil.example@corp.example", "", ErrRouting},
		{"evil.example!eve@corp.example", "", ErrRouting},
		{"eve@evil.example@corp.example", "", ErrRouting}, // go-smtp's view of "eve@evil.example"@corp.example
		{"@corp.example:eve@evil.example", "", ErrRouting},
		{"@a,@b:eve@evil.example", "", ErrRouting},

		{"bob@[192.0.2.1]", "", ErrDomain},
		{"bob@192.0.2.1", "", ErrDomain},
		{"bob@localhost", "", ErrDomain},
		{"bob@corp..example", "", ErrDomain},
		{"bob@corp.example..", "", ErrDomain},
		{"bob@-corp.example", "", ErrDomain},
		{"bob@corp_x.example", "", ErrDomain},
		{"bob@xn--abc.example", "", ErrDomain},                // not valid punycode
		{"bob@corp.example＠evil.example", "", ErrDomain},      // full-width at sign
		{"bob@corp.example,eve@evil.example", "", ErrRouting}, // two @ before the comma matters
		{"bob@corp.example,evil.example", "", ErrDomain},
		{"bob@" + strings.Repeat("a", 64) + ".example", "", ErrDomain},

		{"ü@client.example", "", ErrNonASCII},
		{"eve＠evil.example@corp.example", "", ErrNonASCII},
		{"", "", ErrSyntax},
		{"bob", "", ErrSyntax},
		{"@corp.example", "", ErrSyntax},
		{".bob@corp.example", "", ErrSyntax},
		{"bob.@corp.example", "", ErrSyntax},
		{"b..ob@corp.example", "", ErrSyntax},
		{"john doe@corp.example", "", ErrSyntax}, // go-smtp's view of "john doe"@corp.example
		{"bob\r\n@corp.example", "", ErrSyntax},
		{"b\"ob@corp.example", "", ErrSyntax},
		{"b(o)b@corp.example", "", ErrSyntax},
		{strings.Repeat("a", 65) + "@corp.example", "", ErrSyntax},
	} {
		a, err := Parse(tc.in)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Parse(%q) = %q, %v; want %v", tc.in, a, err, tc.err)
			}
			continue
		}
		if err != nil || a.String() != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, a, err, tc.want)
		}
	}
}

func TestKey(t *testing.T) {
	a, _ := Parse("Carol@Client.Example.")
	b, _ := Parse("carol@CLIENT。example")
	if a.Key() != b.Key() || a.Key() != "carol@client.example" {
		t.Fatalf("keys %q and %q", a.Key(), b.Key())
	}
	if a.String() != "Carol@client.example" {
		t.Fatalf("delivery form %q: the local part must stay as written", a.String())
	}
}

func TestInDomain(t *testing.T) {
	domains := []string{"corp.example", "xn--wgv71a119e.jp"}
	for d, want := range map[string]bool{
		"corp.example":               true,
		"mail.corp.example":          true,
		"xn--wgv71a119e.jp":          true,
		"a.xn--wgv71a119e.jp":        true,
		"xcorp.example":              false,
		"corp.example.evil.example":  false,
		"corp.xn--exmple-4nf":        false,
		"example":                    false,
		"orp.example":                false,
		"evil.example":               false,
		"corp.example.":              false, // not canonical: callers canonicalise first
		"sub.corp.example.evil.test": false,
	} {
		if got := InDomain(d, domains); got != want {
			t.Errorf("InDomain(%q) = %v, want %v", d, got, want)
		}
	}
}

// FuzzParse: whatever goes in, what comes out is canonical — it parses to
// itself, carries no routing syntax, one @, an ASCII domain in lower case —
// and the look-alike and case forms of an address share its key.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"bob@corp.example", "eve%evil.example@corp.example", "Bob@CORP.EXAMPLE.", "bob@corp。example",
		"bob@日本語.jp", "x@xn--wgv71a119e.jp", "@a:b@c.example", "a!b@c.example", "a@b@c.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		out := a.String()
		if strings.Count(out, "@") != 1 || strings.ContainsAny(out, "%!\"\\ \t\r\n:<>[]") {
			t.Fatalf("Parse(%q) = %q", s, out)
		}
		for i := 0; i < len(a.Domain); i++ {
			if c := a.Domain[i]; c >= 0x80 || (c >= 'A' && c <= 'Z') {
				t.Fatalf("Parse(%q): domain %q not canonical", s, a.Domain)
			}
		}
		b, err := Parse(out)
		if err != nil || b != a {
			t.Fatalf("Parse(Parse(%q)) = %q, %v; want %q", s, b, err, a)
		}
		u, err := Parse(strings.ToUpper(a.Local) + "@" + strings.ToUpper(a.Domain) + ".")
		if err != nil || u.Key() != a.Key() {
			t.Fatalf("upper-case form of %q: %q, %v", out, u, err)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	for _, s := range []string{"carol@client.example", "carol@日本語.jp"} {
		b.Run(s, func(b *testing.B) {
			for b.Loop() {
				if _, err := Parse(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
