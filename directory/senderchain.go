package directory

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	"appliance/smime"
)

// LoadSenderChain reads the certificate chain issued for the sender addr (leaf first) and
// refuses one whose leaf does not name addr.
func LoadSenderChain(file, addr string) ([]*x509.Certificate, error) {
	chain, err := LoadChain(file)
	if err != nil {
		return nil, err
	}
	if !CoversAddress(chain[0], addr) {
		return nil, fmt.Errorf("the certificate in %q names %s, not %s", file, strings.Join(CertAddresses(chain[0]), ", "), addr)
	}
	return chain, nil
}

// EncodeChain is chain in PEM, in its order.
func EncodeChain(chain []*x509.Certificate) []byte {
	var out []byte
	for _, c := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// UncoveredSender is the first address of msg's From or Sender field that leaf does not name
// ("" when it names them all): a reader's mail client would show the signature as not matching
// the author, or worse, a signed identity the sender does not have.
func UncoveredSender(msg []byte, leaf *x509.Certificate) (string, error) {
	addrs, err := smime.HeaderSenders(msg)
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if !CoversAddress(leaf, a) {
			return a, nil
		}
	}
	return "", nil
}
