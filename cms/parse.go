package cms

import (
	"encoding/asn1"
	"fmt"

	"appliance/cms/oid"
)

// DefaultMaxRecipientInfos is the RecipientInfo limit of [ParseEnveloped]: far above any real
// message (a submission is limited to about a thousand recipients) yet a bound on the work a
// hostile message can cause.
const DefaultMaxRecipientInfos = 10000

// ParseOptions tunes [ParseEnvelopedWith].
type ParseOptions struct {
	// MaxRecipientInfos caps the number of RecipientInfos; 0 means DefaultMaxRecipientInfos.
	MaxRecipientInfos int
}

// Enveloped is a parsed EnvelopedData or AuthEnvelopedData. Byte slices alias the parsed input.
type Enveloped struct {
	ContentType    asn1.ObjectIdentifier // oid.EnvelopedData or oid.AuthEnvelopedData
	Version        int
	OriginatorInfo []byte // raw [0] element, nil when absent
	RecipientInfos []*RecipientInfo

	// EncryptedContentInfo is the raw [Auth]EncryptedContentInfo, reused as is by WithRecipients.
	EncryptedContentInfo       []byte
	ContentEncryptionAlgorithm AlgorithmIdentifier
	// EncryptedContentType is the type of the encrypted content (normally id-data).
	EncryptedContentType asn1.ObjectIdentifier

	AuthAttrs        []byte // raw [1] element of AuthEnvelopedData, nil when absent
	MAC              []byte // raw mac OCTET STRING element of AuthEnvelopedData
	UnprotectedAttrs []byte // raw unprotectedAttrs / unauthAttrs element, nil when absent

	encryptedContent elem // the [0] encryptedContent, zero when absent (detached)
}

// UnsignedFields names the fields of e that no signature or MAC covers and that can name
// people: "originatorInfo" (certificates, CRLs) and "unprotectedAttrs" ("unauthAttrs" for
// AuthEnvelopedData). [Enveloped.WithRecipients] leaves them out.
func (e *Enveloped) UnsignedFields() []string {
	var out []string
	if e.OriginatorInfo != nil {
		out = append(out, "originatorInfo")
	}
	switch {
	case e.UnprotectedAttrs != nil && e.Auth():
		out = append(out, "unauthAttrs")
	case e.UnprotectedAttrs != nil:
		out = append(out, "unprotectedAttrs")
	}
	return out
}

// Auth reports whether e is AuthEnvelopedData.
func (e *Enveloped) Auth() bool { return e.ContentType.Equal(oid.AuthEnvelopedData) }

// EncryptedContent returns the ciphertext, joining the chunks of a constructed (BER) encoding.
func (e *Enveloped) EncryptedContent() ([]byte, error) {
	if e.encryptedContent.raw == nil {
		return nil, fmt.Errorf("%w: encrypted content absent", ErrUnsupported)
	}
	return e.encryptedContent.octets(4)
}

// Tag returns the value of AuthEnvelopedData's mac.
func (e *Enveloped) Tag() ([]byte, error) {
	if e.MAC == nil {
		return nil, fmt.Errorf("%w: no mac", ErrUnsupported)
	}
	m, _, err := readElem(e.MAC, 3)
	if err != nil {
		return nil, err
	}
	return m.octets(3)
}

// ParseEnveloped parses a ContentInfo holding EnvelopedData or AuthEnvelopedData, in DER or BER,
// with the default limits.
func ParseEnveloped(data []byte) (*Enveloped, error) {
	return ParseEnvelopedWith(data, ParseOptions{})
}

// ParseEnvelopedWith is [ParseEnveloped] with options.
func ParseEnvelopedWith(data []byte, opts ParseOptions) (*Enveloped, error) {
	e, err := parseEnveloped(data, opts)
	if err != nil {
		return nil, fmt.Errorf("failed to parse enveloped data: %w", err)
	}
	return e, nil
}

// contentInfo reads ContentInfo { contentType, [0] EXPLICIT content } and returns the type and the
// inner element.
func contentInfo(data []byte) (asn1.ObjectIdentifier, elem, error) {
	ci, rest, err := readElem(data, 0)
	if err != nil {
		return nil, elem{}, err
	}
	if len(rest) != 0 {
		return nil, elem{}, fmt.Errorf("%w: %d bytes after ContentInfo", ErrMalformed, len(rest))
	}
	if !ci.isUniversal(16) {
		return nil, elem{}, fmt.Errorf("%w: ContentInfo is %s, not a SEQUENCE", ErrMalformed, ci.describe())
	}
	f, err := ci.children(0)
	if err != nil {
		return nil, elem{}, err
	}
	if len(f) != 2 || !f[1].is(classContext, 0) {
		return nil, elem{}, fmt.Errorf("%w: ContentInfo fields", ErrMalformed)
	}
	ct, err := f[0].oid()
	if err != nil {
		return nil, elem{}, err
	}
	inner, err := f[1].children(1)
	if err != nil {
		return nil, elem{}, err
	}
	if len(inner) != 1 || !inner[0].isUniversal(16) {
		return nil, elem{}, fmt.Errorf("%w: ContentInfo content", ErrMalformed)
	}
	return ct, inner[0], nil
}

