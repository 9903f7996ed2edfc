package mimeseal

import (
	"fmt"
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/sealgate/sealgate/inspect"
	"github.com/sealgate/sealgate/policy"
)

// A leaf's decoded bytes go, through the batcher, to a fan that hands them to everyone who
// needs them: the Sealer's PartWriter, the malware scan, the content inspector (package
// inspect), the hidden-file inspector of a kept text part, the cid: collector of a kept HTML
// body, and the buffer that holds the content of a part whose keeping depends on it. When only
// the PartWriter needs them, the batcher writes to it directly.

// fan implements PartWriter for the batcher.
type fan struct {
	pw      PartWriter
	scan    ScanStream
	scanErr error // the first error of scan.Write, reported when the scan ends
	ins     *inspect.Inspector
	hid     *inspector
	cid     *inspect.CIDRefs
	size    int64

	// holding: the decoded content is held (up to holdLimit) while keeping the part is
	// possible; past the limit, overflow starts sealing it and holding stops.
	holding   bool
	held      []byte
	holdLimit int
	overflow  func() error
}

func (f *fan) Write(p []byte) (int, error) {
	f.size += int64(len(p))
	if f.ins != nil {
		f.ins.Write(p)
	}
	if f.hid != nil {
		f.hid.Write(p)
	}
	if f.cid != nil {
		f.cid.Write(p)
	}
	if f.scan != nil && f.scanErr == nil {
		if _, err := f.scan.Write(p); err != nil {
			f.scanErr = err
		}
	}
	if f.holding {
		if len(f.held)+len(p) <= f.holdLimit {
			f.held = append(f.held, p...)
			return len(p), nil
		}
		if err := f.overflow(); err != nil {
			return 0, err
		}
	}
	if f.pw != nil {
		return f.pw.Write(p)
	}
	return len(p), nil
}

func (f *fan) Close() error { return nil }
func (f *fan) Abort(error)  {}

// collectCIDs reports whether the cid: references of kept HTML bodies are needed: for a
// policy with an inline predicate, or to gather every fact.
func (w *walker) collectCIDs() bool {
	return w.opt.Gather || w.pol != nil && w.pol.UsesInline()
}

// startLeaf resets the per-leaf state: the fan, the verdict, and the content inspector when
// every leaf's facts are gathered.
func (w *walker) startLeaf(e *entity) {
	w.fan = fan{}
	w.verdict = Verdict{}
	w.scanDone = false
	if w.opt.Gather {
		w.fan.ins = w.factsInspector()
	}
}

func (w *walker) factsInspector() *inspect.Inspector {
	if w.bufs.facts == nil {
		w.bufs.facts = inspect.New()
	} else {
		w.bufs.facts.Reset()
	}
	return w.bufs.facts
}

// startScan opens the malware scan of the current leaf.
func (w *walker) startScan() error {
	st, err := w.opt.Scanner.Scan()
	if err == nil && st == nil {
		err = fmt.Errorf("Scan returned no stream")
	}
	if err != nil {
		return &Error{Kind: ScanFailed, Err: fmt.Errorf("failed to start the malware scan: %w", err)}
	}
	w.scan, w.fan.scan = st, st
	return nil
}

// endScan ends the current leaf's scan, if one is open, and keeps its verdict.
func (w *walker) endScan() error {
	if w.scan == nil {
		return nil
	}
	st := w.scan
	w.scan, w.fan.scan, w.scanDone = nil, nil, true
	if w.fan.scanErr != nil {
		st.Abort()
		return &Error{Kind: ScanFailed, Err: fmt.Errorf("failed to scan a part: %w", w.fan.scanErr)}
	}
	v, err := st.Close()
	if err != nil {
		return &Error{Kind: ScanFailed, Err: fmt.Errorf("failed to scan a part: %w", err)}
	}
	w.verdict = v
	return nil
}

// content returns the content facts learnt about the current leaf (nil when nothing was
// gathered).
func (w *walker) content(held bool) *policy.Content {
	if w.fan.ins == nil && !w.verdict.Scanned {
		return nil
	}
	c := &policy.Content{Size: w.fan.size, Malware: w.verdict.Infected, Held: held}
	if w.fan.ins != nil {
		w.fan.ins.Close()
		r := w.fan.ins.Result()
		c.Sniffed, c.Size, c.Encrypted = r.MediaType, r.Size, r.Encrypted
	}
	return c
}

