// Package address turns the mailbox strings of SMTP envelopes, headers and
// configuration into one canonical form, so that every decision about an
// address — internal or external, allowed by a contract or not, which
// registered key, which account — is made on the same string that mail is
// then delivered to.
//
// # Security stance
//
// An address is classified by its domain. If the gateway reads a domain
// out of a string that the next hop reads differently, an external
// recipient passes for an internal one and gets the original attachments.
// The classic ways are routing syntax that MTAs still honour:
//
//   - the percent hack, eve%evil.example@corp.example (Postfix with
//     allow_percent_hack = yes, its default, rewrites it to
//     eve@evil.example once corp.example is a local domain);
//   - UUCP bang paths, eve!evil.example@corp.example or
//     evil.example!eve@corp.example (swap_bangpath);
//   - a second @, quoted ("eve@evil.example"@corp.example, which go-smtp
//     unquotes) or not;
//   - source routes, <@corp.example:eve@evil.example>;
//
// and domains that are not what they look like: CORP.EXAMPLE. (trailing
// dot, case), Unicode look-alikes (Cyrillic а for Latin a; full-width
// letters; U+3002 IDEOGRAPHIC FULL STOP and U+FF0E FULLWIDTH FULL STOP,
// which IDNA maps to a dot), and address literals ([192.0.2.1]).
//
// Parse refuses routing syntax outright (ErrRouting) and maps the domain to
// its IDNA A-label form (UTS #46 lookup mapping, then RFC 5891 checks), in
// lower case, without a trailing dot. A domain that does not survive that
// as a DNS host name of at least two labels, with a non-numeric top-level
// label, is refused (ErrDomain). The local part is kept as written (it may
// be case-sensitive at the destination) but must be an RFC 5321 dot-atom
// of ASCII characters other than % and !; Key lower-cases it for
// comparisons, as the rest of sealgate always has.
//
// Mail is delivered to String(), the canonical form: what was classified is
// exactly what the next hop receives.
package address

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Errors; test with errors.Is.
var (
	// ErrRouting: the address carries routing syntax (%, !, a source
	// route, more than one @, an @ inside a quoted local part).
	ErrRouting = errors.New("address: routing syntax")
	// ErrDomain: the domain is not a valid host name once IDNA-normalised
	// (this includes address literals).
	ErrDomain = errors.New("address: not a valid domain")
	// ErrNonASCII: the local part is not ASCII (an SMTPUTF8 address, which
	// sealgate does not offer).
	ErrNonASCII = errors.New("address: non-ASCII local part")
	// ErrSyntax: anything else that is not local@domain.
	ErrSyntax = errors.New("address: invalid syntax")
)

// Limits from RFC 5321 section 4.5.3.1.
const (
	maxLocal   = 64
	maxDomain  = 253
	maxAddress = 254
)

// Address is a mailbox in canonical form.
type Address struct {
	// Local is the local part as written (an ASCII dot-atom).
	Local string
	// Domain is the lower-case IDNA A-label form, without a trailing dot.
	Domain string
}

// String returns local@domain: the address mail is delivered to.
func (a Address) String() string { return a.Local + "@" + a.Domain }

// Key returns the address with its local part lower-cased too: the form in
// which sealgate compares and stores addresses (contract lists, registered
// keys, duplicate recipients).
func (a Address) Key() string { return strings.ToLower(a.Local) + "@" + a.Domain }

// Same reports whether a and b are the same mailbox: both parse, with
// equal keys. An address that does not parse is nobody's.
func Same(a, b string) bool {
	x, err := Parse(a)
	if err != nil {
		return false
	}
	y, err := Parse(b)
	return err == nil && x.Key() == y.Key()
}

// profile is the IDNA processing sealgate applies to domains: the UTS #46
// mapping for lookup (case folding, full-width forms, ideographic full
// stops as dots), non-transitional, STD3 (letters, digits, hyphen) rules,
// hyphen, joiner and Bidi checks, DNS lengths. A Profile is immutable.
var profile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.StrictDomainName(true),
	idna.ValidateLabels(true),
	idna.CheckHyphens(true),
	idna.CheckJoiners(true),
	idna.BidiRule(),
	idna.VerifyDNSLength(true),
)

