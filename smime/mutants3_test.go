package smime

// Tests that kill mutants scripts/mutation.sh found living in smime's files other than
// classify.go, normalize.go and sevenbit.go (the smime-head target; docs/testing.md, "Mutation
// testing").

import (
	"bytes"
	"errors"
	"testing"
)

// TestEnvelopeHeadOriginatorInfo: an EnvelopedData with an originatorInfo keeps it in the head
// envelopeHead returns; one that runs past the input is reported short.
func TestEnvelopeHeadOriginatorInfo(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	envOID := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}
	dataOID := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01}
	aesOID := []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a}
	version := []byte{0x02, 0x01, 0x02}
	orig := m2TLV(0xa0, m2TLV(0xa1, m2TLV(0x30, []byte{0x02, 0x01, 0x07}))) // crls [1], one "CRL"
	ris := m2TLV(0x31, m2TLV(0x30, []byte{0x02, 0x01, 0x00}))
	alg := m2TLV(0x30, cat(aesOID, m2TLV(0x04, bytes.Repeat([]byte{1}, 16))))
	eci := m2TLV(0x30, cat(dataOID, alg, m2TLV(0x80, bytes.Repeat([]byte{2}, 32))))
	der := m2TLV(0x30, cat(envOID, m2TLV(0xa0, m2TLV(0x30, cat(version, orig, ris, eci)))))
	want := m2TLV(0x30, cat(envOID, m2TLV(0xa0, m2TLV(0x30, cat(version, orig, ris, m2TLV(0x30, cat(dataOID, alg)))))))
	head, err := envelopeHead(der, false)
	if err != nil || !bytes.Equal(head, want) {
		t.Fatalf("with originatorInfo: % x, %v; want % x", head, err, want)
	}
	// The originatorInfo's length runs past the input.
	cut := cat(m2TLV(0x30, cat(envOID, m2TLV(0xa0, m2TLV(0x30, cat(version, []byte{0xa0, 0x7f}))))))
	if head, err := envelopeHead(cut, false); !errors.Is(err, errShort) {
		t.Errorf("originatorInfo past the end: % x, %v; want %v", head, err, errShort)
	}
}
