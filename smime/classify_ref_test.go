package smime

// The classifier as it was before the end-of-DATA check was made cheaper for large text parts
// (issue 18), kept word for word (names prefixed ref) as the reference that the differential
// tests hold Classify to: every message must get the same Classification from both.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strings"

	"appliance/cms"
	"appliance/cms/oid"

	"github.com/emersion/go-message/textproto"
)

// RefClassify is the reference classifier, for the differential tests of package smime_test.
var RefClassify = refClassify

// Classify says what msg, a submitted RFC 5322 message, is. It never fails: what it cannot
// read is Refused with a reason.
func refClassify(msg []byte) *Classification {
	w := &refWalker{}
	f, err := w.entity(msg, "", 0, true)
	c := &Classification{Layers: w.layers}
	var r *refusal
	switch {
	case errors.As(err, &r):
		c.Class, c.Reason, c.Malformed = Refused, r.reason, r.malformed
	case err != nil:
		c.Class, c.Reason, c.Malformed = Refused, err.Error(), true
	case f == nil:
		c.Class = Plain
	default:
		c.Envelope, c.EnvelopeType = f.der, f.typ
		c.Class = ClientEncrypted
		if f.signatures > 0 {
			c.Class = SignedOverEncrypted
			c.Reason = "the message is signed over its encryption: that signature covers every recipient's " +
				"RecipientInfo, so the message cannot be split for Bcc recipients without breaking it; " +
				"sign inside the encryption (sign, then encrypt)"
		}
	}
	return c
}

// ClassifyAs is Classify for a message already classified as class (a Class's String, as the
// front end's check at end of DATA recorded it with the spooled message): a plain message is not
// walked again, and a client-encrypted one has only its body decoded, the envelope the

type refWalker struct {
	parts  int
	layers []Layer
}

// entity classifies one MIME entity (header and body). accountable says whether an envelope
// here would be the whole message, under signature layers at most.
func (w *refWalker) entity(raw []byte, path string, depth int, accountable bool) (*found, error) {
	if depth > classifyMaxDepth {
		return nil, malformed("MIME structure nested deeper than %d", classifyMaxDepth)
	}
	r := bytes.NewReader(raw)
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, malformed("header of %s does not parse", where(path))
	}
	body := raw[len(raw)-r.Len()-br.Buffered():]
	if n := len(h.Values("Content-Type")); n > 1 {
		return nil, refuse("%s has %d Content-Type fields", where(path), n)
	}
	if n := len(h.Values("Content-Transfer-Encoding")); n > 1 {
		return nil, refuse("%s has %d Content-Transfer-Encoding fields", where(path), n)
	}
	mt, params := "text/plain", map[string]string{}
	if v := h.Get("Content-Type"); v != "" {
		var err error
		if mt, params, err = ParseContentType(v); err != nil {
			low := strings.ToLower(v)
			for _, s := range []string{"multipart", "pkcs7", "p7m", "p7s", "message", "octet-stream"} {
				if strings.Contains(low, s) {
					return nil, malformed("Content-Type of %s does not parse", where(path))
				}
			}
			mt, params = "text/plain", map[string]string{}
		}
	}
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		return w.multipart(h, mt, params, cte, body, path, depth, accountable)
	case mt == "message/rfc822" || mt == "message/global":
		inner, err := body, error(nil)
		if cte == "base64" || cte == "quoted-printable" {
			inner, err = refDecode(cte, body)
		}
		if err != nil {
			return nil, malformed("%s: %v", where(path), err)
		}
		if _, err := w.entity(inner, child(path, 1), depth+1, false); err != nil {
			return nil, err
		}
		return nil, nil
	case mt == "message/partial":
		return nil, refuse("%s is message/partial, which cannot be checked", where(path))
	}
	return w.leaf(h, mt, params, cte, body, path, depth, accountable)
}