// Parse parses a bare mailbox (no angle brackets, no display name) as an
// SMTP server hands it over, and returns its canonical form.
func Parse(s string) (Address, error) {
	if s == "" {
		return Address{}, fmt.Errorf("%w: empty", ErrSyntax)
	}
	if len(s) > 4*maxAddress {
		return Address{}, fmt.Errorf("%w: too long", ErrSyntax)
	}
	if s[0] == '@' && strings.IndexByte(s, ':') > 0 {
		return Address{}, fmt.Errorf("%w: source route", ErrRouting)
	}
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return Address{}, fmt.Errorf("%w: no @", ErrSyntax)
	}
	if strings.IndexByte(s[at+1:], '@') >= 0 {
		return Address{}, fmt.Errorf("%w: more than one @", ErrRouting)
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return Address{}, err
	}
	d, err := ParseDomain(domain)
	if err != nil {
		return Address{}, err
	}
	a := Address{Local: local, Domain: d}
	if len(a.String()) > maxAddress {
		return Address{}, fmt.Errorf("%w: longer than %d octets", ErrSyntax, maxAddress)
	}
	return a, nil
}

// checkLocal accepts an RFC 5321 dot-atom of ASCII atext without % and !.
func checkLocal(l string) error {
	if l == "" {
		return fmt.Errorf("%w: empty local part", ErrSyntax)
	}
	if len(l) > maxLocal {
		return fmt.Errorf("%w: local part longer than %d octets", ErrSyntax, maxLocal)
	}
	if l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return fmt.Errorf("%w: dots in the local part", ErrSyntax)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= 0x80:
			return ErrNonASCII
		case c == '%' || c == '!':
			return fmt.Errorf("%w: %q in the local part", ErrRouting, c)
		case isAtext(c) || c == '.':
		default:
			return fmt.Errorf("%w: %q in the local part", ErrSyntax, c)
		}
	}
	return nil
}

// isAtext reports whether c is RFC 5322 atext.
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// ParseDomain returns the canonical form of a domain: IDNA A-labels, lower
// case, no trailing dot. A leading "@" (as in configuration lists) is
// dropped.
func ParseDomain(d string) (string, error) {
	d = strings.TrimPrefix(d, "@")
	if d == "" {
		return "", fmt.Errorf("%w: empty", ErrDomain)
	}
	if d[0] == '[' {
		return "", fmt.Errorf("%w: address literal %q", ErrDomain, d)
	}
	if len(d) > 4*maxDomain {
		return "", fmt.Errorf("%w: too long", ErrDomain)
	}
	ascii := true
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			ascii = false
			break
		}
	}
	var out string
	if ascii && !strings.Contains(d, "--") {
		// Fast path, the common case: plain letters, digits, hyphens and
		// dots need no mapping beyond case.
		out = strings.ToLower(strings.TrimSuffix(d, "."))
	} else {
		// IDNA maps the ideographic and full-width stops to "." (and
		// allows one trailing dot, the root, however it is written).
		if !utf8.ValidString(d) {
			return "", fmt.Errorf("%w: not UTF-8", ErrDomain)
		}
		a, err := profile.ToASCII(d)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %v", ErrDomain, d, err)
		}
		out = strings.ToLower(strings.TrimSuffix(a, "."))
		// The A-labels produced must themselves be valid: canonical means
		// that the form parses to itself.
		if again, err := profile.ToASCII(out); err != nil || again != out {
			return "", fmt.Errorf("%w: %q: not stable under IDNA", ErrDomain, d)
		}
	}
	if err := checkHost(out); err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrDomain, d, err)
	}
	return out, nil
}

// checkHost accepts an ASCII host name of at least two LDH labels whose
// last label is not all digits (so no dotted quad passes for a name).
func checkHost(d string) error {
	if d == "" || len(d) > maxDomain {
		return errors.New("empty or too long")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return errors.New("a single label")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return errors.New("empty or too long label")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("label starts or ends with a hyphen")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q in a label", c)
			}
		}
		if len(l) >= 4 && l[2:4] == "--" && !strings.HasPrefix(l, "xn--") {
			return errors.New("reserved label form (hyphens in positions 3 and 4)")
		}
	}
	tld := labels[len(labels)-1]
	if strings.Trim(tld, "0123456789") == "" {
		return errors.New("numeric top-level label")
	}
	return nil
}

// InDomain reports whether the canonical domain d is one of domains or a
// subdomain of one (label-wise: x.corp.example is in corp.example,
// xcorp.example and corp.example.evil.example are not). Both sides must be
// canonical.
func InDomain(d string, domains []string) bool {
	for _, x := range domains {
		if d == x || (len(d) > len(x) && d[len(d)-len(x)-1] == '.' && d[len(d)-len(x):] == x) {
			return true
		}
	}
	return false
}
