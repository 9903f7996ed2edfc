package policy

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: Parse never panics on any input; a policy that compiles can be described and
// evaluated, and every decision it makes names a rule and is one of its stage's actions.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("examples/*.toml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("version = 1\n[message_default]\naction = \"hold\"\n[part_default]\naction = \"keep\"\n[[part]]\nname=\"x\"\nsize_below=\"1\"\naction=\"seal\"\n"))
	msgs := []*Message{
		{},
		{Sender: "a@example.co.jp", Recipients: []string{"b@client.example", "c@x"}, Contract: "ACME-2026", Header: header("Subject", "=?ISO-2022-JP?B?GyRCIVo1IUw3IVsbKEI=?=", "msip_labels", labelHeader, "Sensitivity", "Company-Confidential")},
		{DefaultContract: true, Header: header("Subject", "[Confidential]")},
	}
	parts := []*Part{
		{MediaType: "text/plain"},
		{MediaType: "multipart/mixed", HasFilename: true},
		{MediaType: "image/png", Inline: true, Filename: "a.png", HasFilename: true, Disposition: "inline", Index: 3},
		{MediaType: "application/zip", Disposition: "attachment", Filename: "a.zip", HasFilename: true, Index: 12},
	}
	contents := []*Content{{}, {Sniffed: "image/png", Size: 100, Held: true}, {Sniffed: "application/zip", Size: 1 << 30, Encrypted: true, Malware: true}}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		_ = p.Describe("ja") + p.Describe("en")
		for _, m := range msgs {
			d := p.Message(m)
			switch d.Action {
			case SealAttachments, SealMessage, Hold, Refuse, Pass:
			default:
				t.Fatalf("message action %v", d.Action)
			}
			if d.Rule == "" || p.DescribeMessageRule(d.Rule, "en") == "" {
				t.Fatalf("message decision without a rule: %+v", d)
			}
		}
		for _, f := range parts {
			d := p.Part(f)
			if d.Action != Pending && d.Rule == "" {
				t.Fatalf("part decision without a rule: %+v", d)
			}
			if d.Action == Pending && d.Needs == 0 {
				t.Fatalf("pending without needs: %+v", d)
			}
			for _, c := range contents {
				e := p.PartEnd(f, c)
				switch e.Action {
				case Keep, Seal, Refuse, Descend:
				default:
					t.Fatalf("part action %v", e.Action)
				}
				if e.Action == Keep && !c.Held {
					t.Fatalf("kept a part that was not held: %+v", e)
				}
				if e.Action == Descend && f.MediaType != "multipart/mixed" {
					t.Fatalf("descend into a leaf: %+v", e)
				}
			}
		}
	})
}
