package pipeline

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"mime"
	"strings"
	"sync"
	"time"

	"appliance/cms"
	"appliance/cms/oid"
	"appliance/queue"
	"appliance/smime"

	"github.com/emersion/go-message/textproto"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxExpansionHistory is ub-ml-expansion-history (RFC 2634 section 4.2.1): a message that
// already went through this many list expansions is not expanded again.
const MaxExpansionHistory = 64

// post is a message submitted to a list, taken apart.
type post struct {
	outer  textproto.Header
	entity []byte // the submitted MIME entity: what a plain post is signed and encrypted as
	// enveloped is set when the post (inside any signed layer) is encrypted.
	enveloped *cms.Enveloped
	history   []mlData // the mlExpansionHistory of the outermost signature, if any
}

// readPost finds the parts of a post that matter to a list: an outer signed layer (as an upstream
// list sends, multipart/signed or signed-data) with its expansion history, and whether what it
// carries is encrypted.
func readPost(msg []byte) (*post, error) {
	outer, entity, err := smime.Split(bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	p := &post{outer: outer, entity: entity}
	inner := entity
	mt, params := mediaType(entity)
	var sd *cms.Signed
	switch {
	case mt == "multipart/signed":
		if s, err := smime.ParseSigned(entity); err == nil {
			if sd, err = cms.ParseSigned(s.Signature); err == nil {
				inner = s.Content
			}
		}
	case isPKCS7(mt) && strings.EqualFold(params["smime-type"], smime.TypeSignedData):
		if pkg, err := smime.Parse(bytes.NewReader(entity), int64(len(entity))+1); err == nil {
			if sd, err = cms.ParseSigned(pkg.DER); err == nil && sd.Content != nil {
				inner = sd.Content
			}
		}
	}
	if sd != nil {
		for _, si := range sd.Signers {
			if si.SignedAttrs == nil {
				continue
			}
			h, found, err := parseHistory(si.SignedAttrs)
			if err != nil {
				return nil, err
			}
			if found {
				p.history = h
				break
			}
		}
	}
	if mt, params := mediaType(inner); isPKCS7(mt) {
		st := strings.ToLower(params["smime-type"])
		if st == strings.ToLower(smime.TypeEnvelopedData) || st == strings.ToLower(smime.TypeAuthEnvelopedData) || st == "" {
			pkg, err := smime.Parse(bytes.NewReader(inner), int64(len(inner))+1)
			if err != nil {
				return nil, fmt.Errorf("failed to read encrypted post: %w", err)
			}
			if p.enveloped, err = cms.ParseEnveloped(pkg.DER); err != nil {
				if st == "" {
					return p, nil // not enveloped after all: a plain post to sign and encrypt
				}
				return nil, err
			}
		}
	}
	return p, nil
}

func mediaType(entity []byte) (string, map[string]string) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(entity)))
	if err != nil {
		return "", nil
	}
	mt, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return strings.ToLower(mt), params
}

func isPKCS7(mt string) bool {
	return mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime"
}

// mlData is one MLData of an mlExpansionHistory: raw is its encoding, carried forward as is;
// the list that expanded is named by issuer and serial, or by subject key identifier.
type mlData struct {
	raw    []byte
	issuer []byte
	serial *big.Int
	ski    []byte
}

