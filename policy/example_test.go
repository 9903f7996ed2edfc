package policy_test

import (
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message/textproto"
	"github.com/sealgate/sealgate/inspect"
	"github.com/sealgate/sealgate/policy"
)

// How the gateway uses a policy: the message rules once the header is read, then, for each
// part, Part at its start and, when it answers Pending, PartEnd once the content has streamed
// through the inspectors.
func Example() {
	p, err := policy.Load("examples/contracts-and-confidential.toml")
	if err != nil {
		panic(err)
	}
	var h textproto.Header
	h.Set("Subject", "=?UTF-8?B?44CQ5qmf5a+G44CRIOimi+epjeabuA==?=") // 【機密】 見積書
	md := p.Message(&policy.Message{Sender: "a@example.co.jp", Recipients: []string{"b@client.example"}, Contract: "ACME", Header: &h})
	fmt.Println(md.Action, md.Rule, md.Notify)

	// A part: an attachment whose content is a password-protected ZIP (here only its first
	// local header: the encryption flag is set).
	part := &policy.Part{MediaType: "application/octet-stream", Disposition: "attachment", Filename: "資料.zip", HasFilename: true}
	d := p.Part(part)
	fmt.Println(d.Action, d.Needs, d.MayKeep, d.MaySeal, d.MayRefuse)

	in := inspect.New()
	io.Copy(in, strings.NewReader("PK\x03\x04\x14\x00\x01\x00\x08\x00"+strings.Repeat("\x00", 16)+"\x05\x00\x00\x00a.txt"))
	in.Close()
	r := in.Result()
	e := p.PartEnd(part, &policy.Content{Sniffed: r.MediaType, Size: r.Size, Encrypted: r.Encrypted})
	fmt.Println(e.Action, e.Rule)
	fmt.Println(e.Reason.EN)
	// Output:
	// seal_message confidential-subject [security@example.co.jp]
	// pending encrypted false true true
	// refuse encrypted-archive
	// Password-protected archives and documents cannot be sent: attach the files unencrypted, sealgate encrypts them.
}
