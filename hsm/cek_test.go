package hsm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"testing"
	"time"

	"appliance/hsm"
)

// unwrapSoft recovers a wrapped key with a software copy of the recipient's key: test side only.
func unwrapSoft(t *testing.T, key crypto.Signer, wrapped []byte, oaepHash crypto.Hash) []byte {
	t.Helper()
	priv := key.(*rsa.PrivateKey)
	var k []byte
	var err error
	if oaepHash == 0 {
		k, err = rsa.DecryptPKCS1v15(nil, priv, wrapped)
	} else {
		k, err = rsa.DecryptOAEP(oaepHash.New(), nil, priv, wrapped, nil)
	}
	if err != nil {
		t.Fatalf("decrypt wrapped key: %v", err)
	}
	return k
}

func decryptCBC(t *testing.T, key, iv, ct []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) == 0 || len(ct)%16 != 0 {
		t.Fatalf("ciphertext length %d is not a positive multiple of 16", len(ct))
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > 16 || !bytes.Equal(pt[len(pt)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		t.Fatalf("bad PKCS#7 padding %d", pad)
	}
	return pt[:len(pt)-pad]
}

func decryptGCM(t *testing.T, key, nonce, aad, ct, tag []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := g.Open(nil, nonce, append(append([]byte(nil), ct...), tag...), aad)
	if err != nil {
		t.Fatalf("GCM open: %v", err)
	}
	return pt
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestEncryptAndWrap(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	bob := env.Cert(t, "bob").PublicKey.(*rsa.PublicKey)
	bobKey := env.Key(t, "bob")
	sizes := []int{0, 1, 15, 16, 17, 64<<10 - 1, 64 << 10, 64<<10 + 1, 1 << 20}
	for _, mode := range []string{"cbc pkcs1v15", "gcm oaep"} {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("ok %s %d bytes", mode, size), func(t *testing.T) {
				if mode == "gcm oaep" {
					needGCM(t, env)
				}
				cek, err := tok.GenerateCEK(ctx)
				if err != nil {
					t.Fatalf("GenerateCEK: %v", err)
				}
				defer cek.Destroy(ctx)
				plain := randBytes(size)
				var ct bytes.Buffer
				var oaep crypto.Hash
				var got []byte
				switch mode {
				case "cbc pkcs1v15":
					iv := randBytes(16)
					if err := cek.EncryptCBC(ctx, iv, bytes.NewReader(plain), &ct); err != nil {
						t.Fatalf("EncryptCBC: %v", err)
					}
					wrapped, err := cek.WrapRSA(ctx, bob, 0)
					if err != nil {
						t.Fatalf("WrapRSA: %v", err)
					}
					got = decryptCBC(t, unwrapSoft(t, bobKey, wrapped, 0), iv, ct.Bytes())
				case "gcm oaep":
					oaep = tok.OAEPHash()
					nonce, aad := randBytes(12), []byte("authenticated attributes")
					tag, err := cek.EncryptGCM(ctx, nonce, aad, bytes.NewReader(plain), &ct)
					if err != nil {
						t.Fatalf("EncryptGCM: %v", err)
					}
					if len(tag) != 16 || ct.Len() != size {
						t.Fatalf("tag %d bytes, ciphertext %d bytes for %d bytes of plaintext", len(tag), ct.Len(), size)
					}
					wrapped, err := cek.WrapRSA(ctx, bob, oaep)
					if err != nil {
						t.Fatalf("WrapRSA: %v", err)
					}
					got = decryptGCM(t, unwrapSoft(t, bobKey, wrapped, oaep), nonce, aad, ct.Bytes(), tag)
				}
				if !bytes.Equal(got, plain) {
					t.Fatalf("decrypted %d bytes differ from the %d-byte plaintext", len(got), len(plain))
				}
			})
		}
	}
}

