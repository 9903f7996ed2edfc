package mimeseal

import (
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/sealgate/sealgate/inspect"
	"github.com/sealgate/sealgate/policy"
)

// inspected reports whether a kept leaf of this media type is inspected for hidden files:
// every text type and XHTML. Other leaves a policy keeps are the policy's own business and
// are copied raw at once.
func inspected(mediaType string) bool {
	return strings.HasPrefix(mediaType, "text/") || mediaType == "application/xhtml+xml"
}

// keepText handles a text leaf the policy keeps. Its raw body is held in memory (up to
// Limits.MaxTextBytes) while its decoded content is inspected; at its end the part is either
// copied raw into the skeleton, header and body byte-identical (nothing found), or sealed
// whole (found): the held bytes and the rest of the body go to the Sealer and nothing of them
// to the skeleton. The part is sealed as soon as something is found, and when it outgrows the
// limit ("large-text": it cannot be inspected whole, so it is not passed on).
//
// raw is the part's raw header and h its parsed form (for the Content-* fields of the sealed
// .eml). top is the edited top-level header when the part is the top-level entity (then it is
// written on keep, and its fields other than Content-* on seal), nil for a body part.
func (w *walker) keepText(e *entity, raw []byte, h, top *textproto.Header, rule string) (event, error) {
	p := &e.part
	w.startLeaf(e)
	w.ins.reset(p.MediaType != "text/plain", strings.EqualFold(p.Params["format"], "flowed"), strings.EqualFold(p.Params["delsp"], "yes"))
	w.batch.pw = w.ins
	w.batch.buf = w.batch.buf[:0]
	var cid *inspect.CIDRefs
	if w.collectCIDs() && (p.MediaType == "text/html" || p.MediaType == "application/xhtml+xml") {
		// Its cid: references tell the images it shows (a signature logo) from attachments.
		cid = inspect.NewCIDRefs()
	}
	if cid != nil || w.fan.ins != nil {
		w.fan.hid, w.fan.cid = w.ins, cid
		w.batch.pw = &w.fan
	}
	var dec decoder = &w.ident
	switch p.Encoding {
	case "base64":
		w.b64.reset(&w.batch)
		w.b64.strict = true
		dec = &w.b64
	case "quoted-printable":
		w.qp.reset(&w.batch)
		w.qp.strict = true
		dec = &w.qp
	}
	hs := &w.hold
	*hs = holdSink{w: w, e: e, raw: raw, h: h, top: top, dec: dec, held: w.bufs.held[:0], limit: w.lim.MaxTextBytes, start: w.in.pos()}
	defer func() { w.bufs.held = hs.held[:0] }() // keep the grown buffer for the next message

	if asciiIncompatible(p.Params["charset"]) {
		if err := hs.startSeal(carrier{reason: "charset"}); err != nil {
			return event{idx: eofIdx}, err
		}
	}
	ev, err := w.scanBody(hs)
	if err != nil {
		return event{idx: eofIdx}, err
	}
	if !hs.sealing {
		if err := hs.finish(); err != nil {
			return event{idx: eofIdx}, err
		}
	}
	if !hs.sealing {
		if hs.bare || hs.chk.cr {
			return event{idx: eofIdx}, errorf(Malformed, "failed to copy a kept part: %w", ErrBareLineEnding)
		}
		if top != nil {
			if err := w.writeHeader(top); err != nil {
				return event{idx: eofIdx}, err
			}
		} else if err := w.skel.raw(raw); err != nil {
			return event{idx: eofIdx}, err
		}
		if cid != nil {
			cid.Close()
			w.cids = append(w.cids, cid)
		}
		w.report(e, policy.Keep, rule, "", nil, -1)
		return ev, w.skel.raw(hs.held)
	}
	if err := w.endSeal(hs.index, hs.start); err != nil {
		return event{idx: eofIdx}, err
	}
	w.report(e, policy.Seal, rule, w.res.Attachments[hs.index].Reason, nil, hs.index)
	return ev, nil
}

// holdSink receives the raw body of a kept text part: it holds it and feeds its decoder (and
// through it the inspector) until the part is found to carry a file, then it seals the part.
type holdSink struct {
	w       *walker
	e       *entity
	raw     []byte
	h, top  *textproto.Header
	dec     decoder
	held    []byte
	limit   int
	start   int64 // input offset of the body
	chk     crlfCheck
	bare    bool // a bare CR or LF: refused if the part is kept
	sealing bool // the part is being sealed: the body goes to the sealed file
	index   int  // the sealed part's Attachment.Index
}

func (hs *holdSink) write(p []byte) error {
	if hs.sealing {
		return hs.w.batch.write(p)
	}
	if !hs.bare && !hs.chk.ok(p) {
		hs.bare = true
	}
	if len(hs.held)+len(p) > hs.limit {
		if err := hs.startSeal(carrier{reason: "large-text"}); err != nil {
			return err
		}
		return hs.w.batch.write(p)
	}
	hs.held = append(hs.held, p...)
	if err := hs.dec.write(p); err != nil {
		if KindOf(err) != Malformed {
			return err
		}
		return hs.startSeal(carrier{reason: "unparseable"}) // clients may read it otherwise
	}
	if hs.w.ins.found.reason != "" {
		return hs.startSeal(hs.w.ins.found)
	}
	return nil
}

// finish ends the decoding and the inspection of a part held whole, and seals it if it
// carries a file.
func (hs *holdSink) finish() error {
	w := hs.w
	err := hs.dec.close()
	if err == nil {
		err = w.batch.flush()
	}
	if err != nil {
		if KindOf(err) != Malformed {
			return err
		}
		return hs.startSeal(carrier{reason: "unparseable"})
	}
	w.ins.close()
	if w.ins.found.reason != "" {
		return hs.startSeal(w.ins.found)
	}
	return nil
}

// startSeal seals the part whole from here on: the placeholder goes to the skeleton, the
// part's Content-* fields, a blank line and the body held so far to the sealed file.
func (hs *holdSink) startSeal(c carrier) error {
	w := hs.w
	if hs.top != nil {
		if err := w.writeSealedTop(hs.top); err != nil {
			return err
		}
	}
	name := fileName(c.name, hs.e.part.Params["charset"])
	if name == "" {
		name = hs.e.part.Filename // a text part a policy keeps may have one
	}
	a := Attachment{Filename: name, ContentType: hs.e.part.MediaType, Whole: true, Reason: c.reason}
	if _, err := w.beginSeal(hs.e, &a, true, hs.raw, hs.h); err != nil {
		return err
	}
	hs.sealing, hs.index = true, a.Index
	return w.batch.write(hs.held)
}

// fileName decodes the raw name of a hidden file from the part's charset to UTF-8.
func fileName(raw []byte, charset string) string {
	if len(raw) == 0 {
		return ""
	}
	if charset == "" || asciiIncompatible(charset) {
		return decodePlainName(string(raw))
	}
	return toUTF8(charset, raw)
}
