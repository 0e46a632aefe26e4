package smime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
)

// Header protection (RFC 9788). The Cryptographic Payload is the entity that is signed (the
// first part of the multipart/signed) and, for an encrypted package, encrypted: its header
// section carries the message's header fields, its Content-Type says hp="cipher" (signed and
// encrypted) or hp="clear" (signed only), and, when encrypted, one HP-Outer field per field of
// the outer header records what travelled in clear. The outer header of an encrypted package is
// obscured by the Header Confidentiality Policy hcp_baseline: the Subject becomes "[...]", and
// Keywords and Comments are left out.

// Values of the hp parameter of the Cryptographic Payload's Content-Type.
const (
	HPCipher = "cipher" // signed and encrypted: the outer header is obscured
	HPClear  = "clear"  // signed only: the outer header is the protected one
)

// ObscuredSubject is what hcp_baseline puts in place of the Subject.
const ObscuredSubject = "[...]"

// ErrProtect reports an entity that cannot carry protected headers.
var ErrProtect = errors.New("smime: cannot protect header")

// HCPBaseline is RFC 9788's hcp_baseline for one field: the value the outer header carries, or
// ok false when the field is left out of it.
func HCPBaseline(name, value string) (out string, ok bool) {
	switch strings.ToLower(name) {
	case "subject":
		return ObscuredSubject, true
	case "keywords", "comments":
		return "", false
	}
	return value, true
}

// ObscureOuter applies [HCPBaseline] to every field of h; each field keeps its place, and the
// fields it does not change keep their raw bytes.
func ObscureOuter(h *textproto.Header) {
	type field struct {
		raw      []byte
		key, val string
	}
	var fields []field
	for f := h.Fields(); f.Next(); {
		v, ok := HCPBaseline(f.Key(), f.Value())
		switch raw, err := f.Raw(); {
		case !ok:
		case v == f.Value() && err == nil:
			fields = append(fields, field{raw: append([]byte(nil), raw...)})
		default:
			fields = append(fields, field{key: f.Key(), val: v})
		}
	}
	var out textproto.Header
	for i := len(fields) - 1; i >= 0; i-- { // Add and AddRaw put a field on top
		if fields[i].raw != nil {
			out.AddRaw(fields[i].raw)
		} else {
			out.Add(fields[i].key, fields[i].val)
		}
	}
	*h = out
}

// Protect returns the Cryptographic Payload made from entity (as [Split] makes it: its Content-*
// fields, a blank line, the body, canonical): the entity's own Content-* fields, with hp=mode on
// its Content-Type, then every field of protected (raw, in order), then, for [HPCipher], one
// HP-Outer field per field of outer (the obscured header). With legacy set and mode
// [HPCipher], the main body parts get a Legacy Display Element, the Subject which the outer
// header hides, marked hp-legacy-display="1": a text/plain part starts with it, a text/html part
// gets it as a div just inside <body>; the main body parts are the body itself, every text
// alternative of a multipart/alternative and the first part of a multipart/mixed. A part whose
// charset or transfer encoding (base64) cannot carry it as it is gets none (RFC 9788 makes the
// element optional).
func Protect(entity []byte, protected textproto.Header, mode string, outer textproto.Header, legacy bool) ([]byte, error) {
	if mode != HPCipher && mode != HPClear {
		return nil, fmt.Errorf("%w: hp mode %q", ErrProtect, mode)
	}
	r := bytes.NewReader(entity)
	br := bufio.NewReader(r)
	eh, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: %w", ErrProtect, ErrMalformed, err)
	}
	body := entity[len(entity)-r.Len()-br.Buffered():]
	mt, params, err := ParseContentType(eh.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtect, err)
	}
	params["hp"] = mode
	if subject := legacySubject(protected); legacy && mode == HPCipher && subject != "" {
		switch {
		case (mt == "text/plain" || mt == "text/html") && !isAttachment(eh):
			if b, ok := withDisplay(body, mt, params["charset"], eh.Get("Content-Transfer-Encoding"), subject); ok {
				body = b
				params["hp-legacy-display"] = "1"
			}
		case mt == "multipart/alternative" || mt == "multipart/mixed":
			if b, ok := legacyChildren(body, params["boundary"], mt == "multipart/alternative", subject, 1); ok {
				body = b
			}
		}
	}
	ct := mime.FormatMediaType(mt, params)
	if ct == "" {
		return nil, fmt.Errorf("%w: Content-Type %q cannot be written again", ErrProtect, eh.Get("Content-Type"))
	}

	var head bytes.Buffer
	head.WriteString("Content-Type: " + foldParams(ct) + "\r\n")
	for f := eh.Fields(); f.Next(); {
		if strings.EqualFold(f.Key(), "Content-Type") {
			continue
		}
		raw, err := f.Raw()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProtect, err)
		}
		head.Write(raw)
	}
	if err := writeOuter(&head, protected); err != nil {
		return nil, err
	}
	if mode == HPCipher {
		for f := outer.Fields(); f.Next(); {
			if IsContentField(f.Key()) || strings.EqualFold(f.Key(), "MIME-Version") {
				continue
			}
			head.WriteString(fold("HP-Outer: "+f.Key()+": "+unfoldValue(f.Value())) + "\r\n")
		}
	}
	head.WriteString("\r\n")
	out := Canonicalize(head.Bytes())
	return append(out, body...), nil
}