func parseEnveloped(data []byte, opts ParseOptions) (*Enveloped, error) {
	max := opts.MaxRecipientInfos
	if max <= 0 {
		max = DefaultMaxRecipientInfos
	}
	ct, body, err := contentInfo(data)
	if err != nil {
		return nil, err
	}
	env := &Enveloped{ContentType: ct}
	switch {
	case ct.Equal(oid.EnvelopedData), ct.Equal(oid.AuthEnvelopedData):
	default:
		return nil, fmt.Errorf("%w: content type %v", ErrUnsupported, ct)
	}
	auth := env.Auth()
	// The fields are walked one at a time rather than collected, so a hostile SET is counted
	// before anything is allocated for its members.
	rest := body.body
	next := func() (elem, bool, error) {
		if len(rest) == 0 {
			return elem{}, false, nil
		}
		var e elem
		var err error
		e, rest, err = readElem(rest, 3)
		return e, err == nil, err
	}
	f, ok, err := next()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: empty enveloped data", ErrMalformed)
	}
	if env.Version, err = f.smallInt(); err != nil {
		return nil, fmt.Errorf("version: %w", err)
	}
	if f, ok, err = next(); err != nil || !ok {
		return nil, missing(err, "recipientInfos")
	}
	if f.is(classContext, 0) && f.constructed {
		env.OriginatorInfo = f.raw
		if f, ok, err = next(); err != nil || !ok {
			return nil, missing(err, "recipientInfos")
		}
	}
	if !f.isUniversal(17) || !f.constructed {
		return nil, fmt.Errorf("%w: recipientInfos is %s, not a SET", ErrMalformed, f.describe())
	}
	if env.RecipientInfos, err = parseRecipientInfos(f, max); err != nil {
		return nil, err
	}
	if f, ok, err = next(); err != nil || !ok {
		return nil, missing(err, "encryptedContentInfo")
	}
	if err := env.parseContentInfo(f); err != nil {
		return nil, err
	}
	f, ok, err = next()
	if err != nil {
		return nil, err
	}
	if auth {
		if ok && f.is(classContext, 1) {
			env.AuthAttrs = f.raw
			if f, ok, err = next(); err != nil {
				return nil, err
			}
		}
		if !ok || !f.isUniversal(4) {
			return nil, fmt.Errorf("%w: mac missing", ErrMalformed)
		}
		env.MAC = f.raw
		if f, ok, err = next(); err != nil {
			return nil, err
		}
	}
	unprot := uint32(1)
	if auth {
		unprot = 2
	}
	if ok && f.is(classContext, unprot) && f.constructed {
		env.UnprotectedAttrs = f.raw
		if _, ok, err = next(); err != nil {
			return nil, err
		}
	}
	if ok {
		return nil, fmt.Errorf("%w: unexpected field after the content", ErrMalformed)
	}
	return env, nil
}

func missing(err error, what string) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: %s missing", ErrMalformed, what)
}

func (env *Enveloped) parseContentInfo(f elem) error {
	if !f.isUniversal(16) {
		return fmt.Errorf("%w: encryptedContentInfo is %s", ErrMalformed, f.describe())
	}
	env.EncryptedContentInfo = f.raw
	cs, err := f.children(3)
	if err != nil {
		return err
	}
	if len(cs) < 2 || len(cs) > 3 {
		return fmt.Errorf("%w: encryptedContentInfo with %d fields", ErrMalformed, len(cs))
	}
	if env.EncryptedContentType, err = cs[0].oid(); err != nil {
		return err
	}
	if env.ContentEncryptionAlgorithm, err = cs[1].algorithm(4); err != nil {
		return err
	}
	if len(cs) == 3 {
		if !cs[2].is(classContext, 0) {
			return fmt.Errorf("%w: encryptedContent is %s", ErrMalformed, cs[2].describe())
		}
		env.encryptedContent = cs[2]
	}
	return nil
}

func parseRecipientInfos(set elem, max int) ([]*RecipientInfo, error) {
	var ris []*RecipientInfo
	for rest := set.body; len(rest) > 0; {
		if len(ris) == max {
			return nil, fmt.Errorf("%w: more than %d", ErrTooManyRecipients, max)
		}
		var e elem
		var err error
		if e, rest, err = readElem(rest, 4); err != nil {
			return nil, err
		}
		ri, err := parseRecipientInfo(e)
		if err != nil {
			return nil, fmt.Errorf("recipientinfo #%d: %w", len(ris), err)
		}
		ris = append(ris, ri)
	}
	if len(ris) == 0 {
		return nil, fmt.Errorf("%w: no recipientinfos", ErrMalformed)
	}
	return ris, nil
}

