// Package dkim signs outgoing packages with DKIM (RFC 6376) through github.com/emersion/go-msgauth,
// with each domain's key behind a crypto.Signer (a key on the HSM in the appliance).
//
// Every signature is relaxed/relaxed. The algorithm follows the key: rsa-sha256 for an RSA key
// (1024 bits at least, RFC 8301), ed25519-sha256 (RFC 8463) for an Ed25519 key; a domain with
// both kinds of key gets one signature of each.
//
// The signed header fields are those the package itself has, out of a fixed list of fields that
// describe the message (From, To, Cc, Subject, Date, Message-ID, MIME-Version, Content-*,
// Reply-To, ...): each package of a message is signed over its own header, so no signature covers
// a field another package of the same message differs in, and the h= tag names only fields the
// package shows anyway. From is listed once more than it occurs (oversigned), so that a From
// field added on the way breaks the signature. Trace fields (Received, Return-Path) and anything
// not in the list are not signed.
package dkim

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// Key is one signing key of a domain.
type Key struct {
	Domain   string // the d= tag: the domain the key is published under
	Selector string // the s= tag
	Signer   crypto.Signer
}

// ErrNoKey is returned by Sign when no key covers the From domain of the message.
var ErrNoKey = errors.New("dkim: no key for the From domain")

// ErrUnsignable is returned by Sign when the package's header cannot be signed (no From field, a
// line without a colon, a header over 1 MB); every other error is the key's or the reader's.
var ErrUnsignable = errors.New("dkim: header cannot be signed")

// Signer signs packages with the keys of their From domain. It is safe for concurrent use when
// the crypto.Signers are.
type Signer struct {
	byDomain map[string][]Key
}

// New checks the keys and returns a Signer over them.
func New(keys []Key) (*Signer, error) {
	s := &Signer{byDomain: map[string][]Key{}}
	for _, k := range keys {
		d := strings.ToLower(strings.TrimSuffix(k.Domain, "."))
		if d == "" || k.Selector == "" || k.Signer == nil {
			return nil, fmt.Errorf("dkim: key for %q selector %q: domain, selector and signer are required", k.Domain, k.Selector)
		}
		if _, err := Algorithm(k.Signer.Public()); err != nil {
			return nil, fmt.Errorf("dkim: key for %s selector %s: %w", d, k.Selector, err)
		}
		k.Domain = d
		s.byDomain[d] = append(s.byDomain[d], k)
	}
	return s, nil
}

// Algorithm is the a= tag a key signs with, or an error for a key DKIM cannot use.
func Algorithm(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 1024 {
			return "", fmt.Errorf("RSA key of %d bits: DKIM needs 1024 at least (RFC 8301), 2048 recommended", k.N.BitLen())
		}
		return "rsa-sha256", nil
	case ed25519.PublicKey:
		return "ed25519-sha256", nil
	}
	return "", fmt.Errorf("a %T key: DKIM signs with RSA or Ed25519 only", pub)
}

// signedFields are the fields signed when a package has them, in this order.
var signedFields = []string{
	"From", "Sender", "Reply-To", "Subject", "Date", "Message-ID", "To", "Cc",
	"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Content-ID", "Content-Description", "Content-Disposition", "Content-Language",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
}

// HeaderKeys is the h= list for a header with these field names (in any case, one entry per
// occurrence): each signed field as often as it occurs, and From once more.
func HeaderKeys(names []string) []string {
	count := map[string]int{}
	for _, n := range names {
		count[strings.ToLower(n)]++
	}
	var out []string
	for _, f := range signedFields {
		n := count[strings.ToLower(f)]
		if f == "From" {
			n++
		}
		for range n {
			out = append(out, f)
		}
	}
	return out
}

// Sign reads a whole package (header, blank line, body; CRLF or LF) and returns the
// DKIM-Signature fields to prepend to it, one per key of its From domain (or of the nearest parent
// domain that has keys; failing that, of its Sender domain), each ending in CRLF. The header is
// buffered, the body streamed.
func (s *Signer) Sign(msg io.Reader) (string, error) {
	br := bufio.NewReaderSize(msg, 32<<10)
	hdr, names, from, sender, err := readHeader(br)
	if err != nil {
		return "", err
	}
	keys := s.keysFor(from)
	if len(keys) == 0 && sender != "" {
		// Mail sent on behalf of someone (a list post from an outside poster names the list in
		// Sender): the Sender's domain signs when the From domain has no key.
		keys = s.keysFor(sender)
	}
	if len(keys) == 0 {
		return "", fmt.Errorf("%w %q", ErrNoKey, from)
	}
	hk := HeaderKeys(names)
	signers := make([]*msgauth.Signer, len(keys))
	ws := make([]io.Writer, len(keys))
	for i, k := range keys {
		sg, err := msgauth.NewSigner(&msgauth.SignOptions{
			Domain: k.Domain, Selector: k.Selector, Signer: k.Signer,
			HeaderCanonicalization: msgauth.CanonicalizationRelaxed,
			BodyCanonicalization:   msgauth.CanonicalizationRelaxed,
			HeaderKeys:             hk,
		})
		if err != nil {
			for _, o := range signers[:i] {
				o.Close()
			}
			return "", fmt.Errorf("dkim: %w", err)
		}
		signers[i], ws[i] = sg, sg
	}
	w := io.MultiWriter(ws...)
	_, err = w.Write(hdr)
	if err == nil {
		_, err = io.Copy(w, br)
	}
	var out strings.Builder
	for i, sg := range signers {
		cerr := sg.Close()
		if err == nil && cerr != nil {
			err = fmt.Errorf("dkim: sign for %s selector %s: %w", keys[i].Domain, keys[i].Selector, cerr)
		}
		if err == nil {
			out.WriteString(sg.Signature())
		}
	}
	if err != nil {
		return "", err
	}
	return out.String(), nil
}

