package cms

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"appliance/cms/oid"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxExpansionHistory is ub-ml-expansion-history (RFC 2634 section 4.2.1): a message that
// already went through this many list expansions is not expanded again.
const MaxExpansionHistory = 64

var (
	// ErrListLoop reports a message whose mlExpansionHistory already has this list.
	ErrListLoop = errors.New("mail list loop")
	// ErrHistoryFull reports a message expanded ub-ml-expansion-history (64) times already.
	ErrHistoryFull = errors.New("mail list expansion history full")
	// ErrBadHistory reports an mlExpansionHistory attribute that cannot be read.
	ErrBadHistory = errors.New("malformed mlExpansionHistory")
)

// MLData is one MLData of an mlExpansionHistory: Raw is its encoding, carried forward as is;
// the list that expanded is named by Issuer and Serial, or by subject key identifier (SKI).
type MLData struct {
	Raw    []byte
	Issuer []byte
	Serial *big.Int
	SKI    []byte
}

// ParseExpansionHistory looks for mlExpansionHistory in a SignerInfo's raw signedAttrs ([0]
// IMPLICIT SET OF Attribute). found is false when the attribute is absent.
//
//	MLExpansionHistory ::= SEQUENCE SIZE (1..ub-ml-expansion-history) OF MLData
//	MLData ::= SEQUENCE { mailListIdentifier EntityIdentifier, expansionTime GeneralizedTime,
//	                      mlReceiptPolicy MLReceiptPolicy OPTIONAL }
//	EntityIdentifier ::= CHOICE { issuerAndSerialNumber IssuerAndSerialNumber,
//	                              subjectKeyIdentifier SubjectKeyIdentifier }
func ParseExpansionHistory(signedAttrs []byte) (history []MLData, found bool, err error) {
	bad := func(what string) ([]MLData, bool, error) {
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
			d := MLData{Raw: raw}
			if !raw.ReadASN1(&body, cbasn1.SEQUENCE) {
				return bad("MLData is not a SEQUENCE")
			}
			switch {
			case body.PeekASN1Tag(cbasn1.SEQUENCE):
				var ias, issuer cryptobyte.String
				d.Serial = new(big.Int)
				if !body.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&issuer, cbasn1.SEQUENCE) ||
					!ias.ReadASN1Integer(d.Serial) || !ias.Empty() {
					return bad("bad issuerAndSerialNumber")
				}
				d.Issuer = issuer
			case body.PeekASN1Tag(cbasn1.OCTET_STRING):
				var ski cryptobyte.String
				if !body.ReadASN1(&ski, cbasn1.OCTET_STRING) {
					return bad("bad subjectKeyIdentifier")
				}
				d.SKI = ski
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

// ExtendExpansionHistory checks the history a post arrived with and adds an expansion by the
// list whose certificate is list, at now, as the list's signed attribute.
func ExtendExpansionHistory(old []MLData, list *x509.Certificate, now time.Time) (Attribute, error) {
	for _, d := range old {
		if d.Serial != nil && d.Serial.Cmp(list.SerialNumber) == 0 && bytes.Equal(d.Issuer, list.RawIssuer) ||
			d.SKI != nil && len(list.SubjectKeyId) > 0 && bytes.Equal(d.SKI, list.SubjectKeyId) {
			return Attribute{}, ErrListLoop
		}
	}
	if len(old) >= MaxExpansionHistory {
		return Attribute{}, fmt.Errorf("%w: %d entries", ErrHistoryFull, len(old))
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, d := range old {
			b.AddBytes(d.Raw)
		}
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(list.RawIssuer)
				b.AddASN1BigInt(list.SerialNumber)
			})
			b.AddASN1GeneralizedTime(now.UTC().Truncate(time.Second))
		})
	})
	v, err := b.Bytes()
	if err != nil {
		return Attribute{}, fmt.Errorf("failed to encode expansion history: %w", err)
	}
	return Attribute{Type: oid.AttrMLExpansionHistory, Value: v}, nil
}