// foldParams breaks a Content-Type value before each parameter, so no line grows long.
func foldParams(ct string) string { return strings.ReplaceAll(ct, "; ", ";\r\n ") }

// fold breaks a header field line at spaces so that no line is longer than 78 characters where
// a space allows it (RFC 5322 section 2.2.3); a word longer than a line stays whole.
func fold(line string) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Split(line, " ") {
		switch {
		case i == 0:
		case n+1+len(w) > 78:
			b.WriteString("\r\n")
			n = 0
			fallthrough
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// unfoldValue is a field value unfolded, for an HP-Outer field.
func unfoldValue(v string) string {
	return strings.Join(strings.Fields(strings.NewReplacer("\r", " ", "\n", " ").Replace(v)), " ")
}

// legacySubject is the Subject the legacy display element shows, decoded, on one line; "" when
// the message has none.
func legacySubject(protected textproto.Header) string {
	subject := protected.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	return unfoldValue(subject)
}

// legacyText is the Legacy Display Element for a text/plain or text/html body in the body's
// transfer encoding, or nil when the body's charset or encoding cannot carry it as it is.
func legacyText(subject string, html bool, charset, cte string) []byte {
	ascii := true
	for i := 0; i < len(subject); i++ {
		ascii = ascii && subject[i] < 0x80
	}
	if !ascii && (strings.ToLower(charset) != "utf-8" || !utf8.ValidString(subject)) {
		return nil
	}
	text := "Subject: " + subject + "\r\n\r\n"
	if html {
		text = "<div class=\"header-protection-legacy-display\"><pre>Subject: " +
			htmlEscaper.Replace(subject) + "</pre></div>\r\n"
	}
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit":
		if !ascii {
			return nil
		}
		return []byte(text)
	case "8bit":
		return []byte(text)
	case "quoted-printable":
		var b bytes.Buffer
		w := quotedprintable.NewWriter(&b)
		io.WriteString(w, text) // a bytes.Buffer does not fail
		w.Close()
		return Canonicalize(b.Bytes())
	}
	return nil
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\"", "&quot;")

// bodyTag finds the end of an HTML body's <body ...> start tag, or 0 when there is none to find.
var bodyTag = regexp.MustCompile(`(?i)<body(\s[^>]*)?>\r?\n?`)

// withDisplay puts the legacy display element into a text/plain body (first) or a text/html body
// (just inside <body>, or first when the body is quoted-printable or has no body tag).
func withDisplay(body []byte, mt, charset, cte, subject string) ([]byte, bool) {
	text := legacyText(subject, mt == "text/html", charset, cte)
	if text == nil {
		return nil, false
	}
	at := 0
	if mt == "text/html" && !strings.EqualFold(strings.TrimSpace(cte), "quoted-printable") {
		if loc := bodyTag.FindIndex(body); loc != nil {
			at = loc[1]
		}
	}
	out := make([]byte, 0, len(body)+len(text))
	out = append(append(append(out, body[:at]...), text...), body[at:]...)
	return out, true
}

// legacyChildren puts the legacy display element into the main body parts of a multipart body:
// every text/plain and text/html alternative of a multipart/alternative, the first part of a
// multipart/mixed (recursively, a few levels deep). Every other byte stays where it was.
func legacyChildren(body []byte, boundary string, all bool, subject string, depth int) ([]byte, bool) {
	if boundary == "" || depth > 3 {
		return nil, false
	}
	var out []byte
	done := false
	_, start, final, ok := findDelimiter(body, 0, boundary)
	if !ok || final {
		return nil, false
	}
	copied := 0
	for !final {
		var next, end int
		if end, next, final, ok = findDelimiter(body, start, boundary); !ok {
			return nil, false
		}
		part := body[start:max(start, trimEOL(body, end))]
		if b, ok := legacyPart(part, subject, depth); ok {
			out = append(append(out, body[copied:start]...), b...)
			copied = start + len(part)
			done = true
		}
		if !all {
			break
		}
		start = next
	}
	if !done {
		return nil, false
	}
	return append(out, body[copied:]...), true
}

// isAttachment reports a part marked as an attachment: a file, not text to show first.
func isAttachment(h textproto.Header) bool {
	d, _, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	return d == "attachment"
}

// legacyPart puts the legacy display element into one body part, rewriting its Content-Type
// with hp-legacy-display="1" when the part is text.
func legacyPart(part []byte, subject string, depth int) ([]byte, bool) {
	r := bytes.NewReader(part)
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, false
	}
	body := part[len(part)-r.Len()-br.Buffered():]
	mt, params := "text/plain", map[string]string{"charset": "us-ascii"}
	if h.Has("Content-Type") {
		if mt, params, err = ParseContentType(h.Get("Content-Type")); err != nil {
			return nil, false
		}
	}
	switch mt {
	case "text/plain", "text/html":
		if isAttachment(h) {
			return nil, false
		}
		b, ok := withDisplay(body, mt, params["charset"], h.Get("Content-Transfer-Encoding"), subject)
		if !ok {
			return nil, false
		}
		params["hp-legacy-display"] = "1"
		ct := mime.FormatMediaType(mt, params)
		if ct == "" {
			return nil, false
		}
		var head bytes.Buffer
		head.WriteString("Content-Type: " + foldParams(ct) + "\r\n")
		for f := h.Fields(); f.Next(); {
			if strings.EqualFold(f.Key(), "Content-Type") {
				continue
			}
			raw, err := f.Raw()
			if err != nil {
				return nil, false
			}
			head.Write(raw)
		}
		head.WriteString("\r\n")
		return append(Canonicalize(head.Bytes()), b...), true
	case "multipart/alternative", "multipart/mixed":
		b, ok := legacyChildren(body, params["boundary"], mt == "multipart/alternative", subject, depth+1)
		if !ok {
			return nil, false
		}
		return append(append([]byte(nil), part[:len(part)-len(body)]...), b...), true
	}
	return nil, false
}

