package directory

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
)

// Hostile directory content. A RecipientInfo names its certificate only
// by subjectKeyIdentifier or by issuer and serial number, and anyone who
// can put a certificate in the folder or in LDAP chooses both: a planted
// certificate carrying Bob's SKI, or Bob's issuer and serial, with
// Mallory's address would let Bob's RecipientInfo be attributed to
// Mallory. So an identifier claimed by certificates of different owners
// (different sets of addresses) is ambiguous, and ambiguity fails closed:
//
//   - [Directory.OwnerBySKI] and [Directory.OwnerByIssuerSerial] return
//     [ErrAmbiguousIdentifier], never one of the claimants;
//   - [Directory.LookupContext] returns a certificate with an ambiguous
//     identifier as rejected with that error, so nothing is encrypted to
//     it (a list member with no other certificate is skipped) and a
//     caller attributing RecipientInfos refuses the identifier;
//   - [Directory.Ambiguities] lists them for `appliance certs`.
//
// Two certificates of the same owner with one SKI (a renewal that kept
// its key) are not ambiguous. Certificates from LDAP are known once a
// lookup has returned them, so an identifier becomes ambiguous there when
// the second claimant is seen; every claimant a message's attribution
// looks up has been seen by the time it asks.

var (
	// ErrAmbiguousIdentifier is an SKI or issuer and serial claimed by
	// certificates of more than one owner.
	ErrAmbiguousIdentifier = errors.New("identifier claimed by certificates of more than one owner")
	// ErrUnknownIdentifier is an identifier no known certificate carries.
	ErrUnknownIdentifier = errors.New("no known certificate carries this identifier")
)

// Ambiguity is one identifier with the owners claiming it.
type Ambiguity struct {
	ID     string   // "ski=<hex>" or "issuer=<DN> serial=<hex>"
	Owners []string // each a comma-separated set of addresses, sorted
}

// idClaim is the first certificate claiming an identifier.
type idClaim struct {
	addr  string // the address the identifier maps to
	owner string // the certificate's addresses, folded, sorted, joined
	desc  string // the identifier, for reports
}

// idIndex maps identifiers ("ski:" or "is:" keys) to their first claim
// and remembers the ones claimed by more than one owner. Not locked: the
// folder's is built once per snapshot, LDAP's is guarded by seenIndex.
type idIndex struct {
	first     map[string]idClaim
	ambiguous map[string][]string // key -> owner sets, first claim's first
}

func newIDIndex() *idIndex {
	return &idIndex{first: map[string]idClaim{}, ambiguous: map[string][]string{}}
}

func ownerSet(c *x509.Certificate) string {
	addrs := Addresses(c)
	for i, a := range addrs {
		addrs[i] = foldAddress(a, false)
	}
	sort.Strings(addrs)
	return strings.Join(addrs, ",")
}

// idKeys are c's identifiers with their descriptions.
func idKeys(c *x509.Certificate) (keys, descs []string) {
	keys = append(keys, "is:"+issuerSerialKey(c.RawIssuer, c.SerialNumber))
	descs = append(descs, fmt.Sprintf("issuer=%s serial=%s", c.Issuer, c.SerialNumber.Text(16)))
	if len(c.SubjectKeyId) > 0 {
		keys = append(keys, "ski:"+string(c.SubjectKeyId))
		descs = append(descs, fmt.Sprintf("ski=%x", c.SubjectKeyId))
	}
	return keys, descs
}

// add records c's identifiers as claimed by addr's certificate.
func (x *idIndex) add(c *x509.Certificate, addr string) {
	owner := ownerSet(c)
	keys, descs := idKeys(c)
	for i, k := range keys {
		prev, ok := x.first[k]
		switch {
		case !ok:
			x.first[k] = idClaim{addr: addr, owner: owner, desc: descs[i]}
		case prev.owner != owner:
			if len(x.ambiguous[k]) == 0 {
				x.ambiguous[k] = []string{prev.owner}
			}
			if !contains(x.ambiguous[k], owner) {
				x.ambiguous[k] = append(x.ambiguous[k], owner)
			}
		}
	}
}

func contains(s []string, v string) bool {
	for _, e := range s {
		if e == v {
			return true
		}
	}
	return false
}

func (s *seenIndex) claim(k string) (idClaim, bool, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.ids.first[k]
	return c, ok, len(s.ids.ambiguous[k]) > 0
}

