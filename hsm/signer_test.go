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
	"slices"
	"strconv"
	"sync"
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

// A full cache makes room for a key seen for the first time; an evicted key's object is
// destroyed once no wrap uses it (none is left behind on the token), and every wrap is still
// for its own recipient's key, also while other wraps evict the key they are using.
func TestWrapKeyCacheEvicts(t *testing.T) {
	tok, _ := open(t, nil)
	ctx := context.Background()
	keys := make([]*rsa.PrivateKey, 9) // the last one is first wrapped for into a full cache
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	tests := []struct {
		name    string
		limit   int
		workers int
	}{
		{"ok one at a time, cache of 3", 3, 1},
		{"ok 8 at once, cache of 2", 2, 8},
		{"ok 8 at once, cache of 1", 1, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tok.Reconnect(); err != nil {
				t.Fatal(err)
			}
			tok.LimitPublicKeyCache(tc.limit)
			k, err := tok.GenerateCEK(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Destroy(ctx)
			var (
				mu    sync.Mutex
				first []byte
				wg    sync.WaitGroup
			)
			for w := range tc.workers {
				wg.Go(func() {
					for i := range 40 {
						priv := keys[(w*3+i)%(len(keys)-1)]
						wrapped, err := k.WrapRSA(ctx, &priv.PublicKey, 0)
						if err != nil {
							t.Errorf("wrap: %v", err)
							return
						}
						got, err := rsa.DecryptPKCS1v15(nil, priv, wrapped)
						if err != nil {
							t.Errorf("wrap %d of worker %d does not open with its recipient's key: %v", i, w, err)
							return
						}
						mu.Lock()
						if first == nil {
							first = got
						} else if !bytes.Equal(got, first) {
							t.Errorf("wrap %d of worker %d gives another content key", i, w)
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if n, err := tok.PublicKeyObjects(); err != nil {
				t.Fatal(err)
			} else if n != tc.limit {
				t.Errorf("%d public key objects on the token after the wraps, want the cache's %d", n, tc.limit)
			}
			// A key that keeps coming back gets into the full cache (one time in 8), and is then
			// wrapped for with no import.
			fresh := &keys[len(keys)-1].PublicKey
			var imports []uint64
			for range 64 {
				before := tok.PublicKeyImports()
				if _, err := k.WrapRSA(ctx, fresh, 0); err != nil {
					t.Fatal(err)
				}
				imports = append(imports, tok.PublicKeyImports()-before)
			}
			if imports[0] != 1 || slices.Contains(imports[32:], 1) {
				t.Errorf("imports per wrap of a key wrapped for 64 times: %v, want one at first and none after it got in", imports)
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

// BenchmarkWrapFirstSeen is WrapRSA for a recipient not seen before, into a full cache: an
// import, the wrap, and a destroy (of this key, or of the one it evicts).
// The moduli are random odd numbers: the token encrypts with them without checking.
func BenchmarkWrapFirstSeen(b *testing.B) {
	tok, _ := open(b, nil)
	ctx := context.Background()
	k, err := tok.GenerateCEK(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer k.Destroy(ctx)
	tok.LimitPublicKeyCache(64)
	for _, pub := range randomPubs(64) {
		if _, err := k.WrapRSA(ctx, pub, 0); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		b.StopTimer()
		pub := randomPubs(1)[0]
		b.StartTimer()
		if _, err := k.WrapRSA(ctx, pub, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWrapListWalk wraps for the members of lists with their own keys, in member order as
// a list expansion does, again and again: up to the cache's size every key stays cached; past
// it, imports per wrap say how much of the walk the cache still keeps.
func BenchmarkWrapListWalk(b *testing.B) {
	tok, _ := open(b, nil)
	ctx := context.Background()
	for _, members := range []int{3000, 6000, 10000} {
		b.Run(strconv.Itoa(members), func(b *testing.B) {
			if err := tok.Reconnect(); err != nil {
				b.Fatal(err)
			}
			k, err := tok.GenerateCEK(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer k.Destroy(ctx)
			pubs := randomPubs(members)
			// Two walks first: the cache's steady state, not its filling.
			for i := range 2 * members {
				if _, err := k.WrapRSA(ctx, pubs[i%members], 0); err != nil {
					b.Fatal(err)
				}
			}
			before, i := tok.PublicKeyImports(), 0
			for b.Loop() {
				if _, err := k.WrapRSA(ctx, pubs[i%members], 0); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(tok.PublicKeyImports()-before)/float64(i), "imports/wrap")
		})
	}
}

// randomPubs makes n RSA-2048 public keys with random odd moduli.
func randomPubs(n int) []*rsa.PublicKey {
	pubs := make([]*rsa.PublicKey, n)
	for i := range pubs {
		m := randBytes(256)
		m[0] |= 0x80
		m[255] |= 1
		pubs[i] = &rsa.PublicKey{N: new(big.Int).SetBytes(m), E: 65537}
	}
	return pubs
}
