// Package oid holds the object identifiers package cms reads and writes, named as in the RFCs that
// define them (RFC 5652, 5083, 5084, 4055, 5754, 5758, 8551, 3565).
package oid

import "encoding/asn1"

// Content types (RFC 5652 section 4-6, RFC 5083).
var (
	Data                  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	SignedData            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	EnvelopedData         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	AuthEnvelopedData     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23}
	AttrContentType       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	AttrMessageDigest     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	AttrSigningTime       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	AttrSMIMECapabilities = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}
	// AttrEncrypKeyPref is id-aa-encrypKeyPref (RFC 8551 section 2.5.3).
	AttrEncrypKeyPref = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 11}
	// AttrMLExpansionHistory is id-aa-mlExpandHistory (RFC 2634 section 4.2.1).
	AttrMLExpansionHistory = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 3}
)

// Public-key algorithms (RFC 8017, RFC 4055, RFC 5758).
var (
	RSAEncryption   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	RSAESOAEP       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	MGF1            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	PSpecified      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 9}
	RSASSAPSS       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	SHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	SHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	SHA512WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	ECPublicKey     = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	ECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	ECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	ECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
)

// Digest algorithms (RFC 5754).
var (
	SHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	SHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	SHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	SHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// Content-encryption algorithms (RFC 3565, RFC 5084).
var (
	AES128CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	AES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	AES128GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}
	AES256GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
)

// Key agreement (RFC 5753, RFC 8418-style parameters as OpenSSL writes them) and AES key wrap
// (RFC 3394, RFC 3565).
var (
	DHSinglePassStdDHSHA256KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1}
	AES128Wrap                 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}
	AES192Wrap                 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 25}
	AES256Wrap                 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}

	// The other X9.63 KDF hashes of RFC 5753 section 7.1.4 (OpenSSL's -keyopt ecdh_kdf_md; its
	// default is SHA-1), and the cofactor schemes (-keyopt ecdh_cofactor_mode:1), which on
	// P-256 and P-384 (cofactor 1) agree on the same secret as the standard ones.
	DHSinglePassStdDHSHA1KDF        = asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 2}
	DHSinglePassStdDHSHA224KDF      = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 0}
	DHSinglePassStdDHSHA384KDF      = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 2}
	DHSinglePassStdDHSHA512KDF      = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 3}
	DHSinglePassCofactorDHSHA1KDF   = asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 3}
	DHSinglePassCofactorDHSHA224KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 14, 0}
	DHSinglePassCofactorDHSHA256KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 14, 1}
	DHSinglePassCofactorDHSHA384KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 14, 2}
	DHSinglePassCofactorDHSHA512KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 14, 3}

	// Named curves (RFC 5480).
	P256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	P384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
)
