package smime

import (
	"bufio"
	"bytes"
	"fmt"
	"mime"
	"strings"

	"appliance/cms"

	"github.com/emersion/go-message/textproto"
)

// Post is a message submitted to a list, taken apart.
type Post struct {
	Outer  textproto.Header
	Entity []byte // the submitted MIME entity: what a plain post is signed and encrypted as
	// Enveloped is set when the post (inside any signed layer) is encrypted.
	Enveloped *cms.Enveloped
	History   []cms.MLData // the mlExpansionHistory of the outermost signature, if any
}

// ReadPost finds the parts of a post that matter to a list: an outer signed layer (as an upstream
// list sends, multipart/signed or signed-data) with its expansion history, and whether what it
// carries is encrypted.
func ReadPost(msg []byte) (p *Post, retErr error) {
	outer, entity, err := Split(bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	p = &Post{Outer: outer, Entity: entity}
	inner := entity
	mt, params := listMediaType(entity)
	var sd *cms.Signed
	// rewrap rebuilds the post's entity around its outer signature with fewer certificates.
	var rewrap func(sig []byte) []byte
	var sigDER []byte
	switch {
	case mt == "multipart/signed":
		if s, err := ParseSigned(entity); err == nil {
			if sd, err = cms.ParseSigned(s.Signature); err == nil {
				inner = s.Content
				sigDER = s.Signature
				rewrap = func(sig []byte) []byte { return SignedEntity(s.Content, sig, s.MicAlg) }
			}
		}
	case isPKCS7Type(mt) && strings.EqualFold(params["smime-type"], TypeSignedData):
		if pkg, err := Parse(bytes.NewReader(entity), int64(len(entity))+1); err == nil {
			if sd, err = cms.ParseSigned(pkg.DER); err == nil && sd.Content != nil {
				inner = sd.Content
				sigDER = pkg.DER
				rewrap = opaqueSignedEntity
			}
		}
	}
	if sd != nil {
		for _, si := range sd.Signers {
			if si.SignedAttrs == nil {
				continue
			}
			h, found, err := cms.ParseExpansionHistory(si.SignedAttrs)
			if err != nil {
				return nil, err
			}
			if found {
				p.History = h
				break
			}
		}
	}
	defer func() {
		// A plain post goes to every member inside the list's encryption, its outer signature
		// included: that signature's certificates other than the signer's chain (which can
		// name anyone, a hidden recipient of the poster's included) are left out.
		if p == nil || p.Enveloped != nil || sigDER == nil {
			return
		}
		stripped, dropped, err := cms.KeepSignerCertificates(sigDER)
		if err != nil {
			p, retErr = nil, fmt.Errorf("failed to read the post's signature: %w", err)
			return
		}
		if dropped > 0 {
			p.Entity = rewrap(stripped)
		}
	}()
	if mt, params := listMediaType(inner); isPKCS7Type(mt) {
		st := strings.ToLower(params["smime-type"])
		if st == strings.ToLower(TypeEnvelopedData) || st == strings.ToLower(TypeAuthEnvelopedData) || st == "" {
			pkg, err := Parse(bytes.NewReader(inner), int64(len(inner))+1)
			if err != nil {
				return nil, fmt.Errorf("failed to read encrypted post: %w", err)
			}
			if p.Enveloped, err = cms.ParseEnveloped(pkg.DER); err != nil {
				if st == "" {
					return p, nil // not enveloped after all: a plain post to sign and encrypt
				}
				return nil, err
			}
		}
	}
	return p, nil
}

// opaqueSignedEntity is an application/pkcs7-mime signed-data entity of der.
func opaqueSignedEntity(der []byte) []byte {
	var b bytes.Buffer
	b.WriteString("Content-Type: application/pkcs7-mime; smime-type=signed-data; name=p7m\r\n" +
		"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=p7m\r\n\r\n")
	enc := NewBase64Writer(&b)
	enc.Write(der) // a bytes.Buffer does not fail
	enc.Close()
	return b.Bytes()
}

func listMediaType(entity []byte) (string, map[string]string) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(entity)))
	if err != nil {
		return "", nil
	}
	mt, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return strings.ToLower(mt), params
}

func isPKCS7Type(mt string) bool {
	return mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime"
}
