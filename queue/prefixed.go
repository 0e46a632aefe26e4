package queue

import (
	"io"
	"sync"
)

// Prefixed is a package body with bytes of its own in front (the Received field the pipeline
// adds, DKIM-Signature fields). A body that shares a part with the message's other packages
// (SharedBody) keeps it shared: the prefix goes in front of its head.
type Prefixed struct {
	prefix  string
	body    io.WriterTo
	written func()
	once    *sync.Once
}

// NewPrefixed is body with prefix in front; written, when not nil, is called once, the first
// time the whole body (or its head, when the queue spools the shared part apart) was written.
func NewPrefixed(prefix string, body io.WriterTo, written func()) *Prefixed {
	return &Prefixed{prefix: prefix, body: body, written: written, once: new(sync.Once)}
}

func (p *Prefixed) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, p.prefix)
	if err != nil {
		return int64(n), err
	}
	m, err := p.body.WriteTo(w)
	if err == nil && p.written != nil {
		p.once.Do(p.written)
	}
	return int64(n) + m, err
}

// SplitBody is the prefix in front of the body's head, and the body's shared part.
func (p *Prefixed) SplitBody() (head, shared io.WriterTo) {
	sb, ok := p.body.(SharedBody)
	if !ok {
		return p, nil
	}
	h, sh := sb.SplitBody()
	if sh == nil {
		return p, nil
	}
	return &Prefixed{prefix: p.prefix, body: h, written: p.written, once: p.once}, sh
}

// Unwrap is the body without the prefix.
func (p *Prefixed) Unwrap() io.WriterTo { return p.body }
