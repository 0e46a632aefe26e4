package queue

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// inWireForm is what wireCheck decides, said the plain way: b is lines each ended by CRLF,
// with no other CR or LF, none begun by '.'.
func inWireForm(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if len(l) == 0 {
			continue // after the last LF
		}
		if !bytes.HasSuffix(l, []byte("\r\n")) || bytes.ContainsAny(l[:len(l)-2], "\r\n") || l[0] == '.' {
			return false
		}
	}
	return true
}

// wireVerdict runs b through a wireCheck in writes of the given size.
func wireVerdict(b []byte, size int) bool {
	c := &wireCheck{w: io.Discard}
	for len(b) > 0 {
		k := min(size, len(b))
		c.Write(b[:k])
		b = b[k:]
	}
	return c.ok()
}

// TestWireCheck: the spool's check of a shared part agrees with inWireForm on parts clean and
// not, whichever way the writes cut them (a line's '.', CR or LF at the end or start of a
// write).
func TestWireCheck(t *testing.T) {
	b64 := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n", 3)
	tests := []struct {
		name string
		part string
		ok   bool
	}{
		{"base64 lines", b64, true},
		{"one line", "A\r\n", true},
		{"empty lines", "\r\n\r\n", true},
		{"dots inside lines", "a.b\r\nc..\r\n", true},
		{"empty", "", false},
		{"line end alone", "\r\n", true},
		{"no last line end", b64 + "QUJD", false},
		{"last line ended by CR only", b64 + "QUJD\r", false},
		{"first line begun by a dot", "." + b64, false},
		{"a middle line begun by a dot", b64 + ".QUJD\r\n" + b64, false},
		{"the last line a dot", b64 + ".\r\n", false},
		{"a dot alone first", ".\r\n" + b64, false},
		{"bare LF", b64 + "QUJD\n" + b64, false},
		{"bare LF first", "\n" + b64, false},
		{"bare LF last", b64 + "\n", false},
		{"bare CR inside a line", b64 + "QU\rJD\r\n", false},
		{"CR CR LF", b64 + "QUJD\r\r\n", false},
		{"bare CR first", "\r" + b64, false},
		{"LF CR", "A\n\r", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			part := []byte(tt.part)
			if got := inWireForm(part); got != tt.ok {
				t.Fatalf("inWireForm = %v, the table says %v", got, tt.ok)
			}
			for size := 1; size <= len(part)+1; size++ {
				if got := wireVerdict(part, size); got != tt.ok {
					t.Fatalf("written %d bytes at a time: %v, want %v", size, got, tt.ok)
				}
			}
		})
	}
	// Every part of up to 6 bytes over the bytes that matter.
	alphabet := []byte{'A', '.', '\r', '\n'}
	var part []byte
	var walk func(n int)
	walk = func(n int) {
		want := inWireForm(part)
		for size := 1; size <= max(len(part), 1); size++ {
			if got := wireVerdict(part, size); got != want {
				t.Fatalf("%q written %d bytes at a time: %v, want %v", part, size, got, want)
			}
		}
		if n == 0 {
			return
		}
		for _, b := range alphabet {
			part = append(part, b)
			walk(n - 1)
			part = part[:len(part)-1]
		}
	}
	walk(6)
}

// TestSharedPartWire: a shared part in wire form is recorded so, in the spool file's state
// (it survives a reload), and delivery is offered it as a WireTail of the spool file whose
// bytes, after the head, are the package; a shared part with a line begun by '.' is not, nor
// is one without a last line end, and their packages are read whole.
func TestSharedPartWire(t *testing.T) {
	sp := newTestSpool(t)
	rec := spoolMessage(t, sp, "body\r\n")
	b64 := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n", 100)
	tails := []struct {
		tail *sharedTail
		wire bool
	}{
		{&sharedTail{b: []byte(b64)}, true},
		{&sharedTail{b: []byte(b64 + ".dot\r\n" + b64)}, false},
		{&sharedTail{b: []byte(b64 + "QUJD")}, false},
		{&sharedTail{b: []byte(b64 + "QUJD\n")}, false},
	}
	var bodies []*sharedBody
	for i, tt := range tails {
		for j := range 2 {
			bodies = append(bodies, &sharedBody{head: strings.Repeat("X-Head: x\r\n", i+j) + "\r\n", tail: tt.tail, split: true})
		}
	}
	addShared(rec, bodies)
	if err := sp.commit(rec); err != nil {
		t.Fatal(err)
	}
	reloaded, _, err := sp.load(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*record{rec, reloaded} {
		for i, p := range r.Packages {
			want := tails[i/2].wire
			if p.Shared == nil || p.Shared.Wire != want {
				t.Fatalf("package %d: shared part %+v, want wire %v", i, p.Shared, want)
			}
			f, body, err := sp.openPackage(r, p)
			if err != nil {
				t.Fatal(err)
			}
			wb, ok := body.(WireBody)
			if !ok {
				t.Fatalf("package %d: body %T is no WireBody", i, body)
			}
			head, tail, ok := wb.WireTail()
			if ok != want {
				t.Fatalf("package %d: WireTail ok = %v, want %v", i, ok, want)
			}
			var got []byte
			if ok {
				h, err := io.ReadAll(head)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tail.File.Seek(tail.Off, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				tb, err := io.ReadAll(io.LimitReader(tail.File, tail.Len))
				if err != nil {
					t.Fatal(err)
				}
				if !inWireForm(tb) {
					t.Fatalf("package %d: tail offered in wire form is not: %q", i, tb)
				}
				got = append(h, tb...)
			} else if got, err = io.ReadAll(body); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if !bytes.Equal(got, bodies[i].bytes()) {
				t.Fatalf("package %d: %d bytes, want %d", i, len(got), len(bodies[i].bytes()))
			}
		}
	}
}
