package smime

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"appliance/cms"
)

// A list expansion sends every member a package that is the same bytes but for the member's
// RecipientInfo and what differs in the list's signature over it: a multipart/signed entity
// around the member's application/pkcs7-mime envelope. ListParts holds what they share, once;
// a ListPackage is one member's own share.

// NewListParts starts the packages of one list expansion: head is their start (trace and outer
// header fields, without MIME-Version and Content-Type), smimeType the envelopes' type, chain
// the list's certificates as its signatures carry them.
func NewListParts(head []byte, smimeType string, chain []*x509.Certificate) *ListParts {
	var rnd [12]byte
	rand.Read(rnd[:])
	// "=_" never occurs in base64 lines nor in the fixed part headers, so the boundary cannot
	// occur in either part.
	boundary := "=_list_" + hex.EncodeToString(rnd[:])
	b := bytes.NewBuffer(head[:len(head):len(head)])
	b.WriteString("MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n" +
		" micalg=sha-256; boundary=\"" + boundary + "\"\r\n" +
		"\r\n" +
		"This is an S/MIME signed message\r\n" +
		"\r\n--" + boundary + "\r\n")
	return newListParts(b.Bytes(), boundary, smimeType, chain)
}

// Envelope takes in a member's envelope: the first one's shared end is kept, and what is the
// member's own is returned (for Digest and Package).
func (sp *ListParts) Envelope(der *cms.Encoded) ([]byte, error) { return sp.envelope(der) }

// Digest is the SHA-256 of the entity the list signs for a member whose envelope head is own.
func (sp *ListParts) Digest(own []byte) ([]byte, error) { return sp.digest(own) }

// Package is the member rcpt's package: own is what Envelope returned, sig the list's detached
// signature over the member's entity (of Digest).
func (sp *ListParts) Package(rcpt string, own, sig []byte) *ListPackage {
	return &ListPackage{shared: sp, Recipient: rcpt, own: own, sig: sp.keep(sig)}
}

// ListParts is what every member's package of one expansion has in common: most of each
// package's bytes. A member's own share is its envelope's head (the RecipientInfo) and what
// differs in its signature, about 750 bytes.
type ListParts struct {
	head      []byte // trace, outer header, multipart/signed preamble, first delimiter
	inner     []byte // the header of the application/pkcs7-mime entity the list signs
	sigHead   []byte // from the delimiter to the signature's base64
	end       []byte // after the signature's base64
	chain     []*x509.Certificate
	smimeType string

	mu      sync.Mutex
	certs   []byte        // the list's certificates as they appear in every member's signature
	sigTmpl []byte        // the first member's signature less certs, what members patch
	sigCut  int           // where certs go in sigTmpl
	tail    [][]byte      // the end of every member's envelope DER (cms.Encoded.Shared)
	tailN   int           // its length
	b64     *SharedBase64 // the tail's base64 lines, made once per phase
}

func newListParts(head []byte, boundary, smimeType string, chain []*x509.Certificate) *ListParts {
	return &ListParts{
		head: head,
		inner: []byte("Content-Type: application/pkcs7-mime; smime-type=" + smimeType + ";\r\n name=p7m\r\n" +
			"Content-Transfer-Encoding: base64\r\n" +
			"Content-Disposition: attachment; filename=p7m\r\n" +
			"\r\n"),
		sigHead: []byte("\r\n--" + boundary + "\r\n" +
			"Content-Type: application/pkcs7-signature; name=p7s\r\n" +
			"Content-Transfer-Encoding: base64\r\n" +
			"Content-Disposition: attachment; filename=p7s\r\n" +
			"\r\n"),
		end:       []byte("\r\n--" + boundary + "--\r\n"),
		chain:     chain,
		smimeType: smimeType,
	}
}

