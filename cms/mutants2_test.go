package cms

// Tests that kill mutants scripts/mutation.sh found living in cms's files from recipient.go on
// (the cms-rest target; docs/testing.md, "Mutation testing").

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"appliance/cms/oid"
	"appliance/internal/softhsmtest"
)

// TestKeyAgreementWrappedKeyBounds: a KeyAgree entry's wrapped key is an AES key of 16, 24 or
// 32 bytes plus 8, so 24 and 40 bytes are read and 16 and 48 refused, as is a length not a
// multiple of 8.
func TestKeyAgreementWrappedKeyBounds(t *testing.T) {
	env := softhsmtest.Setup(t)
	frank := env.Cert(t, "frank")
	ri, err := KeyAgreeRecipient(context.Background(), newSoftKey(t), frank, KeyAgreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for n, ok := range map[int]bool{16: false, 24: true, 32: true, 36: false, 40: true, 48: false} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := *ri
			r.Keys = []KeyAgreeKey{ri.Keys[0]}
			r.Keys[0].EncryptedKey = bytes.Repeat([]byte{1}, n)
			ka, err := r.KeyAgreement(frank)
			if ok && (err != nil || len(ka.EncryptedKey) != n) {
				t.Fatalf("%d-byte wrapped key: %v", n, err)
			}
			if !ok && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%d-byte wrapped key: %v, want %v", n, err, ErrMalformed)
			}
		})
	}
}

// TestKeyAgreementFieldCount: a KeyAgreeRecipientInfo has 4 fields, or 5 with a ukm, which goes
// into the KDF's SharedInfo as entityUInfo; 3 or 6 fields are refused.
func TestKeyAgreementFieldCount(t *testing.T) {
	env := softhsmtest.Setup(t)
	frank := env.Cert(t, "frank")
	ri, err := KeyAgreeRecipient(context.Background(), newSoftKey(t), frank, KeyAgreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := readElem(ri.Raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := e.children(1)
	if err != nil || len(cs) != 4 {
		t.Fatalf("%d fields, %v", len(cs), err)
	}
	ukm := []byte("user keying material")
	ukmField := append([]byte{0xa1, byte(2 + len(ukm)), 0x04, byte(len(ukm))}, ukm...)
	with := func(fields ...[]byte) *RecipientInfo {
		body := bytes.Join(fields, nil)
		r := *ri
		r.Raw = append(appendHeader(nil, 0xa1, len(body)), body...)
		return &r
	}
	ka, err := with(cs[0].raw, cs[1].raw, ukmField, cs[2].raw, cs[3].raw).KeyAgreement(frank)
	if err != nil {
		t.Fatalf("with a ukm: %v", err)
	}
	want, err := sharedInfo(AlgorithmIdentifier{Algorithm: oid.AES256Wrap}, ukm, 32)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ka.SharedInfo, want) || !bytes.Contains(ka.SharedInfo, ukm) {
		t.Errorf("with a ukm: SharedInfo %x, KEK %d bytes", ka.SharedInfo, ka.KEKSize)
	}
	if ka, err := with(cs[0].raw, cs[1].raw, cs[2].raw, cs[3].raw).KeyAgreement(frank); err != nil || bytes.Contains(ka.SharedInfo, ukm) {
		t.Errorf("without a ukm: %v", err)
	}
	for name, r := range map[string]*RecipientInfo{
		"3 fields": with(cs[0].raw, cs[1].raw, cs[3].raw),
		"6 fields": with(cs[0].raw, cs[1].raw, ukmField, cs[2].raw, cs[3].raw, []byte{0x05, 0x00}),
	} {
		if _, err := r.KeyAgreement(frank); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want %v", name, err, ErrMalformed)
		}
	}
}

// TestAESUnwrapSizes: the smallest wrap, a 16-byte key in 24 bytes, unwraps; 16 bytes (one
// block after the check value) and a length not a multiple of 8 are refused as malformed.
func TestAESUnwrapSizes(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, 16)
	key := []byte("0123456789abcdef")
	w, err := aesKeyWrap(kek, key)
	if err != nil || len(w) != 24 {
		t.Fatalf("wrap: %d bytes, %v", len(w), err)
	}
	if got, err := aesUnwrap(kek, w); err != nil || !bytes.Equal(got, key) {
		t.Errorf("24-byte wrap: %q, %v", got, err)
	}
	for _, n := range []int{16, 20, 0} {
		if _, err := aesUnwrap(kek, w[:n]); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d-byte wrap: %v, want %v", n, err, ErrMalformed)
		}
	}
}