// ownerOfKey resolves an identifier key across the folder and the
// certificates LDAP has returned.
func (d *Directory) ownerOfKey(k string) (string, error) {
	s := d.snap.Load()
	fc, fok := s.ids.first[k]
	amb := len(s.ids.ambiguous[k]) > 0
	var lc idClaim
	var lok bool
	if d.ldap != nil {
		var lamb bool
		lc, lok, lamb = d.ldap.seen.claim(k)
		amb = amb || lamb || (fok && lok && fc.owner != lc.owner)
	}
	switch {
	case amb:
		desc := fc.desc
		if !fok {
			desc = lc.desc
		}
		return "", fmt.Errorf("%w: %s", ErrAmbiguousIdentifier, desc)
	case fok:
		return fc.addr, nil
	case lok:
		return lc.addr, nil
	}
	return "", ErrUnknownIdentifier
}

// OwnerByIssuerSerial maps an issuerAndSerialNumber RecipientInfo
// identifier to the address of the certificate it names. issuerRawDER is
// the DER of the issuer Name, compared byte for byte. An identifier of no
// known certificate is [ErrUnknownIdentifier]; one claimed by more than
// one owner is [ErrAmbiguousIdentifier].
func (d *Directory) OwnerByIssuerSerial(issuerRawDER []byte, serial *big.Int) (string, error) {
	if serial == nil {
		return "", ErrUnknownIdentifier
	}
	return d.ownerOfKey("is:" + issuerSerialKey(issuerRawDER, serial))
}

// OwnerBySKI maps a subjectKeyIdentifier RecipientInfo identifier to the
// address of the certificate carrying that SKI extension; errors as
// [Directory.OwnerByIssuerSerial].
func (d *Directory) OwnerBySKI(ski []byte) (string, error) {
	if len(ski) == 0 {
		return "", ErrUnknownIdentifier
	}
	return d.ownerOfKey("ski:" + string(ski))
}

// CheckIdentifiers returns [ErrAmbiguousIdentifier] (as a [*CertError])
// when an identifier of c is claimed by more than one owner.
func (d *Directory) CheckIdentifiers(c *x509.Certificate) error {
	// The keys without idKeys' descriptions, which format the issuer's name: a list asks this
	// for every member of every post, and the description is wanted only in an error.
	check := func(k string) error {
		if _, err := d.ownerOfKey(k); errors.Is(err, ErrAmbiguousIdentifier) {
			return certError(c, err)
		}
		return nil
	}
	if err := check("is:" + issuerSerialKey(c.RawIssuer, c.SerialNumber)); err != nil {
		return err
	}
	if len(c.SubjectKeyId) > 0 {
		return check("ski:" + string(c.SubjectKeyId))
	}
	return nil
}

// Ambiguities lists the identifiers claimed by more than one owner in the
// folder and among the certificates LDAP has returned, sorted by ID.
func (d *Directory) Ambiguities() []Ambiguity {
	s := d.snap.Load()
	merged := map[string]*Ambiguity{}
	addAll := func(x *idIndex, other func(k string) (idClaim, bool)) {
		for k, c := range x.first {
			owners := x.ambiguous[k]
			if o, ok := other(k); ok && o.owner != c.owner {
				if len(owners) == 0 {
					owners = []string{c.owner}
				}
				if !contains(owners, o.owner) {
					owners = append(append([]string(nil), owners...), o.owner)
				}
			}
			if len(owners) < 2 {
				continue
			}
			a := merged[k]
			if a == nil {
				a = &Ambiguity{ID: c.desc}
				merged[k] = a
			}
			for _, o := range owners {
				if !contains(a.Owners, o) {
					a.Owners = append(a.Owners, o)
				}
			}
		}
	}
	none := func(string) (idClaim, bool) { return idClaim{}, false }
	if d.ldap == nil {
		addAll(s.ids, none)
	} else {
		seen := d.ldap.seen
		seen.mu.RLock()
		addAll(s.ids, func(k string) (idClaim, bool) { c, ok := seen.ids.first[k]; return c, ok })
		addAll(seen.ids, func(k string) (idClaim, bool) { c, ok := s.ids.first[k]; return c, ok })
		seen.mu.RUnlock()
	}
	out := make([]Ambiguity, 0, len(merged))
	for _, a := range merged {
		sort.Strings(a.Owners)
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
