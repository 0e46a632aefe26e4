package hsm_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"appliance/hsm"
	"appliance/internal/softhsmtest"
)

func TestMain(m *testing.M) {
	if softhsmtest.Impl() == softhsmtest.ImplOpencryptoki {
		hsm.RequireGCMForTest(false) // see RequireGCMForTest and TestSecondImplementation
	}
	code := m.Run()
	softhsmtest.Cleanup()
	os.Exit(code)
}

func config(env *softhsmtest.Env) hsm.Config {
	return hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 4, PoolTimeout: 5 * time.Second}
}

// open gives the test its own Token, closed when the test ends.
func open(t testing.TB, edit func(*hsm.Config)) (*hsm.Token, *softhsmtest.Env) {
	t.Helper()
	env := softhsmtest.Setup(t)
	cfg := config(env)
	if edit != nil {
		edit(&cfg)
	}
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok, env
}

func TestOpenErrors(t *testing.T) {
	env := softhsmtest.Setup(t)
	tests := []struct {
		name string
		edit func(*testing.T, *hsm.Config)
		want error
	}{
		{"fail wrong PIN", func(_ *testing.T, c *hsm.Config) { c.PIN = "9999-secret" }, hsm.ErrPINIncorrect},
		{"fail unknown token", func(_ *testing.T, c *hsm.Config) { c.TokenLabel = "no-such-token" }, hsm.ErrTokenNotFound},
		{"fail bad module path", func(_ *testing.T, c *hsm.Config) { c.Module = "/nonexistent/libnothing.so" }, hsm.ErrModule},
		{"fail module not a library", func(_ *testing.T, c *hsm.Config) { c.Module = env.File("root.pem") }, hsm.ErrModule},
		{"fail no softhsm configuration", func(t *testing.T, c *hsm.Config) {
			env.RequireSoftHSM(t)
			t.Setenv("SOFTHSM2_CONF", env.File("missing.conf"))
		}, hsm.ErrModule},
		{"fail no label", func(_ *testing.T, c *hsm.Config) { c.TokenLabel = "" }, hsm.ErrInvalidArgument},
		{"fail negative sessions", func(_ *testing.T, c *hsm.Config) { c.MaxSessions = -1 }, hsm.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(env)
			tc.edit(t, &cfg)
			tok, err := hsm.Open(cfg)
			t.Log(err)
			if err == nil {
				tok.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %q is not %q", err, tc.want)
			}
			if hsm.IsTemporary(err) {
				t.Errorf("error %q is temporary; a configuration fault is not", err)
			}
			if strings.Contains(err.Error(), "9999-secret") {
				t.Errorf("error %q contains the PIN", err)
			}
		})
	}
	// The failed attempts above must not have left the module in a state that stops a good Open.
	tok, err := hsm.Open(config(env))
	if err != nil {
		t.Fatalf("Open after failures: %v", err)
	}
	tok.Close()
}

func TestConfigHidesPIN(t *testing.T) {
	cfg := hsm.Config{Module: "m.so", TokenLabel: "x", PIN: "s3cr3t"}
	for _, s := range []string{cfg.String(), fmt.Sprintf("%v %+v %s %#v", cfg, cfg, cfg, cfg)} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("%q shows the PIN", s)
		}
	}
}

func TestSign(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	gen := func(label string, kind hsm.KeyKind) func(t *testing.T) crypto.Signer {
		return func(t *testing.T) crypto.Signer {
			s, err := tok.GenerateKeyPair(ctx, unique(label), kind)
			if err != nil {
				t.Fatalf("GenerateKeyPair: %v", err)
			}
			return s
		}
	}
	find := func(uri string) func(t *testing.T) crypto.Signer {
		return func(t *testing.T) crypto.Signer {
			s, err := tok.Signer(ctx, uri)
			if err != nil {
				t.Fatalf("Signer: %v", err)
			}
			return s
		}
	}
	tests := []struct {
		name string
		key  func(t *testing.T) crypto.Signer
		opts crypto.SignerOpts
	}{
		{"ok imported rsa pkcs1v15 by label", find("pkcs11:token=appliance;object=alice"), crypto.SHA256},
		{"ok imported rsa pkcs1v15 by id", find("pkcs11:id=%01;type=private"), crypto.SHA256},
		{"ok imported rsa pss", find("pkcs11:object=alice;id=%01"), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}},
		{"ok generated rsa2048 pkcs1v15", gen("sign-rsa2048", hsm.RSA2048), crypto.SHA256},
		{"ok generated rsa3072 pss", gen("sign-rsa3072", hsm.RSA3072), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}},
		{"ok imported rsa pss auto salt", find("pkcs11:object=alice"), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA256}},
		{"ok generated ecdsa p256", gen("sign-p256", hsm.P256), crypto.SHA256},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.name, "ecdsa") {
				needEC(t, env)
			}
			s := tc.key(t)
			digest := sha256.Sum256([]byte("message " + tc.name))
			sig, err := s.Sign(rand.Reader, digest[:], tc.opts)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if err := verify(s.Public(), digest[:], sig, tc.opts); err != nil {
				t.Fatalf("verify: %v", err)
			}
			digest[0] ^= 1
			if verify(s.Public(), digest[:], sig, tc.opts) == nil {
				t.Fatal("signature verifies for a different digest")
			}
		})
	}
}

func verify(pub crypto.PublicKey, digest, sig []byte, opts crypto.SignerOpts) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			// Salt = hash length is what the appliance signs with, whatever the caller passed.
			return rsa.VerifyPSS(k, pss.Hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.VerifyPKCS1v15(k, opts.HashFunc(), digest, sig)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return errors.New("ecdsa signature invalid")
		}
		return nil
	}
	return errors.New("unknown key type")
}

func TestSignerErrors(t *testing.T) {
	tok, _ := open(t, nil)
	tests := []struct {
		name, uri string
		want      error
	}{
		{"fail unknown object", "pkcs11:object=nobody", hsm.ErrKeyNotFound},
		{"fail unknown id", "pkcs11:id=%7f%7f", hsm.ErrKeyNotFound},
		{"fail other token", "pkcs11:token=other;object=alice", hsm.ErrKeyNotFound},
		{"fail other manufacturer", "pkcs11:manufacturer=Acme;object=alice", hsm.ErrKeyNotFound},
		{"fail type cert", "pkcs11:object=alice;type=cert", hsm.ErrBadURI},
		{"fail no object", "pkcs11:token=appliance", hsm.ErrBadURI},
		{"fail pin in uri", "pkcs11:object=alice?pin-value=1234", hsm.ErrBadURI},
		{"fail not a uri", "alice", hsm.ErrBadURI},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tok.Signer(context.Background(), tc.uri)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v is not %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.uri) {
				t.Errorf("error %q does not name the URI %q", err, tc.uri)
			}
		})
	}
}

// unique makes a key label no earlier run in this test binary (-count=N) has used.
func unique(label string) string {
	return fmt.Sprintf("%s-%x", label, randBytes(4))
}