func TestOAEPHash(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	// SoftHSM 2.6 takes SHA-1 only; opencryptoki 3.8.1 takes SHA-256 and reports it.
	want := crypto.SHA1
	if ock(env) {
		want = crypto.SHA256
	}
	if got := tok.OAEPHash(); got != want {
		t.Fatalf("OAEPHash = %v, want %v on %s", got, want, env.Impl)
	}
	cek, err := tok.GenerateCEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cek.Destroy(ctx)
	bob := env.Cert(t, "bob").PublicKey.(*rsa.PublicKey)
	tests := []struct {
		name string
		hash crypto.Hash
		want error
	}{
		{"ok pkcs1v15", 0, nil},
		{"ok oaep sha1", crypto.SHA1, nil},
		{"fail oaep sha256", crypto.SHA256, hsm.ErrOAEPHash}, // ok on opencryptoki: see below
		{"fail oaep sha512", crypto.SHA512, hsm.ErrOAEPHash},
		{"fail oaep md5", crypto.MD5, hsm.ErrOAEPHash},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if ock(env) && tc.hash == crypto.SHA256 {
				tc.want = nil // opencryptoki 3.8.1 takes OAEP with SHA-256
			}
			w, err := cek.WrapRSA(ctx, bob, tc.hash)
			if !errors.Is(err, tc.want) {
				t.Fatalf("WrapRSA error %v, want %v", err, tc.want)
			}
			if err == nil && len(w) != 256 {
				t.Fatalf("wrapped key is %d bytes", len(w))
			}
		})
	}
}

func TestUnwrapCEK(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	list := env.Cert(t, "list").PublicKey.(*rsa.PublicKey)
	bob := env.Cert(t, "bob").PublicKey.(*rsa.PublicKey)
	bobKey := env.Key(t, "bob")
	for _, h := range []crypto.Hash{0, crypto.SHA1} {
		for _, uri := range []string{"pkcs11:object=list", "pkcs11:token=appliance;id=%02;type=private"} {
			t.Run(fmt.Sprintf("ok %v %s", h, uri), func(t *testing.T) {
				orig, err := tok.GenerateCEK(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer orig.Destroy(ctx)
				forList, err := orig.WrapRSA(ctx, list, h)
				if err != nil {
					t.Fatal(err)
				}
				member, err := tok.UnwrapCEK(ctx, uri, forList, h)
				if err != nil {
					t.Fatalf("UnwrapCEK: %v", err)
				}
				defer member.Destroy(ctx)
				a, err := orig.WrapRSA(ctx, bob, 0)
				if err != nil {
					t.Fatal(err)
				}
				b, err := member.WrapRSA(ctx, bob, 0)
				if err != nil {
					t.Fatalf("re-wrap for bob: %v", err)
				}
				if !bytes.Equal(unwrapSoft(t, bobKey, a, 0), unwrapSoft(t, bobKey, b, 0)) {
					t.Fatal("bob gets a different key from the re-wrapped CEK")
				}
				// The unwrapped key also encrypts: same key, same IV, same ciphertext.
				iv := randBytes(16)
				var c1, c2 bytes.Buffer
				if err := orig.EncryptCBC(ctx, iv, bytes.NewReader([]byte("hello")), &c1); err != nil {
					t.Fatal(err)
				}
				if err := member.EncryptCBC(ctx, iv, bytes.NewReader([]byte("hello")), &c2); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(c1.Bytes(), c2.Bytes()) {
					t.Fatal("unwrapped key encrypts differently")
				}
			})
		}
	}
}

func TestUnwrapCEKErrors(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	cek, err := tok.GenerateCEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cek.Destroy(ctx)
	forBob, err := cek.WrapRSA(ctx, env.Cert(t, "bob").PublicKey.(*rsa.PublicKey), 0)
	if err != nil {
		t.Fatal(err)
	}
	forList, err := cek.WrapRSA(ctx, env.Cert(t, "list").PublicKey.(*rsa.PublicKey), 0)
	if err != nil {
		t.Fatal(err)
	}
	// A 5-byte value wrapped properly for the list is no AES key.
	short, err := rsa.EncryptPKCS1v15(rand.Reader, env.Cert(t, "list").PublicKey.(*rsa.PublicKey), []byte("short"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		uri     string
		wrapped []byte
		hash    crypto.Hash
		want    error
	}{
		{"fail empty blob", "pkcs11:object=list", nil, 0, hsm.ErrUnwrap},
		{"fail one byte", "pkcs11:object=list", []byte{0}, 0, hsm.ErrUnwrap},
		{"fail garbage", "pkcs11:object=list", randBytes(256), 0, hsm.ErrUnwrap},
		{"fail too long", "pkcs11:object=list", randBytes(1000), 0, hsm.ErrUnwrap},
		{"fail wrapped for someone else", "pkcs11:object=list", forBob, 0, hsm.ErrUnwrap},
		{"fail pkcs1 blob as oaep", "pkcs11:object=list", forList, crypto.SHA1, hsm.ErrUnwrap},
		{"fail not an aes key length", "pkcs11:object=list", short, 0, hsm.ErrUnwrap},
		{"fail oaep hash unsupported", "pkcs11:object=list", forList, crypto.SHA256, hsm.ErrOAEPHash},
		{"fail unknown key", "pkcs11:object=nobody", forList, 0, hsm.ErrKeyNotFound},
		{"fail bad uri", "pkcs11:object=list?pin-source=/etc/pin", forList, 0, hsm.ErrBadURI},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if ock(env) && tc.want == hsm.ErrOAEPHash {
				// opencryptoki takes SHA-256 OAEP; the PKCS#1 blob fails to decode instead
				// (CKR_FUNCTION_FAILED from a healthy token).
				tc.want = hsm.ErrUnwrap
			}
			k, err := tok.UnwrapCEK(ctx, tc.uri, tc.wrapped, tc.hash)
			if err == nil {
				k.Destroy(ctx)
				t.Fatal("UnwrapCEK succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v is not %q", err, tc.want)
			}
			if hsm.IsTemporary(err) {
				t.Errorf("error %v is temporary; bad input is not", err)
			}
			t.Log(err)
		})
	}
	// The list key still works after all that.
	k, err := tok.UnwrapCEK(ctx, "pkcs11:object=list", forList, 0)
	if err != nil {
		t.Fatalf("UnwrapCEK after failures: %v", err)
	}
	k.Destroy(ctx)
}

