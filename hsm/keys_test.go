package hsm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"testing"

	"appliance/hsm"
)

func TestKeyManagement(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	p256, kind := unique("km-p256"), quickKind(env) // RSA-2048 on a token without EC
	ec, err := tok.GenerateKeyPair(ctx, p256, kind)
	if err != nil {
		t.Fatalf("GenerateKeyPair: %v", err)
	}
	if _, ok := ec.Public().(*ecdsa.PublicKey); !ok && kind == hsm.P256 {
		t.Fatalf("P256 key has public key %T", ec.Public())
	}

	t.Run("fail duplicate label", func(t *testing.T) {
		for _, label := range []string{p256, "alice"} {
			if _, err := tok.GenerateKeyPair(ctx, label, kind); !errors.Is(err, hsm.ErrKeyExists) {
				t.Fatalf("GenerateKeyPair(%q) again: %v", label, err)
			}
		}
	})
	t.Run("fail bad arguments", func(t *testing.T) {
		if _, err := tok.GenerateKeyPair(ctx, "", hsm.P256); !errors.Is(err, hsm.ErrInvalidArgument) {
			t.Fatalf("empty label: %v", err)
		}
		if _, err := tok.GenerateKeyPair(ctx, "x", hsm.KeyKind(99)); !errors.Is(err, hsm.ErrInvalidArgument) {
			t.Fatalf("bad kind: %v", err)
		}
	})

	t.Run("ok list", func(t *testing.T) {
		keys, err := tok.ListKeys(ctx)
		if err != nil {
			t.Fatalf("ListKeys: %v", err)
		}
		byLabel := map[string]hsm.KeyInfo{}
		for _, k := range keys {
			byLabel[k.Label] = k
		}
		for _, want := range []string{"alice", "list", p256} {
			k, ok := byLabel[want]
			if !ok {
				t.Fatalf("ListKeys lacks %q: %+v", want, keys)
			}
			if k.Public == nil {
				t.Errorf("%q has no public key", want)
			}
			// The listed URI finds the same key.
			s, err := tok.Signer(ctx, k.URI)
			if err != nil {
				t.Fatalf("Signer(%q): %v", k.URI, err)
			}
			if !s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public) {
				t.Errorf("URI %q names another key", k.URI)
			}
		}
		if !bytes.Equal(byLabel["alice"].ID, []byte{1}) {
			t.Errorf("alice has id %x", byLabel["alice"].ID)
		}
		if !byLabel["alice"].Public.(*rsa.PublicKey).Equal(env.Cert(t, "alice").PublicKey) {
			t.Error("alice's listed public key is not her certificate's")
		}
	})

	alice := env.Cert(t, "alice")
	tests := []struct {
		name  string
		label string
		cert  string
		want  error
	}{
		{"fail someone else's certificate", "alice", "bob", hsm.ErrCertificateMismatch},
		{"fail unknown key", "nobody", "alice", hsm.ErrKeyNotFound},
		{"ok alice", "alice", "alice", nil},
		{"ok alice again", "alice", "alice", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tok.ImportCertificate(ctx, tc.label, env.Cert(t, tc.cert))
			if !errors.Is(err, tc.want) {
				t.Fatalf("ImportCertificate: %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("ok find certificate", func(t *testing.T) {
		for _, uri := range []string{"pkcs11:object=alice", "pkcs11:id=%01", "pkcs11:token=appliance;object=alice;id=%01"} {
			c, err := tok.FindCertificate(ctx, uri)
			if err != nil {
				t.Fatalf("FindCertificate(%q): %v", uri, err)
			}
			if !c.Equal(alice) {
				t.Fatalf("FindCertificate(%q) gave %v", uri, c.Subject)
			}
		}
		keys, err := tok.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if (k.Label == "alice") != (k.Certificate != nil) {
				t.Errorf("key %q has certificate %v", k.Label, k.Certificate != nil)
			}
		}
	})
	t.Run("fail find certificate", func(t *testing.T) {
		for _, uri := range []string{"pkcs11:object=list", "pkcs11:object=nobody", "pkcs11:token=other;object=alice"} {
			if _, err := tok.FindCertificate(ctx, uri); !errors.Is(err, hsm.ErrCertificateNotFound) {
				t.Fatalf("FindCertificate(%q): %v", uri, err)
			}
		}
	})
}

func TestParseKeyKind(t *testing.T) {
	for _, k := range []hsm.KeyKind{hsm.RSA2048, hsm.RSA3072, hsm.P256, hsm.Ed25519} {
		got, err := hsm.ParseKeyKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKeyKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := hsm.ParseKeyKind("dsa1024"); !errors.Is(err, hsm.ErrInvalidArgument) {
		t.Errorf("ParseKeyKind(dsa1024): %v", err)
	}
}
