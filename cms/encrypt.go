package cms

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"appliance/cms/oid"
)

// ContentAlgorithm is a content-encryption algorithm.
type ContentAlgorithm int

const (
	// AES256CBC makes EnvelopedData (RFC 3565): readable by every S/MIME client.
	AES256CBC ContentAlgorithm = iota + 1
	// AES256GCM makes AuthEnvelopedData (RFC 5083, RFC 5084) with a 12-byte nonce and 16-byte tag.
	AES256GCM
)

func (a ContentAlgorithm) String() string {
	switch a {
	case AES256CBC:
		return "aes256-cbc"
	case AES256GCM:
		return "aes256-gcm"
	}
	return fmt.Sprintf("ContentAlgorithm(%d)", int(a))
}

const (
	cbcIVSize    = 16
	gcmNonceSize = 12
	gcmTagSize   = 16
)

// EncryptedContent is a message encrypted once, to be shared by every package built with
// [Envelope]. It must not be modified once in use: packages refer to Ciphertext, not copies.
type EncryptedContent struct {
	Algorithm ContentAlgorithm
	// IV is the CBC initialisation vector (16 bytes) or the GCM nonce (12 bytes).
	IV         []byte
	Ciphertext []byte
	// Tag is the GCM authentication tag (16 bytes), nil for CBC.
	Tag []byte
}

// Encrypt encrypts plaintext (the inner MIME entity, content type id-data) once with key. For GCM
// there are no authenticated attributes, so the additional data is empty (RFC 5083 section 2.1).
func Encrypt(ctx context.Context, key ContentKey, alg ContentAlgorithm, plaintext io.Reader) (*EncryptedContent, error) {
	ec := &EncryptedContent{Algorithm: alg}
	var room []byte
	if l, ok := plaintext.(interface{ Len() int }); ok {
		// One allocation for the whole ciphertext, padding included; made, not Grown: Grow
		// clears a large array in one call that nothing preempts (the collector spins waiting
		// on it), make clears it in preemptible chunks, and not at all when its pages are new.
		room = make([]byte, 0, l.Len()+cbcIVSize)
	}
	buf := bytes.NewBuffer(room)
	switch alg {
	case AES256CBC:
		ec.IV = make([]byte, cbcIVSize)
		if _, err := rand.Read(ec.IV); err != nil {
			return nil, fmt.Errorf("failed to make iv: %w", err)
		}
		if err := key.EncryptCBC(ctx, ec.IV, plaintext, buf); err != nil {
			return nil, fmt.Errorf("failed to encrypt content: %w", err)
		}
		if buf.Len() == 0 || buf.Len()%16 != 0 {
			return nil, fmt.Errorf("failed to encrypt content: cbc ciphertext of %d bytes", buf.Len())
		}
	case AES256GCM:
		ec.IV = make([]byte, gcmNonceSize)
		if _, err := rand.Read(ec.IV); err != nil {
			return nil, fmt.Errorf("failed to make nonce: %w", err)
		}
		tag, err := key.EncryptGCM(ctx, ec.IV, nil, plaintext, buf)
		if err != nil {
			return nil, fmt.Errorf("failed to encrypt content: %w", err)
		}
		if len(tag) != gcmTagSize {
			return nil, fmt.Errorf("failed to encrypt content: gcm tag of %d bytes", len(tag))
		}
		ec.Tag = tag
	default:
		return nil, fmt.Errorf("failed to encrypt content: %w: algorithm %v", ErrUnsupported, alg)
	}
	ec.Ciphertext = buf.Bytes()
	return ec, nil
}

// algorithmID is the DER contentEncryptionAlgorithm.
func (ec *EncryptedContent) algorithmID() ([]byte, error) {
	var b cryptobyte.Builder
	switch ec.Algorithm {
	case AES256CBC:
		if len(ec.IV) != cbcIVSize {
			return nil, fmt.Errorf("%w: cbc iv of %d bytes", ErrUnsupported, len(ec.IV))
		}
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid.AES256CBC)
			b.AddASN1OctetString(ec.IV)
		})
	case AES256GCM:
		if len(ec.IV) != gcmNonceSize || len(ec.Tag) != gcmTagSize {
			return nil, fmt.Errorf("%w: gcm nonce of %d bytes, tag of %d", ErrUnsupported, len(ec.IV), len(ec.Tag))
		}
		// GCMParameters: aes-ICVlen defaults to 12, so 16 must be spelled out.
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid.AES256GCM)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(ec.IV)
				b.AddASN1Int64(gcmTagSize)
			})
		})
	default:
		return nil, fmt.Errorf("%w: algorithm %v", ErrUnsupported, ec.Algorithm)
	}
	return b.Bytes()
}

// infoPrefix is the DER of [Auth]EncryptedContentInfo up to the ciphertext: the SEQUENCE header,
// contentType, contentEncryptionAlgorithm and the [0] IMPLICIT OCTET STRING header.
func (ec *EncryptedContent) infoPrefix() ([]byte, error) {
	alg, err := ec.algorithmID()
	if err != nil {
		return nil, err
	}
	var cb cryptobyte.Builder
	cb.AddASN1ObjectIdentifier(oid.Data)
	ctDER, err := cb.Bytes()
	if err != nil {
		return nil, err
	}
	n := len(ctDER) + len(alg) + tlvLen(len(ec.Ciphertext))
	p := make([]byte, 0, headerLen(n)+len(ctDER)+len(alg)+headerLen(len(ec.Ciphertext)))
	p = appendHeader(p, tagSequence, n)
	p = append(p, ctDER...)
	p = append(p, alg...)
	return appendHeader(p, tagContext0Pri, len(ec.Ciphertext)), nil
}
