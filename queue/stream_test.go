package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// streamedTail is a shared part that can also stream itself (StreamTo), as smime.Base64Tail
// does; its WriteTo fails, so a spool that used WriteTo for it would fail the commit.
type streamedTail struct {
	b       []byte
	streams int
}

func (t *streamedTail) WriteTo(io.Writer) (int64, error) {
	return 0, errors.New("WriteTo used where StreamTo would do")
}

func (t *streamedTail) StreamTo(w io.Writer) (int64, error) {
	t.streams++
	var n int64
	for b := t.b; len(b) > 0; { // in pieces, as an encoder writes its blocks
		k, err := w.Write(b[:min(len(b), 1000)])
		n += int64(k)
		if err != nil {
			return n, err
		}
		b = b[k:]
	}
	return n, nil
}

type streamedBody struct {
	head string
	tail *streamedTail
}

func (s *streamedBody) WriteTo(w io.Writer) (int64, error) {
	return 0, errors.New("a package that splits is written as its head and shared part")
}

func (s *streamedBody) SplitBody() (head, shared io.WriterTo) {
	return strings.NewReader(s.head), s.tail
}

// TestSharedPartStreamed: the spool writes a shared part that offers StreamTo through it, once
// for all the packages that share it, checks it for wire form as it streams, and each package
// reads back whole.
func TestSharedPartStreamed(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail string
		wire bool
	}{
		{"ok wire form", strings.Repeat("QUJD\r\n", 3000), true},
		{"ok a dot line", strings.Repeat("QUJD\r\n", 500) + ".x\r\n" + strings.Repeat("QUJD\r\n", 500), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := openSpool(t.TempDir(), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.unlock()
			env := Envelope{MailFrom: "a@example.test", RcptTo: []string{"b@example.test"}}
			id := newID(time.Now())
			fs, err := sp.writeMessage(context.Background(), id, env, strings.NewReader("body\r\n"), 0)
			if err != nil {
				t.Fatal(err)
			}
			rec := &record{ID: id, Phase: phaseSealed, Envelope: env, file: fs}
			tail := &streamedTail{b: []byte(tc.tail)}
			heads := []string{"To: one\r\n\r\n", "To: two\r\n\r\n", "To: three\r\n\r\n"}
			for i, h := range heads {
				p := &pkgRecord{N: i, MailFrom: env.MailFrom, Rcpts: []*rcptRecord{{Addr: env.RcptTo[0], State: rcptPending}}}
				body := &streamedBody{head: h, tail: tail}
				hd, sh := body.SplitBody()
				rec.Packages = append(rec.Packages, p)
				rec.unwritten = append(rec.unwritten, newPackage{rec: p, body: hd, shared: sh})
			}
			if err := sp.commit(rec); err != nil {
				t.Fatal(err)
			}
			if tail.streams != 1 {
				t.Errorf("shared part streamed %d times, want once", tail.streams)
			}
			data, err := os.ReadFile(sp.msgPath(id))
			if err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(data, tail.b); n != 1 {
				t.Errorf("shared part in the file %d times, want once", n)
			}
			for i, p := range rec.Packages {
				if p.Shared == nil || p.Shared.Wire != tc.wire {
					t.Fatalf("package %d: shared segment %+v, want wire %v", i, p.Shared, tc.wire)
				}
				f, r, err := sp.openPackage(rec, p)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				f.Close()
				if want := heads[i] + tc.tail; err != nil || string(got) != want {
					t.Errorf("package %d reads back %d bytes (%v), want %d", i, len(got), err, len(want))
				}
			}
		})
	}
}