func parseRecipientInfo(e elem) (*RecipientInfo, error) {
	ri := &RecipientInfo{Raw: e.raw, Version: -1}
	switch {
	case e.isUniversal(16):
		ri.Kind = KeyTrans
	case e.is(classContext, 1):
		ri.Kind = KeyAgree
	case e.is(classContext, 2):
		ri.Kind = KEK
	case e.is(classContext, 3):
		ri.Kind = Password
	case e.is(classContext, 4):
		ri.Kind = Other
		return ri, nil
	default:
		return nil, fmt.Errorf("%w: recipientinfo is %s", ErrMalformed, e.describe())
	}
	if !e.constructed {
		return nil, fmt.Errorf("%w: primitive recipientinfo", ErrMalformed)
	}
	var buf [4]elem
	cs, err := e.appendChildren(buf[:0], 5)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("%w: empty recipientinfo", ErrMalformed)
	}
	if ri.Version, err = cs[0].smallInt(); err != nil {
		return nil, err
	}
	if ri.Kind == KeyAgree {
		// A KeyAgree entry this package cannot read stays as it came, unattributed: dropping
		// it is the caller's choice, not a reason to refuse the message.
		if err := ri.parseKeyAgree(cs); err != nil {
			ri.Keys, ri.KeyEncryptionAlgorithm = nil, AlgorithmIdentifier{}
		}
		return ri, nil
	}
	if ri.Kind != KeyTrans {
		return ri, nil
	}
	if len(cs) != 4 {
		return nil, fmt.Errorf("%w: keytransrecipientinfo with %d fields", ErrMalformed, len(cs))
	}
	switch rid := cs[1]; {
	case rid.isUniversal(16):
		if ri.Version != 0 {
			return nil, fmt.Errorf("%w: keytransrecipientinfo v%d with issuerAndSerialNumber", ErrUnsupported, ri.Version)
		}
		var buf [2]elem
		is, err := rid.appendChildren(buf[:0], 6)
		if err != nil {
			return nil, err
		}
		if len(is) != 2 || !is[0].isUniversal(16) {
			return nil, fmt.Errorf("%w: issuerAndSerialNumber", ErrMalformed)
		}
		ri.Issuer = is[0].raw
		if ri.Serial, err = is[1].bigInt(); err != nil {
			return nil, err
		}
	case rid.is(classContext, 0):
		if ri.Version != 2 {
			return nil, fmt.Errorf("%w: keytransrecipientinfo v%d with subjectKeyIdentifier", ErrUnsupported, ri.Version)
		}
		if ri.SubjectKeyID, err = rid.octets(6); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: recipient identifier is %s", ErrMalformed, rid.describe())
	}
	if ri.KeyEncryptionAlgorithm, err = cs[2].algorithm(6); err != nil {
		return nil, err
	}
	if !cs[3].isUniversal(4) {
		return nil, fmt.Errorf("%w: encryptedKey is %s", ErrMalformed, cs[3].describe())
	}
	if ri.EncryptedKey, err = cs[3].octets(6); err != nil {
		return nil, err
	}
	return ri, nil
}

// WithRecipients re-encodes e with ris (normally a subset of e.RecipientInfos, possibly with new
// ones from [KeyTransRecipient], as a mail list agent adds) in place of its RecipientInfos. The
// encrypted content, the authenticated attributes and the MAC are reused byte for byte, so they
// still verify. originatorInfo (certificates and CRLs) and unprotectedAttrs (unauthAttrs of
// AuthEnvelopedData) are left out: no signature or MAC covers them, no keytrans recipient needs
// them, and they can name anyone, a hidden recipient included. The outer lengths become definite
// even if the input used indefinite ones. The result refers to e's input, which must stay
// unchanged.
func (e *Enveloped) WithRecipients(ris []*RecipientInfo) (*Encoded, error) {
	if len(ris) == 0 {
		return nil, fmt.Errorf("failed to re-encode envelope: %w", errNoRecipients)
	}
	raws := make([][]byte, len(ris))
	for i, ri := range ris {
		if ri == nil || len(ri.Raw) == 0 {
			return nil, fmt.Errorf("failed to re-encode envelope: recipientinfo #%d is empty", i)
		}
		raws[i] = ri.Raw
	}
	// Sorted as DER's SET OF wants: a DER input stays DER (a subset of a sorted set keeps its order).
	sortSetOf(raws)
	rest := [][]byte{e.EncryptedContentInfo}
	version := 0 // AuthEnvelopedData's is always 0 (RFC 5083)
	if e.Auth() {
		rest = append(rest, e.AuthAttrs, e.MAC)
	} else {
		// RFC 5652 section 6.1, for an envelope without originatorInfo and unprotectedAttrs.
		version = envelopedVersion(ris, false)
	}
	return assemble(e.ContentType, version, nil, raws, rest), nil
}
