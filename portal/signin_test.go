package portal

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"testing"
)

var errorRE = regexp.MustCompile(`<p class="error" role="alert" id="error">([^<]*)</p>`)

// signIn posts the login form and returns the status, Location and the
// error shown.
func (b *browser) signIn(name, password, next string) (int, string, string) {
	b.f.t.Helper()
	resp, body := b.post("/login", "/login", url.Values{"name": {name}, "password": {password}, "next": {next}})
	msg := ""
	if m := errorRE.FindStringSubmatch(body); m != nil {
		msg = m[1]
	}
	return resp.StatusCode, resp.Header.Get("Location"), msg
}

// Every failed sign-in looks the same: unknown name, wrong password, a
// locked account (right or wrong password), a disabled account. The text
// still tells a locked-out person what to do.
func TestFailedSignInsLookTheSame(t *testing.T) {
	f := newStaffFixture(t, nil)
	ctx := context.Background()
	x := f.browser()
	for i := 0; i < 10; i++ {
		x.signIn("bob", fmt.Sprintf("wrong password %d", i), "/home")
	}
	if err := f.accts.Disable(ctx, "test", "alice", "left"); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		code int
		msg  string
	}
	got := map[string]answer{}
	for _, c := range []struct{ what, name, password string }{
		{"unknown name", "nobody", testPassword},
		{"wrong password", "aud", "wrong password 1"},
		{"locked, right password", "bob", testPassword},
		{"locked, wrong password", "bob", "wrong password 2"},
		{"disabled, right password", "alice", testPassword},
		{"disabled, wrong password", "alice", "wrong password 3"},
	} {
		code, loc, msg := f.browser().signIn(c.name, c.password, "/home")
		if loc != "" {
			t.Fatalf("%s: signed in (%d %s)", c.what, code, loc)
		}
		got[c.what] = answer{code, msg}
	}
	first := got["unknown name"]
	if first.msg == "" {
		t.Fatal("no error shown")
	}
	for what, a := range got {
		if a != first {
			t.Errorf("%s: %d %q; unknown name: %d %q", what, a.code, a.msg, first.code, first.msg)
		}
	}
	if !regexp.MustCompile(`ロック`).MatchString(first.msg) {
		t.Errorf("the answer does not mention the lock: %q", first.msg)
	}
}