// parseHistory looks for mlExpansionHistory in a SignerInfo's raw signedAttrs ([0] IMPLICIT SET OF
// Attribute). found is false when the attribute is absent.
//
//	MLExpansionHistory ::= SEQUENCE SIZE (1..ub-ml-expansion-history) OF MLData
//	MLData ::= SEQUENCE { mailListIdentifier EntityIdentifier, expansionTime GeneralizedTime,
//	                      mlReceiptPolicy MLReceiptPolicy OPTIONAL }
//	EntityIdentifier ::= CHOICE { issuerAndSerialNumber IssuerAndSerialNumber,
//	                              subjectKeyIdentifier SubjectKeyIdentifier }
func parseHistory(signedAttrs []byte) (history []mlData, found bool, err error) {
	bad := func(what string) ([]mlData, bool, error) {
		return nil, true, fmt.Errorf("failed to read expansion history: %w: %s", ErrBadHistory, what)
	}
	in := cryptobyte.String(signedAttrs)
	var set cryptobyte.String
	if !in.ReadASN1(&set, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, false, nil // not attributes this parser reads; the signature layer is foreign
	}
	for !set.Empty() {
		var attr, values cryptobyte.String
		var typ asn1.ObjectIdentifier
		if !set.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&typ) || !attr.ReadASN1(&values, cbasn1.SET) {
			return nil, false, nil
		}
		if !typ.Equal(oid.AttrMLExpansionHistory) {
			continue
		}
		if found {
			return bad("attribute given twice")
		}
		found = true
		var seq cryptobyte.String
		if !values.ReadASN1(&seq, cbasn1.SEQUENCE) || !values.Empty() {
			return bad("not one SEQUENCE OF MLData")
		}
		if seq.Empty() {
			return bad("empty")
		}
		for !seq.Empty() {
			if len(history) > MaxExpansionHistory {
				return nil, true, fmt.Errorf("failed to read expansion history: %w: more than %d entries", ErrHistoryFull, MaxExpansionHistory)
			}
			var raw, body cryptobyte.String
			if !seq.ReadASN1Element(&raw, cbasn1.SEQUENCE) {
				return bad("MLData is not a SEQUENCE")
			}
			d := mlData{raw: raw}
			if !raw.ReadASN1(&body, cbasn1.SEQUENCE) {
				return bad("MLData is not a SEQUENCE")
			}
			switch {
			case body.PeekASN1Tag(cbasn1.SEQUENCE):
				var ias, issuer cryptobyte.String
				d.serial = new(big.Int)
				if !body.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&issuer, cbasn1.SEQUENCE) ||
					!ias.ReadASN1Integer(d.serial) || !ias.Empty() {
					return bad("bad issuerAndSerialNumber")
				}
				d.issuer = issuer
			case body.PeekASN1Tag(cbasn1.OCTET_STRING):
				var ski cryptobyte.String
				if !body.ReadASN1(&ski, cbasn1.OCTET_STRING) {
					return bad("bad subjectKeyIdentifier")
				}
				d.ski = ski
			default:
				return bad("unknown mailListIdentifier")
			}
			var t time.Time
			if !body.ReadASN1GeneralizedTime(&t) {
				return bad("bad expansionTime")
			}
			// mlReceiptPolicy, if any, is carried forward in raw; receipts are not implemented.
			history = append(history, d)
		}
	}
	return history, found, nil
}

// extendHistory checks the history a post arrived with and adds this expansion to it, as the
// list's signed attribute.
func (l *mailList) extendHistory(old []mlData, now time.Time) (cms.Attribute, error) {
	cert := l.Chain[0]
	for _, d := range old {
		if d.serial != nil && d.serial.Cmp(cert.SerialNumber) == 0 && bytes.Equal(d.issuer, cert.RawIssuer) ||
			d.ski != nil && len(cert.SubjectKeyId) > 0 && bytes.Equal(d.ski, cert.SubjectKeyId) {
			return cms.Attribute{}, fmt.Errorf("failed to expand %q: %w", l.Address, ErrListLoop)
		}
	}
	if len(old) >= MaxExpansionHistory {
		return cms.Attribute{}, fmt.Errorf("failed to expand %q: %w: %d entries", l.Address, ErrHistoryFull, len(old))
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, d := range old {
			b.AddBytes(d.raw)
		}
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(cert.RawIssuer)
				b.AddASN1BigInt(cert.SerialNumber)
			})
			b.AddASN1GeneralizedTime(now.UTC().Truncate(time.Second))
		})
	})
	v, err := b.Bytes()
	if err != nil {
		return cms.Attribute{}, fmt.Errorf("failed to encode expansion history: %w", err)
	}
	return cms.Attribute{Type: oid.AttrMLExpansionHistory, Value: v}, nil
}

// sharedParts is what every member's package of one expansion has in common.
type sharedParts struct {
	head     []byte // trace, outer header, multipart/signed preamble, first delimiter
	boundary string
	chain    []*x509.Certificate

	mu    sync.Mutex
	certs []byte // the list's certificates as they appear in every member's signature
}