func TestCEKErrors(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	bob := env.Cert(t, "bob").PublicKey.(*rsa.PublicKey)
	cek, err := tok.GenerateCEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sink bytes.Buffer
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"fail cbc short iv", func() error { return cek.EncryptCBC(ctx, make([]byte, 12), bytes.NewReader(nil), &sink) }, hsm.ErrInvalidArgument},
		{"fail gcm 16-byte nonce", func() error {
			_, err := cek.EncryptGCM(ctx, make([]byte, 16), nil, bytes.NewReader(nil), &sink)
			return err
		}, hsm.ErrInvalidArgument},
		{"fail wrap nil key", func() error { _, err := cek.WrapRSA(ctx, nil, 0); return err }, hsm.ErrInvalidArgument},
		{"fail reader error", func() error {
			return cek.EncryptCBC(ctx, make([]byte, 16), io.MultiReader(bytes.NewReader(make([]byte, 100<<10)), errReader{}), &sink)
		}, errBoom},
		{"fail writer error", func() error {
			if ock(env) { // no AES-GCM there: the same streaming path through AES-CBC
				return cek.EncryptCBC(ctx, make([]byte, 16), bytes.NewReader(make([]byte, 200<<10)), errWriter{})
			}
			_, err := cek.EncryptGCM(ctx, make([]byte, 12), nil, bytes.NewReader(make([]byte, 200<<10)), errWriter{})
			return err
		}, errBoom},
		{"fail canceled", func() error {
			c, cancel := context.WithCancel(ctx)
			cancel()
			return cek.EncryptCBC(c, make([]byte, 16), bytes.NewReader(nil), &sink)
		}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Fatalf("error %v is not %q", err, tc.want)
			}
		})
	}
	// Aborted streams ended their operations: every pooled session still encrypts.
	for i := 0; i < 8; i++ {
		var err error
		if ock(env) {
			err = cek.EncryptCBC(ctx, make([]byte, 16), bytes.NewReader([]byte("x")), &sink)
		} else {
			_, err = cek.EncryptGCM(ctx, make([]byte, 12), nil, bytes.NewReader([]byte("x")), &sink)
		}
		if err != nil {
			t.Fatalf("encrypt after aborted streams: %v", err)
		}
	}
	if err := cek.Destroy(ctx); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if err := cek.Destroy(ctx); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
	if _, err := cek.WrapRSA(ctx, bob, 0); !errors.Is(err, hsm.ErrKeyDestroyed) {
		t.Fatalf("WrapRSA after Destroy: %v", err)
	}
}

var errBoom = errors.New("boom")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBoom }

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errBoom }

// blockingReader holds a session inside EncryptCBC until released.
type blockingReader struct {
	started chan struct{}
	release chan struct{}
}

func (r *blockingReader) Read(p []byte) (int, error) {
	select {
	case r.started <- struct{}{}:
	default:
	}
	<-r.release
	return 0, io.EOF
}

