package preflight

import (
	"context"
	"net"
	"strings"
	"testing"
)

func TestListen(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	c := testConfig(t, nil)
	d := deps(c)
	for _, r := range Run(context.Background(), d) {
		if r.Check == "listen" {
			t.Fatal("serve's checks try the listeners, which serve binds itself")
		}
	}
	d.Mode = Command
	want(t, check(t, d, "listen"), OK, "free to listen on: 127.0.0.1:0")
	c.HTTP.Addr = busy.Addr().String()
	want(t, check(t, d, "listen"), Warn, "http.addr "+busy.Addr().String()+" is in use")
	c.HTTP.Addr = "127.0.0.1:0"
	c.Metrics.Listen = busy.Addr().String()
	want(t, check(t, d, "listen"), Warn, "metrics.listen "+busy.Addr().String()+" is in use")
}

func TestReport(t *testing.T) {
	rep := Report{
		{Check: "a", Level: OK, JA: "良い", EN: "good"},
		{Check: "b", Level: Warn, JA: "注意", EN: "careful"},
		{Check: "c", Level: Skip, JA: "なし", EN: "n/a"},
	}
	if rep.Failed(false) || !rep.Failed(true) {
		t.Fatalf("warnings only: Failed(false) = %v, Failed(true) = %v; want false, true", rep.Failed(false), rep.Failed(true))
	}
	rep = append(rep, Result{Check: "d", Level: Error, JA: "悪い", EN: "bad", Transient: true})
	if !rep.Failed(false) {
		t.Fatal("an error does not fail the check")
	}
	if len(rep.Blocking()) != 0 {
		t.Fatal("a transient error blocks serve")
	}
	rep = append(rep, Result{Check: "e", Level: Error, JA: "壊れている", EN: "broken"})
	if b := rep.Blocking(); len(b) != 1 || b[0].Check != "e" {
		t.Fatalf("Blocking = %v", b)
	}
	var out strings.Builder
	if err := rep.Write(&out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(rep) {
		t.Fatalf("%d lines for %d results:\n%s", len(lines), len(rep), out.String())
	}
	if lines[1] != "WARN   b              注意 / careful" || !strings.HasPrefix(lines[4], "ERROR  e ") {
		t.Fatalf("report:\n%s", out.String())
	}
	if s := rep.Summary(); s != "エラー 2 件、警告 1 件 / 2 error(s), 1 warning(s)" {
		t.Fatalf("Summary = %q", s)
	}
}

// TestDefaultsHaveNoErrors: the embedded defaults (what `serve` runs with
// no configuration) pass, with the warnings a development setup has.
func TestDefaultsHaveNoErrors(t *testing.T) {
	rep := Run(context.Background(), deps(testConfig(t, nil)))
	if n := rep.Count(Error); n != 0 {
		var b strings.Builder
		rep.Write(&b)
		t.Fatalf("%d errors with the defaults:\n%s", n, b.String())
	}
}
