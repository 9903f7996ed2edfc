package notice

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"text/template"
	"time"

	"github.com/sealgate/sealgate/gateway/mimeseal"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

// kinds are the template files of the notices, by kind; each defines
// "body", and "subject" unless it is the link notice (an entity, not a
// mail).
var kinds = []string{"link", "key", "bounce", "approval-request", "hold-receipt", "hold-decision",
	"download-receipt", "key-registration", "account-locked", "policy-alert", "witness-alert"}

// Options are the renderer's settings, from the configuration.
type Options struct {
	// PublicURL is the portal's base URL; links are PublicURL + a path.
	PublicURL string
	// From is the address system notices and bounces come from
	// (delivery.notice_from).
	From string
	// Hostname is the right-hand side of Message-IDs and the reporting
	// MTA of bounces.
	Hostname string
	// Location is the time zone of the times a notice shows (default UTC).
	Location *time.Location
}

// Renderer writes notices from the embedded templates. It is immutable
// once made, and safe for concurrent use.
type Renderer struct {
	o       Options
	sets    map[string]*template.Template
	reasons map[string]sentence
}

// sentence is one sentence in both languages.
type sentence struct{ JA, EN string }

// New parses the embedded templates.
func New(o Options) (*Renderer, error) {
	if o.Location == nil {
		o.Location = time.UTC
	}
	o.PublicURL = strings.TrimRight(o.PublicURL, "/")
	r := &Renderer{o: o, sets: map[string]*template.Template{}}
	funcs := template.FuncMap{
		// when is a time as notices show it, in the configured zone.
		"when": func(t time.Time) string { return t.In(o.Location).Format("2006-01-02 15:04 MST") },
		// whenZone adds the offset, for a deadline read abroad.
		"whenZone": func(t time.Time) string { return t.In(o.Location).Format("2006-01-02 15:04 MST (-07:00)") },
		"utc":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"size":     humanSize,
		"ext":      mimeseal.FinalExtension,
		"join":     strings.Join,
		// link is a URL of the portal.
		"link": func(path ...string) string { return o.PublicURL + strings.Join(path, "") },
	}
	for _, kind := range kinds {
		files := []string{"templates/common.tmpl", "templates/" + kind + ".tmpl"}
		if kind == "link" {
			files = append(files, "templates/reasons.tmpl")
		}
		t, err := template.New(kind).Funcs(funcs).Option("missingkey=error").ParseFS(templateFS, files...)
		if err != nil {
			return nil, fmt.Errorf("failed to parse the %s notice: %w", kind, err)
		}
		if t.Lookup("body") == nil || (kind != "link" && t.Lookup("subject") == nil) {
			return nil, fmt.Errorf("notice: templates/%s.tmpl defines no body or subject", kind)
		}
		r.sets[kind] = t
	}
	reasons, err := parseReasons(r.sets["link"])
	if err != nil {
		return nil, err
	}
	r.reasons = reasons
	return r, nil
}

// parseReasons collects the sentences of reasons.tmpl: "reason ja NAME"
// and "reason en NAME" for every reason NAME.
func parseReasons(t *template.Template) (map[string]sentence, error) {
	out := map[string]sentence{}
	for _, d := range t.Templates() {
		lang, name, ok := strings.Cut(strings.TrimPrefix(d.Name(), "reason "), " ")
		if !ok || !strings.HasPrefix(d.Name(), "reason ") {
			continue
		}
		var b strings.Builder
		if err := d.Execute(&b, nil); err != nil {
			return nil, fmt.Errorf("failed to read the sealing reason %q: %w", name, err)
		}
		s := out[name]
		switch lang {
		case "ja":
			s.JA = strings.TrimSpace(b.String())
		case "en":
			s.EN = strings.TrimSpace(b.String())
		default:
			return nil, fmt.Errorf("notice: sealing reason %q in an unknown language %q", name, lang)
		}
		out[name] = s
	}
	for name, s := range out {
		if s.JA == "" || s.EN == "" {
			return nil, fmt.Errorf("notice: sealing reason %q lacks Japanese or English", name)
		}
	}
	return out, nil
}

