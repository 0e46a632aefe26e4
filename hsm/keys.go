package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// KeyKind is a key pair type GenerateKeyPair can make.
type KeyKind int

// The kinds the appliance uses: RSA for PKCS#1 v1.5 and PSS signing (and list keys, which unwrap),
// P-256 for ECDSA signing, Ed25519 for DKIM's ed25519-sha256 (CKM_EC_EDWARDS_KEY_PAIR_GEN).
const (
	RSA2048 KeyKind = iota + 1
	RSA3072
	P256
	Ed25519
)

// String is the name ParseKeyKind accepts and the CLI shows.
func (k KeyKind) String() string {
	switch k {
	case RSA2048:
		return "rsa2048"
	case RSA3072:
		return "rsa3072"
	case P256:
		return "p256"
	case Ed25519:
		return "ed25519"
	}
	return fmt.Sprintf("KeyKind(%d)", int(k))
}

// ParseKeyKind reads the names String gives ("rsa2048", "rsa3072", "p256", "ed25519").
func ParseKeyKind(s string) (KeyKind, error) {
	for _, k := range []KeyKind{RSA2048, RSA3072, P256, Ed25519} {
		if strings.EqualFold(s, k.String()) {
			return k, nil
		}
	}
	return 0, &Error{Op: fmt.Sprintf("parse key kind %q", s), Kind: ErrInvalidArgument, Err: errors.New("want rsa2048, rsa3072, p256 or ed25519")}
}

// Signer finds the key pair keyURI names on this token and returns its crypto.Signer. RSA keys
// sign PKCS#1 v1.5 or, given *rsa.PSSOptions, PSS; EC keys give ASN.1 ECDSA signatures; Ed25519
// keys (CKK_EC_EDWARDS, CKM_EDDSA) sign the message itself (crypto.Hash(0)) and their Public is an
// ed25519.PublicKey. The Signer
// survives Reconnect: it looks its key up again on the next Sign.
//
// Answers are cached per keyURI string until Reconnect or Close, or until a Sign through the
// cached Signer fails because the token, the key or its handle is gone; the next call then looks
// the key up again. A key replaced on the token without either shows as such a failure first.
func (t *Token) Signer(ctx context.Context, keyURI string) (crypto.Signer, error) {
	if s := t.cachedSigner(keyURI); s != nil {
		if err := ctx.Err(); err != nil {
			return nil, fail(fmt.Sprintf("find signing key %q", keyURI), err)
		}
		return s, nil
	}
	op := fmt.Sprintf("find signing key %q", keyURI)
	u, err := ParseURI(keyURI)
	if err != nil {
		return nil, err
	}
	if u.Type != "" && u.Type != "private" {
		return nil, &Error{Op: op, Kind: ErrBadURI, Err: fmt.Errorf("type is %q, a signing key is type=private", u.Type)}
	}
	if u.Object == "" && len(u.ID) == 0 {
		return nil, &Error{Op: op, Kind: ErrBadURI, Err: errors.New("names no object or id")}
	}
	if err := ctx.Err(); err != nil {
		return nil, fail(op, err)
	}
	c, err := t.begin(op)
	if err != nil {
		return nil, err
	}
	defer t.end()
	t.lookups.Add(1)
	inner, err := c.findSigner(u)
	if err != nil {
		return nil, fail(op, err)
	}
	if err := c.checkSignMechanism(t.cfg.name(), keyURI, inner.Public(), false); err != nil {
		return nil, err
	}
	s := &signer{t: t, uri: u, name: keyURI, op: signOp(keyURI), gen: c.gen, inner: inner, pub: inner.Public()}
	t.signerMu.Lock()
	// The shared lock held since begin means c is still the live connection: Reconnect, which
	// empties the cache, waits for it.
	if t.signers == nil {
		t.signers = map[string]*signer{}
	}
	if len(t.signers) < maxCachedSigners {
		t.signers[keyURI] = s
	}
	t.signerMu.Unlock()
	return s, nil
}

// cachedSigner returns the cached Signer for keyURI if it belongs to the live connection.
func (t *Token) cachedSigner(keyURI string) *signer {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed || t.conn == nil {
		return nil
	}
	t.signerMu.Lock()
	defer t.signerMu.Unlock()
	s := t.signers[keyURI]
	if s == nil || s.gen != t.conn.gen {
		return nil
	}
	return s
}

