package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestMixInverts(t *testing.T) {
	g := newGenerator(1, profileMixed, 0)
	r := rand.New(rand.NewPCG(2, 3))
	for i := 0; i < 100000; i++ {
		x := r.Uint64()
		if got := g.unmix(mix(x)); got != x {
			t.Fatalf("unmix(mix(%#x)) = %#x", x, got)
		}
	}
}

func TestSpecAndRenderAreDeterministic(t *testing.T) {
	a, b := newGenerator(42, profileMixed, 10), newGenerator(42, profileMixed, 10)
	for i := 0; i < 200; i++ {
		ma, mb := a.spec(i), b.spec(i)
		if !bytes.Equal(a.render(&ma), b.render(&mb)) {
			t.Fatalf("message %d renders differently", i)
		}
		if idx, ok := a.parseTag(ma.Tag); !ok || idx != i {
			t.Fatalf("tag %q parses to %d, %v", ma.Tag, idx, ok)
		}
		if len(ma.Internal)+len(ma.External) == 0 {
			t.Fatalf("message %d has no recipients", i)
		}
	}
	if c := newGenerator(43, profileMixed, 10); c.run == a.run {
		t.Fatal("two seeds share a run id")
	}
	if _, ok := a.parseTag("<chaos." + a.run + ".12x@corp.example>"); ok {
		t.Fatal("a malformed tag parsed")
	}
}

