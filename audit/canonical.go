package audit

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxRecordSize bounds the canonical encoding of one event.
const MaxRecordSize = 64 << 10

// timeLayout is the canonical time format: UTC, exactly milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z"

// Canonical validates ev and returns its canonical encoding, the bytes that
// become a ledger record. V and Time must be set (Append fills them).
// Errors wrap ErrInvalidEvent.
func Canonical(ev *Event) ([]byte, error) {
	if err := validate(ev); err != nil {
		return nil, err
	}
	b := appendCanonical(make([]byte, 0, 384), ev)
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("%w: encoded event is %d bytes (max %d)", ErrInvalidEvent, len(b), MaxRecordSize)
	}
	return b, nil
}

// ParseRecord decodes a ledger record and checks that it is exactly the
// canonical encoding of the event it decodes to. Errors wrap ErrNotCanonical.
//
// The parser accepts only the canonical shape (keys in order, no
// whitespace, only \" and \\ escapes), which is both much faster than
// encoding/json (verification parses every record) and stricter; the event
// is then validated and re-encoded, and the bytes must be identical.
func ParseRecord(data []byte) (Event, error) {
	p := recordParser{b: data}
	ev, ok := p.event()
	if !ok {
		return Event{}, fmt.Errorf("%w: unexpected input at byte %d", ErrNotCanonical, p.i)
	}
	if ev.V < 1 || ev.V > SchemaVersion {
		return Event{}, fmt.Errorf("%w: unknown schema version %d", ErrNotCanonical, ev.V)
	}
	if err := validate(&ev); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrNotCanonical, err)
	}
	var buf [512]byte
	if !bytes.Equal(appendCanonical(buf[:0], &ev), data) {
		return Event{}, fmt.Errorf("%w: the bytes differ from the canonical encoding of the event", ErrNotCanonical)
	}
	return ev, nil
}

// recordParser reads the canonical record shape and nothing else.
type recordParser struct {
	b []byte
	i int
}

func (p *recordParser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// key consumes `,"name":` if it comes next.
func (p *recordParser) key(name string) bool {
	n := len(name) + 4
	if len(p.b)-p.i < n || p.b[p.i] != ',' || p.b[p.i+1] != '"' || string(p.b[p.i+2:p.i+2+len(name)]) != name ||
		p.b[p.i+n-2] != '"' || p.b[p.i+n-1] != ':' {
		return false
	}
	p.i += n
	return true
}

func (p *recordParser) str() (string, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", false
	}
	p.i++
	start := p.i
	simple := true
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '"':
			s := p.b[start:p.i]
			p.i++
			if simple {
				return string(s), true
			}
			out := make([]byte, 0, len(s))
			for j := 0; j < len(s); j++ {
				if s[j] == '\\' {
					j++
				}
				out = append(out, s[j])
			}
			return string(out), true
		case '\\':
			if p.i+1 >= len(p.b) || (p.b[p.i+1] != '"' && p.b[p.i+1] != '\\') {
				return "", false
			}
			simple = false
			p.i += 2
		default:
			p.i++
		}
	}
	return "", false
}

func (p *recordParser) int() (int64, bool) {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == start || p.i-start > 18 || (p.b[start] == '0' && p.i-start > 1) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(p.b[start:p.i]), 10, 64)
	return n, err == nil
}

func (p *recordParser) event() (ev Event, ok bool) {
	var v int64
	if !p.lit(`{"v":`) {
		return ev, false
	}
	if v, ok = p.int(); !ok || v > 1<<20 {
		return ev, false
	}
	ev.V = int(v)
	if !p.lit(`,"time":`) {
		return ev, false
	}
	ts, ok := p.str()
	if !ok {
		return ev, false
	}
	t, err := time.Parse(timeLayout, ts)
	if err != nil {
		return ev, false
	}
	ev.Time = t
	if !p.lit(`,"type":`) {
		return ev, false
	}
	if ev.Type, ok = p.str(); !ok {
		return ev, false
	}
	if !p.lit(`,"actor":`) {
		return ev, false
	}
	if ev.Actor, ok = p.str(); !ok {
		return ev, false
	}
	optStr := func(name string, dst *string) bool {
		if !p.key(name) {
			return true
		}
		*dst, ok = p.str()
		return ok
	}
	optInt := func(name string, dst *int64) bool {
		if !p.key(name) {
			return true
		}
		*dst, ok = p.int()
		return ok
	}
	if !optStr("contract", &ev.Contract) || !optStr("message", &ev.Message) ||
		!optStr("transfer", &ev.Transfer) || !optStr("recipient", &ev.Recipient) ||
		!optStr("file", &ev.File) || !optStr("sha256", &ev.SHA256) || !optInt("size", &ev.Size) ||
		!optStr("cipher_sha256", &ev.CipherSHA256) || !optInt("cipher_size", &ev.CipherSize) ||
		!optStr("object", &ev.Object) || !optStr("remote_ip", &ev.RemoteIP) ||
		!optStr("user_agent", &ev.UserAgent) || !optStr("account", &ev.Account) ||
		!optStr("reason", &ev.Reason) || !optStr("result", &ev.Result) {
		return ev, false
	}
	if p.key("details") {
		if !p.lit("{") {
			return ev, false
		}
		ev.Details = map[string]string{}
		for first := true; ; first = false {
			if p.lit("}") {
				break
			}
			if !first && !p.lit(",") {
				return ev, false
			}
			k, ok := p.str()
			if !ok || !p.lit(":") {
				return ev, false
			}
			v, ok := p.str()
			if !ok {
				return ev, false
			}
			if _, dup := ev.Details[k]; dup {
				return ev, false
			}
			ev.Details[k] = v
		}
	}
	if !p.lit("}") || p.i != len(p.b) {
		return ev, false
	}
	return ev, true
}

