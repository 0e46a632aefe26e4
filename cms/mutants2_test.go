package cms

// Tests that kill mutants scripts/mutation.sh found living in cms's files from recipient.go on
// (the cms-rest target; docs/testing.md, "Mutation testing").

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

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
