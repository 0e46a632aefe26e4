package cms

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"testing"

	"appliance/internal/softhsmtest"
)

// TestKeyAgreeOpenSSL: openssl decrypts the KeyAgreeRecipientInfos KeyAgreeRecipient makes for
// P-256 (frank) and P-384 (peggy) certificates, in both content profiles and both identifier
// kinds, next to an RSA recipient; a recipient not in the envelope cannot.
func TestKeyAgreeOpenSSL(t *testing.T) {
	env := softhsmtest.Setup(t)
	ctx := context.Background()
	msg := []byte("Content-Type: text/plain\r\n\r\nfor an EC recipient\r\n")
	for _, alg := range []ContentAlgorithm{AES256CBC, AES256GCM} {
		for _, id := range []RecipientIDKind{IssuerAndSerial, SubjectKeyID} {
			t.Run("ok "+alg.String()+map[RecipientIDKind]string{IssuerAndSerial: " issuer", SubjectKeyID: " ski"}[id], func(t *testing.T) {
				t.Parallel()
				key := newSoftKey(t)
				ec, err := Encrypt(ctx, key, alg, bytes.NewReader(msg))
				if err != nil {
					t.Fatal(err)
				}
				var ris []*RecipientInfo
				for _, u := range []string{"frank", "peggy"} {
					ri, err := KeyAgreeRecipient(ctx, key, env.Cert(t, u), KeyAgreeOptions{ID: id})
					if err != nil {
						t.Fatal(err)
					}
					if !ri.Matches(env.Cert(t, u)) || ri.Matches(env.Cert(t, "bob")) {
						t.Fatalf("%s: Matches is wrong", u)
					}
					ris = append(ris, ri)
				}
				kt, err := KeyTransRecipient(ctx, key, env.Cert(t, "bob"), KeyTransOptions{})
				if err != nil {
					t.Fatal(err)
				}
				enc, err := Envelope(ec, append(ris, kt))
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range []string{"frank", "peggy", "bob"} {
					got, err := opensslDecrypt(t, env, enc.Bytes(), u)
					if err != nil {
						t.Fatalf("%s: %v", u, err)
					}
					if !bytes.Equal(got, msg) {
						t.Fatalf("%s: got %q", u, got)
					}
				}
				if _, err := opensslDecrypt(t, env, enc.Bytes(), "dave"); err == nil {
					t.Fatal("dave decrypted a message not meant for him")
				}
				// Our own parser reads it back and attributes each entry to its certificate.
				parsed, err := ParseEnveloped(enc.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				if alg == AES256CBC && parsed.Version != 2 {
					t.Fatalf("envelope version %d, want 2 with a KeyAgreeRecipientInfo", parsed.Version)
				}
				found := map[string]bool{}
				for _, p := range parsed.RecipientInfos {
					for _, u := range []string{"frank", "peggy"} {
						if p.Kind == KeyAgree && p.Matches(env.Cert(t, u)) && p.IDKey() != "" {
							found[u] = true
						}
					}
				}
				if !found["frank"] || !found["peggy"] {
					t.Fatalf("parsed keyagree entries not attributed: %v", found)
				}
			})
		}
	}
}

// TestKeyAgreeEphemeral: every RecipientInfo has an ephemeral key of its own, even for the same
// certificate and content key.
func TestKeyAgreeEphemeral(t *testing.T) {
	env := softhsmtest.Setup(t)
	key := newSoftKey(t)
	seen := map[string]bool{}
	for range 20 {
		ri, err := KeyAgreeRecipient(context.Background(), key, env.Cert(t, "frank"), KeyAgreeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(ri.OriginatorKey)] || seen[string(ri.EncryptedKey)] {
			t.Fatal("an ephemeral key or a wrapped key repeated")
		}
		seen[string(ri.OriginatorKey)], seen[string(ri.EncryptedKey)] = true, true
	}
}

func TestKeyAgreeErrors(t *testing.T) {
	env := softhsmtest.Setup(t)
	ctx := context.Background()
	tests := []struct {
		name string
		user string
		opts KeyAgreeOptions
	}{
		{"fail rsa certificate", "bob", KeyAgreeOptions{}},
		{"fail unknown id kind", "frank", KeyAgreeOptions{ID: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := KeyAgreeRecipient(ctx, newSoftKey(t), env.Cert(t, tt.user), tt.opts); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("got %v, want ErrUnsupported", err)
			}
		})
	}
	if IsKeyAgree(env.Cert(t, "bob")) || !IsKeyAgree(env.Cert(t, "frank")) || !IsKeyAgree(env.Cert(t, "peggy")) {
		t.Fatal("IsKeyAgree is wrong")
	}
}

