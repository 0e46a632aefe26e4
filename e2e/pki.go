package e2e

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// PKI is the test PKI made by softhsm-test/mkpki.sh, indexed the way a recipient of a package would
// use it: addresses to people, and certificate identifiers (issuer and serial, or subject key
// identifier) back to people.
type PKI struct {
	Dir      string
	names    map[string][]string // address -> names (heidi has two certificates)
	addr     map[string]string   // name -> address
	byIssuer map[string]string   // issuerKey(issuer, serial) -> name
	bySKI    map[string]string   // lowercase hex -> name
	leaves   map[string]*x509.Certificate
}

// LoadPKI reads DIR/users.tsv and every NAME.pem it lists.
func LoadPKI(dir string) (*PKI, error) {
	b, err := os.ReadFile(filepath.Join(dir, "users.tsv"))
	if err != nil {
		return nil, fmt.Errorf("failed to read users of the test pki: %w", err)
	}
	p := &PKI{Dir: dir, names: map[string][]string{}, addr: map[string]string{}, byIssuer: map[string]string{},
		bySKI: map[string]string{}, leaves: map[string]*x509.Certificate{}}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 2 {
			return nil, fmt.Errorf("failed to parse users.tsv line %q", line)
		}
		name, address := f[0], strings.ToLower(f[1])
		cert, err := readCert(filepath.Join(dir, name+".pem"))
		if err != nil {
			return nil, err
		}
		p.names[address] = append(p.names[address], name)
		p.addr[name] = address
		p.leaves[name] = cert
		p.byIssuer[issuerKey(opensslName(cert.Issuer.ToRDNSequence()), cert.SerialNumber)] = name
		if len(cert.SubjectKeyId) > 0 {
			p.bySKI[hex.EncodeToString(cert.SubjectKeyId)] = name
		}
	}
	return p, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read certificate: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("failed to find a certificate in %q", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("failed to parse certificate %q: %w", path, err)
	}
	return c, nil
}

// File is the path of a file in the PKI directory.
func (p *PKI) File(name string) string { return filepath.Join(p.Dir, name) }

// Names are the users holding a certificate for address (none for an address without one).
func (p *PKI) Names(address string) []string { return p.names[strings.ToLower(address)] }

// Address is the email address of the user name.
func (p *PKI) Address(name string) string { return p.addr[name] }

// Addresses are every address the PKI knows, sorted.
func (p *PKI) Addresses() []string {
	var out []string
	for a := range p.names {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// Owner maps a RecipientInfo identifier to the user whose certificate it names.
func (p *PKI) Owner(id RecipientID) (string, bool) {
	if id.SKI != "" {
		n, ok := p.bySKI[strings.ToLower(id.SKI)]
		return n, ok
	}
	serial, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(id.Serial), "0x"), serialBase(id.Serial))
	if !ok {
		return "", false
	}
	n, ok := p.byIssuer[issuerKey(id.Issuer, serial)]
	return n, ok
}

// CertOwner maps a certificate (from a SignedData, say) to its user; CA certificates have none.
func (p *PKI) CertOwner(c *x509.Certificate) (string, bool) {
	n, ok := p.byIssuer[issuerKey(opensslName(c.Issuer.ToRDNSequence()), c.SerialNumber)]
	if !ok || !p.leaves[n].Equal(c) {
		return "", false
	}
	return n, true
}

func serialBase(s string) int {
	if strings.HasPrefix(strings.ToLower(s), "0x") {
		return 16
	}
	return 10
}

func issuerKey(issuer string, serial *big.Int) string { return issuer + "|" + serial.String() }

var shortNames = map[string]string{
	"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
	"1.2.840.113549.1.9.1": "emailAddress",
}

// opensslName formats a name the way `openssl cms -cmsout -print` prints an issuer: attributes in
// encoding order, "SN=value" joined by ", ".
func opensslName(rdns pkix.RDNSequence) string {
	var parts []string
	for _, rdn := range rdns {
		for _, atv := range rdn {
			k, ok := shortNames[atv.Type.String()]
			if !ok {
				k = atv.Type.String()
			}
			parts = append(parts, k+"="+fmt.Sprint(atvValue(atv)))
		}
	}
	return strings.Join(parts, ", ")
}

func atvValue(atv pkix.AttributeTypeAndValue) any {
	if s, ok := atv.Value.(string); ok {
		return s
	}
	if b, err := asn1.Marshal(atv.Value); err == nil {
		return hex.EncodeToString(b)
	}
	return atv.Value
}