// dropSigners empties the cache. Callers hold t.mu exclusively.
func (t *Token) dropSigners() {
	t.signerMu.Lock()
	t.signers = nil
	t.signerMu.Unlock()
}

// forget takes s out of the cache after a failure that may mean its key or handle is gone, and
// makes s itself look its key up again on its next Sign.
func (t *Token) forget(s *signer) {
	t.signerMu.Lock()
	defer t.signerMu.Unlock()
	if t.signers[s.name] == s {
		delete(t.signers, s.name)
	}
	s.gen = 0 // no connection has generation 0
}

func (c *conn) findSigner(u *URI) (crypto.Signer, error) {
	if err := c.matchToken(u); err != nil {
		return nil, &Error{Op: "match token", Kind: ErrKeyNotFound, Err: err}
	}
	var id, label []byte
	if len(u.ID) > 0 {
		id = u.ID
	}
	if u.Object != "" {
		label = []byte(u.Object)
	}
	keys, err := c.c11.FindKeyPairs(id, label)
	if err != nil {
		// crypto11 refuses key types it does not know ("unsupported key type: 40" for
		// CKK_EC_EDWARDS) even when another key is the one asked for; an Ed25519 key is
		// found without it.
		if ed, edErr := c.findEd25519(u); edErr != nil || ed != nil {
			return ed, edErr
		}
		return nil, err
	}
	switch len(keys) {
	case 0:
		if err := c.healthy(); err != nil {
			return nil, err
		}
		return nil, &Error{Op: "find key pair", Kind: ErrKeyNotFound}
	case 1:
		always, h, err := c.alwaysAuthenticate(u)
		if err != nil {
			return nil, err
		}
		if always {
			return &authSigner{c: c, handle: h, pub: keys[0].Public()}, nil
		}
		return &handleSigner{c: c, handle: h, pub: keys[0].Public(), c11: keys[0]}, nil
	}
	return nil, &Error{Op: "find key pair", Kind: ErrAmbiguousKey, Err: fmt.Errorf("%d key pairs match", len(keys))}
}

// signer wraps crypto11's signer so that signing holds the Token's shared lock (Reconnect cannot
// unload the library mid-signature), errors are sorted like every other error here, and a
// reconnect is followed by a fresh lookup instead of a dead handle.
type signer struct {
	t    *Token
	uri  *URI
	name string
	op   string // signOp(name), made once: a list signs once per member
	pub  crypto.PublicKey

	gen   uint64
	inner crypto.Signer
}

func (s *signer) Public() crypto.PublicKey { return s.pub }

func signOp(name string) string { return fmt.Sprintf("sign with %q", name) }

func (s *signer) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	op := s.op
	c, err := s.t.begin(op)
	if err != nil {
		return nil, err
	}
	defer s.t.end()
	inner, err := s.current(c)
	if err != nil {
		return nil, fail(op, err)
	}
	if _, ok := opts.(*rsa.PSSOptions); ok {
		if err := c.checkSignMechanism(s.t.cfg.name(), s.name, s.pub, true); err != nil {
			return nil, err
		}
	}
	if pss, ok := opts.(*rsa.PSSOptions); ok && pss.SaltLength == rsa.PSSSaltLengthAuto {
		// crypto11 refuses "auto"; the appliance signs with salt = hash length (README, Profiles), which
		// any verifier using "auto" accepts.
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: pss.Hash}
	}
	sig, err := inner.Sign(rand, digest, opts)
	if err != nil {
		err = fail(op, err)
		// A refused signature (bad options, say) leaves the key where it was; a vanished token,
		// session state or handle (a key deleted or replaced) may not. opencryptoki hands a
		// deleted key's handle to a new object, which then refuses to sign (ErrNotPermitted).
		if errors.Is(err, ErrTokenGone) || errors.Is(err, ErrKeyNotFound) || errors.Is(err, ErrNotPermitted) {
			s.t.forget(s)
		}
		return nil, err
	}
	return sig, nil
}