// share splits a member's signature around the list's certificates, which are the same bytes in
// every signature of the expansion: kept once, they are most of what a member would cost.
func (sp *sharedParts) share(sig []byte) [][]byte {
	start, end, total := -1, 0, 0
	for _, c := range sp.chain {
		i := bytes.Index(sig, c.Raw)
		if i < 0 {
			return [][]byte{sig}
		}
		if start < 0 || i < start {
			start = i
		}
		end = max(end, i+len(c.Raw))
		total += len(c.Raw)
	}
	if start < 0 || end-start != total {
		return [][]byte{sig}
	}
	sp.mu.Lock()
	if sp.certs == nil {
		sp.certs = bytes.Clone(sig[start:end])
	}
	certs := sp.certs
	sp.mu.Unlock()
	if !bytes.Equal(sig[start:end], certs) {
		return [][]byte{sig}
	}
	return [][]byte{bytes.Clone(sig[:start]), certs, bytes.Clone(sig[end:])}
}

// listHeader builds the shared start of every member's package: the post's header with To and
// Cc as the poster wrote them (they name the list, not its members), Bcc and delivery fields
// gone, List-Id and List-Post added (RFC 2919, RFC 2369).
func (p *Pipeline) listHeader(id string, env queue.Envelope, l *mailList, outer textproto.Header) *sharedParts {
	h := outer.Copy()
	for _, k := range []string{"Bcc", "Resent-Bcc", "Delivered-To", "X-Original-To", "Return-Path", "List-Id", "List-Post"} {
		h.Del(k)
	}
	h.Add("List-Post", "<mailto:"+l.Address+">")
	h.Add("List-Id", l.listID)

	var rnd [12]byte
	rand.Read(rnd[:])
	// "=_" never occurs in base64 lines nor in the fixed part headers, so the boundary cannot
	// occur in either part.
	boundary := "=_list_" + hex.EncodeToString(rnd[:])

	var b bytes.Buffer
	b.WriteString(p.received(id, env, ""))
	fields := h.Fields()
	for fields.Next() {
		raw, err := fields.Raw()
		if err != nil {
			continue // the post's header was read by the same parser; this does not happen
		}
		b.Write(raw)
		if !bytes.HasSuffix(raw, []byte("\n")) {
			b.WriteString("\r\n")
		}
	}
	b.WriteString("MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n" +
		" micalg=sha-256; boundary=\"" + boundary + "\"\r\n" +
		"\r\n" +
		"This is an S/MIME signed message\r\n" +
		"\r\n--" + boundary + "\r\n")
	return &sharedParts{head: b.Bytes(), boundary: boundary, chain: l.Chain}
}

// writeInnerEntity writes a member's application/pkcs7-mime entity: what the list's outer
// signature covers, byte for byte.
func writeInnerEntity(w io.Writer, smimeType string, der io.WriterTo) error {
	if _, err := io.WriteString(w, "Content-Type: application/pkcs7-mime; smime-type="+smimeType+";\r\n name=smime.p7m\r\n"+
		"Content-Transfer-Encoding: base64\r\n"+
		"Content-Disposition: attachment; filename=smime.p7m\r\n"+
		"\r\n"); err != nil {
		return err
	}
	enc := smime.NewBase64Writer(w)
	if _, err := der.WriteTo(enc); err != nil {
		return fmt.Errorf("failed to write envelope: %w", err)
	}
	return enc.Close()
}

// listPackage is one member's package: a few KB of its own (envelope prefix, signature) and the
// shared parts, encoded as it is written.
type listPackage struct {
	shared    *sharedParts
	smimeType string
	rcpt      string
	der       *cms.Encoded
	sig       [][]byte // the member's signature, in pieces (see sharedParts.share)
}

// WriteTo writes the member's whole RFC 5322 message.
func (lp *listPackage) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 32<<10)
	bw.Write(lp.shared.head)
	if err := writeInnerEntity(bw, lp.smimeType, lp.der); err != nil {
		return cw.n, err
	}
	bw.WriteString("\r\n--" + lp.shared.boundary + "\r\n" +
		"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=smime.p7s\r\n" +
		"\r\n")
	enc := smime.NewBase64Writer(bw)
	for _, p := range lp.sig {
		enc.Write(p)
	}
	enc.Close()
	bw.WriteString("\r\n--" + lp.shared.boundary + "--\r\n")
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