// envelope keeps the shared end of a member's envelope DER the first time and returns the
// member's own head. cms promises that every envelope assembled from one encrypted content ends
// in the same pieces; a member whose envelope does not (it would be a bug) is refused rather
// than sent with another's content.
func (sp *ListParts) envelope(der *cms.Encoded) ([]byte, error) {
	own, tail := der.Shared()
	n := 0
	for _, p := range tail {
		n += len(p)
	}
	sp.mu.Lock()
	if sp.tail == nil {
		sp.tail, sp.tailN, sp.b64 = tail, n, NewSharedBase64(tail)
	}
	same := n == sp.tailN && len(tail) == len(sp.tail)
	for i := 0; same && i < len(tail); i++ {
		// The large pieces are the very same memory; small ones (an encoded header) may be
		// made anew for each envelope.
		a, b := tail[i], sp.tail[i]
		same = len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0] || bytes.Equal(a, b))
	}
	sp.mu.Unlock()
	if !same {
		return nil, errors.New("failed to assemble envelope: encrypted content differs between members")
	}
	if len(own) == 1 {
		return own[0], nil
	}
	return bytes.Join(own, nil), nil
}

// writeInner writes a member's application/pkcs7-mime entity, whose envelope is own followed by
// the shared tail: what the list's outer signature covers, byte for byte. Only own and the
// tail's first bytes up to a line boundary are encoded; the rest are the cached lines. Called
// only after envelope, which sets the tail.
func (sp *ListParts) writeInner(w io.Writer, own []byte) error {
	if _, err := w.Write(sp.inner); err != nil {
		return err
	}
	sp.mu.Lock()
	b64 := sp.b64
	sp.mu.Unlock()
	if err := b64.WriteBase64(w, own); err != nil {
		return fmt.Errorf("failed to write envelope: %w", err)
	}
	return nil
}