func (w *refWalker) multipart(h textproto.Header, mt string, params map[string]string, cte string, body []byte, path string, depth int, accountable bool) (*found, error) {
	switch cte {
	case "", "7bit", "8bit", "binary":
	default:
		return nil, refuse("%s is %s with Content-Transfer-Encoding %q", where(path), mt, cte)
	}
	boundary := params["boundary"]
	if boundary == "" {
		return nil, malformed("%s is %s without a boundary", where(path), mt)
	}
	var parts [][]byte
	mr := textproto.NewMultipartReader(bytes.NewReader(body), boundary)
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, malformed("%s (%s) does not parse", where(path), mt)
		}
		if w.parts++; w.parts > classifyMaxParts {
			return nil, malformed("more than %d MIME parts", classifyMaxParts)
		}
		var b bytes.Buffer
		if err := textproto.WriteHeader(&b, p.Header); err != nil {
			return nil, malformed("%s: part header: %v", where(path), err)
		}
		if _, err := io.Copy(&b, p); err != nil {
			return nil, malformed("%s (%s) does not parse", where(path), mt)
		}
		parts = append(parts, b.Bytes())
	}
	proto := strings.ToLower(params["protocol"])
	if mt == "multipart/signed" && (proto == "application/pkcs7-signature" || proto == "application/x-pkcs7-signature") {
		if len(parts) != 2 {
			return nil, refuse("%s is multipart/signed with %d parts, not 2", where(path), len(parts))
		}
		if err := w.signaturePart(parts[1], child(path, 2), depth+1); err != nil {
			return nil, err
		}
		f, err := w.entity(parts[0], child(path, 1), depth+1, accountable)
		if f != nil {
			f.signatures++
		}
		return f, err
	}
	for i, p := range parts {
		f, err := w.entity(p, child(path, i+1), depth+1, false)
		if err != nil {
			return nil, err
		}
		if f != nil {
			return nil, refuse("%s holds an envelope that is not the whole message", where(child(path, i+1)))
		}
	}
	return nil, nil
}

// signaturePart checks the signature of a multipart/signed: if it is CMS at all, it must be
// SignedData, and an encapsulated content (there should be none) is classified like any part.
func (w *refWalker) signaturePart(raw []byte, path string, depth int) error {
	r := bytes.NewReader(raw)
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return malformed("header of %s does not parse", where(path))
	}
	if n := len(h.Values("Content-Type")); n > 1 {
		return refuse("%s has %d Content-Type fields", where(path), n)
	}
	mt, params, _ := ParseContentType(h.Get("Content-Type"))
	if mt == "" {
		mt = "application/pkcs7-signature"
	}
	f, err := w.leaf(h, mt, params, strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))),
		raw[len(raw)-r.Len()-br.Buffered():], path, depth, false)
	if err == nil && f != nil {
		err = refuse("%s, a signature, holds an envelope", where(path))
	}
	return err
}