var legacyMark = regexp.MustCompile(`(?i)hp-legacy-display="?1"?`)

// Protected is what a Cryptographic Payload says about the header, as [ReadProtected] reads it.
type Protected struct {
	Mode   string           // the hp parameter: HPCipher, HPClear, or "" when the payload has none
	Header textproto.Header // the payload's header fields other than Content-* and HP-Outer
	Outer  []string         // the HP-Outer values ("Subject: [...]"), in order
	Legacy bool             // the payload, or a part of it, says hp-legacy-display="1"
}

// ReadProtected reads the header of a Cryptographic Payload: entity is the signed content (the
// first part of a multipart/signed), or a multipart/signed entity, whose first part is read.
func ReadProtected(entity []byte) (*Protected, error) {
	if s, err := ParseSigned(entity); err == nil {
		entity = s.Content
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(entity)))
	if err != nil {
		return nil, fmt.Errorf("failed to read protected header: %w: %w", ErrMalformed, err)
	}
	p := &Protected{}
	if _, params, err := ParseContentType(h.Get("Content-Type")); err == nil {
		p.Mode = params["hp"]
		p.Legacy = params["hp-legacy-display"] == "1"
	}
	// In a multipart payload the element is in the main body parts.
	p.Legacy = p.Legacy || legacyMark.Match(entity)
	for f := h.Fields(); f.Next(); {
		switch k := f.Key(); {
		case strings.EqualFold(k, "HP-Outer"):
			p.Outer = append(p.Outer, f.Value())
		case IsContentField(k), strings.EqualFold(k, "MIME-Version"):
		default:
			p.Header.Add(k, f.Value())
		}
	}
	// Add puts each field on top; put them back in their order.
	var ordered textproto.Header
	for f := p.Header.Fields(); f.Next(); {
		ordered.Add(f.Key(), f.Value())
	}
	p.Header = ordered
	return p, nil
}
