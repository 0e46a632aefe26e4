package seal

import (
	"io"

	"appliance/smime"
)

// SharedEncoding is the base64 of the encrypted content p shares with other packages (nil when
// p encodes its own).
func SharedEncoding(p *Package) *smime.SharedBase64 { return p.b64 }

// SetSharedEncoding gives p a shared base64 of its own, as Seal does.
func SetSharedEncoding(p *Package) *smime.SharedBase64 {
	_, tail := p.der.Shared()
	p.b64 = smime.NewSharedBase64(tail)
	return p.b64
}

// SignedEntityParts is what a signed entity of head, entity and tail streams (and the length
// its reader announces) and what it copies into one slice.
func SignedEntityParts(head, entity, tail []byte) (n int, streamed, copied []byte, err error) {
	e := &signedEntity{head: head, entity: entity, tail: tail}
	r := e.reader()
	streamed, err = io.ReadAll(r)
	return r.Len(), streamed, e.bytes(), err
}

var SameMemory = sameMemory