// report tells Observe what happened to e. c nil: the facts learnt, if any.
func (w *walker) report(e *entity, act policy.Action, rule, hidden string, c *policy.Content, att int) {
	if w.opt.Observe == nil {
		return
	}
	multipart := strings.HasPrefix(e.part.MediaType, "multipart/")
	if c == nil && !multipart {
		c = w.content(act == policy.Keep)
	}
	if e.unparseable != "" {
		rule = "unparseable"
	}
	w.rep = Report{Depth: e.part.Depth, Multipart: multipart, Part: e.facts, Action: act, Rule: rule,
		Hidden: hidden, Content: c, Verdict: w.verdict, Attachment: att}
	w.opt.Observe(&w.rep)
}

// decoderFor returns the decoder of e's body into the batcher.
func (w *walker) decoderFor(e *entity, strict bool) decoder {
	switch e.part.Encoding {
	case "base64":
		w.b64.reset(&w.batch)
		w.b64.strict = strict
		return &w.b64
	case "quoted-printable":
		w.qp.reset(&w.batch)
		w.qp.strict = strict
		return &w.qp
	}
	return &w.ident
}

// Modes of a leaf whose decision waits for its content, or that is kept and streamed through
// the scanner.
const (
	// pendStream: keeping or refusing, not sealing: the raw body goes to the skeleton as it
	// comes (discarded with it if the message is refused).
	pendStream = iota + 1
	// pendHold: keeping or sealing: the raw and the decoded body are held, each up to a bound;
	// past it the part is sealed (pendSeal).
	pendHold
	// pendSeal: sealing or refusing: the decoded body goes to the Sealer as it comes.
	pendSeal
	// pendRaw: the body could not be decoded with certainty: the part is sealed whole, raw
	// (Content-* fields and raw body, a .eml), whatever the rules say.
	pendRaw
)

// pendingSink receives the raw body of a leaf whose decision waits for its content
// (policy.Pending), or of a kept leaf whose content is scanned or inspected.
type pendingSink struct {
	w        *walker
	e        *entity
	raw      []byte
	h, top   *textproto.Header
	dec      decoder
	mode     int
	held     []byte // raw body (pendHold)
	rawLimit int
	chk      crlfCheck
	bare     bool
	index    int   // the sealed part's Attachment.Index (pendSeal, pendRaw)
	start    int64 // input offset of the body
}

// keepStreamed keeps a leaf that is not a text body while its decoded content goes through
// the scanner and the inspector: its raw body goes to the skeleton as it comes; the part is
// refused if found infected.
func (w *walker) keepStreamed(e *entity, raw []byte, top *textproto.Header, d policy.PartDecision) (event, error) {
	return w.runPending(e, d, raw, nil, top, true)
}

// pending handles a leaf whose decision needs content facts: it streams the content through
// the inspector and the scanner, holding or sealing it as the outcomes still possible require
// (see the mode constants), and decides at its end with policy.PartEnd.
func (w *walker) pending(e *entity, d policy.PartDecision, raw []byte, h, top *textproto.Header) (event, error) {
	return w.runPending(e, d, raw, h, top, false)
}

