package queue_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"appliance/queue"
)

type sharedBody struct{ head, shared string }

func (s sharedBody) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, s.head+s.shared)
	return int64(n), err
}

func (s sharedBody) SplitBody() (head, shared io.WriterTo) {
	return strings.NewReader(s.head), strings.NewReader(s.shared)
}

func TestPrefixed(t *testing.T) {
	calls := 0
	p := queue.NewPrefixed("Received: x\r\n", sharedBody{"H\r\n\r\n", "SHARED"}, func() { calls++ })
	var whole bytes.Buffer
	if _, err := p.WriteTo(&whole); err != nil || whole.String() != "Received: x\r\nH\r\n\r\nSHARED" {
		t.Fatalf("WriteTo = %q, %v", whole.String(), err)
	}
	head, shared := p.SplitBody()
	if shared == nil {
		t.Fatal("the body's shared part was lost behind the prefix")
	}
	var h, s bytes.Buffer
	head.WriteTo(&h)
	shared.WriteTo(&s)
	if h.String()+s.String() != whole.String() || s.String() != "SHARED" {
		t.Fatalf("head %q + shared %q, want %q with the shared part alone", h.String(), s.String(), whole.String())
	}
	if calls != 1 {
		t.Fatalf("written called %d times for one package written twice, want once", calls)
	}
	if u := p.Unwrap(); u == nil {
		t.Fatal("Unwrap = nil")
	}
	plain := queue.NewPrefixed("X: y\r\n", strings.NewReader("B"), nil)
	if hd, sh := plain.SplitBody(); sh != nil || hd != io.WriterTo(plain) {
		t.Fatalf("a body that shares nothing split into %v, %v", hd, sh)
	}
}
