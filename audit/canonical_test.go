package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func fullEvent() Event {
	return Event{
		V:            schemaV1,
		Time:         time.Date(2026, 4, 1, 9, 30, 15, 123_456_789, time.FixedZone("JST", 9*3600)),
		Type:         TypeFileSealed,
		Actor:        "smtp:192.0.2.1",
		Contract:     "ACME-2026",
		Message:      "m1",
		Transfer:     "t1",
		Recipient:    "bob@partner.example",
		File:         `見積書 "最終" \ <v2>.xlsx`,
		SHA256:       strings.Repeat("ab", 32),
		Size:         12345,
		CipherSHA256: strings.Repeat("cd", 32),
		CipherSize:   12600,
		Object:       "objects/t1/0.age",
		RemoteIP:     "192.0.2.1",
		UserAgent:    "Mozilla/5.0 & co",
		Account:      "carol",
		Reason:       "r",
		Result:       "ok",
		Details:      map[string]string{"zeta": "1", "alpha": "2", "mid_key": "３"},
	}
}

func TestCanonicalGolden(t *testing.T) {
	ev := fullEvent()
	got, err := Canonical(&ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"time":"2026-04-01T00:30:15.123Z","type":"file.sealed","actor":"smtp:192.0.2.1",` +
		`"contract":"ACME-2026","message":"m1","transfer":"t1","recipient":"bob@partner.example",` +
		`"file":"見積書 \"最終\" \\ <v2>.xlsx","sha256":"` + strings.Repeat("ab", 32) + `","size":12345,` +
		`"cipher_sha256":"` + strings.Repeat("cd", 32) + `","cipher_size":12600,"object":"objects/t1/0.age",` +
		`"remote_ip":"192.0.2.1","user_agent":"Mozilla/5.0 & co","account":"carol","reason":"r","result":"ok",` +
		`"details":{"alpha":"2","mid_key":"３","zeta":"1"}}`
	if string(got) != want {
		t.Fatalf("canonical encoding\n got %s\nwant %s", got, want)
	}
	// Same event, same bytes, whatever the map iteration order.
	for range 50 {
		again, err := Canonical(&ev)
		if err != nil || string(again) != want {
			t.Fatalf("not stable: %s", again)
		}
	}
	back, err := ParseRecord(got)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := Canonical(&back); string(again) != want {
		t.Fatalf("round trip changed the bytes: %s", again)
	}
	// Minimal event: empty optional fields are omitted.
	min := Event{V: 1, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Type: TypeLogout, Actor: "x"}
	b, _ := Canonical(&min)
	if string(b) != `{"v":1,"time":"2026-01-02T03:04:05.000Z","type":"logout","actor":"x"}` {
		t.Fatalf("minimal: %s", b)
	}
}

func TestCanonicalRefuses(t *testing.T) {
	cases := map[string]func(*Event){
		"newline in file":     func(e *Event) { e.File = "a\nb.txt" },
		"CR in subject":       func(e *Event) { e.Details["subject"] = "x\ry" },
		"NUL in actor":        func(e *Event) { e.Actor = "a\x00" },
		"tab":                 func(e *Event) { e.Reason = "a\tb" },
		"DEL":                 func(e *Event) { e.Result = "a\x7f" },
		"C1 control":          func(e *Event) { e.File = "a\u0085b" },
		"line separator":      func(e *Event) { e.File = "a\u2028b" },
		"bidi override":       func(e *Event) { e.File = "invoice\u202Etxt.exe" },
		"invalid UTF-8":       func(e *Event) { e.File = "a\xffb" },
		"unknown type":        func(e *Event) { e.Type = "file.teleported" },
		"empty actor":         func(e *Event) { e.Actor = "" },
		"bad details key":     func(e *Event) { e.Details["Bad Key"] = "v" },
		"control in key":      func(e *Event) { e.Details["a\nb"] = "v" },
		"negative size":       func(e *Event) { e.Size = -1 },
		"zero time":           func(e *Event) { e.Time = time.Time{} },
		"wrong version":       func(e *Event) { e.V = 2 },
		"too large":           func(e *Event) { e.Reason = strings.Repeat("x", MaxRecordSize) },
		"control in contract": func(e *Event) { e.Contract = "A\x1b[31m" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			ev := fullEvent()
			mutate(&ev)
			if _, err := Canonical(&ev); !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("accepted (err %v)", err)
			}
		})
	}
}

func TestParseRecordRefusesNonCanonical(t *testing.T) {
	ev := fullEvent()
	good, _ := Canonical(&ev)
	s := string(good)
	variants := map[string]string{
		"space":           strings.Replace(s, `"v":1`, `"v": 1`, 1),
		"key order":       strings.Replace(s, `{"v":1,"time":"2026-04-01T00:30:15.123Z"`, `{"time":"2026-04-01T00:30:15.123Z","v":1`, 1),
		"escaped unicode": strings.Replace(s, "見積書", `\u898b積書`, 1),
		"html escape":     strings.Replace(s, "<v2>", `\u003cv2>`, 1),
		"extra field":     strings.Replace(s, `"v":1,`, `"v":1,"x":1,`, 1),
		"no millis":       strings.Replace(s, "15.123Z", "15Z", 1),
		"offset time":     strings.Replace(s, "00:30:15.123Z", "09:30:15.123+09:00", 1),
		"details order":   strings.Replace(s, `{"alpha":"2","mid_key":"３","zeta":"1"}`, `{"zeta":"1","alpha":"2","mid_key":"３"}`, 1),
		"duplicate key":   strings.Replace(s, `"actor":"smtp:192.0.2.1"`, `"actor":"x","actor":"smtp:192.0.2.1"`, 1),
		"trailing nl":     s + "\n",
		"case folded key": strings.Replace(s, `"actor"`, `"Actor"`, 1),
		"explicit empty":  strings.Replace(s, `"v":1,`, `"v":1,"contract":"",`, 1),
	}
	for name, v := range variants {
		t.Run(name, func(t *testing.T) {
			if v == s {
				t.Fatal("variant did not change the record")
			}
			if _, err := ParseRecord([]byte(v)); !errors.Is(err, ErrNotCanonical) {
				t.Fatalf("accepted %s (err %v)", v, err)
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	in := "ok 日本語\x00\n\u202Eevil\xff"
	out := Sanitize(in)
	if checkString(out) != nil {
		t.Fatalf("Sanitize left forbidden characters: %q", out)
	}
	if out != "ok 日本語\uFFFD\uFFFD\uFFFDevil\uFFFD" {
		t.Fatalf("Sanitize = %q", out)
	}
	if Sanitize("plain") != "plain" {
		t.Fatal("Sanitize changed a clean string")
	}
}

func TestTypesHaveLabelsAndClauses(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Clauses() {
		for _, typ := range c.Types() {
			seen[typ] = true
		}
	}
	for _, typ := range allTypes() {
		ja, en := TypeLabels(typ)
		if ja == "" || en == "" || !KnownType(typ) || !seen[typ] {
			t.Errorf("type %s: labels %q %q, in a clause %v", typ, ja, en, seen[typ])
		}
	}
}

// TestAllEventTypesKnown fails when a Type constant is added to event.go
// without a label and a clause here.
func TestAllEventTypesKnown(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "event.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Type") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					continue
				}
				v, _ := strconv.Unquote(lit.Value)
				n++
				if !KnownType(v) || !slices.Contains(allTypes(), v) {
					t.Errorf("%s (%q) has no label or is missing from allTypes", name.Name, v)
				}
			}
		}
	}
	if n != len(allTypes()) {
		t.Errorf("event.go declares %d types, allTypes lists %d", n, len(allTypes()))
	}
}

// FuzzParseRecord: whatever ParseRecord accepts is canonical and means
// what encoding/json says it means.
func FuzzParseRecord(f *testing.F) {
	ev := fullEvent()
	good, _ := Canonical(&ev)
	f.Add(good)
	f.Add([]byte(`{"v":1,"time":"2026-01-02T03:04:05.000Z","type":"logout","actor":"x"}`))
	f.Add([]byte(`{"v":1,"time":"2026-01-02T03:04:05.000Z","type":"login","actor":"a\"b\\c","details":{"a":"1"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := ParseRecord(data)
		if err != nil {
			if !errors.Is(err, ErrNotCanonical) {
				t.Fatalf("error not ErrNotCanonical: %v", err)
			}
			return
		}
		again, err := Canonical(&ev)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted non-canonical %q (re-encoded %q, %v)", data, again, err)
		}
		var viaJSON Event
		if err := json.Unmarshal(data, &viaJSON); err != nil {
			t.Fatalf("accepted invalid JSON %q: %v", data, err)
		}
		if j, _ := Canonical(&viaJSON); !bytes.Equal(j, data) {
			t.Fatalf("encoding/json reads %q differently", data)
		}
	})
}

func TestAppendSanitizesOutsideText(t *testing.T) {
	ev := Event{V: schemaV1, Time: time.Now(), Type: TypeFileSealed, Actor: "system", File: "evil\u202Egpj.exe\r\nBcc: x", Details: map[string]string{"subject": "a\x00b"}}
	sanitizeEvent(&ev)
	if _, err := Canonical(&ev); err != nil {
		t.Fatalf("sanitized event refused: %v", err)
	}
	if ev.File == "evil\u202Egpj.exe\r\nBcc: x" || ev.Details["subject"] == "a\x00b" {
		t.Fatal("not sanitized")
	}
}
