package smime

// The classifier: what a submitted message is, decided before anything else is done with it.
//
// A hidden recipient leaks when an envelope the client made (its RecipientInfos name everyone
// it was encrypted to) reaches a recipient whole. The appliance can split exactly one shape:
// an EnvelopedData or AuthEnvelopedData that is the whole message. Everything else that holds
// CMS must be accounted for: a signature layer is looked through (its content classified the
// same way), and any other CMS structure is refused, wherever it sits and whatever its label
// says. What a part's label claims is never trusted alone: every leaf's decoded bytes (and,
// when they look like base64 under another transfer encoding, those decoded too) are tested
// for a CMS ContentInfo.

import (
	"bufio"
	"bytes"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strconv"
	"strings"

	"appliance/cms"
	"appliance/cms/oid"

	"github.com/emersion/go-message/textproto"
)

// Class is what a submitted message is.
type Class int

const (
	// Plain holds no CMS that hides content (signatures over plain content are fine): the
	// appliance signs and encrypts it as ordinary content.
	Plain Class = iota
	// ClientEncrypted is an EnvelopedData or AuthEnvelopedData that is the whole message: the
	// appliance splits it without decrypting.
	ClientEncrypted
	// SignedOverEncrypted is an envelope under one or more signature layers (opaque
	// signed-data or multipart/signed, at any depth). The signatures cover every
	// RecipientInfo, so a split would break them.
	SignedOverEncrypted
	// Refused holds CMS the appliance cannot account for, or a structure it cannot read
	// unambiguously; Classification.Reason says why.
	Refused
)

func (c Class) String() string {
	switch c {
	case Plain:
		return "plain"
	case ClientEncrypted:
		return "client-encrypted"
	case SignedOverEncrypted:
		return "signed-over-encrypted"
	case Refused:
		return "refused"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Layer is one CMS structure the classifier found.
type Layer struct {
	// Path names the MIME part: "" is the message itself, "1.2" the second part of its first
	// part; "/signed" follows a signature layer into its content.
	Path string
	// MediaType is the part's Content-Type as parsed ("" when it has none).
	MediaType string
	// Label is the smime-type parameter as written, "" when absent.
	Label string
	// Type names the DER's content type: an smime-type (TypeEnvelopedData ...) or the OID.
	Type string
	DER  []byte
}

// Classification is what [Classify] found.
type Classification struct {
	Class Class
	// Reason says why the message is refused or signed over its encryption; "" otherwise.
	Reason string
	// Malformed is set for a refusal of a structure that does not parse (as opposed to one
	// that parses and holds what the appliance must not pass on).
	Malformed bool
	// Envelope is the DER of the envelope that ClientEncrypted and SignedOverEncrypted name;
	// EnvelopeType its smime-type.
	Envelope     []byte
	EnvelopeType string
	// Layers are every CMS structure found, outermost first, up to the one that decided a
	// refusal.
	Layers []Layer
}

// Limits of the walk: beyond them the message is refused rather than partly checked.
const (
	classifyMaxDepth = 64
	classifyMaxParts = 10000
)

// Classify says what msg, a submitted RFC 5322 message, is. It never fails: what it cannot
// read is Refused with a reason.
func Classify(msg []byte) *Classification {
	w := &walker{}
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
// classifier found there. Any other class, or a message that does not read as class says,
// is classified in full.
func ClassifyAs(msg []byte, class string) *Classification {
	switch class {
	case Plain.String():
		return &Classification{Class: Plain}
	case ClientEncrypted.String():
		if c := envelopeAtTop(msg); c != nil {
			return c
		}
	}
	return Classify(msg)
}

// envelopeAtTop is what Classify finds in a message that is one labelled envelope, or nil.
func envelopeAtTop(msg []byte) *Classification {
	r := bytes.NewReader(msg)
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil
	}
	mt, params, cte, ok := envelopeHeader(h)
	if !ok {
		return nil
	}
	der, _ := decode(cte, msg[len(msg)-r.Len()-br.Buffered():])
	return envelopeClass(der, mt, params)
}

// EnvelopeAtTopStream is ClassifyAs for a message the check at end of DATA found
// ClientEncrypted, without the message in memory: h is its header, already read, and body the
// rest of it, base64 decoded as it is read into the envelope's DER (whose buffer size, the
// body's length, sizes once). It returns nil for anything but one base64 envelope whose body
// decodes without an error (a read error of body included): the caller then classifies the
// whole message, which decides every other case as it always has.
func EnvelopeAtTopStream(h textproto.Header, body io.Reader, size int64) *Classification {
	mt, params, cte, ok := envelopeHeader(h)
	if !ok || cte != "base64" {
		return nil
	}
	buf := bytes.NewBuffer(Buffer(int(max(size, 0)/4*3) + bytes.MinRead))
	if _, err := buf.ReadFrom(newBase64Reader(body)); err != nil {
		return nil
	}
	return envelopeClass(buf.Bytes(), mt, params)
}

// envelopeHeader says whether h is the header of one labelled envelope: its media type and
// parameters, and its transfer encoding in lower case.
func envelopeHeader(h textproto.Header) (mt string, params map[string]string, cte string, ok bool) {
	if len(h.Values("Content-Type")) != 1 || len(h.Values("Content-Transfer-Encoding")) > 1 {
		return "", nil, "", false
	}
	mt, params, err := ParseContentType(h.Get("Content-Type"))
	if err != nil || !isPKCS7Mime(mt, params, h) {
		return "", nil, "", false
	}
	if label := params["smime-type"]; label != "" {
		// Only the labels leaf accepts on an envelope.
		if want, _ := canonicalType(label); want != TypeEnvelopedData && want != TypeAuthEnvelopedData {
			return "", nil, "", false
		}
	}
	return mt, params, strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))), true
}

// envelopeClass is the classification of a message whose body decoded to der under a header
// envelopeHeader accepted, or nil when der is no envelope.
func envelopeClass(der []byte, mt string, params map[string]string) *Classification {
	ct, ok := cms.Sniff(der)
	if !ok || !(ct.Equal(oid.EnvelopedData) || ct.Equal(oid.AuthEnvelopedData)) {
		return nil
	}
	name := typeName(ct)
	return &Classification{Class: ClientEncrypted, Envelope: der, EnvelopeType: name,
		Layers: []Layer{{MediaType: mt, Label: params["smime-type"], Type: name, DER: der}}}
}

// Package returns a ClientEncrypted message as the [Package] that [Parse] would make of it,
// its DER the envelope the classifier found (nothing is decoded twice). For a
// SignedOverEncrypted message it is the envelope under the signatures, with the message's
// header.
func (c *Classification) Package(msg []byte) (*Package, error) {
	var top *Layer
	for i := range c.Layers {
		l := &c.Layers[i]
		switch {
		case c.Class == ClientEncrypted && i == 0 && l.Path == "":
			top = l
		case c.Class == SignedOverEncrypted && len(l.DER) > 0 && len(l.DER) == len(c.Envelope) && &l.DER[0] == &c.Envelope[0]:
			top = l
		}
	}
	if top == nil {
		return nil, fmt.Errorf("failed to read package: %w: the message is %v", ErrNotPKCS7MIME, c.Class)
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		return nil, fmt.Errorf("failed to read header: %w: %w", ErrMalformed, err)
	}
	p := &Package{Header: h, MediaType: top.MediaType, RawSMIMEType: top.Label, DER: c.Envelope}
	p.SMIMEType, _ = canonicalType(top.Label)
	return p, nil
}

type refusal struct {
	reason    string
	malformed bool
}

func (r *refusal) Error() string { return r.reason }

func refuse(format string, a ...any) error { return &refusal{reason: fmt.Sprintf(format, a...)} }

func malformed(format string, a ...any) error {
	return &refusal{reason: fmt.Sprintf(format, a...), malformed: true}
}

// found is an envelope in a position the appliance can split, under signatures layers.
type found struct {
	der        []byte
	typ        string
	signatures int
}

type walker struct {
	parts  int
	layers []Layer
}

func where(path string) string {
	if path == "" {
		return "the message"
	}
	return "part " + path
}

func child(path string, n int) string {
	if path == "" {
		return strconv.Itoa(n)
	}
	return path + "." + strconv.Itoa(n)
}

// entity classifies one MIME entity (header and body). accountable says whether an envelope
// here would be the whole message, under signature layers at most.
func (w *walker) entity(raw []byte, path string, depth int, accountable bool) (*found, error) {
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
			inner, err = decode(cte, body)
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

func (w *walker) multipart(h textproto.Header, mt string, params map[string]string, cte string, body []byte, path string, depth int, accountable bool) (*found, error) {
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
func (w *walker) signaturePart(raw []byte, path string, depth int) error {
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

func isPKCS7Mime(mt string, params map[string]string, h textproto.Header) bool {
	switch mt {
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		return true
	case "application/octet-stream":
		return p7mName(params["name"]) || p7mName(dispositionFilename(h))
	}
	return false
}

// leaf classifies a part that is neither multipart nor a message.
func (w *walker) leaf(h textproto.Header, mt string, params map[string]string, cte string, body []byte, path string, depth int, accountable bool) (*found, error) {
	labelled := isPKCS7Mime(mt, params, h)
	label := params["smime-type"]
	if labelled && label != "" {
		if _, ok := canonicalType(label); !ok {
			return nil, refuse("%s has an unknown smime-type %q", where(path), printable(label))
		}
	}
	if !labelled && (cte == "" || cte == "7bit") {
		if done, err := textLeaf(body, path); done {
			return nil, err
		}
	}
	der, derr := decode(cte, body)
	ct, isCMS := cms.Sniff(der)
	if !isCMS && cte != "base64" {
		// Bytes a decoder could still read as base64 CMS, whatever the transfer encoding says.
		if alt, ok := looseBase64(body); ok {
			if act, ok := cms.Sniff(alt); ok {
				return nil, refuse("%s holds %s encoded in a way its header does not declare", where(path), typeName(act))
			}
		}
	}
	if !isCMS {
		// Clients show uuencoded blocks in a text as attachments (and decode a uuencode
		// transfer encoding): what they hold is accounted for like any part.
		for _, b := range [][]byte{der, body} {
			for _, blk := range uuBlocks(b) {
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

// textLeaf is leaf for a part that is not labelled CMS and declares no transfer encoding or
// 7bit (a text part, the common large part), answering without holding the decoded body:
// done is false when it cannot, and leaf then decodes the body and looks at it as for any part.
// It answers what leaf would, as leaf would.
//
// decode reads such a body, white space skipped, as it is when it starts with 0x30 (a DER
// SEQUENCE) and as base64 otherwise (bodyDecoder). Raw, the decoded bytes are the body from its
// first byte that is not white space: leaf's checks need no copy of them. As base64, when the
// body is nothing but base64's alphabet and white space (and padding at its very end), its
// decoded bytes are those of one base64 decoding of its characters, which is decoded here a
// chunk at a time: the first chunk tells whether it is CMS (cms.Sniff reads at most 138 bytes)
// and each chunk is searched for "begin ", the only thing leaf's uuencode check looks for before
// it decodes anything. CMS, a "begin " in the decoded bytes, or anything a base64 decoder would
// not read in one piece (other characters, padding before the end, characters that do not make
// whole bytes), and leaf does it all. Otherwise looseBase64 would decode the same characters
// through the same filter (the same bytes, its first 512 at most), not CMS either, and
// uuBlocks of the decoded bytes finds nothing: the body itself is left to look at for uuencode.
func textLeaf(body []byte, path string) (done bool, err error) {
	i := 0
	for i < len(body) && base64Text[body[i]] == b64Space {
		i++
	}
	if i == len(body) {
		return false, nil
	}
	if body[i] == 0x30 {
		der := body[i:]
		if _, ok := cms.Sniff(der); ok {
			return false, nil
		}
		if alt, ok := looseBase64(body); ok {
			if act, ok := cms.Sniff(alt); ok {
				return true, refuse("%s holds %s encoded in a way its header does not declare", where(path), typeName(act))
			}
		}
		return true, uuRefusal(path, der, body)
	}
	if !cleanBase64(body[i:]) {
		return false, nil
	}
	return true, uuRefusal(path, body)
}

// cleanBase64 decodes b, which starts with a base64 character, and says whether it is nothing
// but base64's alphabet and white space with at most its padding at the end, decodes in one
// piece (as base64Filter and a base64 decoder read it), and decodes to bytes that are not CMS
// and hold no "begin ". The decoded bytes are looked at a few KB at a time and not kept.
func cleanBase64(b []byte) bool {
	const chunk = 4 << 10 // characters, a multiple of 4
	// src holds characters not decoded yet, white space taken out; always a multiple of 4 of
	// them are decoded at once, so that every piece decodes as it would within the whole.
	var src [chunk + 8]byte
	// dst holds decoded bytes not looked at yet, after the last 5 looked at (a "begin " may
	// start there).
	var dst [5 + 2*chunk]byte
	n, m, first, pads := 0, 0, true, 0
	check := func() bool {
		out := dst[:m]
		if first {
			// The first look covers the first few KB, or all: what cms.Sniff reads.
			first = false
			if _, ok := cms.Sniff(out); ok {
				return false
			}
		}
		if bytes.Contains(out, []byte("begin ")) {
			return false
		}
		m = copy(dst[:], out[max(0, len(out)-5):])
		return true
	}
	decode := func(s []byte) bool {
		if len(dst)-m < len(s)/4*3+3 && !check() {
			return false
		}
		k, err := base64.StdEncoding.Decode(dst[m:], s)
		m += k
		return err == nil
	}
	failed := 0
	for len(b) > 0 {
		// Whole lines of whole groups of 4 characters, as encoders write them, decode a few KB
		// at a time: Decode skips CR and LF and fails on any other character the alphabet does
		// not have, and on characters that do not make whole groups. Padding it reads only at
		// the end of what it is given, where it is taken only at the end of the body: a block
		// ending in padding is read line by line. Twice not in whole groups (lines not a
		// multiple of 4 long), and the rest is read line by line.
		if failed < 2 && n == 0 && pads == 0 {
			if k := bytes.LastIndexByte(b[:min(len(b), chunk)], '\n'); k >= 0 {
				blk := b[:k+1]
				if len(dst)-m < len(blk)/4*3 && !check() {
					return false
				}
				d, err := base64.StdEncoding.Decode(dst[m:], blk)
				if t := bytes.TrimRight(blk, "\r\n"); err == nil && (len(t) == 0 || t[len(t)-1] != '=') {
					m += d
					b = b[k+1:]
					continue
				}
				failed++
			}
		}
		line := b
		if k := bytes.IndexByte(b, '\n'); k >= 0 {
			line, b = b[:k], b[k+1:]
		} else {
			b = nil
		}
		// A line of whole groups of 4 characters, none of them padding, decodes on its own
		// (Decode skips a CR, and fails on any character the alphabet does not have).
		if l := bytes.TrimSuffix(line, []byte("\r")); n == 0 && pads == 0 && len(l)%4 == 0 && len(l) <= chunk && bytes.IndexByte(l, '=') < 0 {
			if len(dst)-m < len(l)/4*3 && !check() {
				return false
			}
			if k, err := base64.StdEncoding.Decode(dst[m:], l); err == nil {
				m += k
				continue
			}
		}
		for _, c := range line {
			switch base64Text[c] {
			case b64Char:
				if pads > 0 {
					return false
				}
				src[n] = c
				if n++; n == chunk {
					if !decode(src[:n]) {
						return false
					}
					n = 0
				}
			case b64Pad:
				if pads++; pads > 2 {
					return false
				}
			case b64Space:
			default:
				return false
			}
		}
		if n%4 == 0 && n > 0 {
			if !decode(src[:n]) {
				return false
			}
			n = 0
		}
	}
	// The padding as written, then what base64Filter adds.
	for range pads {
		src[n] = '='
		n++
	}
	switch n % 4 {
	case 1:
		return false
	case 2:
		src[n], src[n+1] = '=', '='
		n += 2
	case 3:
		src[n] = '='
		n++
	}
	return decode(src[:n]) && check()
}

// uuRefusal refuses the first of the uuencoded blocks of bs that is CMS, as leaf does.
func uuRefusal(path string, bs ...[]byte) error {
	for _, b := range bs {
		for _, blk := range uuBlocks(b) {
			if act, ok := cms.Sniff(blk); ok {
				return refuse("%s holds %s uuencoded", where(path), typeName(act))
			}
		}
	}
	return nil
}

// base64Text sorts bytes for textLeaf: base64's alphabet, its padding, white space, other.
var base64Text = func() (t [256]byte) {
	t = base64Class
	t['='] = b64Pad
	return t
}()

func hasHeader(b []byte) bool {
	_, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(b)))
	return err == nil
}

// decode undoes a Content-Transfer-Encoding. An encoding it does not know leaves the bytes as
// they are (no client decodes it either).
func decode(cte string, body []byte) ([]byte, error) {
	switch cte {
	case "quoted-printable":
		return io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
	case "base64", "", "7bit", "8bit", "binary":
		dec, err := bodyDecoder(cte, bufio.NewReader(bytes.NewReader(body)))
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

// uuBlocks decodes the uuencoded blocks of b: a "begin" line, encoded lines, an "end" line
// (or the end of b). Lines that are not uuencode are skipped.
func uuBlocks(b []byte) [][]byte {
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
func looseBase64(body []byte) ([]byte, bool) {
	n := 0
	for _, c := range body {
		switch base64Class[c] {
		case b64Char:
			n++
		case b64Space:
		default:
			return nil, false
		}
	}
	if n < 8 {
		return nil, false
	}
	out, err := io.ReadAll(io.LimitReader(base64.NewDecoder(base64.StdEncoding, &base64Filter{r: bytes.NewReader(body)}), sniffLen))
	if len(out) == 0 && err != nil {
		return nil, false
	}
	return out, true
}

// sniffLen is more than cms.Sniff reads: a SEQUENCE's tag and up to 5 length octets, then an
// OBJECT IDENTIFIER of at most 126 bytes with its tag and length octets.
const sniffLen = 512

const (
	b64Other = iota
	b64Char
	b64Space
	b64Pad
)

// base64Class sorts bytes for looseBase64: base64 alphabet and padding, white space, other.
var base64Class = func() (t [256]byte) {
	for c := range 256 {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			t[c] = b64Char
		case c == ' ', c == '\t', c == '\r', c == '\n':
			t[c] = b64Space
		}
	}
	return t
}()

// TypeName names a CMS content type by its smime-type, or by its OID in dotted form.
func TypeName(ct asn1.ObjectIdentifier) string { return typeName(ct) }

func typeName(ct asn1.ObjectIdentifier) string {
	switch {
	case ct.Equal(oid.EnvelopedData):
		return TypeEnvelopedData
	case ct.Equal(oid.AuthEnvelopedData):
		return TypeAuthEnvelopedData
	case ct.Equal(oid.SignedData):
		return TypeSignedData
	case ct.Equal(cms.CompressedData):
		return TypeCompressedData
	}
	return ct.String()
}

func printable(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}