// current returns the crypto11 signer for connection c, finding it again after a reconnect.
// Callers hold the Token's shared lock, so c cannot change underneath; several signing goroutines
// may race here, and whichever lookup wins is as good as the other.
func (s *signer) current(c *conn) (crypto.Signer, error) {
	s.t.signerMu.Lock()
	defer s.t.signerMu.Unlock()
	if s.gen == c.gen {
		return s.inner, nil
	}
	s.t.lookups.Add(1)
	inner, err := c.findSigner(s.uri)
	if err != nil {
		return nil, err
	}
	if !publicEqual(inner.Public(), s.pub) {
		return nil, &Error{Op: "find key pair", Kind: ErrKeyNotFound, Err: errors.New("the key now named by the URI is a different key")}
	}
	s.gen, s.inner = c.gen, inner
	return inner, nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	x, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && x.Equal(b)
}

// GenerateKeyPair makes a key pair on the token labelled label, with a random CKA_ID. RSA private
// keys may also decrypt and unwrap, P-256 ones derive (ECDH), so the same call makes a mailing
// list's key. An Ed25519 key (PKCS#11 v3.0, which crypto11 does not know) is made through
// miekg/pkcs11 (ed25519.go) and returned as Signer finds it.
func (t *Token) GenerateKeyPair(ctx context.Context, label string, kind KeyKind) (crypto.Signer, error) {
	op := fmt.Sprintf("generate %v key pair %q", kind, label)
	if label == "" {
		return nil, &Error{Op: op, Kind: ErrInvalidArgument, Err: errors.New("empty label")}
	}
	if kind != RSA2048 && kind != RSA3072 && kind != P256 && kind != Ed25519 {
		return nil, &Error{Op: op, Kind: ErrInvalidArgument, Err: errors.New("unknown key kind")}
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, &Error{Op: op, Kind: ErrToken, Err: err}
	}
	var gen uint64
	var inner crypto.Signer
	var tokenLabel string
	err := t.withSession(ctx, op, func(c *conn, s pkcs11.SessionHandle) error {
		tokenLabel = strings.TrimRight(c.token.Label, " ")
		// Labels are how operators and URIs name keys; a second key with the same label would make
		// every URI naming it ambiguous.
		hs, err := c.findObjects(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}, 1)
		if err != nil {
			return err
		}
		if len(hs) > 0 {
			return &Error{Op: op, Kind: ErrKeyExists}
		}
		if kind == Ed25519 {
			gen = c.gen
			return c.generateEd25519(s, id, label)
		}
		pubAttrs, err := crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
		if err != nil {
			return err
		}
		privAttrs := pubAttrs.Copy()
		switch kind {
		case RSA2048, RSA3072:
			_ = pubAttrs.Set(crypto11.CkaWrap, true)
			_ = privAttrs.Set(crypto11.CkaUnwrap, true)
			bits := 2048
			if kind == RSA3072 {
				bits = 3072
			}
			inner, err = c.c11.GenerateRSAKeyPairWithAttributes(pubAttrs, privAttrs, bits)
		case P256:
			// CKA_DERIVE: a mailing list's P-256 key agrees (CKM_ECDH1_DERIVE) on posts' keys.
			_ = privAttrs.Set(crypto11.CkaDerive, true)
			inner, err = c.c11.GenerateECDSAKeyPairWithAttributes(pubAttrs, privAttrs, elliptic.P256())
		}
		gen = c.gen
		return err
	})
	if err != nil {
		return nil, err
	}
	u := &URI{Token: tokenLabel, Object: label, ID: id}
	if kind == Ed25519 {
		return t.Signer(ctx, u.String())
	}
	return &signer{t: t, uri: u, name: u.String(), op: signOp(u.String()), gen: gen, inner: inner, pub: inner.Public()}, nil
}

// KeyInfo describes one private key on the token.
type KeyInfo struct {
	Label       string
	ID          []byte
	URI         string           // names exactly this key
	Public      crypto.PublicKey // nil if the token holds no public half or certificate for it
	Certificate *x509.Certificate
}

