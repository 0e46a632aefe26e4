// Package smime is the MIME side of S/MIME (RFC 8551): it turns a submitted RFC 5322 message into
// the entity that gets signed and encrypted, and wraps DER made elsewhere (package cms) back into
// mail. It does no cryptography and never sees a key.
//
// # Shape of what it writes
//
// Sign-then-encrypt, as RFC 8551 section 3.5 recommends:
//
//	outer header (From, To, Subject, ... stays in clear)
//	Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m
//	  └─ CMS EnvelopedData or AuthEnvelopedData, base64 at 76 columns, whose content is
//	     Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256
//	       ├─ the inner entity: the message's Content-* fields and body, canonical CRLF
//	       └─ application/pkcs7-signature (smime.p7s): detached SignedData over that entity
//
// A recipient without a certificate may get the signed-only form: the outer header over the
// multipart/signed entity.
//
// # Why the split is where it is
//
// Every Content-* field describes the body, so all of them move inside the protected entity: one
// left outside would claim to describe the application/pkcs7-mime part. Everything else stays in
// the outer header, byte for byte as submitted (go-message keeps raw fields), so 8-bit and
// encoded-word subjects survive untouched. Deciding which outer fields a recipient may see (Bcc,
// Resent-*, Received) is package split's job, not this one's.
//
// The signature covers the entity bytes exactly as [SignedEntity] places them between the
// boundaries, so the entity is canonicalized (CRLF line endings) before anything signs it: a
// relay that rewrites line endings would otherwise break every signature.
//
// A signed-only package travels in clear through relays that may re-encode 8-bit bodies for a
// next hop without 8BITMIME, which breaks the signature; [Encode7bit] re-encodes such parts
// (quoted-printable or base64) before signing. Inside encryption nobody can touch the bytes, so
// it is not needed there.
//
// # Reading
//
// [Parse] reads the other way for inspection and for splitting client-encrypted mail: it accepts
// application/pkcs7-mime and the older application/x-pkcs7-mime, folded headers, LF line endings
// and base64 with odd line lengths, reads at most a caller-given number of bytes, and reports a
// missing or unknown smime-type instead of guessing, so the caller can decide from the DER.
package smime