func (w *walker) runPending(e *entity, d policy.PartDecision, raw []byte, h, top *textproto.Header, decided bool) (event, error) {
	fail := func(err error) (event, error) { return event{idx: eofIdx}, err }
	w.startLeaf(e)
	text := inspected(e.part.MediaType)
	if !decided && (d.Needs.Has(policy.NeedSniff) || d.Needs.Has(policy.NeedEncrypted)) && w.fan.ins == nil {
		w.fan.ins = w.factsInspector()
	}
	ps := &w.pend
	*ps = pendingSink{w: w, e: e, raw: raw, h: h, top: top, held: w.bufs.heldRaw[:0], start: w.in.pos()}
	defer func() { w.bufs.heldRaw = ps.held[:0] }()
	defer func() { w.bufs.heldDec = w.fan.held[:0] }()
	switch {
	case decided || d.MayKeep && !d.MaySeal && !text:
		ps.mode = pendStream
	case d.MayKeep:
		ps.mode = pendHold
	default:
		ps.mode = pendSeal
	}
	if w.opt.Scanner != nil {
		if err := w.startScan(); err != nil {
			return fail(err)
		}
	}
	w.batch.buf = w.batch.buf[:0]
	w.batch.pw = &w.fan
	ps.dec = w.decoderFor(e, text && ps.mode == pendHold)
	switch ps.mode {
	case pendStream:
		var err error
		if top != nil {
			err = w.writeHeader(top)
		} else {
			err = w.skel.raw(raw)
		}
		if err != nil {
			return fail(err)
		}
	case pendHold:
		limit := d.KeepLimit
		if limit <= 0 {
			limit = int64(w.lim.MaxTextBytes)
		}
		w.fan.holding, w.fan.held, w.fan.holdLimit = true, w.bufs.heldDec[:0], int(limit)
		w.fan.overflow = ps.toSeal
		ps.rawLimit = int(3*limit) + 64<<10 // quoted-printable triples at most, plus soft breaks
		if text {
			w.ins.reset(e.part.MediaType != "text/plain", strings.EqualFold(e.part.Params["format"], "flowed"), strings.EqualFold(e.part.Params["delsp"], "yes"))
			w.fan.hid = w.ins
			if asciiIncompatible(e.part.Params["charset"]) {
				w.ins.found = carrier{reason: "charset"}
			}
		}
		if w.collectCIDs() && (e.part.MediaType == "text/html" || e.part.MediaType == "application/xhtml+xml") {
			w.fan.cid = inspect.NewCIDRefs()
		}
	case pendSeal:
		a := Attachment{Filename: e.part.Filename, ContentType: e.part.MediaType}
		pw, err := w.openSeal(&a)
		if err != nil {
			return fail(err)
		}
		ps.index = a.Index
		w.fan.pw = pw
	}

	ev, err := w.scanBody(ps)
	if err != nil {
		return fail(err)
	}
	if ps.mode == pendRaw {
		if err := w.endSeal(ps.index, ps.start); err != nil {
			return fail(err)
		}
		w.report(e, policy.Seal, "unparseable", "", nil, ps.index)
		return ev, nil
	}
	if err := ps.dec.close(); err != nil {
		if KindOf(err) != Malformed || ps.mode != pendHold {
			return fail(err)
		}
		if err := ps.toRaw(); err != nil {
			return fail(err)
		}
		if err := w.endSeal(ps.index, ps.start); err != nil {
			return fail(err)
		}
		w.report(e, policy.Seal, "unparseable", "", nil, ps.index)
		return ev, nil
	}
	if err := w.batch.flush(); err != nil {
		return fail(err)
	}
	if w.fan.hid != nil {
		w.fan.hid.close()
	}
	if err := w.endScan(); err != nil {
		return fail(err)
	}
	held := ps.mode != pendSeal
	c := w.content(held)
	if c == nil {
		c = &policy.Content{Size: w.fan.size, Held: held}
	}
	fd := d
	if !decided {
		fd = w.pol.PartEnd(&e.facts, c)
	}
	if w.verdict.Infected {
		w.report(e, policy.Refuse, fd.Rule, "", c, -1)
		return fail(&Error{Kind: Infected, Err: &Malware{Signature: w.verdict.Signature, Rule: fd.Rule}})
	}
	switch fd.Action {
	case policy.Refuse:
		w.report(e, policy.Refuse, fd.Rule, "", c, -1)
		return fail(&Error{Kind: Refused, Err: &Refusal{Rule: fd.Rule, Reason: fd.Reason}})
	case policy.Keep:
		if ps.mode == pendSeal {
			return fail(errorf(Internal, "failed to keep a part: the policy kept a part that was not held"))
		}
		if ps.mode == pendStream {
			if ps.chk.cr {
				return fail(errorf(Malformed, "failed to copy a kept part: %w", ErrBareLineEnding))
			}
			w.report(e, policy.Keep, fd.Rule, "", c, -1)
			return ev, nil
		}
		if w.fan.hid != nil && w.fan.hid.found.reason != "" {
			// A text part the rules keep carries a file: sealed whole, like any kept text.
			hidden := w.fan.hid.found
			if err := ps.sealRawWhole(hidden.reason, fileName(hidden.name, e.part.Params["charset"])); err != nil {
				return fail(err)
			}
			if err := w.endSeal(ps.index, ps.start); err != nil {
				return fail(err)
			}
			w.report(e, policy.Seal, fd.Rule, hidden.reason, c, ps.index)
			return ev, nil
		}
		if ps.bare || ps.chk.cr {
			return fail(errorf(Malformed, "failed to copy a kept part: %w", ErrBareLineEnding))
		}
		if top != nil {
			err = w.writeHeader(top)
		} else {
			err = w.skel.raw(raw)
		}
		if err == nil {
			err = w.skel.raw(ps.held)
		}
		if err != nil {
			return fail(err)
		}
		if w.fan.cid != nil {
			w.fan.cid.Close()
			w.cids = append(w.cids, w.fan.cid)
		}
		w.report(e, policy.Keep, fd.Rule, "", c, -1)
		return ev, nil
	}
	// Sealed, decoded, under the deciding rule's name.
	rule := fd.Rule
	if fd.Action != policy.Seal || rule == "" {
		rule = "policy"
	}
	switch ps.mode {
	case pendStream:
		return fail(errorf(Internal, "failed to seal a part: the policy sealed a part copied to the skeleton"))
	case pendHold:
		if top != nil {
			if err := w.writeSealedTop(top); err != nil {
				return fail(err)
			}
		}
		a := Attachment{Filename: e.part.Filename, ContentType: e.part.MediaType, Reason: rule}
		pw, err := w.openSeal(&a)
		if err != nil {
			return fail(err)
		}
		ps.index = a.Index
		if len(w.fan.held) > 0 {
			if _, err := pw.Write(w.fan.held); err != nil {
				return fail(&Error{Kind: SealerFailed, Err: fmt.Errorf("failed to write sealed part: %w", err)})
			}
		}
	case pendSeal:
		if top != nil {
			if err := w.writeSealedTop(top); err != nil {
				return fail(err)
			}
		}
		w.res.Attachments[ps.index].Reason = rule
	}
	if err := w.endSeal(ps.index, ps.start); err != nil {
		return fail(err)
	}
	w.report(e, policy.Seal, rule, "", c, ps.index)
	return ev, nil
}