func TestPoolExhausted(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration // the pool's own wait
		ctxWait time.Duration
	}{
		{"fail ctx deadline shorter than pool wait", 10 * time.Second, 50 * time.Millisecond},
		{"fail pool wait shorter than ctx deadline", 50 * time.Millisecond, 10 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, _ := open(t, func(c *hsm.Config) { c.MaxSessions = 1; c.PoolTimeout = tc.timeout })
			ctx := context.Background()
			cek, err := tok.GenerateCEK(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r := &blockingReader{started: make(chan struct{}, 1), release: make(chan struct{})}
			done := make(chan error)
			go func() { done <- cek.EncryptCBC(ctx, make([]byte, 16), r, io.Discard) }()
			<-r.started
			c, cancel := context.WithTimeout(ctx, tc.ctxWait)
			defer cancel()
			start := time.Now()
			_, err = tok.GenerateCEK(c)
			if !errors.Is(err, hsm.ErrPoolExhausted) || !hsm.IsTemporary(err) {
				t.Fatalf("GenerateCEK with the only session busy: %v, want temporary ErrPoolExhausted", err)
			}
			if waited := time.Since(start); waited > 5*time.Second {
				t.Errorf("waited %v", waited)
			}
			close(r.release)
			if err := <-done; err != nil {
				t.Fatalf("EncryptCBC: %v", err)
			}
			// The session came back.
			k, err := tok.GenerateCEK(ctx)
			if err != nil {
				t.Fatalf("GenerateCEK after release: %v", err)
			}
			k.Destroy(ctx)
			cek.Destroy(ctx)
		})
	}
}

func TestConcurrent(t *testing.T) {
	tok, env := open(t, func(c *hsm.Config) { c.MaxSessions = 4 })
	ctx := context.Background()
	bob := env.Cert(t, "bob").PublicKey.(*rsa.PublicKey)
	bobKey := env.Key(t, "bob")
	signer, err := tok.Signer(ctx, "pkcs11:object=alice")
	if err != nil {
		t.Fatal(err)
	}
	shared, err := tok.GenerateCEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Destroy(ctx)
	plain := randBytes(100 << 10)
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		go func() {
			errs <- func() error {
				for i := 0; i < 5; i++ {
					own, err := tok.GenerateCEK(ctx)
					if err != nil {
						return err
					}
					for _, k := range []*hsm.CEK{own, shared} {
						open, err := sealSome(ctx, env, k, plain)
						if err != nil {
							return err
						}
						w, err := k.WrapRSA(ctx, bob, 0)
						if err != nil {
							return err
						}
						key, err := rsa.DecryptPKCS1v15(nil, bobKey.(*rsa.PrivateKey), w)
						if err != nil {
							return err
						}
						got, err := open(key)
						if err != nil || !bytes.Equal(got, plain) {
							return fmt.Errorf("round trip failed: %v", err)
						}
					}
					d := sha1.Sum([]byte{byte(i)})
					if _, err := signer.Sign(rand.Reader, d[:], crypto.SHA1); err != nil {
						return err
					}
					if err := own.Destroy(ctx); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	for g := 0; g < 16; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestReconnect(t *testing.T) {
	tok, env := open(t, nil)
	env.RequireSoftHSM(t) // the token goes away by its directory being moved
	ctx := context.Background()
	bob := env.Cert(t, "bob").PublicKey.(*rsa.PublicKey)
	signer, err := tok.Signer(ctx, "pkcs11:object=alice")
	if err != nil {
		t.Fatal(err)
	}
	before, err := tok.GenerateCEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha1.Sum([]byte("x"))

	moved := env.TokenDir + ".away"
	if err := os.Rename(env.TokenDir, moved); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := os.Rename(moved, env.TokenDir); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()

	_, err = signer.Sign(rand.Reader, digest[:], crypto.SHA1)
	if err == nil || !hsm.IsTemporary(err) || !errors.Is(err, hsm.ErrTokenGone) {
		t.Fatalf("Sign with the token gone: %v, want temporary ErrTokenGone", err)
	}
	t.Log(err)
	_, err = tok.UnwrapCEK(ctx, "pkcs11:object=list", randBytes(256), 0)
	if err == nil || !hsm.IsTemporary(err) {
		t.Fatalf("UnwrapCEK with the token gone: %v, want temporary", err)
	}

	// Still gone: Reconnect fails, temporarily, and leaves the Token usable for a later try.
	if err := tok.Reconnect(); !hsm.IsTemporary(err) {
		t.Fatalf("Reconnect with the token gone: %v, want a temporary error", err)
	} else {
		t.Log(err)
	}
	if _, err := tok.GenerateCEK(ctx); !errors.Is(err, hsm.ErrTokenGone) || !hsm.IsTemporary(err) {
		t.Fatalf("GenerateCEK while disconnected: %v, want temporary ErrTokenGone", err)
	}

	restore()
	if err := tok.Reconnect(); err != nil {
		t.Fatalf("Reconnect: %v", err)
	}
	if _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA1); err != nil {
		t.Fatalf("Sign after Reconnect: %v", err)
	}
	if _, err := before.WrapRSA(ctx, bob, 0); !errors.Is(err, hsm.ErrTokenGone) {
		t.Fatalf("CEK from before Reconnect: %v, want ErrTokenGone", err)
	}
	if err := before.Destroy(ctx); err != nil {
		t.Fatalf("Destroy of a lost CEK: %v", err)
	}
	after, err := tok.GenerateCEK(ctx)
	if err != nil {
		t.Fatalf("GenerateCEK after Reconnect: %v", err)
	}
	if _, err := after.WrapRSA(ctx, bob, tok.OAEPHash()); err != nil {
		t.Fatalf("WrapRSA after Reconnect: %v", err)
	}
	after.Destroy(ctx)
}

func TestClosed(t *testing.T) {
	tok, _ := open(t, nil)
	ctx := context.Background()
	cek, err := tok.GenerateCEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok.Close()
	if _, err := tok.GenerateCEK(ctx); !errors.Is(err, hsm.ErrClosed) {
		t.Fatalf("GenerateCEK after Close: %v", err)
	}
	if _, err := cek.WrapRSA(ctx, &rsa.PublicKey{N: big.NewInt(1), E: 3}, 0); !errors.Is(err, hsm.ErrClosed) {
		t.Fatalf("WrapRSA after Close: %v", err)
	}
	if err := tok.Reconnect(); !errors.Is(err, hsm.ErrClosed) {
		t.Fatalf("Reconnect after Close: %v", err)
	}
}

// Reconnects while other goroutines sign and encrypt: every call either works or fails with a
// temporary error, and nothing races (run with -race).
func TestReconnectUnderLoad(t *testing.T) {
	tok, env := open(t, func(c *hsm.Config) { c.MaxSessions = 2 })
	ctx := context.Background()
	bob := env.Cert(t, "bob").PublicKey.(*rsa.PublicKey)
	signer, err := tok.Signer(ctx, "pkcs11:object=alice")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			errs <- func() error {
				for {
					select {
					case <-stop:
						return nil
					default:
					}
					k, err := tok.GenerateCEK(ctx)
					if err != nil {
						if hsm.IsTemporary(err) {
							continue
						}
						return err
					}
					if _, err := sealSome(ctx, env, k, make([]byte, 70<<10)); err != nil && !hsm.IsTemporary(err) {
						return err
					}
					if _, err := k.WrapRSA(ctx, bob, 0); err != nil && !hsm.IsTemporary(err) {
						return err
					}
					d := sha1.Sum(nil)
					if _, err := signer.Sign(rand.Reader, d[:], crypto.SHA1); err != nil && !hsm.IsTemporary(err) {
						return err
					}
					if err := k.Destroy(ctx); err != nil && !hsm.IsTemporary(err) {
						return err
					}
				}
			}()
		}()
	}
	for i := 0; i < 5; i++ {
		time.Sleep(20 * time.Millisecond)
		if err := tok.Reconnect(); err != nil {
			t.Errorf("Reconnect %d: %v", i, err)
		}
	}
	close(stop)
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Errorf("worker: %v", err)
		}
	}
}