// leaf classifies a part that is neither multipart nor a message.
func (w *refWalker) leaf(h textproto.Header, mt string, params map[string]string, cte string, body []byte, path string, depth int, accountable bool) (*found, error) {
	labelled := isPKCS7Mime(mt, params, h)
	label := params["smime-type"]
	if labelled && label != "" {
		if _, ok := canonicalType(label); !ok {
			return nil, refuse("%s has an unknown smime-type %q", where(path), printable(label))
		}
	}
	der, derr := refDecode(cte, body)
	ct, isCMS := cms.Sniff(der)
	if !isCMS && cte != "base64" {
		// Bytes a decoder could still read as base64 CMS, whatever the transfer encoding says.
		if alt, ok := refLooseBase64(body); ok {
			if act, ok := cms.Sniff(alt); ok {
				return nil, refuse("%s holds %s encoded in a way its header does not declare", where(path), typeName(act))
			}
		}
	}
	if !isCMS {
		// Clients show uuencoded blocks in a text as attachments (and decode a uuencode
		// transfer encoding): what they hold is accounted for like any part.
		for _, b := range [][]byte{der, body} {
			for _, blk := range refUUBlocks(b) {
				if act, ok := cms.Sniff(blk); ok {
					return nil, refuse("%s holds %s uuencoded", where(path), typeName(act))
				}
			}
		}
		if labelled {
			if derr != nil {
				return nil, malformed("%s (%s) cannot be decoded: %v", where(path), mt, derr)
			}
			return nil, malformed("%s is labelled %s but holds no CMS", where(path), mt)
		}
		return nil, nil
	}
	name := typeName(ct)
	w.layers = append(w.layers, Layer{Path: path, MediaType: mt, Label: label, Type: name, DER: der})
	if labelled && label != "" {
		// A label that disagrees with the DER is read one way by one decoder and another way by
		// the next: what the appliance cannot be sure every reader sees as it does, it refuses.
		// Two spellings are one thing to every reader: certs-only is a signed-data, and the two
		// envelope labels are both read as "decrypt this" (clients label AuthEnvelopedData
		// enveloped-data, from before RFC 5083 named it).
		want, _ := canonicalType(label)
		envelopes := (want == TypeEnvelopedData || want == TypeAuthEnvelopedData) &&
			(ct.Equal(oid.EnvelopedData) || ct.Equal(oid.AuthEnvelopedData))
		if want != name && !envelopes && !(want == TypeCertsOnly && ct.Equal(oid.SignedData)) {
			return nil, refuse("%s is labelled smime-type=%s but holds %s", where(path), printable(label), name)
		}
	}
	sigLabel := mt == "application/pkcs7-signature" || mt == "application/x-pkcs7-signature"
	switch {
	case ct.Equal(oid.EnvelopedData), ct.Equal(oid.AuthEnvelopedData):
		switch {
		case !labelled:
			return nil, refuse("%s is labelled %s but holds %s", where(path), mt, name)
		case !accountable:
			return nil, refuse("%s holds %s that is not the whole message", where(path), name)
		}
		return &found{der: der, typ: name}, nil
	case ct.Equal(oid.SignedData):
		ect, content, err := cms.SignedContent(der)
		if err != nil {
			return nil, malformed("%s: %v", where(path), err)
		}
		if content == nil {
			return nil, nil // detached signature or certs-only: nothing inside
		}
		under := accountable && labelled
		var f *found
		switch {
		case ect.Equal(oid.Data) && !hasHeader(content):
			// Not a MIME entity: no client reads it as one, but it may still be CMS.
			if ict, ok := cms.Sniff(content); ok {
				return nil, refuse("%s signs content that is %s without a MIME header", where(path), typeName(ict))
			}
		case ect.Equal(oid.Data):
			f, err = w.entity(content, path+"/signed", depth+1, under && !sigLabel)
		case ect.Equal(oid.EnvelopedData), ect.Equal(oid.AuthEnvelopedData):
			inner := typeName(ect)
			w.layers = append(w.layers, Layer{Path: path + "/signed", Type: inner, DER: content})
			if !under || sigLabel {
				return nil, refuse("%s holds %s under a signature that is not the whole message", where(path), inner)
			}
			f = &found{der: content, typ: inner}
		default:
			if ict, ok := cms.Sniff(content); ok {
				return nil, refuse("%s signs %s content holding %s", where(path), ect, typeName(ict))
			}
		}
		if err != nil {
			return nil, err
		}
		if f != nil {
			if !labelled || sigLabel {
				return nil, refuse("%s is labelled %s but holds a signed envelope", where(path), mt)
			}
			f.signatures++
		}
		return f, nil
	case ct.Equal(cms.CompressedData):
		return nil, refuse("%s holds compressed-data, which the appliance does not decompress to check", where(path))
	}
	return nil, refuse("%s holds CMS of type %s, which the appliance cannot account for", where(path), name)
}

// decode undoes a Content-Transfer-Encoding. An encoding it does not know leaves the bytes as
// they are (no client decodes it either).
func refDecode(cte string, body []byte) ([]byte, error) {
	switch cte {
	case "quoted-printable":
		return io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
	case "base64", "", "7bit", "8bit", "binary":
		dec, err := refBodyDecoder(cte, bufio.NewReader(bytes.NewReader(body)))
		if err != nil {
			return body, err
		}
		if cte == "base64" {
			// Read into its final size at once rather than regrown (a large envelope).
			buf := bytes.NewBuffer(make([]byte, 0, len(body)/4*3+bytes.MinRead))
			_, err := buf.ReadFrom(dec)
			return buf.Bytes(), err
		}
		return io.ReadAll(dec)
	}
	return body, nil
}