func (ps *pendingSink) write(p []byte) error {
	w := ps.w
	switch ps.mode {
	case pendRaw:
		return w.batch.write(p)
	case pendStream:
		if !ps.chk.ok(p) {
			return errorf(Malformed, "failed to copy a kept part: %w", ErrBareLineEnding)
		}
		if err := w.skel.raw(p); err != nil {
			return err
		}
	case pendHold:
		if !ps.bare && !ps.chk.ok(p) {
			ps.bare = true
		}
		if len(ps.held)+len(p) > ps.rawLimit {
			if err := ps.toSeal(); err != nil {
				return err
			}
		} else {
			ps.held = append(ps.held, p...)
		}
	}
	if err := ps.dec.write(p); err != nil {
		if KindOf(err) != Malformed || ps.mode != pendHold {
			return err
		}
		// The content cannot be known with certainty: the part is sealed whole, raw, from here.
		return ps.toRaw()
	}
	return nil
}

// toSeal: the part can no longer be kept (past the bounds of holding). It is sealed, decoded,
// from here on; what was held goes to the Sealer first. The rule is named at its end.
func (ps *pendingSink) toSeal() error {
	w := ps.w
	if ps.mode != pendHold {
		return nil
	}
	a := Attachment{Filename: ps.e.part.Filename, ContentType: ps.e.part.MediaType}
	pw, err := w.openSeal(&a)
	if err != nil {
		return err
	}
	ps.mode, ps.index, ps.held = pendSeal, a.Index, ps.held[:0]
	w.fan.holding, w.fan.hid, w.fan.cid, w.fan.pw = false, nil, nil, pw
	if len(w.fan.held) > 0 {
		if _, err := pw.Write(w.fan.held); err != nil {
			return &Error{Kind: SealerFailed, Err: fmt.Errorf("failed to write sealed part: %w", err)}
		}
		w.fan.held = w.fan.held[:0]
	}
	return nil
}

// toRaw: the body could not be decoded while it was held: the part is sealed whole, raw, as
// an unparseable entity, whatever the rules say (they need content that is not known).
func (ps *pendingSink) toRaw() error {
	return ps.sealRawWhole("unparseable", "")
}

// sealRawWhole seals the held part whole, raw (its Content-* fields, a blank line and the raw
// body: a .eml), restarting its scan on those bytes; the rest of the body follows (pendRaw).
func (ps *pendingSink) sealRawWhole(reason, name string) error {
	w := ps.w
	if w.scan != nil {
		w.scan.Abort()
		w.scan, w.fan.scan, w.fan.scanErr = nil, nil, nil
	}
	w.scanDone = false
	if ps.top != nil {
		if err := w.writeSealedTop(ps.top); err != nil {
			return err
		}
	}
	if name == "" {
		name = ps.e.part.Filename
	}
	a := Attachment{Filename: name, ContentType: ps.e.part.MediaType, Whole: true, Reason: reason}
	w.fan = fan{held: w.fan.held[:0], ins: w.fan.ins}
	if _, err := w.beginSeal(ps.e, &a, true, ps.raw, ps.h); err != nil {
		return err
	}
	ps.mode, ps.index = pendRaw, a.Index
	err := w.batch.write(ps.held)
	ps.held = ps.held[:0]
	return err
}