// Header is what a mail's header says besides what its notice decides.
type Header struct {
	To []string // bare addresses, canonical
	// ID is the left-hand side of the Message-ID (the right is
	// Options.Hostname).
	ID   string
	Date time.Time
}

// Text returns the subject and the text of n, as a recipient reads them
// (for tests, and for whoever needs the words without the mail).
func (r *Renderer) Text(n Notice) (subject, text string, err error) {
	t := r.sets[n.spec().kind]
	if subject, err = r.subject(t, n); err != nil {
		return "", "", err
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "body", n); err != nil {
		return "", "", fmt.Errorf("failed to render the %s notice: %w", n.spec().kind, err)
	}
	return subject, b.String(), nil
}

func (r *Renderer) subject(t *template.Template, n Notice) (string, error) {
	var s strings.Builder
	if err := t.ExecuteTemplate(&s, "subject", n); err != nil {
		return "", fmt.Errorf("failed to render the subject of the %s notice: %w", n.spec().kind, err)
	}
	return s.String(), nil
}

// body writes the template's body to b, quoted-printable (its line ends
// become CRLF).
func body(b *bytes.Buffer, t *template.Template, data any) error {
	qw := quotedprintable.NewWriter(b)
	if err := t.ExecuteTemplate(qw, "body", data); err != nil {
		return fmt.Errorf("failed to render the %s notice: %w", t.Name(), err)
	}
	return qw.Close()
}

// Write writes n to w as a whole message: header fields (the subject in
// RFC 2047 words), a blank line and the body, quoted-printable, with CRLF
// line ends.
func (r *Renderer) Write(w io.Writer, h Header, n Notice) error {
	if len(h.To) == 0 {
		return errors.New("notice: a mail with no recipient")
	}
	sp := n.spec()
	t := r.sets[sp.kind]
	subject, err := r.subject(t, n)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	switch sp.style {
	case styleKey:
		k, ok := n.(Key)
		if !ok {
			return fmt.Errorf("notice: a key notice is a Key value, not %T", n)
		}
		from := k.From
		if from == "" {
			from = r.o.From
		}
		r.writeHeader(&b, "<"+from+">", h, subject, k.References)
		b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n")
		b.WriteString("Auto-Submitted: auto-generated\r\nX-Sealgate-Notice: key\r\n\r\n")
	case styleBounce:
		bn, ok := n.(Bounce)
		if !ok {
			return fmt.Errorf("notice: a bounce is a Bounce value, not %T", n)
		}
		if err := r.writeBounce(&b, h, t, bn, subject); err != nil {
			return err
		}
		_, err := w.Write(b.Bytes())
		return err
	default:
		r.writeHeader(&b, "sealgate <"+r.o.From+">", h, subject, "")
		b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n")
		b.WriteString("Auto-Submitted: auto-generated\r\nX-Sealgate-Notice: system\r\n\r\n")
	}
	if err := body(&b, t, n); err != nil {
		return err
	}
	_, err = w.Write(b.Bytes())
	return err
}

// writeHeader writes the fields every notice has: From, To, Subject,
// Date, Message-ID and References.
func (r *Renderer) writeHeader(b *bytes.Buffer, from string, h Header, subject, references string) {
	fmt.Fprintf(b, "From: %s\r\n", from)
	for i, to := range h.To {
		if i == 0 {
			fmt.Fprintf(b, "To: <%s>", to)
		} else {
			fmt.Fprintf(b, ",\r\n <%s>", to)
		}
	}
	b.WriteString("\r\n")
	fmt.Fprintf(b, "Subject: %s\r\n", mime.BEncoding.Encode("UTF-8", OneLine(subject)))
	fmt.Fprintf(b, "Date: %s\r\n", h.Date.Format(time.RFC1123Z))
	fmt.Fprintf(b, "Message-ID: <%s@%s>\r\n", h.ID, r.o.Hostname)
	if id := strings.TrimSpace(references); ValidMessageID(id) {
		fmt.Fprintf(b, "References: %s\r\n", id)
	}
}

