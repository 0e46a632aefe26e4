package hsm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"math/big"
	"os/exec"
	"testing"

	"appliance/hsm"
	"appliance/internal/ci"
	"appliance/internal/softhsmtest"
)

// Signer is asked once per message; the key pair lookup behind it is a C_FindObjects and several
// attribute reads, so answers are cached until something says they may be stale.
func TestSignerCache(t *testing.T) {
	ctx := context.Background()
	digest := sha256.Sum256([]byte("cache"))
	tests := []struct {
		name string
		// between runs after the first Signer call; it returns the lookups it expects the
		// second call to make.
		between func(t *testing.T, tok *hsm.Token) uint64
	}{
		{"ok second call is cached", func(*testing.T, *hsm.Token) uint64 { return 0 }},
		{"ok reconnect drops the cache", func(t *testing.T, tok *hsm.Token) uint64 {
			if err := tok.Reconnect(); err != nil {
				t.Fatal(err)
			}
			return 1
		}},
		{"ok signing does not look up again", func(t *testing.T, tok *hsm.Token) uint64 {
			s, err := tok.Signer(ctx, "pkcs11:object=alice")
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					t.Fatal(err)
				}
			}
			return 0
		}},
		{"ok refused signature keeps the cache", func(t *testing.T, tok *hsm.Token) uint64 {
			s, err := tok.Signer(ctx, "pkcs11:object=alice")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Sign(rand.Reader, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.MD4}); err == nil {
				t.Fatal("Sign with PSS over MD4 succeeded")
			} else {
				t.Log(err)
			}
			return 0
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, _ := open(t, nil)
			first, err := tok.Signer(ctx, "pkcs11:object=alice")
			if err != nil {
				t.Fatal(err)
			}
			want := tc.between(t, tok)
			before := tok.SignerLookups()
			second, err := tok.Signer(ctx, "pkcs11:object=alice")
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.SignerLookups() - before; got != want {
				t.Errorf("second Signer made %d lookups, want %d", got, want)
			}
			if (first == second) != (want == 0) {
				t.Errorf("second Signer is the first: %v, want %v", first == second, want == 0)
			}
			sig, err := second.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if err := verify(second.Public(), digest[:], sig, crypto.SHA256); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSignerCacheErrors(t *testing.T) {
	tok, _ := open(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := tok.Signer(ctx, "pkcs11:object=alice"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := tok.Signer(ctx, "pkcs11:object=alice"); !errors.Is(err, context.Canceled) {
		t.Errorf("cached Signer with a cancelled context: %v, want context.Canceled", err)
	}
	// Unknown keys are not cached: the key may be made later.
	for range 2 {
		before := tok.SignerLookups()
		if _, err := tok.Signer(context.Background(), "pkcs11:object=nobody"); !errors.Is(err, hsm.ErrKeyNotFound) {
			t.Fatalf("Signer of a missing key: %v", err)
		}
		if tok.SignerLookups() == before {
			t.Fatal("a missing key was answered from the cache")
		}
	}
	tok.Close()
	if _, err := tok.Signer(context.Background(), "pkcs11:object=alice"); !errors.Is(err, hsm.ErrClosed) {
		t.Errorf("cached Signer after Close: %v, want ErrClosed", err)
	}
}

// A key replaced on the token by another process (an operator's re-keying): the cached handle
// fails with a temporary error, and the next Signer finds the new key, without a Reconnect.
func TestSignerCacheKeyReplaced(t *testing.T) {
	tok, env := open(t, nil)
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		if ci.On() {
			t.Fatal("pkcs11-tool (opensc) is missing (CI set: a failure, not a skip)")
		}
		t.Skip("pkcs11-tool (opensc) is missing")
	}
	ctx := context.Background()
	digest := sha256.Sum256([]byte("replaced"))
	label := unique("rekey")
	uri := "pkcs11:object=" + label
	old, err := tok.GenerateKeyPair(ctx, label, quickKind(env))
	if err != nil {
		t.Fatal(err)
	}
	cached, err := tok.Signer(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cached.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"privkey", "pubkey"} {
		out, err := exec.Command("pkcs11-tool", "--module", env.Module, "--token-label", softhsmtest.TokenLabel,
			"--login", "--pin", softhsmtest.PIN, "--delete-object", "--type", typ, "--label", label).CombinedOutput()
		if err != nil {
			t.Fatalf("pkcs11-tool --delete-object --type %s: %v\n%s", typ, err, out)
		}
	}
	if _, err := tok.GenerateKeyPair(ctx, label, quickKind(env)); err != nil {
		t.Fatal(err)
	}
	_, err = cached.Sign(rand.Reader, digest[:], crypto.SHA256)
	if ock(env) && errors.Is(err, hsm.ErrNotPermitted) {
		// opencryptoki hands the deleted private key's handle to one of the new objects (the
		// public key): the stale handle names another object, not none.
		t.Logf("opencryptoki reused the handle: %v", err)
	} else if err == nil || !hsm.IsTemporary(err) {
		t.Fatalf("Sign with a replaced key's handle: %v, want a temporary error", err)
	}
	t.Log(err)
	fresh, err := tok.Signer(ctx, uri)
	if err != nil {
		t.Fatalf("Signer after the key was replaced: %v", err)
	}
	if fresh.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(old.Public()) {
		t.Fatal("Signer after the key was replaced still has the old key")
	}
	sig, err := fresh.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(fresh.Public(), digest[:], sig, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSigner is the per-message cost of naming the signing key.
func BenchmarkSigner(b *testing.B) {
	tok, _ := open(b, nil)
	ctx := context.Background()
	for b.Loop() {
		if _, err := tok.Signer(ctx, "pkcs11:object=alice"); err != nil {
			b.Fatal(err)
		}
	}
}

// A recipient's public key is imported once per connection and reused for later wraps, each
// still for the right key; a Reconnect starts over.
func TestWrapKeyCache(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	type rcpt struct {
		pub *rsa.PublicKey
		key crypto.Signer
	}
	bob := rcpt{env.Cert(t, "bob").PublicKey.(*rsa.PublicKey), env.Key(t, "bob")}
	carol := rcpt{env.Cert(t, "carol").PublicKey.(*rsa.PublicKey), env.Key(t, "carol")}
	tests := []struct {
		name        string
		reconnect   bool
		wraps       []rcpt
		wantImports uint64
	}{
		{"ok one recipient imported once", false, []rcpt{bob, bob, bob}, 1},
		{"ok two recipients alternating", false, []rcpt{bob, carol, bob, carol}, 2},
		{"ok reconnect imports again", true, []rcpt{bob, bob}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Start each case with an empty cache.
			if err := tok.Reconnect(); err != nil {
				t.Fatal(err)
			}
			before := tok.PublicKeyImports()
			if tc.reconnect {
				k, err := tok.GenerateCEK(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := k.WrapRSA(ctx, bob.pub, 0); err != nil {
					t.Fatal(err)
				}
				if err := tok.Reconnect(); err != nil {
					t.Fatal(err)
				}
				before = tok.PublicKeyImports()
			}
			k, err := tok.GenerateCEK(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Destroy(ctx)
			var first []byte
			for i, r := range tc.wraps {
				wrapped, err := k.WrapRSA(ctx, r.pub, 0)
				if err != nil {
					t.Fatalf("wrap %d: %v", i, err)
				}
				// Every wrap opens with its own recipient's key, and gives the same content key.
				got := unwrapSoft(t, r.key, wrapped, 0)
				if first == nil {
					first = got
				} else if !bytes.Equal(got, first) {
					t.Fatalf("wrap %d gives another content key", i)
				}
			}
			if got := tok.PublicKeyImports() - before; got != tc.wantImports {
				t.Errorf("%d public key imports, want %d", got, tc.wantImports)
			}
		})
	}
}

// BenchmarkWrapCached is WrapRSA for a recipient seen before, the common case of a relay.
func BenchmarkWrapCached(b *testing.B) {
	tok, env := open(b, nil)
	ctx := context.Background()
	bob := env.Cert(b, "bob").PublicKey.(*rsa.PublicKey)
	k, err := tok.GenerateCEK(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer k.Destroy(ctx)
	for b.Loop() {
		if _, err := k.WrapRSA(ctx, bob, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWrapFirstSeen is WrapRSA for a recipient not seen before: an import, then the wrap.
// The moduli are random odd numbers: the token encrypts with them without checking.
func BenchmarkWrapFirstSeen(b *testing.B) {
	tok, _ := open(b, nil)
	ctx := context.Background()
	k, err := tok.GenerateCEK(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer k.Destroy(ctx)
	pubs := make([]*rsa.PublicKey, 2000)
	for i := range pubs {
		n := randBytes(256)
		n[0] |= 0x80
		n[255] |= 1
		pubs[i] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	}
	i := 0
	for b.Loop() {
		if _, err := k.WrapRSA(ctx, pubs[i%len(pubs)], 0); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
