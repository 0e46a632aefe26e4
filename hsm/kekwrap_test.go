package hsm_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"appliance/hsm"
)

// aesKeyUnwrap is RFC 3394 key unwrap with the default IV: the recipient's side, in software,
// for the test only.
func aesKeyUnwrap(t testing.TB, kek, wrapped []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatal(err)
	}
	n := len(wrapped)/8 - 1
	a := append([]byte(nil), wrapped[:8]...)
	r := append([]byte(nil), wrapped[8:]...)
	buf := make([]byte, 16)
	for j := 5; j >= 0; j-- {
		for i := n - 1; i >= 0; i-- {
			tv := uint64(n*j + i + 1)
			var tb [8]byte
			binary.BigEndian.PutUint64(tb[:], tv)
			for k := range 8 {
				buf[k] = a[k] ^ tb[k]
			}
			copy(buf[8:], r[8*i:8*i+8])
			b.Decrypt(buf, buf)
			copy(a, buf[:8])
			copy(r[8*i:], buf[8:])
		}
	}
	if subtle.ConstantTimeCompare(a, []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}) != 1 {
		t.Fatal("key unwrap: integrity check failed")
	}
	return r
}

// TestWrapAES: the content key wrapped with CKM_AES_KEY_WRAP under a key-encryption key brought
// to the token unwraps (RFC 3394, in software) to the key that encrypted the content, and the
// key-encryption key object is gone afterwards.
func TestWrapAES(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	cek, err := tok.GenerateCEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cek.Destroy(ctx)
	plain := randBytes(1000)
	iv := randBytes(16)
	var ct bytes.Buffer
	if err := cek.EncryptCBC(ctx, iv, bytes.NewReader(plain), &ct); err != nil {
		t.Fatal(err)
	}
	before, err := tok.SecretKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var prev []byte
	for _, size := range []int{32, 16, 32} {
		kek := make([]byte, size)
		rand.Read(kek)
		wrapped, err := cek.WrapAES(ctx, append([]byte(nil), kek...))
		if ock(env) {
			// opencryptoki 3.8.1 has no CKM_AES_KEY_WRAP: the refusal names token and mechanism.
			if err == nil || !strings.Contains(err.Error(), "has no CKM_AES_KEY_WRAP") {
				t.Fatalf("WrapAES on a token without CKM_AES_KEY_WRAP = %v, want the mechanism named", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("WrapAES with a %d-byte kek: %v", size, err)
		}
		if bytes.Equal(wrapped, prev) {
			t.Fatal("two keks gave the same wrapped key")
		}
		prev = wrapped
		key := aesKeyUnwrap(t, kek, wrapped)
		if got := decryptCBC(t, key, iv, ct.Bytes()); !bytes.Equal(got, plain) {
			t.Fatal("the unwrapped key does not decrypt the content")
		}
	}
	after, err := tok.SecretKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("%d secret keys on the token before the wraps, %d after: a key-encryption key was left behind", before, after)
	}
	for _, bad := range [][]byte{nil, make([]byte, 24), make([]byte, 33)} {
		if _, err := cek.WrapAES(ctx, bad); !errors.Is(err, hsm.ErrInvalidArgument) {
			t.Fatalf("kek of %d bytes: %v", len(bad), err)
		}
	}
	if err := cek.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cek.WrapAES(ctx, make([]byte, 32)); !errors.Is(err, hsm.ErrKeyDestroyed) {
		t.Fatalf("destroyed key: %v", err)
	}
}

// BenchmarkWrapAES is the token's share of one EC recipient's cost: bring the derived
// key-encryption key to the token, wrap the content key, destroy the kek. Compare with
// BenchmarkWrapCEK's RSA wraps.
func BenchmarkWrapAES(b *testing.B) {
	tok, _ := open(b, nil)
	ctx := context.Background()
	cek, err := tok.GenerateCEK(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer cek.Destroy(ctx)
	kek := make([]byte, 32)
	rand.Read(kek)
	for b.Loop() {
		if _, err := cek.WrapAES(ctx, kek); err != nil {
			b.Fatal(err)
		}
	}
}
