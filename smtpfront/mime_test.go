package smtpfront

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// nested returns a message whose multipart structure is depth levels deep.
func nested(depth int) string {
	var b strings.Builder
	b.WriteString("From: alice@example.test\r\nTo: bob@example.test\r\nMIME-Version: 1.0\r\n")
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nleaf\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

// nestedRFC822 nests messages in message/rfc822 parts.
func nestedRFC822(depth int) string {
	var b strings.Builder
	b.WriteString("From: alice@example.test\r\n")
	for i := 0; i < depth; i++ {
		b.WriteString("Content-Type: message/rfc822\r\n\r\nFrom: inner@example.test\r\n")
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nleaf\r\n")
	return b.String()
}

func manyParts(n int) string {
	var b strings.Builder
	b.WriteString("From: alice@example.test\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n")
	for i := 0; i < n; i++ {
		b.WriteString("--x\r\nContent-Type: text/plain\r\n\r\npart\r\n")
	}
	b.WriteString("--x--\r\n")
	return b.String()
}

func TestCheckStructure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  string
		want error
	}{
		{"ok plain", goodMsg, nil},
		{"ok nested at the limit", nested(20), nil},
		{"fail nested one past the limit", nested(21), errMIMEDepth},
		{"fail nested 200 deep", nested(200), errMIMEDepth},
		{"ok rfc822 nested at the limit", nestedRFC822(20), nil},
		{"fail rfc822 nested 100 deep", nestedRFC822(100), errMIMEDepth},
		{"ok parts at the limit", manyParts(1000), nil},
		{"fail parts past the limit", manyParts(1001), errMIMEParts},
		{"ok unterminated multipart", "From: a@b.c\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nno end\r\n", nil},
		{"ok multipart without boundary", "From: a@b.c\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n", nil},
		{"ok bad content type", "From: a@b.c\r\nContent-Type: ;;;===\r\n\r\nbody\r\n", nil},
		{"ok base64 rfc822 is opaque", "From: a@b.c\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n", nil},
		{"ok bad base64 leaf", "From: a@b.c\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%not base64\x00\r\n--x--\r\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkStructure(strings.NewReader(tt.msg), 20, 1000)
			if !errors.Is(err, tt.want) {
				t.Fatalf("checkStructure = %v, want %v", err, tt.want)
			}
			if tt.want != nil && !errors.Is(err, ErrMalformedMessage) {
				t.Fatalf("%v is not an ErrMalformedMessage", err)
			}
		})
	}
}

func TestStructureRefusedBeforeSpooling(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  string
		want string
	}{
		{"ok nested within the limit", nested(5), "250 2.0.0"},
		{"fail nested too deep", nested(200), "550 5.6.0"},
		{"fail too many parts", manyParts(60), "550 5.6.0"},
		{"fail too many header fields", strings.Repeat("X-A: b\r\n", 101) + goodMsg, "550 5.6.0"},
		{"ok header fields at the limit", strings.Repeat("X-A: b\r\n", 96) + goodMsg, "250 2.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spool := newFileSpool(t)
			ts := startServer(t, Options{MaxMIMEDepth: 10, MaxMIMEParts: 50, MaxHeaderFields: 100}, spool, newTestPolicy())
			rc := dialRaw(t, ts.addr)
			rc.cmd("EHLO client")
			rc.cmd("MAIL FROM:<alice@example.test>")
			rc.cmd("RCPT TO:<bob@example.test>")
			if got := rc.cmd("DATA"); !strings.HasPrefix(got, "354") {
				t.Fatalf("DATA = %q", got)
			}
			rc.send(tt.msg)
			if got := rc.cmd("."); !strings.HasPrefix(got, tt.want) {
				t.Fatalf("end of data = %q, want %q", got, tt.want)
			}
			// The connection goes on: the rest was drained, not read as commands.
			if got := rc.cmd("NOOP"); !strings.HasPrefix(got, "250") {
				t.Fatalf("NOOP after the message = %q", got)
			}
			n := len(spool.messages(t))
			if wantN := map[bool]int{true: 1, false: 0}[strings.HasPrefix(tt.want, "250")]; n != wantN {
				t.Fatalf("%d messages spooled, want %d", n, wantN)
			}
		})
	}
}