// digest is the SHA-256 of the member's entity that writeInner writes: hashed as it is made,
// so no member's entity (100 KB for a 50 KB post) is ever held whole.
func (sp *ListParts) digest(own []byte) ([]byte, error) {
	h := sha256.New()
	if err := sp.writeInner(h, own); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// sigKind says how a member's package keeps its signature.
type sigKind uint8

const (
	sigWhole sigKind = iota // the signature itself
	sigSplit                // the signature less the list's certificates, which go at cut
	sigPatch                // where it differs from the expansion's template (a sigSplit)
)

// memberSig is what a member's package keeps of its signature.
type memberSig struct {
	b    []byte
	cut  int
	kind sigKind
}

// keep reduces a member's signature to what is its own. The list's certificates are the same
// bytes in every signature of the expansion, and so is nearly all the rest: with one signing
// time and history, only the messageDigest and the signature value differ between members
// (under 300 bytes of 4 KB). So the first member's signature less the certificates becomes the
// template, and every member keeps only the spans where it differs from it.
func (sp *ListParts) keep(sig []byte) memberSig {
	start, end, total := -1, 0, 0
	for _, c := range sp.chain {
		i := bytes.Index(sig, c.Raw)
		if i < 0 {
			return memberSig{b: bytes.Clone(sig)}
		}
		if start < 0 || i < start {
			start = i
		}
		end = max(end, i+len(c.Raw))
		total += len(c.Raw)
	}
	if start < 0 || end-start != total {
		return memberSig{b: bytes.Clone(sig)}
	}
	sp.mu.Lock()
	if sp.certs == nil {
		sp.certs = bytes.Clone(sig[start:end])
		sp.sigTmpl = append(append(make([]byte, 0, len(sig)-total), sig[:start]...), sig[end:]...)
		sp.sigCut = start
	}
	certs, tmpl, cut := sp.certs, sp.sigTmpl, sp.sigCut
	sp.mu.Unlock()
	if !bytes.Equal(sig[start:end], certs) {
		return memberSig{b: bytes.Clone(sig)}
	}
	if start == cut && len(sig)-total == len(tmpl) {
		if p, ok := makePatch(tmpl, sig[:start], sig[end:]); ok {
			return memberSig{b: p, kind: sigPatch}
		}
	}
	own := make([]byte, 0, len(sig)-total)
	return memberSig{b: append(append(own, sig[:start]...), sig[end:]...), cut: start, kind: sigSplit}
}

// patchJoin is the most equal bytes between two differing ones that still make one span: a
// span's header costs four.
const patchJoin = 8

// makePatch encodes where pre followed by post differs from tmpl (of their length) as spans,
// each an offset and a length of two bytes and then the bytes; ok is false when that saves
// nothing.
func makePatch(tmpl, pre, post []byte) (patch []byte, ok bool) {
	if len(tmpl) > 0xffff {
		return nil, false
	}
	at := func(i int) byte {
		if i < len(pre) {
			return pre[i]
		}
		return post[i-len(pre)]
	}
	var buf [512]byte
	out := buf[:0]
	for i := 0; i < len(tmpl); {
		if at(i) == tmpl[i] {
			i++
			continue
		}
		end := i + 1
		for j := end; j < len(tmpl) && j < end+patchJoin; j++ {
			if at(j) != tmpl[j] {
				end = j + 1
			}
		}
		out = append(out, byte(i>>8), byte(i), byte((end-i)>>8), byte(end-i))
		for k := i; k < end; k++ {
			out = append(out, at(k))
		}
		if len(out) >= len(tmpl) {
			return nil, false
		}
		i = end
	}
	return bytes.Clone(out), true
}

// writeSig writes a member's signature in base64 lines; scratch is where a patched one is put
// back together.
func (sp *ListParts) writeSig(w io.Writer, s memberSig, scratch *[]byte) error {
	b, cut := s.b, s.cut
	if s.kind == sigPatch {
		b = append((*scratch)[:0], sp.sigTmpl...)
		*scratch = b
		for p := s.b; len(p) >= 4; {
			off, n := int(p[0])<<8|int(p[1]), int(p[2])<<8|int(p[3])
			copy(b[off:off+n], p[4:4+n])
			p = p[4+n:]
		}
		cut = sp.sigCut
	}
	enc := NewBase64Writer(w)
	if s.kind == sigWhole {
		enc.Write(b)
	} else {
		enc.Write(b[:cut])
		enc.Write(sp.certs)
		enc.Write(b[cut:])
	}
	// A failed write sticks: Close reports it.
	return enc.Close()
}

// ListPackage is one member's package: its own envelope head and what is its own in its
// signature, the rest shared, encoded as it is written.
type ListPackage struct {
	shared    *ListParts
	Recipient string // the member
	own       []byte // the member's envelope up to the shared encrypted content
	sig       memberSig
	ris       []*cms.RecipientInfo // identifiers only (SetRecipientInfos)
}

// SetRecipientInfos records which certificates the member's envelope head names, for the
// journal and the audit trail: only each RecipientInfo's kind and identifier are kept, not its
// encrypted key or encoding.
func (lp *ListPackage) SetRecipientInfos(ris []*cms.RecipientInfo) {
	lp.ris = make([]*cms.RecipientInfo, len(ris))
	for i, ri := range ris {
		lp.ris[i] = &cms.RecipientInfo{Kind: ri.Kind, Version: ri.Version, Issuer: ri.Issuer, Serial: ri.Serial, SubjectKeyID: ri.SubjectKeyID}
	}
}

// RecipientInfos are the identifiers SetRecipientInfos recorded.
func (lp *ListPackage) RecipientInfos() []*cms.RecipientInfo { return lp.ris }

// writeBuffers are what writing a package needs, kept between packages: a 10,000-member
// expansion is written 10,000 times in a row.
type writeBuffers struct {
	bw  *bufio.Writer
	sig []byte
}

var writers = sync.Pool{New: func() any { return &writeBuffers{bw: bufio.NewWriterSize(nil, 16<<10)} }}

// WriteTo writes the member's whole RFC 5322 message.
func (lp *ListPackage) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	wb := writers.Get().(*writeBuffers)
	bw := wb.bw
	bw.Reset(cw)
	defer func() {
		bw.Reset(nil)
		writers.Put(wb)
	}()
	sp := lp.shared
	bw.Write(sp.head)
	if err := sp.writeInner(bw, lp.own); err != nil {
		return cw.n, err
	}
	bw.Write(sp.sigHead)
	if err := sp.writeSig(bw, lp.sig, &wb.sig); err != nil {
		return cw.n, fmt.Errorf("failed to write list package: %w", err)
	}
	bw.Write(sp.end)
	if err := bw.Flush(); err != nil {
		return cw.n, fmt.Errorf("failed to write list package: %w", err)
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