// SignHeader is Sign for a header (its fields, with or without the blank line after them) and a
// body given apart.
func (s *Signer) SignHeader(header []byte, body io.Reader) (string, error) {
	h := bytes.TrimRight(header, "\r\n")
	return s.Sign(io.MultiReader(bytes.NewReader(h), strings.NewReader("\r\n\r\n"), body))
}

// WriterTo signs a package given as an io.WriterTo (the form the queue spools) and returns one
// that writes the DKIM-Signature fields and then the package. The package is written twice: once
// to be signed here, once when the result is written; it must write the same bytes each time.
func (s *Signer) WriterTo(pkg io.WriterTo) (io.WriterTo, error) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := pkg.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	field, err := s.Sign(pr)
	pr.CloseWithError(errors.New("dkim: signing stopped"))
	// The first WriteTo must be over before anyone calls the second.
	<-done
	if err != nil {
		return nil, err
	}
	return signed{field, pkg}, nil
}

type signed struct {
	field string
	pkg   io.WriterTo
}

func (p signed) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, p.field)
	if err != nil {
		return int64(n), err
	}
	m, err := p.pkg.WriteTo(w)
	return int64(n) + m, err
}

// keysFor is the keys of domain, or of its nearest parent that has some.
func (s *Signer) keysFor(domain string) []Key {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	for d != "" {
		if k := s.byDomain[d]; len(k) > 0 {
			return k
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return nil
}

// maxHeader bounds the header Sign buffers.
const maxHeader = 1 << 20

// readHeader reads the header block up to and including the blank line; it returns its bytes,
// each field's name, and the domains of the first From and the first Sender address.
func readHeader(br *bufio.Reader) (raw []byte, names []string, fromDomain, senderDomain string, err error) {
	var from, sender string
	var cur *string // the From or Sender value being read, for its continuation lines
	fail := func(err error) ([]byte, []string, string, string, error) { return nil, nil, "", "", err }
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return fail(fmt.Errorf("%w: a header line too long", ErrUnsignable))
		}
		if err != nil && (err != io.EOF || len(line) == 0) {
			if err == io.EOF {
				return fail(fmt.Errorf("%w: the message ends inside its header", ErrUnsignable))
			}
			return fail(err)
		}
		raw = append(raw, line...)
		if len(raw) > maxHeader {
			return fail(fmt.Errorf("%w: header too large", ErrUnsignable))
		}
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			break
		}
		if t[0] == ' ' || t[0] == '\t' {
			if cur != nil {
				*cur += " " + string(bytes.TrimSpace(t))
			}
			continue
		}
		name, value, ok := bytes.Cut(t, []byte(":"))
		if !ok {
			return fail(fmt.Errorf("%w: a header line without a colon: %.40q", ErrUnsignable, t))
		}
		n := string(bytes.TrimRight(name, " \t"))
		names = append(names, n)
		cur = nil
		switch {
		case strings.EqualFold(n, "From") && from == "":
			cur = &from
		case strings.EqualFold(n, "Sender") && sender == "":
			cur = &sender
		}
		if cur != nil {
			*cur = string(bytes.TrimSpace(value))
		}
		if err == io.EOF {
			break
		}
	}
	if from == "" {
		return fail(fmt.Errorf("%w: no From field", ErrUnsignable))
	}
	return raw, names, addressDomain(from), addressDomain(sender), nil
}

// addressDomain is the domain of the first address in a From value.
func addressDomain(v string) string {
	addr := ""
	if l, err := mail.ParseAddressList(v); err == nil && len(l) > 0 {
		addr = l[0].Address
	} else if i, j := strings.LastIndexByte(v, '<'), strings.LastIndexByte(v, '>'); i >= 0 && j > i {
		addr = v[i+1 : j]
	} else {
		addr = strings.TrimSpace(v)
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(addr[at+1:])
}

// Record is the DNS TXT record value that publishes pub: "v=DKIM1; k=rsa; p=..." with the
// SubjectPublicKeyInfo for RSA, "v=DKIM1; k=ed25519; p=..." with the 32-byte key (RFC 8463).
func Record(pub crypto.PublicKey) (string, error) {
	if _, err := Algorithm(pub); err != nil {
		return "", err
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("dkim: %T key", pub)
}

// RecordName is the DNS name a key's record is published at.
func RecordName(selector, domain string) string {
	return selector + "._domainkey." + strings.TrimSuffix(domain, ".") + "."
}

// ZoneLine is the record as a zone-file line, its value cut into strings of 255 bytes at most
// (RFC 1035's limit for one character-string; resolvers join them).
func ZoneLine(selector, domain, record string) string {
	var parts []string
	for len(record) > 255 {
		parts = append(parts, `"`+record[:255]+`"`)
		record = record[255:]
	}
	parts = append(parts, `"`+record+`"`)
	return fmt.Sprintf("%s IN TXT ( %s )", RecordName(selector, domain), strings.Join(parts, " "))
}
