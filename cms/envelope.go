package cms

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"appliance/cms/oid"
)

// Encoded is an encoded ContentInfo kept as pieces, some shared with other Encoded values (the
// encrypted content of one message appears in every package). Treat it as read-only.
type Encoded struct {
	parts  [][]byte
	n      int
	shared int // parts[shared:] are the same in every Encoded assembled from the same content
}

func (e *Encoded) add(p []byte) {
	if len(p) > 0 {
		e.parts = append(e.parts, p)
		e.n += len(p)
	}
}

// Len is the encoded size in bytes.
func (e *Encoded) Len() int { return e.n }

// WriteTo writes the encoding to w.
func (e *Encoded) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for _, p := range e.parts {
		n, err := w.Write(p)
		total += int64(n)
		if err != nil {
			return total, err
		}
		if n != len(p) {
			return total, io.ErrShortWrite
		}
	}
	return total, nil
}

// Shared splits the encoding into the leading pieces that are this value's own (the header
// and RecipientInfos) and the trailing pieces that every value assembled from the same
// encrypted content has byte for byte (that content and what follows it), so a writer can
// encode the common part once for all packages of a message. Both share memory with e.
func (e *Encoded) Shared() (own, shared [][]byte) {
	return e.parts[:e.shared], e.parts[e.shared:]
}

// Bytes returns the encoding in one new slice (a copy of everything, shared content included).
func (e *Encoded) Bytes() []byte {
	out := make([]byte, 0, e.n)
	for _, p := range e.parts {
		out = append(out, p...)
	}
	return out
}

var errNoRecipients = errors.New("no recipientinfos")

// Envelope assembles a ContentInfo holding EnvelopedData (for AES256CBC) or AuthEnvelopedData
// (for AES256GCM) from the shared ec and one package's RecipientInfos (sorted as DER's SET OF
// requires; the version follows RFC 5652 section 6.1). The cost is O(len(ris)):
// ec.Ciphertext is referenced, not copied, so ec must stay unchanged while the result is in use.
func Envelope(ec *EncryptedContent, ris []*RecipientInfo) (*Encoded, error) {
	if ec == nil {
		return nil, fmt.Errorf("failed to assemble envelope: no encrypted content")
	}
	if len(ris) == 0 {
		return nil, fmt.Errorf("failed to assemble envelope: %w", errNoRecipients)
	}
	for i, ri := range ris {
		if ri == nil || len(ri.Raw) == 0 {
			return nil, fmt.Errorf("failed to assemble envelope: recipientinfo #%d is empty", i)
		}
	}
	prefix, err := ec.infoPrefix()
	if err != nil {
		return nil, fmt.Errorf("failed to assemble envelope: %w", err)
	}
	rest := [][]byte{prefix, ec.Ciphertext}
	ctype, version := oid.EnvelopedData, envelopedVersion(ris, false)
	if ec.Algorithm == AES256GCM {
		ctype, version = oid.AuthEnvelopedData, 0
		rest = append(rest, appendHeader(nil, tagOctetString, len(ec.Tag)), ec.Tag)
	}
	raws := make([][]byte, len(ris))
	for i, ri := range ris {
		raws[i] = ri.Raw
	}
	sortSetOf(raws)
	return assemble(ctype, version, nil, raws, rest), nil
}

// envelopedVersion is EnvelopedData's version by RFC 5652 section 6.1, for an envelope without
// originatorInfo and unprotectedAttrs unless extra says otherwise.
func envelopedVersion(ris []*RecipientInfo, extra bool) int {
	allV0 := true
	for _, ri := range ris {
		switch {
		case ri.Kind == Password || ri.Kind == Other:
			return 3
		case ri.Version != 0:
			allV0 = false
		}
	}
	if allV0 && !extra {
		return 0
	}
	return 2
}

// assemble writes ContentInfo { ctype, [0] { SEQUENCE { version, originator, SET OF ris, rest } } }
// with definite lengths, computing every header from the lengths of the pieces.
func assemble(ctype asn1.ObjectIdentifier, version int, originator []byte, ris [][]byte, rest [][]byte) *Encoded {
	ctDER, _ := asn1.Marshal(ctype)
	verDER, _ := asn1.Marshal(version)
	setBody := 0
	for _, r := range ris {
		setBody += len(r)
	}
	inner := len(verDER) + len(originator) + tlvLen(setBody)
	for _, p := range rest {
		inner += len(p)
	}
	explicit := tlvLen(inner)
	ci := len(ctDER) + tlvLen(explicit)

	head := make([]byte, 0, 3*6+len(ctDER)+len(verDER)+len(originator)+6+setBody)
	head = appendHeader(head, tagSequence, ci)
	head = append(head, ctDER...)
	head = appendHeader(head, tagContext0, explicit)
	head = appendHeader(head, tagSequence, inner)
	head = append(head, verDER...)
	head = append(head, originator...)
	head = appendHeader(head, tagSet, setBody)
	for _, r := range ris {
		head = append(head, r...)
	}
	e := &Encoded{parts: make([][]byte, 0, 1+len(rest))}
	e.add(head)
	e.shared = len(e.parts)
	for _, p := range rest {
		e.add(p)
	}
	return e
}
