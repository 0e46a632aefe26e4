package delivery

import (
	"bufio"
	"bytes"
	"net/textproto"
	"strings"
	"testing"
)

// viaStuffer is what transaction sends: the stuffed body in chunks of n bytes, then the held
// tail through net/textproto's DotWriter (go-smtp's writer), closed; or, pipelining, dataEnd.
func viaStuffer(body []byte, n int, end bool) []byte {
	var out bytes.Buffer
	d := newDotStuffer(&out)
	for len(body) > 0 {
		k := min(n, len(body))
		d.Write(body[:k])
		body = body[k:]
	}
	d.Flush()
	if end {
		out.Write(dataEnd(d.Held()))
		return out.Bytes()
	}
	bw := bufio.NewWriter(&out)
	w := textproto.NewWriter(bw).DotWriter()
	w.Write(d.Held())
	w.Close()
	return out.Bytes()
}

// viaDotWriter is what go-smtp alone sends.
func viaDotWriter(body []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	w := textproto.NewWriter(bw).DotWriter()
	w.Write(body)
	w.Close()
	return out.Bytes()
}

func TestDotStuffer(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"ok empty", "", "\r\n.\r\n"},
		{"ok one line", "a\r\n", "a\r\n.\r\n"},
		{"ok no final line end", "a\r\nb", "a\r\nb\r\n.\r\n"},
		{"ok leading dot", ".a\r\n", "..a\r\n.\r\n"},
		{"ok dot lines", "a\r\n.\r\n..b\r\n", "a\r\n..\r\n...b\r\n.\r\n"},
		{"ok bare lf", "a\nb\n.c\n", "a\r\nb\r\n..c\r\n.\r\n"},
		{"ok bare cr is data", "a\rb\r\n", "a\rb\r\n.\r\n"},
		{"ok final bare cr", "a\r", "a\r\n.\r\n"},
		{"ok dot not at line start", "a.b\r\n", "a.b\r\n.\r\n"},
		{"ok blank lines", "\r\n\r\n", "\r\n\r\n.\r\n"},
		{"ok clean lines then a dot and a bare lf", "ab\r\ncd\r\n.e\r\nf\ng\r\n\n.\r\n", "ab\r\ncd\r\n..e\r\nf\r\ng\r\n\r\n..\r\n.\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []int{1, 2, 3, 64 << 10} {
				for _, end := range []bool{false, true} {
					if got := string(viaStuffer([]byte(tc.body), n, end)); got != tc.want {
						t.Errorf("chunks of %d, End %v: got %q, want %q", n, end, got, tc.want)
					}
				}
			}
			if got := string(viaDotWriter([]byte(tc.body))); got != tc.want {
				t.Errorf("DotWriter itself gives %q; the table is wrong", got)
			}
		})
	}
}

// FuzzDotStuffer checks that the stuffer, however the body is cut into writes, sends what
// go-smtp's DotWriter would. "\r\r" is left out: DotWriter forgets the first '\r' of it and
// then doubles the line end's, which the stuffer does not copy.
func FuzzDotStuffer(f *testing.F) {
	for _, s := range []string{"", "a\r\n", ".\r\n", "a\nb", "\r", "..\r\n.\n\r.", strings.Repeat("x.\r\n.", 40)} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, body []byte, n uint8) {
		if bytes.Contains(body, []byte("\r\r")) {
			return
		}
		want := viaDotWriter(body)
		for _, end := range []bool{false, true} {
			if got := viaStuffer(body, int(n)+1, end); !bytes.Equal(got, want) {
				t.Fatalf("body %q in chunks of %d, End %v: got %q, want %q", body, int(n)+1, end, got, want)
			}
		}
	})
}

func BenchmarkDotStuff(b *testing.B) {
	line := strings.Repeat("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ABCDEFGHIJKL", 1) + "\r\n"
	body := []byte(strings.Repeat(line, (1<<20)/len(line)))
	b.Run("stuffer", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			d := newDotStuffer(discard{})
			d.Write(body)
			d.Flush()
		}
	})
	b.Run("textproto", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			w := textproto.NewWriter(bufio.NewWriter(discard{})).DotWriter()
			w.Write(body)
			w.Close()
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