// ListKeys lists the token's private keys, sorted by label.
func (t *Token) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := t.withSession(ctx, "list keys", func(c *conn, s pkcs11.SessionHandle) error {
		hs, err := c.findObjects(s, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		}, 10000)
		if err != nil {
			return err
		}
		for _, h := range hs {
			attrs, err := c.p11.GetAttributeValue(s, h, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
				pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
			})
			if err != nil {
				return err
			}
			ki := KeyInfo{Label: string(attrs[0].Value), ID: attrs[1].Value}
			ki.URI = (&URI{Token: c.token.Label, Object: ki.Label, ID: ki.ID, Type: "private"}).String()
			var id, label []byte
			if len(ki.ID) > 0 {
				id = ki.ID
			}
			if ki.Label != "" {
				label = []byte(ki.Label)
			}
			if id != nil || label != nil {
				if pairs, err := c.c11.FindKeyPairs(id, label); err == nil && len(pairs) == 1 {
					ki.Public = pairs[0].Public()
				} else if err != nil {
					// crypto11 lists no Ed25519 key pair.
					if ed, _ := c.findEd25519(&URI{Object: ki.Label, ID: ki.ID}); ed != nil {
						ki.Public = ed.Public()
					}
				}
				if id != nil {
					ki.Certificate, _ = c.c11.FindCertificate(id, nil, nil)
				}
			}
			out = append(out, ki)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Label != out[j].Label {
			return out[i].Label < out[j].Label
		}
		return bytes.Compare(out[i].ID, out[j].ID) < 0
	})
	return out, err
}

// ImportCertificate stores cert on the token as a CKO_CERTIFICATE with the label and CKA_ID of the
// private key labelled label, after checking that cert is that key's certificate. A previous
// certificate of the key is replaced; importing the same certificate again changes nothing.
func (t *Token) ImportCertificate(ctx context.Context, label string, cert *x509.Certificate) error {
	op := fmt.Sprintf("import certificate for key %q", label)
	if cert == nil {
		return &Error{Op: op, Kind: ErrInvalidArgument, Err: errors.New("no certificate")}
	}
	return t.withSession(ctx, op, func(c *conn, s pkcs11.SessionHandle) error {
		h, err := c.findObject(s, &URI{Object: label}, pkcs11.CKO_PRIVATE_KEY)
		if err != nil {
			return err
		}
		attrs, err := c.p11.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil {
			return err
		}
		id := attrs[0].Value
		if len(id) == 0 {
			return &Error{Op: op, Kind: ErrInvalidArgument, Err: errors.New("the key has no CKA_ID to link a certificate to")}
		}
		pairs, err := c.c11.FindKeyPairs(id, []byte(label))
		if err != nil {
			return err
		}
		if len(pairs) != 1 {
			return &Error{Op: op, Kind: ErrKeyNotFound, Err: errors.New("no public half to compare the certificate with")}
		}
		if !publicEqual(pairs[0].Public(), cert.PublicKey) {
			return &Error{Op: op, Kind: ErrCertificateMismatch}
		}
		old, err := c.c11.FindCertificate(id, nil, nil)
		if err != nil {
			return err
		}
		if old != nil && bytes.Equal(old.Raw, cert.Raw) {
			return nil
		}
		if err := c.c11.ImportCertificateWithLabel(id, []byte(label), cert); err != nil {
			return err
		}
		if old != nil && old.SerialNumber.Cmp(cert.SerialNumber) != 0 {
			return c.c11.DeleteCertificate(id, nil, old.SerialNumber)
		}
		return nil
	})
}

// FindCertificate returns the certificate stored for the key keyURI names (by its CKA_ID and/or
// label).
func (t *Token) FindCertificate(ctx context.Context, keyURI string) (*x509.Certificate, error) {
	op := fmt.Sprintf("find certificate for %q", keyURI)
	u, err := ParseURI(keyURI)
	if err != nil {
		return nil, err
	}
	if u.Object == "" && len(u.ID) == 0 {
		return nil, &Error{Op: op, Kind: ErrBadURI, Err: errors.New("names no object or id")}
	}
	var cert *x509.Certificate
	err = t.withSession(ctx, op, func(c *conn, s pkcs11.SessionHandle) error {
		if err := c.matchToken(u); err != nil {
			return &Error{Op: op, Kind: ErrCertificateNotFound, Err: err}
		}
		var id, label []byte
		if len(u.ID) > 0 {
			id = u.ID
		}
		if u.Object != "" {
			label = []byte(u.Object)
		}
		cert, err = c.c11.FindCertificate(id, label, nil)
		if err != nil {
			return err
		}
		if cert == nil {
			return &Error{Op: op, Kind: ErrCertificateNotFound}
		}
		return nil
	})
	return cert, err
}
