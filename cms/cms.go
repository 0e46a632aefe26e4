// Package cms builds and parses the Cryptographic Message Syntax for an S/MIME relay whose keys
// live elsewhere (an HSM): the process never holds a content key or a private key, it asks a
// [ContentKey] to encrypt and wrap and a [crypto.Signer] to sign.
//
// # Design
//
// One message is encrypted once per content algorithm and then sent as many packages, each with
// its own set of RecipientInfos (so a Bcc recipient is never named to anyone else). [Encrypt]
// produces an [EncryptedContent]; [KeyTransRecipient] wraps the key for one RSA certificate and
// [KeyAgreeRecipient] for one EC certificate (ECDH, the wrap done by the key's holder);
// [Envelope] assembles a ContentInfo from the shared content and one package's RecipientInfos.
// Assembly costs O(recipients): the DER lengths are computed, and the [Encoded] result refers to
// the shared ciphertext instead of copying it. [ParseEnveloped] reads what clients send (DER or
// BER, indefinite lengths, chunked strings) and [Enveloped.WithRecipients] re-encodes it with a
// subset of its RecipientInfos, every other byte reused as it came. [Sign] makes SignedData;
// [ParseSigned] and [Signed.Verify] read it back.
//
// Parsing is safe on hostile input: it never panics, allocates at most about the input size, bounds
// nesting depth and caps the number of RecipientInfos ([DefaultMaxRecipientInfos]).
//
// # Standards
//
//   - RFC 5652 CMS: ContentInfo, SignedData, EnvelopedData, KeyTransRecipientInfo (v0 and v2)
//   - RFC 5083 AuthEnvelopedData, RFC 5084 AES-GCM (12-byte nonce, 16-byte ICV)
//   - RFC 3565 AES-CBC content encryption
//   - RFC 5753 KeyAgreeRecipientInfo: ephemeral-static ECDH on P-256 and P-384 with
//     dhSinglePass-stdDH-sha256kdf-scheme (X9.63 KDF over SHA-256, ECC-CMS-SharedInfo) and
//     id-aes256-wrap, the parameters OpenSSL writes with ecdh_kdf_md:sha256
//   - RFC 4055 RSAES-OAEP and RSASSA-PSS parameters, used as RFC 8017 specifies
//   - RFC 5754 SHA-2 digest identifiers, RFC 5758 ECDSA signature identifiers
//   - RFC 8551 S/MIME attributes: SMIMECapabilities, SMIMEEncryptionKeyPreference
package cms

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"io"
)

// ContentKey is a content-encryption key (AES-256) held elsewhere, normally a session object on an
// HSM; the process never sees its value. Safe for concurrent use.
type ContentKey interface {
	// EncryptCBC encrypts all of plaintext with AES-256-CBC and PKCS#7 padding under the key and the
	// 16-byte iv, writing the ciphertext to ciphertext. It streams: memory does not grow with size.
	EncryptCBC(ctx context.Context, iv []byte, plaintext io.Reader, ciphertext io.Writer) error
	// EncryptGCM encrypts with AES-256-GCM, the 12-byte nonce and aad (may be empty), writes the
	// ciphertext WITHOUT the tag to ciphertext and returns the 16-byte tag.
	EncryptGCM(ctx context.Context, nonce, aad []byte, plaintext io.Reader, ciphertext io.Writer) (tag []byte, err error)
	// WrapRSA encrypts the key's value for pub: RSAES-PKCS1-v1_5 when oaepHash is 0, otherwise
	// RSAES-OAEP with oaepHash for the label hash and MGF1, and an empty label.
	WrapRSA(ctx context.Context, pub *rsa.PublicKey, oaepHash crypto.Hash) ([]byte, error)
	// WrapAES wraps the key's value with AES key wrap (RFC 3394, no padding) under kek, the
	// 16- or 32-byte key-encryption key an ECDH key agreement derived for one recipient
	// ([KeyAgreeRecipient]). The content key never leaves where it is held in clear; kek is
	// only used for this one wrap.
	WrapAES(ctx context.Context, kek []byte) ([]byte, error)
}

var (
	// ErrMalformed reports input that is not valid BER/DER for the structure expected.
	ErrMalformed = errors.New("malformed cms")
	// ErrUnsupported reports a valid structure this package does not handle (a content type,
	// algorithm or version).
	ErrUnsupported = errors.New("unsupported cms")
	// ErrTooManyRecipients reports more RecipientInfos than the parser's limit.
	ErrTooManyRecipients = errors.New("too many recipientinfos")
	// ErrNoSubjectKeyID reports a certificate without the subjectKeyIdentifier extension where a
	// v2 KeyTransRecipientInfo needs it.
	ErrNoSubjectKeyID = errors.New("certificate has no subject key identifier")
	// ErrVerify reports a signature, digest or chain that does not verify.
	ErrVerify = errors.New("cms verification failed")
)

// AlgorithmIdentifier is an X.509 AlgorithmIdentifier with its parameters kept as raw DER (nil
// when absent), so that what a client sent can be passed on unchanged.
type AlgorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters []byte
}