// Sanitize returns s with every invalid UTF-8 sequence and every character a
// ledger string may not contain (control characters, line and paragraph
// separators, bidirectional embedding/override/isolate characters) replaced
// by U+FFFD. Callers that record text from the outside world (file names,
// subjects, user agents) pass it through Sanitize first.
func Sanitize(s string) string {
	if checkString(s) == nil {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || forbiddenRune(r) {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func forbiddenRune(r rune) bool {
	switch {
	case unicode.IsControl(r): // C0, DEL, C1
		return true
	case r == '\u2028', r == '\u2029': // line, paragraph separator
		return true
	case r >= '\u202a' && r <= '\u202e': // bidi embeddings and overrides
		return true
	case r >= '\u2066' && r <= '\u2069': // bidi isolates
		return true
	}
	return false
}

func checkString(s string) error {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Errorf("invalid UTF-8 at byte %d", i)
		}
		if forbiddenRune(r) {
			return fmt.Errorf("forbidden character %U at byte %d", r, i)
		}
		i += size
	}
	return nil
}

func validDetailKey(k string) bool {
	if k == "" || len(k) > 64 || k[0] < 'a' || k[0] > 'z' {
		return false
	}
	for i := 1; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func validate(ev *Event) error {
	if ev.V != schemaV1 && ev.V != SchemaVersion {
		return fmt.Errorf("%w: schema version %d (this version writes %d and %d)", ErrInvalidEvent, ev.V, schemaV1, SchemaVersion)
	}
	if ev.Time.IsZero() {
		return fmt.Errorf("%w: time is not set", ErrInvalidEvent)
	}
	if y := ev.Time.UTC().Year(); y < 1 || y > 9999 {
		return fmt.Errorf("%w: time %v is out of range", ErrInvalidEvent, ev.Time)
	}
	if !KnownType(ev.Type) {
		return fmt.Errorf("%w: unknown type %q", ErrInvalidEvent, Sanitize(ev.Type))
	}
	if ev.Actor == "" {
		return fmt.Errorf("%w: actor is empty", ErrInvalidEvent)
	}
	if ev.Size < 0 || ev.CipherSize < 0 {
		return fmt.Errorf("%w: negative size", ErrInvalidEvent)
	}
	fields := [...]struct{ name, v string }{
		{"actor", ev.Actor}, {"contract", ev.Contract}, {"message", ev.Message},
		{"transfer", ev.Transfer}, {"recipient", ev.Recipient}, {"file", ev.File},
		{"sha256", ev.SHA256}, {"cipher_sha256", ev.CipherSHA256}, {"object", ev.Object},
		{"remote_ip", ev.RemoteIP}, {"user_agent", ev.UserAgent}, {"account", ev.Account},
		{"reason", ev.Reason}, {"result", ev.Result},
	}
	for _, f := range fields {
		if err := checkString(f.v); err != nil {
			return fmt.Errorf("%w: field %s: %v", ErrInvalidEvent, f.name, err)
		}
	}
	for k, v := range ev.Details {
		if !validDetailKey(k) {
			return fmt.Errorf("%w: details key %q is not [a-z][a-z0-9_]*", ErrInvalidEvent, Sanitize(k))
		}
		if err := checkString(v); err != nil {
			return fmt.Errorf("%w: details[%s]: %v", ErrInvalidEvent, k, err)
		}
	}
	if ev.V == SchemaVersion {
		if err := checkCommitted(ev); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidEvent, err)
		}
	}
	return nil
}

// appendCanonical appends the canonical encoding of a validated event.
// Validation guarantees that strings hold no control characters, so only
// '"' and '\\' need escaping.
func appendCanonical(b []byte, ev *Event) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(ev.V), 10)
	b = append(b, `,"time":"`...)
	b = ev.Time.UTC().AppendFormat(b, timeLayout)
	b = append(b, `","type":`...)
	b = appendString(b, ev.Type)
	b = append(b, `,"actor":`...)
	b = appendString(b, ev.Actor)
	b = appendOptString(b, "contract", ev.Contract)
	b = appendOptString(b, "message", ev.Message)
	b = appendOptString(b, "transfer", ev.Transfer)
	b = appendOptString(b, "recipient", ev.Recipient)
	b = appendOptString(b, "file", ev.File)
	b = appendOptString(b, "sha256", ev.SHA256)
	b = appendOptInt(b, "size", ev.Size)
	b = appendOptString(b, "cipher_sha256", ev.CipherSHA256)
	b = appendOptInt(b, "cipher_size", ev.CipherSize)
	b = appendOptString(b, "object", ev.Object)
	b = appendOptString(b, "remote_ip", ev.RemoteIP)
	b = appendOptString(b, "user_agent", ev.UserAgent)
	b = appendOptString(b, "account", ev.Account)
	b = appendOptString(b, "reason", ev.Reason)
	b = appendOptString(b, "result", ev.Result)
	if len(ev.Details) > 0 {
		keys := make([]string, 0, len(ev.Details))
		for k := range ev.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"details":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, ev.Details[k])
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', c)
			start = i + 1
		}
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendOptString(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendOptInt(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

// eventTime is the canonical (millisecond, UTC) form of t.
func eventTime(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }
