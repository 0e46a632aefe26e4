package smime

// The check at end of DATA of a client-encrypted message reads only the start of its envelope:
// what it decides needs the envelope's content type and its RecipientInfos, which precede the
// encrypted content (RFC 5652 section 6.1, RFC 5083 section 2.1), so the base64 of the
// ciphertext, nearly all of a large message, is not decoded until the pipeline splits it.

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
	"slices"
	"strings"

	"appliance/cms"
	"appliance/cms/oid"

	"github.com/emersion/go-message/textproto"
)

// MaxEnvelopeHead is the most of an envelope ClassifyHead decodes looking for the end of its
// RecipientInfos; an envelope whose RecipientInfos go further is classified in full.
const MaxEnvelopeHead = 4 << 20

// ClassifyHead classifies a message that is one labelled, base64-encoded envelope (the shape
// Classify finds ClientEncrypted at the top) from msg, a reader of its size bytes, decoding only
// the envelope's start: its content type, RecipientInfos and content-encryption algorithm.
// Classification.Envelope is then an envelope with those fields and without encrypted content,
// enough to plan the split (which RecipientInfo goes to whom), not to make it; header is the
// message's header, which is what Classification.Package reads. ok is false for every other
// message, which the caller classifies in full with Classify: this never answers otherwise
// than Classify would.
func ClassifyHead(msg io.ReaderAt, size int64) (c *Classification, header []byte, ok bool) {
	cr := &countingReader{r: io.NewSectionReader(msg, 0, size)}
	// A buffer no larger than the message: most are a fraction of 32 KB.
	br := bufio.NewReaderSize(cr, int(min(size, 32<<10)))
	h, err := textproto.ReadHeader(br)
	if err != nil || len(h.Values("Content-Type")) != 1 || len(h.Values("Content-Transfer-Encoding")) != 1 {
		return nil, nil, false
	}
	mt, params, err := ParseContentType(h.Get("Content-Type"))
	if err != nil || !isPKCS7Mime(mt, params, h) || strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) != "base64" {
		return nil, nil, false
	}
	if label := params["smime-type"]; label != "" {
		if want, _ := canonicalType(label); want != TypeEnvelopedData && want != TypeAuthEnvelopedData {
			return nil, nil, false
		}
	}
	header = make([]byte, cr.n-int64(br.Buffered()))
	if _, err := msg.ReadAt(header, 0); err != nil {
		return nil, nil, false
	}
	// The decoder Classify's decode uses, so the bytes are the ones it would see.
	dec := base64.NewDecoder(base64.StdEncoding, &base64Filter{r: br})
	// Parsed again each time what is decoded has doubled, so a hostile envelope whose
	// RecipientInfos run on costs a few passes over MaxEnvelopeHead, not one per read.
	der := make([]byte, 0, 16<<10)
	for next := 0; ; {
		if len(der) == cap(der) {
			der = slices.Grow(der, min(len(der), MaxEnvelopeHead-len(der)))
		}
		n, rerr := dec.Read(der[len(der):cap(der)])
		der = der[:len(der)+n]
		full := len(der) >= MaxEnvelopeHead
		if rerr == nil && !full && len(der) < next {
			continue
		}
		next = 2 * len(der)
		ct, isCMS := cms.Sniff(der)
		if (isCMS && !(ct.Equal(oid.EnvelopedData) || ct.Equal(oid.AuthEnvelopedData))) || (!isCMS && len(der) >= sniffLen) {
			return nil, nil, false
		}
		if isCMS {
			head, err := envelopeHead(der, ct.Equal(oid.AuthEnvelopedData))
			if err == nil {
				name := typeName(ct)
				return &Classification{Class: ClientEncrypted, Envelope: head, EnvelopeType: name,
					Layers: []Layer{{MediaType: mt, Label: params["smime-type"], Type: name, DER: head}}}, header, true
			}
			if !errors.Is(err, errShort) {
				return nil, nil, false
			}
		}
		if rerr != nil || full {
			return nil, nil, false
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

var (
	errShort = errors.New("envelope ends before its RecipientInfos")
	errShape = errors.New("envelope not in the expected shape")
)

// envelopeHead reads a ContentInfo holding EnvelopedData or AuthEnvelopedData from the start of
// der (BER or DER, possibly cut anywhere after its RecipientInfos) and returns it in DER with
// the fields up to and including the content-encryption algorithm, no encrypted content, and
// for AuthEnvelopedData an empty MAC. errShort means der ends too soon.
func envelopeHead(der []byte, auth bool) ([]byte, error) {
	p := der
	// enter steps into a constructed element with the given tag; take returns a whole one.
	enter := func(tag byte) error {
		if len(p) < 2 {
			return errShort
		}
		if p[0] != tag {
			return errShape
		}
		hdr, _, err := berHeader(p)
		if err != nil {
			return err
		}
		p = p[hdr:]
		return nil
	}
	take := func(tag byte) ([]byte, error) {
		if len(p) < 1 {
			return nil, errShort
		}
		if p[0] != tag {
			return nil, errShape
		}
		n, err := berLen(p, 0)
		if err != nil {
			return nil, err
		}
		e := p[:n]
		p = p[n:]
		return e, nil
	}
	if err := enter(0x30); err != nil { // ContentInfo
		return nil, err
	}
	ct, err := take(0x06)
	if err != nil {
		return nil, err
	}
	if err := enter(0xa0); err != nil { // [0] EXPLICIT content
		return nil, err
	}
	if err := enter(0x30); err != nil { // EnvelopedData, AuthEnvelopedData
		return nil, err
	}
	version, err := take(0x02)
	if err != nil {
		return nil, err
	}
	var orig []byte
	if len(p) > 0 && p[0] == 0xa0 {
		if orig, err = take(0xa0); err != nil {
			return nil, err
		}
	}
	ris, err := take(0x31)
	if err != nil {
		return nil, err
	}
	if err := enter(0x30); err != nil { // EncryptedContentInfo
		return nil, err
	}
	ect, err := take(0x06)
	if err != nil {
		return nil, err
	}
	alg, err := take(0x30)
	if err != nil {
		return nil, err
	}
	eci := derTLV(0x30, ect, alg)
	fields := [][]byte{version, orig, ris, eci}
	if auth {
		fields = append(fields, []byte{0x04, 0x00}) // mac
	}
	return derTLV(0x30, ct, derTLV(0xa0, derTLV(0x30, fields...))), nil
}

// berHeader reads an element's tag and length octets (a one-byte tag): the header's length and
// the content length, -1 for the indefinite form.
func berHeader(in []byte) (hdr, length int, err error) {
	if len(in) < 2 {
		return 0, 0, errShort
	}
	if in[0]&0x1f == 0x1f {
		return 0, 0, errShape
	}
	l := in[1]
	switch {
	case l < 0x80:
		return 2, int(l), nil
	case l == 0x80:
		if in[0]&0x20 == 0 {
			return 0, 0, errShape
		}
		return 2, -1, nil
	}
	n := int(l & 0x7f)
	if n > 4 {
		return 0, 0, errShape
	}
	if len(in) < 2+n {
		return 0, 0, errShort
	}
	length = 0
	for _, c := range in[2 : 2+n] {
		length = length<<8 | int(c)
	}
	return 2 + n, length, nil
}

// berLen is the whole length of the element at the start of in, walking the children of an
// indefinite-length one to its end-of-contents octets.
func berLen(in []byte, depth int) (int, error) {
	if depth > classifyMaxDepth {
		return 0, errShape
	}
	hdr, length, err := berHeader(in)
	if err != nil {
		return 0, err
	}
	if length >= 0 {
		if hdr+length > len(in) {
			return 0, errShort
		}
		return hdr + length, nil
	}
	off := hdr
	for {
		if len(in) < off+2 {
			return 0, errShort
		}
		if in[off] == 0 && in[off+1] == 0 {
			return off + 2, nil
		}
		n, err := berLen(in[off:], depth+1)
		if err != nil {
			return 0, err
		}
		off += n
	}
}

// derTLV encodes a definite-length element of the concatenated contents.
func derTLV(tag byte, contents ...[]byte) []byte {
	n := 0
	for _, c := range contents {
		n += len(c)
	}
	out := []byte{tag}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 1<<8:
		out = append(out, 0x81, byte(n))
	case n < 1<<16:
		out = append(out, 0x82, byte(n>>8), byte(n))
	case n < 1<<24:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		out = append(out, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	for _, c := range contents {
		out = append(out, c...)
	}
	return out
}