func FuzzMIMEStructure(f *testing.F) {
	for _, s := range []string{goodMsg, nested(3), nestedRFC822(3), manyParts(3),
		"From: a@b.c\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nno end\r\n"} {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile("../e2e/testdata/seed.eml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		err := checkStructure(strings.NewReader(string(msg)), 5, 20)
		if errors.Is(err, errMIMEDepth) || errors.Is(err, errMIMEParts) {
			return
		}
		// Whatever the checker says, the guard must agree and pass every
		// byte through unchanged.
		g := newMIMEGuard(strings.NewReader(string(msg)), mustHeader(msg), 5, 20)
		var out strings.Builder
		buf := make([]byte, 7)
		for {
			n, rerr := g.Read(buf)
			out.Write(buf[:n])
			if rerr != nil {
				break
			}
		}
		g.Close()
		if g.structureErr() == nil && out.String() != string(msg) {
			t.Fatalf("guard changed the bytes")
		}
	})
}

func mustHeader(msg []byte) textproto.Header {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	return h
}

// BenchmarkMIMEGuard is the structure check's cost on a 10 MB message with
// a 5 MB attachment, read as the spool reads it: compare with reading the
// same bytes without the guard (the "none" case).
func BenchmarkMIMEGuard(b *testing.B) {
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 2) + "\r\n"
	body := "--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		strings.Repeat(line, (10<<20)/len(line)) + "--x--\r\n"
	h := textproto.Header{}
	h.Set("Content-Type", "multipart/mixed; boundary=x")
	for _, guarded := range []bool{false, true} {
		name := "none"
		if guarded {
			name = "guard"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			buf := make([]byte, 32<<10)
			for i := 0; i < b.N; i++ {
				var r io.Reader = struct{ io.Reader }{strings.NewReader(body)}
				var g *mimeGuard
				if guarded {
					g = newMIMEGuard(r, h, 20, 1000)
					r = g
				}
				if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
					b.Fatal(err)
				}
				if g != nil {
					g.Close()
				}
			}
		})
	}
}

// TestMIMEGuardLeaf: a message the checker would not look into (a single part, or a
// transfer-encoded message/rfc822) is passed through with no checker behind it, unchanged;
// one it reads gets the checker.
func TestMIMEGuardLeaf(t *testing.T) {
	body := strings.Repeat("line of text\r\n", 1000)
	for _, c := range []struct {
		ct, cte string
		checked bool
	}{
		{"text/plain; charset=us-ascii", "", false},
		{"", "", false},
		{"application/pkcs7-mime; smime-type=enveloped-data", "base64", false},
		{"message/rfc822", "base64", false},
		{"multipart/mixed", "", false}, // no boundary
		{"text/plain; charset=\"", "", false},
		{"multipart/mixed; boundary=x", "", true},
		{"message/rfc822", "8bit", true},
		{"message/global", "", true},
	} {
		h := textproto.Header{}
		if c.ct != "" {
			h.Set("Content-Type", c.ct)
		}
		if c.cte != "" {
			h.Set("Content-Transfer-Encoding", c.cte)
		}
		g := newMIMEGuard(struct{ io.Reader }{strings.NewReader(body)}, h, 2, 2)
		if got := g.pw != nil; got != c.checked {
			t.Errorf("%q/%q: checker started %v, want %v", c.ct, c.cte, got, c.checked)
		}
		out, err := io.ReadAll(g)
		g.Close()
		if err != nil || string(out) != body || g.structureErr() != nil {
			t.Errorf("%q/%q: read %d bytes, err %v, structure %v; want the body unchanged", c.ct, c.cte, len(out), err, g.structureErr())
		}
	}
}

// BenchmarkMIMEGuardSmall is the guard on a 10 KB single-part message, the common one: it
// should cost what reading without it does.
func BenchmarkMIMEGuardSmall(b *testing.B) {
	body := strings.Repeat(strings.Repeat("x", 76)+"\r\n", (10<<10)/78)
	h := textproto.Header{}
	h.Set("Content-Type", "text/plain; charset=us-ascii")
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		g := newMIMEGuard(struct{ io.Reader }{strings.NewReader(body)}, h, 20, 1000)
		if _, err := io.CopyBuffer(io.Discard, g, buf); err != nil {
			b.Fatal(err)
		}
		g.Close()
	}
}
