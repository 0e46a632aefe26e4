package hsm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"
)

func BenchmarkSign(b *testing.B) {
	tok, _ := open(b, nil)
	s, err := tok.Signer(context.Background(), "pkcs11:object=alice")
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	b.Run("rsa2048", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rsa2048-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkGenerateCEK(b *testing.B) {
	tok, _ := open(b, nil)
	ctx := context.Background()
	for b.Loop() {
		k, err := tok.GenerateCEK(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := k.Destroy(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	tok, _ := open(b, nil)
	ctx := context.Background()
	k, err := tok.GenerateCEK(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer k.Destroy(ctx)
	for _, size := range []int{100 << 10, 10 << 20} {
		plain := make([]byte, size)
		for _, mode := range []string{"cbc", "gcm"} {
			b.Run(fmt.Sprintf("%s/%dKB", mode, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					var err error
					if mode == "cbc" {
						err = k.EncryptCBC(ctx, make([]byte, 16), bytes.NewReader(plain), io.Discard)
					} else {
						_, err = k.EncryptGCM(ctx, make([]byte, 12), nil, bytes.NewReader(plain), io.Discard)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkWrapCEK(b *testing.B) {
	tok, env := open(b, nil)
	ctx := context.Background()
	bob := env.Cert(b, "bob").PublicKey.(*rsa.PublicKey)
	k, err := tok.GenerateCEK(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer k.Destroy(ctx)
	for _, h := range []crypto.Hash{0, tok.OAEPHash()} {
		name := "pkcs1v15"
		if h != 0 {
			name = "oaep-" + h.String()
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := k.WrapRSA(ctx, bob, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkUnwrapCEK(b *testing.B) {
	tok, env := open(b, nil)
	ctx := context.Background()
	k, err := tok.GenerateCEK(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer k.Destroy(ctx)
	wrapped, err := k.WrapRSA(ctx, env.Cert(b, "list").PublicKey.(*rsa.PublicKey), 0)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		u, err := tok.UnwrapCEK(ctx, "pkcs11:object=list", wrapped, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := u.Destroy(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
