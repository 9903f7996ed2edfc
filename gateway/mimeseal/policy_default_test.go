package mimeseal

import (
	"testing"

	"github.com/sealgate/sealgate/policy"
)

// The built-in policy (package policy) decides every entity exactly as DefaultPolicy (the
// behaviour before policies), reason included.
func TestPolicyDefaultIsDefaultPolicy(t *testing.T) {
	p := policy.Default()
	types := []string{"text/plain", "text/html", "text/calendar", "text/csv", "image/png", "application/pdf",
		"application/octet-stream", "multipart/mixed", "multipart/alternative", "multipart/related",
		"multipart/signed", "multipart/encrypted", "multipart/digest", "message/rfc822", "message/global",
		"message/delivery-status", "application/pkcs7-signature"}
	n := 0
	for _, mt := range types {
		for _, disp := range []string{"", "inline", "attachment", "form-data"} {
			for _, hasName := range []bool{false, true} {
				name := ""
				if hasName {
					name = "a.bin"
				}
				mp := &Part{MediaType: mt, Disposition: disp, Filename: name, HasFilename: hasName}
				want := DefaultPolicy(mp)
				got := p.Part(&policy.Part{MediaType: mt, Disposition: disp, Filename: name, HasFilename: hasName})
				var gotAction Action
				switch got.Action {
				case policy.Keep:
					gotAction = Keep
				case policy.Seal:
					gotAction = Seal
				case policy.Descend:
					gotAction = Descend
				default:
					t.Fatalf("%s %q %v: action %v", mt, disp, hasName, got.Action)
				}
				wantRule := want.Reason
				switch {
				case want.Action == Descend:
					wantRule = "multipart"
				case want.Action == Keep:
					wantRule = "body"
				}
				if gotAction != want.Action || got.Rule != wantRule {
					t.Errorf("%s disposition=%q filename=%v: got %v (%s), mimeseal %v (%q)", mt, disp, hasName, got.Action, got.Rule, want.Action, want.Reason)
				}
				n++
			}
		}
	}
	if d := p.Message(&policy.Message{Sender: "a@example.co.jp", Recipients: []string{"b@client.example"}}); d.Action != policy.SealAttachments || d.Rule != "default" {
		t.Errorf("message: %+v", d)
	}
	t.Logf("%d entity shapes compared", n)
}