// countingWriter and eofSpy show that ciphertext leaves while plaintext is still coming in: the
// token does not hold the whole message until C_EncryptFinal.
type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

type eofSpy struct {
	r      io.Reader
	w      *countingWriter
	atEOF  int
	sawEOF bool
}

func (s *eofSpy) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF && !s.sawEOF {
		s.sawEOF, s.atEOF = true, s.w.n
	}
	return n, err
}

func TestEncryptStreams(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	k, err := tok.GenerateCEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy(ctx)
	const size = 1 << 20
	for _, mode := range []string{"cbc", "gcm"} {
		t.Run("ok "+mode, func(t *testing.T) {
			if mode == "gcm" {
				needGCM(t, env)
			}
			w := &countingWriter{}
			spy := &eofSpy{r: bytes.NewReader(make([]byte, size)), w: w}
			if mode == "cbc" {
				err = k.EncryptCBC(ctx, make([]byte, 16), spy, w)
			} else {
				_, err = k.EncryptGCM(ctx, make([]byte, 12), nil, spy, w)
			}
			if err != nil {
				t.Fatal(err)
			}
			if spy.atEOF < size-chunkSize {
				t.Fatalf("only %d bytes of ciphertext written when the %d-byte plaintext ended", spy.atEOF, size)
			}
		})
	}
}

const chunkSize = 64 << 10