// TestParseOpenSSLKeyAgree: what openssl writes for EC recipients (sha256 KDF, and its default
// sha1 KDF) parses, each KeyAgreeRecipientInfo names its certificate, and a subset keeps only the
// kept recipient able to decrypt.
func TestParseOpenSSLKeyAgree(t *testing.T) {
	env := softhsmtest.Setup(t)
	msg := []byte("Content-Type: text/plain\r\n\r\nfrom a client\r\n")
	for _, v := range []struct {
		name     string
		args     []string
		perRecip []string
	}{
		{"sha256 kdf aes256-cbc", []string{"-aes256"}, []string{"-keyopt", "ecdh_kdf_md:sha256"}},
		{"default kdf gcm keyid", []string{"-aes-256-gcm", "-keyid"}, nil},
		{"stream ber", []string{"-aes256", "-stream"}, nil},
	} {
		t.Run("ok "+v.name, func(t *testing.T) {
			t.Parallel()
			users := []string{"frank", "peggy", "bob"}
			if v.perRecip != nil {
				users = users[:2] // the -keyopt is for EC keys only
			}
			der := opensslEncrypt(t, env, msg, v.args, v.perRecip, users...)
			e, err := ParseEnveloped(der)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range []string{"frank", "peggy"} {
				var keep []*RecipientInfo
				for _, ri := range e.RecipientInfos {
					if ri.Matches(env.Cert(t, u)) {
						if ri.Kind != KeyAgree || len(ri.Keys) != 1 || ri.IDKey() == "" {
							t.Fatalf("%s: entry %v with %d keys", u, ri.Kind, len(ri.Keys))
						}
						keep = append(keep, ri)
					}
				}
				if len(keep) != 1 {
					t.Fatalf("%s: %d entries match", u, len(keep))
				}
				enc, err := e.WithRecipients(keep)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := opensslDecrypt(t, env, enc.Bytes(), u); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("%s: %q, %v", u, got, err)
				}
				other := map[string]string{"frank": "peggy", "peggy": "frank"}[u]
				if _, err := opensslDecrypt(t, env, enc.Bytes(), other); err == nil {
					t.Fatalf("%s decrypted %s's subset", other, u)
				}
			}
		})
	}
}

// TestAESKeyWrapVector checks the test side's RFC 3394 reference against RFC 3394 section 4.6.
func TestAESKeyWrapVector(t *testing.T) {
	kek := mustHex(t, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	key := mustHex(t, "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
	want := mustHex(t, "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
	got, err := aesKeyWrap(kek, key)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got %X, %v", got, err)
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseKeyAgreeSeveralKeys: a KeyAgreeRecipientInfo whose RecipientEncryptedKeys name two
// certificates keeps both keys but is attributed to neither; a malformed one is kept as it came,
// unattributed, rather than failing the envelope.
func TestParseKeyAgreeSeveralKeys(t *testing.T) {
	env := softhsmtest.Setup(t)
	ctx := context.Background()
	key := newSoftKey(t)
	a, err := KeyAgreeRecipient(ctx, key, env.Cert(t, "frank"), KeyAgreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := KeyAgreeRecipient(ctx, key, env.Cert(t, "peggy"), KeyAgreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fields := func(ri *RecipientInfo) []elem {
		e, _, err := readElem(ri.Raw, 0)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := e.children(0)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	fa, fb := fields(a), fields(b)
	reksA, _ := fa[3].children(1)
	reksB, _ := fb[3].children(1)
	tlv := func(tag byte, parts ...[]byte) []byte {
		n := 0
		for _, p := range parts {
			n += len(p)
		}
		out := appendHeader(nil, tag, n)
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	two := tlv(0xa1, fa[0].raw, fa[1].raw, fa[2].raw, tlv(tagSequence, reksA[0].raw, reksB[0].raw))
	bad := tlv(0xa1, fa[0].raw, fa[1].raw, fa[2].raw, tlv(tagSequence, tlv(tagSequence, []byte{0x05, 0x00})))
	ec, err := Encrypt(ctx, key, AES256CBC, bytes.NewReader([]byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := Envelope(ec, []*RecipientInfo{{Kind: KeyAgree, Version: 3, Raw: two}, {Kind: KeyAgree, Version: 3, Raw: bad}})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseEnveloped(enc.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, ri := range parsed.RecipientInfos {
		if ri.IDKey() != "" || ri.Matches(env.Cert(t, "frank")) || ri.Matches(env.Cert(t, "peggy")) {
			t.Fatalf("entry with %d keys is attributed", len(ri.Keys))
		}
		switch {
		case bytes.Equal(ri.Raw, two) && len(ri.Keys) != 2:
			t.Fatalf("%d keys, want 2", len(ri.Keys))
		case bytes.Equal(ri.Raw, bad) && len(ri.Keys) != 0:
			t.Fatalf("malformed entry has %d keys", len(ri.Keys))
		}
	}
}