// refBodyDecoder is bodyDecoder as it was, with the filter and decoder (slowBase64) that
// base64Reader stands for, so that the reference does not share the fast decoder.
func refBodyDecoder(cte string, br *bufio.Reader) (io.Reader, error) {
	switch cte = strings.ToLower(strings.TrimSpace(cte)); cte {
	case "base64":
		return slowBase64(br), nil
	case "binary", "8bit":
		return br, nil
	case "", "7bit":
		for {
			b, err := br.Peek(1)
			if err != nil {
				return br, nil
			}
			if b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n' {
				br.ReadByte()
				continue
			}
			if b[0] == 0x30 {
				return br, nil
			}
			return slowBase64(br), nil
		}
	}
	return nil, fmt.Errorf("failed to decode body: %w: unsupported content-transfer-encoding %q", ErrMalformed, cte)
}

// uuBlocks decodes the uuencoded blocks of b: a "begin" line, encoded lines, an "end" line
// (or the end of b). Lines that are not uuencode are skipped.
func refUUBlocks(b []byte) [][]byte {
	if !bytes.Contains(b, []byte("begin ")) {
		return nil
	}
	var out [][]byte
	lines := bytes.Split(b, []byte("\n"))
	for i := 0; i < len(lines); i++ {
		if !bytes.HasPrefix(lines[i], []byte("begin ")) {
			continue
		}
		var dec []byte
		for i++; i < len(lines); i++ {
			l := bytes.TrimRight(lines[i], "\r")
			if bytes.Equal(bytes.TrimSpace(l), []byte("end")) {
				break
			}
			if len(l) == 0 {
				continue
			}
			n := int((l[0] - ' ') & 63)
			var chunk []byte
			for j := 1; j < len(l) && len(chunk) < n; j += 4 {
				var q [4]byte
				for k := 0; k < 4; k++ {
					if j+k < len(l) {
						q[k] = (l[j+k] - ' ') & 63
					}
				}
				chunk = append(chunk, q[0]<<2|q[1]>>4, q[1]<<4|q[2]>>2, q[2]<<6|q[3])
			}
			if len(chunk) > n {
				chunk = chunk[:n]
			}
			dec = append(dec, chunk...)
		}
		out = append(out, dec)
	}
	return out
}

// looseBase64 decodes the start of body when, white space aside, it is nothing but base64: as
// much as cms.Sniff reads (a ContentInfo's SEQUENCE and content type), not the whole body, which
// for a large text part was most of the cost of classifying it.
func refLooseBase64(body []byte) ([]byte, bool) {
	n := 0
	for _, c := range body {
		switch refBase64Class[c] {
		case refB64Char:
			n++
		case refB64Space:
		default:
			return nil, false
		}
	}
	if n < 8 {
		return nil, false
	}
	out, err := io.ReadAll(io.LimitReader(base64.NewDecoder(base64.StdEncoding, &base64Filter{r: bytes.NewReader(body)}), refSniffLen))
	if len(out) == 0 && err != nil {
		return nil, false
	}
	return out, true
}

// refSniffLen is more than cms.Sniff reads: a SEQUENCE's tag and up to 5 length octets, then an
// OBJECT IDENTIFIER of at most 126 bytes with its tag and length octets.
const refSniffLen = 512

const (
	refB64Other = iota
	refB64Char
	refB64Space
)

// refBase64Class sorts bytes for looseBase64: base64 alphabet and padding, white space, other.
var refBase64Class = func() (t [256]byte) {
	for c := range 256 {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			t[c] = refB64Char
		case c == ' ', c == '\t', c == '\r', c == '\n':
			t[c] = refB64Space
		}
	}
	return t
}()
