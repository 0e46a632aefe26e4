package cms

import (
	"encoding/asn1"
	"fmt"
	"math/big"
)

// maxDepth bounds the nesting of constructed encodings the reader follows. The deepest legitimate
// path (ContentInfo, EnvelopedData, encryptedContentInfo, a constructed encryptedContent of
// constructed chunks) is under ten levels; the bound keeps hostile indefinite-length nesting from
// exhausting the stack.
const maxDepth = 32

// ASN.1 tag classes as they appear in the top two bits of an identifier octet.
const (
	classUniversal = 0
	classContext   = 2
)

// elem is one BER element. raw and body alias the input: parsing copies nothing.
type elem struct {
	class       byte
	tag         uint32
	constructed bool
	indefinite  bool
	raw         []byte // identifier, length, contents and, when indefinite, the end-of-contents octets
	body        []byte // contents octets only
}

func (e elem) is(class byte, tag uint32) bool { return e.class == class && e.tag == tag }

func (e elem) isUniversal(tag uint32) bool { return e.is(classUniversal, tag) }

func (e elem) describe() string {
	switch e.class {
	case classUniversal:
		return fmt.Sprintf("universal tag %d", e.tag)
	case classContext:
		return fmt.Sprintf("[%d]", e.tag)
	}
	return fmt.Sprintf("class %d tag %d", e.class, e.tag)
}