// A message with an attachment, and the same message with that attachment
// in clear in a "delivered" copy, raw and base64 at every offset.
func TestFindLeaks(t *testing.T) {
	g := newGenerator(7, profileMixed, 0)
	var m msgSpec
	for i := 0; ; i++ {
		m = g.spec(i)
		if len(m.Atts) > 0 {
			break
		}
	}
	clean := g.render(&m)
	att := g.attachment(m.Index, 0, m.Atts[0].Size)
	// The original message contains the attachment in base64: found.
	if l := g.findLeaks(clean); len(l) == 0 {
		t.Fatal("the original message, attachment included, shows no leak")
	}
	notice := []byte("Content-Type: text/plain\r\n\r\nThe attachment was sealed. https://gw/t/abcdefghijklmnopqrstuvwxyz234567\r\n")
	if l := g.findLeaks(notice); len(l) != 0 {
		t.Fatalf("false positive: %v", l)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for k := 0; k < 300; k++ {
		off := r.IntN(len(att) - 40)
		n := 32
		run := att[off : off+n]
		for _, variant := range []struct {
			name string
			data []byte
		}{
			{"raw", run},
			{"base64", []byte(base64.StdEncoding.EncodeToString(att[off/3*3 : off/3*3+24])[:32])},
			{"base64 with line break", []byte(strings.Join([]string{
				base64.StdEncoding.EncodeToString(att[off/3*3 : off/3*3+30])[:20],
				base64.StdEncoding.EncodeToString(att[off/3*3 : off/3*3+30])[20:40]}, "\r\n"))},
		} {
			out := append(append(append([]byte(nil), notice...), variant.data...), notice...)
			leaks := g.findLeaks(out)
			if len(leaks) == 0 {
				t.Fatalf("%s run of %d bytes at %d not found", variant.name, n, off)
			}
			if leaks[0].Msg != m.Index || leaks[0].Att != 0 {
				t.Fatalf("leak attributed to %v", leaks[0])
			}
		}
	}
	// A base64 run of 32 characters at any phase of the encoding.
	enc := base64.StdEncoding.EncodeToString(att)
	for k := 0; k < 300; k++ {
		off := r.IntN(len(enc) - 40)
		out := append(append(append([]byte(nil), notice...), enc[off:off+32]...), notice...)
		if len(g.findLeaks(out)) == 0 {
			t.Fatalf("32 base64 characters at %d not found", off)
		}
	}
	// Runs shorter than the threshold are not reported (no false alarms on
	// a coincidental 8-byte block).
	out := append(append(append([]byte(nil), notice...), att[8:16]...), notice...)
	if l := g.findLeaks(out); len(l) != 0 {
		t.Fatalf("an 8-byte run counted as a leak: %v", l)
	}
}

func TestReconcileFindsProblems(t *testing.T) {
	g := newGenerator(9, profileMixed, 0)
	var withAtt, plainOnly int = -1, -1
	for i := 0; withAtt < 0 || plainOnly < 0; i++ {
		m := g.spec(i)
		if len(m.Atts) > 0 && len(m.External) > 0 && len(m.Internal) > 0 && withAtt < 0 {
			withAtt = i
		}
		if len(m.External) == 0 && plainOnly < 0 {
			plainOnly = i
		}
	}
	n := max(withAtt, plainOnly) + 1
	results := make([]result, n)
	for i := range results {
		results[i] = result{Outcome: refused, Code: 451, Start: time.Unix(0, 0), End: time.Unix(1, 0)}
	}
	results[withAtt].Outcome = accepted
	m := g.spec(withAtt)
	dbMsgs := map[string]int{m.Tag: 1}
	sum := func(kind, rcpt string, data []byte, notices int) delivery {
		d := delivery{Tag: m.Tag, Kind: kind, Rcpts: []string{rcpt}, Notices: notices, HasLink: true}
		if data != nil {
			d.Leaks = g.findLeaks(data)
		}
		return d
	}
	var good []delivery
	for _, r := range m.External {
		good = append(good, sum("sealed", r, nil, len(m.Atts)), sum("key", r, nil, 0))
	}
	plain := delivery{Tag: m.Tag, Kind: "plain", Rcpts: m.Internal}
	h := g.render(&m)
	plain.SHA256 = sha(h)
	good = append(good, plain)

	if tl := reconcile(g, results, good, dbMsgs, false, nil, nil); !tl.ok() || tl.Delivered != tl.Expected || tl.Refused != n-1 {
		t.Fatalf("clean run judged bad: %+v", tl)
	}
	cases := []struct {
		name  string
		dels  []delivery
		db    map[string]int
		check func(*tally) bool
	}{
		{"missing key notice", good[1:], dbMsgs, func(t *tally) bool { return t.Missing == 1 }},
		{"duplicate", append(append([]delivery(nil), good...), good[0]), dbMsgs, func(t *tally) bool { return t.Duplicated == 1 && t.DupExplained == 0 }},
		{"leak", append(append([]delivery(nil), good[1:]...), sum("sealed", m.External[0], h, len(m.Atts))), dbMsgs, func(t *tally) bool { return t.Leaked == 1 }},
		{"refused but delivered", append(append([]delivery(nil), good...), delivery{Tag: g.tag(plainOnly), Kind: "plain", Rcpts: []string{"x@corp.example"}}), dbMsgs,
			func(t *tally) bool { return t.AfterRefusal == 1 }},
		{"refused but recorded", good, map[string]int{m.Tag: 1, g.tag(plainOnly): 1}, func(t *tally) bool { return t.LeftInDB == 1 }},
		{"accepted not recorded", good, map[string]int{}, func(t *tally) bool { return t.NotInDB == 1 }},
		{"corrupt internal copy", append(append([]delivery(nil), good[:len(good)-1]...), delivery{Tag: m.Tag, Kind: "plain", Rcpts: m.Internal}), dbMsgs,
			func(t *tally) bool { return t.Corrupt == 1 }},
		{"incomplete sealed copy", append(append([]delivery(nil), good[1:]...), sum("sealed", m.External[0], nil, len(m.Atts)-1)), dbMsgs,
			func(t *tally) bool { return t.Incomplete == 1 }},
	}
	// A second copy after a kill is what SMTP allows.
	first, again := good[0], good[0]
	first.At, again.At = time.Unix(100, 0), time.Unix(200, 0)
	dup := append(append([]delivery(nil), good[1:]...), first, again)
	kill := []faultEvent{{Kind: faultKill, Start: time.Unix(150, 0)}}
	if tl := reconcile(g, results, dup, dbMsgs, false, kill, nil); tl.Duplicated != 1 || tl.DupExplained != 1 || !tl.ok() {
		t.Errorf("duplicate across a kill: %+v", tl)
	}
	if tl := reconcile(g, results, dup, dbMsgs, false, []faultEvent{{Kind: faultKill, Start: time.Unix(250, 0)}}, nil); tl.ok() {
		t.Errorf("duplicate with no kill in between judged OK: %+v", tl)
	}
	// In a fleet only a kill of the instance that sent the first copy
	// explains a second one.
	first.Via, again.Via = "gw1.chaos.test", "gw2.chaos.test"
	dup = append(append([]delivery(nil), good[1:]...), first, again)
	if tl := reconcile(g, results, dup, dbMsgs, false, []faultEvent{{Kind: faultKill, Start: time.Unix(150, 0), Instance: "gw1.chaos.test"}}, nil); tl.DupExplained != 1 || !tl.ok() {
		t.Errorf("duplicate across a kill of the sender: %+v", tl)
	}
	if tl := reconcile(g, results, dup, dbMsgs, false, []faultEvent{{Kind: faultKill, Start: time.Unix(150, 0), Instance: "gw2.chaos.test"}}, nil); tl.ok() {
		t.Errorf("duplicate across a kill of another instance judged OK: %+v", tl)
	}
	for _, c := range cases {
		tl := reconcile(g, results, c.dels, c.db, false, nil, nil)
		if !c.check(tl) {
			t.Errorf("%s: not detected: %+v", c.name, tl)
		}
		if tl.ok() {
			t.Errorf("%s: run judged OK", c.name)
		}
	}
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

// TestReconcileContractEnd: the messages of a contract ended during the
// run are reconciled in aggregate (the end replaced their Message-IDs in
// the database by commitments); deliveries it cancelled are allowed only
// as far as the database shows cancelled rows, and none may begin after
// the end returned.
func TestReconcileContractEnd(t *testing.T) {
	g := newGenerator(11, profileMixed, 0)
	g.tagEvery, g.tagCode = 2, endContract
	tagged, untagged := -1, -1
	for i := 0; tagged < 0 || untagged < 0; i++ {
		m := g.spec(i)
		if len(m.External) != 1 || len(m.Internal) != 0 || len(m.Atts) != 0 {
			continue
		}
		if m.Contract != "" && tagged < 0 {
			tagged = i
		} else if m.Contract == "" && untagged < 0 {
			untagged = i
		}
	}
	n := max(tagged, untagged) + 1
	results := make([]result, n)
	for i := range results {
		results[i] = result{Outcome: refused, Code: 550, Start: time.Unix(0, 0), End: time.Unix(1, 0)}
	}
	results[tagged] = result{Outcome: accepted, Start: time.Unix(10, 0), End: time.Unix(11, 0)}
	results[untagged] = result{Outcome: accepted, Start: time.Unix(10, 0), End: time.Unix(11, 0)}
	mt, mu := g.spec(tagged), g.spec(untagged)
	dbMsgs := map[string]int{mu.Tag: 1} // the tagged one's Message-ID is a commitment now
	copyOf := func(m msgSpec, at int64) delivery {
		return delivery{Tag: m.Tag, Kind: "copy", Rcpts: m.External, MailAt: time.Unix(at, 0), At: time.Unix(at, 0)}
	}
	end := &contractEnd{Code: endContract, Start: time.Unix(20, 0), Done: time.Unix(30, 0), DBMessages: 1, CancelledMessages: 1}
	cases := []struct {
		name string
		dels []delivery
		end  contractEnd
		ok   bool
	}{
		{"delivered before the end", []delivery{copyOf(mu, 12), copyOf(mt, 12)}, *end, true},
		{"cancelled by the end", []delivery{copyOf(mu, 12)}, *end, true},
		{"missing, no row cancelled", []delivery{copyOf(mu, 12)}, contractEnd{Code: endContract, Done: time.Unix(30, 0), DBMessages: 1}, false},
		{"delivered after the end", []delivery{copyOf(mu, 12), copyOf(mt, 31)}, *end, false},
		{"not in the database", []delivery{copyOf(mu, 12), copyOf(mt, 12)}, contractEnd{Code: endContract, Done: time.Unix(30, 0), DBMessages: 0}, false},
		{"untagged missing", []delivery{copyOf(mt, 12)}, *end, false},
	}
	for _, c := range cases {
		e := c.end
		tl := reconcile(g, results, c.dels, dbMsgs, false, nil, &e)
		if tl.ok() != c.ok {
			t.Errorf("%s: ok %v, want %v: %+v", c.name, tl.ok(), c.ok, tl)
		}
	}
}