// writeBounce writes a delivery status notification (RFC 3464): the text
// for people, the delivery status for programs, the header of the message.
func (r *Renderer) writeBounce(b *bytes.Buffer, h Header, t *template.Template, n Bounce, subject string) error {
	boundary := "sealgate-dsn-" + h.ID
	r.writeHeader(b, "Mail Delivery System <"+r.o.From+">", h, subject, "")
	b.WriteString("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n")
	fmt.Fprintf(b, "Content-Type: multipart/report; report-type=delivery-status; boundary=\"%s\"\r\n\r\n", boundary)
	fmt.Fprintf(b, "--%s\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", boundary)
	if err := body(b, t, n); err != nil {
		return err
	}
	fmt.Fprintf(b, "\r\n--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary)
	fmt.Fprintf(b, "Reporting-MTA: dns; %s\r\nArrival-Date: %s\r\n\r\n", r.o.Hostname, n.Arrival.Format(time.RFC1123Z))
	for i, rcpt := range n.Recipients {
		if i > 0 {
			b.WriteString("\r\n")
		}
		fmt.Fprintf(b, "Final-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n", rcpt, n.Status)
		fmt.Fprintf(b, "Diagnostic-Code: smtp; %s\r\n", OneLine(n.Diagnostic))
	}
	fmt.Fprintf(b, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary)
	if ValidMessageID(n.References) {
		fmt.Fprintf(b, "Message-ID: %s\r\n", n.References)
	}
	fmt.Fprintf(b, "Subject: %s\r\n", mime.BEncoding.Encode("UTF-8", OneLine(n.Subject)))
	fmt.Fprintf(b, "\r\n--%s--\r\n", boundary)
	return nil
}

// linkView is what the link notice's template reads.
type linkView struct {
	Link
	Why *sentence // why a text part was sealed whole (nil: an attachment)
}

// WriteLink writes the MIME entity that stands where a sealed attachment
// was: header fields, a blank line, the body (quoted-printable).
func (r *Renderer) WriteLink(w io.Writer, l Link) error {
	v := linkView{Link: l}
	if s, ok := r.reasons[l.Hidden]; ok && l.Hidden != "" {
		v.Why = &s
	}
	var b bytes.Buffer
	b.WriteString("Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Disposition: inline\r\n")
	fmt.Fprintf(&b, "X-Sealgate-Sealed: %d\r\n\r\n", l.File.Index)
	if err := body(&b, r.sets["link"], v); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

// OneLine makes s fit on one header line: control characters become
// spaces, and it is cut at 900 bytes.
func OneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 900 {
		s = s[:900]
	}
	return s
}

// ValidMessageID reports whether id is a Message-ID fit to be repeated in
// a header field: "<…>", one line, not too long.
func ValidMessageID(id string) bool {
	return strings.HasPrefix(id, "<") && strings.HasSuffix(id, ">") && len(id) < 998 && !strings.ContainsAny(id, "\r\n")
}

// humanSize is a size in bytes, with a rounded binary unit when large.
func humanSize(n int64) string {
	s := fmt.Sprintf("%d bytes", n)
	switch {
	case n >= 1<<30:
		s += fmt.Sprintf(" (%.1f GiB)", float64(n)/(1<<30))
	case n >= 1<<20:
		s += fmt.Sprintf(" (%.1f MiB)", float64(n)/(1<<20))
	case n >= 1<<10:
		s += fmt.Sprintf(" (%.1f KiB)", float64(n)/(1<<10))
	}
	return s
}