// readElem reads the element at the start of in, accepting BER: indefinite lengths on constructed
// encodings, non-minimal definite lengths and constructed strings.
func readElem(in []byte, depth int) (elem, []byte, error) {
	var e elem
	if depth > maxDepth {
		return e, nil, fmt.Errorf("%w: nesting deeper than %d", ErrMalformed, maxDepth)
	}
	if len(in) < 2 {
		return e, nil, fmt.Errorf("%w: truncated element", ErrMalformed)
	}
	id := in[0]
	e.class = id >> 6
	e.constructed = id&0x20 != 0
	e.tag = uint32(id & 0x1f)
	off := 1
	if e.tag == 0x1f {
		e.tag = 0
		for n := 0; ; n++ {
			if off >= len(in) || n == 4 {
				return e, nil, fmt.Errorf("%w: bad high tag number", ErrMalformed)
			}
			c := in[off]
			off++
			e.tag = e.tag<<7 | uint32(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
	}
	if off >= len(in) {
		return e, nil, fmt.Errorf("%w: truncated length", ErrMalformed)
	}
	l := in[off]
	off++
	switch {
	case l < 0x80:
		return e.definite(in, off, int(l))
	case l == 0x80:
		if !e.constructed {
			return e, nil, fmt.Errorf("%w: indefinite length on a primitive encoding", ErrMalformed)
		}
		e.indefinite = true
		rest := in[off:]
		for {
			if len(rest) >= 2 && rest[0] == 0 && rest[1] == 0 {
				e.body = in[off : len(in)-len(rest)]
				e.raw = in[:len(in)-len(rest)+2]
				return e, rest[2:], nil
			}
			var err error
			if _, rest, err = readElem(rest, depth+1); err != nil {
				return e, nil, err
			}
		}
	case l == 0xff:
		return e, nil, fmt.Errorf("%w: reserved length octet", ErrMalformed)
	default:
		n := int(l & 0x7f)
		if n > 4 || off+n > len(in) {
			return e, nil, fmt.Errorf("%w: bad length", ErrMalformed)
		}
		length := 0
		for _, c := range in[off : off+n] {
			length = length<<8 | int(c)
		}
		return e.definite(in, off+n, length)
	}
}

func (e elem) definite(in []byte, off, length int) (elem, []byte, error) {
	if length < 0 || length > len(in)-off {
		return e, nil, fmt.Errorf("%w: length %d exceeds the %d bytes left", ErrMalformed, length, len(in)-off)
	}
	e.body = in[off : off+length]
	e.raw = in[:off+length]
	return e, in[off+length:], nil
}

// children reads the elements inside a constructed element.
func (e elem) children(depth int) ([]elem, error) { return e.appendChildren(nil, depth) }

// appendChildren is children appending to out; callers pass a stack array's slice for the few
// fields they expect, which keeps per-RecipientInfo allocation (and so hostile-input memory) low.
func (e elem) appendChildren(out []elem, depth int) ([]elem, error) {
	if !e.constructed {
		return nil, fmt.Errorf("%w: %s is not constructed", ErrMalformed, e.describe())
	}
	for rest := e.body; len(rest) > 0; {
		var c elem
		var err error
		if c, rest, err = readElem(rest, depth+1); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// octets returns the value of an OCTET STRING in primitive or constructed form (BER lets
// encoders split a string into chunks; OpenSSL's -stream output does). The result aliases the
// input when the string is primitive and is at most as long as the input otherwise.
func (e elem) octets(depth int) ([]byte, error) {
	if !e.constructed {
		return e.body, nil
	}
	var out []byte
	var walk func(e elem, depth int) error
	walk = func(e elem, depth int) error {
		if !e.constructed {
			out = append(out, e.body...)
			return nil
		}
		cs, err := e.children(depth)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if !c.isUniversal(4) {
				return fmt.Errorf("%w: %s inside a constructed OCTET STRING", ErrMalformed, c.describe())
			}
			if err := walk(c, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(e, depth); err != nil {
		return nil, err
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

func (e elem) oid() (asn1.ObjectIdentifier, error) {
	if !e.isUniversal(6) || e.constructed {
		return nil, fmt.Errorf("%w: want OBJECT IDENTIFIER, got %s", ErrMalformed, e.describe())
	}
	var o asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(e.raw, &o); err != nil {
		return nil, fmt.Errorf("%w: bad OBJECT IDENTIFIER: %v", ErrMalformed, err)
	}
	return o, nil
}

// smallInt reads an INTEGER that must fit in 0..2^31-1 (versions and the like).
func (e elem) smallInt() (int, error) {
	if !e.isUniversal(2) || e.constructed {
		return 0, fmt.Errorf("%w: want INTEGER, got %s", ErrMalformed, e.describe())
	}
	if len(e.body) == 0 || len(e.body) > 4 || e.body[0]&0x80 != 0 {
		return 0, fmt.Errorf("%w: INTEGER out of range", ErrMalformed)
	}
	v := 0
	for _, c := range e.body {
		v = v<<8 | int(c)
	}
	return v, nil
}

// maxSerialLen is generous: RFC 5280 allows 20 octets, broken CAs emit a few more.
const maxSerialLen = 64

func (e elem) bigInt() (*big.Int, error) {
	if !e.isUniversal(2) || e.constructed {
		return nil, fmt.Errorf("%w: want INTEGER, got %s", ErrMalformed, e.describe())
	}
	if len(e.body) == 0 || len(e.body) > maxSerialLen {
		return nil, fmt.Errorf("%w: INTEGER of %d bytes", ErrMalformed, len(e.body))
	}
	v := new(big.Int).SetBytes(e.body)
	if e.body[0]&0x80 != 0 {
		// Two's complement: subtract 2^(8n).
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(e.body))))
	}
	return v, nil
}

// algorithm reads an AlgorithmIdentifier, keeping its parameters as raw bytes.
func (e elem) algorithm(depth int) (AlgorithmIdentifier, error) {
	var a AlgorithmIdentifier
	if !e.isUniversal(16) {
		return a, fmt.Errorf("%w: want AlgorithmIdentifier, got %s", ErrMalformed, e.describe())
	}
	var buf [2]elem
	cs, err := e.appendChildren(buf[:0], depth)
	if err != nil {
		return a, err
	}
	if len(cs) < 1 || len(cs) > 2 {
		return a, fmt.Errorf("%w: AlgorithmIdentifier with %d fields", ErrMalformed, len(cs))
	}
	if a.Algorithm, err = cs[0].oid(); err != nil {
		return a, err
	}
	if len(cs) == 2 {
		a.Parameters = cs[1].raw
	}
	return a, nil
}
