package cms

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"testing"
	"time"

	"appliance/internal/softhsmtest"
)

// TestDigestSigner: a DigestSigner's signatures are Sign's with the same options and the digest
// given, byte for byte (PKCS#1 v1.5 is deterministic), for every digest it is given in turn and
// from goroutines at once; an ECDSA one is verified by openssl and by Verify over the content,
// and a changed content fails both.
func TestDigestSigner(t *testing.T) {
	env := softhsmtest.Setup(t)
	root, inter := env.Roots(t)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	when := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	history := Attribute{Type: []int{1, 2, 840, 113549, 1, 9, 16, 2, 3}, Value: []byte{0x30, 0x03, 0x02, 0x01, 0x07}}

	t.Run("ok same bytes as Sign", func(t *testing.T) {
		for _, opts := range []SignOptions{
			{Detached: true, SigningTime: when, Extra: []Attribute{history}},
			{Detached: true, SigningTime: when, Hash: crypto.SHA512, EncryptionCert: env.Cert(t, "alice")},
			{Detached: true, SigningTime: when, PSS: false, Capabilities: DefaultCapabilities[:2]},
		} {
			chain := []*x509.Certificate{env.Cert(t, "alice"), inter}
			ds, err := NewDigestSigner(env.Key(t, "alice"), chain, opts)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 8)
			for i := range 8 {
				go func() {
					content := bytes.Repeat([]byte{byte('a' + i)}, 100+i)
					h := opts.Hash
					if h == 0 {
						h = crypto.SHA256
					}
					md := h.New()
					md.Write(content)
					digest := md.Sum(nil)
					got, err := ds.Sign(digest)
					if err != nil {
						done <- err
						return
					}
					o := opts
					o.Digest = digest
					want, err := Sign(env.Key(t, "alice"), chain, nil, o)
					if err != nil {
						done <- err
						return
					}
					if !bytes.Equal(got, want) {
						t.Errorf("digest %d: DigestSigner's signature differs from Sign's", i)
					}
					done <- nil
				}()
			}
			for range 8 {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		}
	})

	t.Run("ok ecdsa verified by openssl", func(t *testing.T) {
		chain := []*x509.Certificate{env.Cert(t, "frank"), inter}
		ds, err := NewDigestSigner(env.Key(t, "frank"), chain, SignOptions{Detached: true, Extra: []Attribute{history}})
		if err != nil {
			t.Fatal(err)
		}
		for _, content := range [][]byte{[]byte("Content-Type: text/plain\r\n\r\none\r\n"), []byte("Content-Type: text/plain\r\n\r\ntwo\r\n")} {
			sum := sha256.Sum256(content)
			der, err := ds.Sign(sum[:])
			if err != nil {
				t.Fatal(err)
			}
			args := opensslVerify(t, env, der, content, true)
			s, err := ParseSigned(der)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Verify(VerifyOptions{Roots: roots, Content: content}); err != nil {
				t.Fatal(err)
			}
			bad := append([]byte(nil), content...)
			bad[len(bad)-3] ^= 0x20
			args[len(args)-1] = writeFile(t, "bad", bad)
			if _, err := openssl(t, args...); err == nil {
				t.Fatal("openssl verified a changed content")
			}
			if _, err := s.Verify(VerifyOptions{Roots: roots, Content: bad}); err == nil {
				t.Fatal("Verify accepted a changed content")
			}
		}
	})

	alice := []*x509.Certificate{env.Cert(t, "alice")}
	for _, tt := range []struct {
		name   string
		signer crypto.Signer
		chain  []*x509.Certificate
		opts   SignOptions
	}{
		{"fail not detached", env.Key(t, "alice"), alice, SignOptions{}},
		{"fail digest given", env.Key(t, "alice"), alice, SignOptions{Detached: true, Digest: make([]byte, 32)}},
		{"fail no chain", env.Key(t, "alice"), nil, SignOptions{Detached: true}},
		{"fail key does not match", env.Key(t, "bob"), alice, SignOptions{Detached: true}},
		{"fail sha1", env.Key(t, "alice"), alice, SignOptions{Detached: true, Hash: crypto.SHA1}},
		{"fail duplicate attribute", env.Key(t, "alice"), alice,
			SignOptions{Detached: true, Extra: []Attribute{{Type: []int{1, 2, 840, 113549, 1, 9, 5}, Value: []byte{5, 0}}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewDigestSigner(tt.signer, tt.chain, tt.opts); err == nil {
				t.Fatal("made a signer")
			}
		})
	}
	t.Run("fail digest of the wrong size", func(t *testing.T) {
		ds, err := NewDigestSigner(env.Key(t, "alice"), alice, SignOptions{Detached: true})
		if err != nil {
			t.Fatal(err)
		}
		sum := sha512.Sum512([]byte("x"))
		if _, err := ds.Sign(sum[:]); err == nil {
			t.Fatal("signed a SHA-512 digest as SHA-256")
		}
	})
}
