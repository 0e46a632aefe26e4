package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"io"

	"github.com/miekg/pkcs11"
)

// handleSigner signs with a private key's handle through miekg/pkcs11: C_SignInit and C_Sign on
// a session of the connection's signing pool (in one call into C, InitAndSign: on a remote token
// the C_Sign request leaves as soon as C_SignInit is answered, with no wait for the Go scheduler
// between the two round trips), and the ECDSA signature's r || s encoded as ASN.1
// by hand. It is what an ECDSA or RSA PKCS#1 v1.5 signature takes: crypto11's signer, which
// does the same calls, costs more around them (a session pool with a timer and a context per
// signature, the signature through math/big and encoding/asn1), which a list pays once per
// member. RSA-PSS, and any hash this does not know, go to crypto11's signer (c11).
type handleSigner struct {
	c      *conn
	handle pkcs11.ObjectHandle
	pub    crypto.PublicKey
	c11    crypto.Signer
}

func (h *handleSigner) Public() crypto.PublicKey { return h.pub }

var (
	mechECDSA   = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}
	mechRSAPKCS = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}
)

func (h *handleSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	hash := opts.HashFunc()
	var mech []*pkcs11.Mechanism
	data := digest
	switch h.pub.(type) {
	case *ecdsa.PublicKey:
		if hash == 0 || len(digest) != hash.Size() {
			return h.c11.Sign(rand, digest, opts)
		}
		mech = mechECDSA
	case *rsa.PublicKey:
		prefix, ok := digestInfo[hash]
		if _, pss := opts.(*rsa.PSSOptions); pss || !ok || len(digest) != hash.Size() {
			return h.c11.Sign(rand, digest, opts)
		}
		data = append(append(make([]byte, 0, len(prefix)+len(digest)), prefix...), digest...)
		mech = mechRSAPKCS
	default:
		return h.c11.Sign(rand, digest, opts)
	}
	return signOn(h.c.signs, h.pub, func(s pkcs11.SessionHandle) ([]byte, error) {
		return h.c.p11.InitAndSign(s, mech, h.handle, data)
	})
}

// signOn signs with sign on a session of pool, and gives an ECDSA signature the ASN.1 form
// crypto.Signer callers expect (PKCS#11 returns r || s).
func signOn(pool *sessionPool, pub crypto.PublicKey, sign func(pkcs11.SessionHandle) ([]byte, error)) ([]byte, error) {
	s, err := pool.get(context.Background(), "sign")
	if err != nil {
		return nil, err
	}
	sig, err := sign(s)
	pool.put(s, err)
	if err != nil {
		return nil, err
	}
	if _, ok := pub.(*ecdsa.PublicKey); ok {
		return ecdsaDER(sig)
	}
	return sig, nil
}

// ecdsaDER encodes PKCS#11's r || s as the ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER }
// crypto.Signer callers expect.
func ecdsaDER(sig []byte) ([]byte, error) {
	if len(sig)%2 != 0 || len(sig) == 0 || len(sig) > 2*66 {
		return nil, &Error{Op: "sign", Kind: ErrToken, Err: fmt.Errorf("ECDSA signature of length %d", len(sig))}
	}
	n := len(sig) / 2
	r, s := derUint(sig[:n]), derUint(sig[n:])
	body := 2 + len(r) + 2 + len(s)
	out := make([]byte, 0, 3+body)
	if body < 0x80 {
		out = append(out, 0x30, byte(body))
	} else {
		out = append(out, 0x30, 0x81, byte(body))
	}
	out = append(append(out, 0x02, byte(len(r))), r...)
	out = append(append(out, 0x02, byte(len(s))), s...)
	return out, nil
}

// derUint is the content of a DER INTEGER holding the unsigned big-endian b: no leading zero
// octets but one that keeps it positive.
func derUint(b []byte) []byte {
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	if b[0]&0x80 != 0 {
		return append([]byte{0}, b...)
	}
	return b
}
