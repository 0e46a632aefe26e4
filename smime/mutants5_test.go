package smime

// Tests that kill mutants scripts/mutation.sh found living in classify.go, classify_head.go and
// sevenbit.go (the smime-classify target; docs/testing.md, "Mutation testing").

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestEncode7bitNestingExact: Encode7bit follows parts maxNesting levels below the top entity,
// through message/rfc822 bodies and through multipart parts alike, and refuses one level more.
func TestEncode7bitNestingExact(t *testing.T) {
	const leaf = "Content-Type: text/plain; charset=utf-8\r\n\r\nÄ\r\n"
	const leafQP = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=84\r\n"
	// rfc822 wraps the entity in n message/rfc822 entities: the entity is n levels down.
	rfc822 := func(n int, entity string) string {
		return strings.Repeat("Content-Type: message/rfc822\r\n\r\n", n) + entity
	}
	// multipart wraps it in n multiparts, each its parent's only part.
	multipart := func(n int, entity string) string {
		for i := range n {
			b := fmt.Sprintf("b%d", i)
			entity = "Content-Type: multipart/mixed; boundary=" + b + "\r\n\r\n--" + b + "\r\n" + entity + "\r\n--" + b + "--\r\n"
		}
		return entity
	}
	for _, wrap := range []struct {
		name string
		f    func(int, string) string
	}{{"message/rfc822", rfc822}, {"multipart", multipart}} {
		for _, n := range []int{maxNesting, maxNesting + 1} {
			got, err := Encode7bit([]byte(wrap.f(n, leaf)))
			if n <= maxNesting {
				if want := wrap.f(n, leafQP); err != nil || string(got) != want {
					t.Errorf("%s, %d levels: %v\n%q\nwant\n%q", wrap.name, n, err, got, want)
				}
				continue
			}
			if !errors.Is(err, ErrTooDeep) {
				t.Errorf("%s, %d levels: %v, want ErrTooDeep", wrap.name, n, err)
			}
		}
	}
}

// TestEncode7bitLineExact: a line of 998 octets before its CRLF is 7bit and stays as it is; one
// of 999 is not, and the part is re-encoded.
func TestEncode7bitLineExact(t *testing.T) {
	for _, n := range []int{998, 999} {
		line := strings.Repeat("x", n)
		in := "Content-Type: text/plain\r\n\r\nfirst\r\n" + line + "\r\nlast\r\n"
		got, err := Encode7bit([]byte(in))
		if err != nil {
			t.Fatalf("%d octets: %v", n, err)
		}
		want := in
		if n > 998 {
			want = "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp("first\r\n"+line+"\r\nlast\r\n")
		}
		if string(got) != want {
			t.Errorf("%d octets: %.120q..., want %.120q...", n, got, want)
		}
		if is7bit([]byte(line+"\r\n")) != (n <= 998) {
			t.Errorf("is7bit of a line of %d octets: %v", n, !(n <= 998))
		}
	}
}

// uuLine is one uuencoded line: the count octet n, then data in groups of 4 characters.
func uuLine(n int, data []byte) string {
	var b strings.Builder
	b.WriteByte(byte(32 + n))
	for i := 0; i < len(data); i += 3 {
		var g [3]byte
		copy(g[:], data[i:min(i+3, len(data))])
		for _, c := range []byte{g[0] >> 2, (g[0]<<4 | g[1]>>4) & 63, (g[1]<<2 | g[2]>>6) & 63, g[2] & 63} {
			if c == 0 {
				c = 64
			}
			b.WriteByte(32 + c)
		}
	}
	return b.String()
}

// TestUUBlocksMismatch: a uuencoded line whose count octet says more than its characters hold
// gives only what they hold (no zero octets made up past its end), one cut inside a group of 4
// characters gives what that part of the group holds, and one with characters past its count
// gives the count.
func TestUUBlocksMismatch(t *testing.T) {
	abc := []byte("abcdef")
	group2 := uuLine(2, abc[:3])
	tests := []struct {
		name string
		line string
		want []byte
	}{
		{"count over the characters", uuLine(6, abc[:3]), []byte("abc")},
		{"count far over the characters", uuLine(45, abc), abc},
		{"last group cut to 3 characters", group2[:len(group2)-1], []byte("ab")},
		{"last group cut to 2 characters", uuLine(4, abc)[:1+4+2], []byte("abcd")},
		{"characters past the count", uuLine(3, abc), []byte("abc")},
		{"count exactly the characters", uuLine(6, abc), abc},
	}
	for _, tt := range tests {
		got := uuBlocks([]byte("begin 644 x\r\n" + tt.line + "\r\n`\r\nend\r\n"))
		if len(got) != 1 || !bytes.Equal(got[0], tt.want) {
			t.Errorf("%s (%q): %q, want %q", tt.name, tt.line, got, tt.want)
		}
	}
}

// TestLooseBase64DecodeError: base64 text that fails to decode part way gives what decoded
// before the error, which is looked at for CMS like the rest: an envelope in base64 followed by
// padding and more characters, in a part labelled 8bit, is refused as undeclared CMS.
func TestLooseBase64DecodeError(t *testing.T) {
	body := base64.StdEncoding.EncodeToString(m2Enveloped) + "=AAAA\r\n"
	out, ok := looseBase64([]byte(body))
	if !ok || !bytes.HasPrefix(m2Enveloped, out) || len(out) < len(m2Enveloped)-3 {
		t.Fatalf("looseBase64: %x, %v; want the envelope's start", out, ok)
	}
	if _, ok := looseBase64([]byte("========")); ok {
		t.Error("padding alone taken for base64")
	}
	msg := "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body
	if c := Classify([]byte(msg)); c.Class != Refused || !strings.Contains(c.Reason, "does not declare") {
		t.Fatalf("%v (%s), want refused as CMS its header does not declare", c.Class, c.Reason)
	}
}

// m5TLV is a BER element of tag over body with four length octets, whatever its size.
func m5TLV(tag byte, body []byte) []byte {
	n := len(body)
	return append([]byte{tag, 0x84, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

// m5Enveloped is an enveloped-data message whose RecipientInfos SET holds risLen octets and
// whose encrypted content contentLen, and the SET.
func m5Enveloped(risLen, contentLen int) (msg, ris []byte) {
	fill := make([]byte, risLen)
	for i := range fill {
		fill[i] = byte(i)
	}
	ris = m5TLV(0x31, fill)
	eci := m5TLV(0x30, append([]byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0x30, 0x02, 0x05, 0x00},
		m5TLV(0x80, make([]byte, contentLen))...))
	ed := m5TLV(0x30, append(append([]byte{0x02, 0x01, 0x00}, ris...), eci...))
	der := m5TLV(0x30, append([]byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}, m5TLV(0xa0, ed)...))
	msg = []byte("From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(der) + "\r\n")
	return msg, ris
}

// m5ReaderAt reads from b and records the furthest offset read.
type m5ReaderAt struct {
	b   []byte
	end int64
}

func (r *m5ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	r.end = max(r.end, off+int64(n))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestClassifyHeadCost: ClassifyHead reads an envelope's start, not its ciphertext, and parses
// what it has decoded again only each time that has doubled: for RecipientInfos of 1 KB before
// 1 MB of content it reads one buffer of the message (32 KB), and for RecipientInfos of 1 MB
// it makes about a hundred allocations (one parse per read of the decoder, 768 octets, made
// thousands) and allocates about 6 MB in all (measured: the decode buffer's growth and the
// head's copy; growing that buffer before it is full made it 20 MB).
func TestClassifyHeadCost(t *testing.T) {
	msg, ris := m5Enveloped(1000, 1<<20)
	r := &m5ReaderAt{b: msg}
	c, _, ok := ClassifyHead(r, int64(len(msg)))
	if !ok || !bytes.Contains(c.Envelope, ris[6:]) {
		t.Fatalf("1 KB of RecipientInfos: not answered (%v)", ok)
	}
	if r.end > 64<<10 {
		t.Errorf("1 KB of RecipientInfos before 1 MB of content: read %d of %d octets", r.end, len(msg))
	}

	msg, ris = m5Enveloped(1<<20, 1<<20)
	c, _, ok = ClassifyHead(&m5ReaderAt{b: msg}, int64(len(msg)))
	if !ok || !bytes.Contains(c.Envelope, ris[6:]) {
		t.Fatalf("1 MB of RecipientInfos: not answered (%v)", ok)
	}
	allocs := testing.AllocsPerRun(2, func() { ClassifyHead(&m5ReaderAt{b: msg}, int64(len(msg))) })
	if allocs > 1000 {
		t.Errorf("1 MB of RecipientInfos: %v allocations, want a few parses, not one per read", allocs)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 3
	for range n {
		ClassifyHead(&m5ReaderAt{b: msg}, int64(len(msg)))
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("1 MB of RecipientInfos: %v allocations, %d bytes", allocs, per)
	if per > 12<<20 {
		t.Errorf("1 MB of RecipientInfos: %d bytes allocated, want the decode buffer grown only when full", per)
	}
}

// TestClassifyHeadBufferEdge: wherever the header leaves the reader's 32 KB buffer, the
// envelope is read from the body's first octet: the first read of the base64 may hold a few
// characters, not enough to tell CMS, which is no reason to give up, and the header returned is
// the message's own.
func TestClassifyHeadBufferEdge(t *testing.T) {
	msg, _ := m5Enveloped(1000, 40000)
	at := bytes.Index(msg, []byte("\r\n\r\n")) + 2
	hdr, body := msg[:at], msg[at+2:]
	want, _, ok := ClassifyHead(bytes.NewReader(msg), int64(len(msg)))
	if !ok {
		t.Fatal("not answered")
	}
	for k := -4; k <= 40; k++ {
		// A field that pads the header (and its blank line) to end k octets before the buffer.
		pad := 32<<10 - k - len(hdr) - len("X-Pad: \r\n") - 2
		m := slices.Concat(hdr, []byte("X-Pad: "+strings.Repeat("p", pad)+"\r\n\r\n"), body)
		c, header, ok := ClassifyHead(bytes.NewReader(m), int64(len(m)))
		if !ok || !bytes.Equal(c.Envelope, want.Envelope) || !bytes.Equal(header, m[:len(m)-len(body)]) {
			t.Errorf("header ending %d octets before the buffer: answered %v, header of %d octets", k, ok, len(header))
		}
	}
}

// m5UUEncode is data uuencoded as a file, "begin" line to "end" line.
func m5UUEncode(data []byte) string {
	var b strings.Builder
	b.WriteString("begin 644 smime.p7m\r\n")
	for len(data) > 0 {
		n := min(len(data), 45)
		b.WriteString(uuLine(n, data[:n]) + "\r\n")
		data = data[n:]
	}
	b.WriteString("`\r\nend\r\n")
	return b.String()
}

// TestClassifyDeclaredBase64Digit: a part declared base64 is decoded as base64 even when its
// text starts with "0" (the octet a DER SEQUENCE starts with, raw), and what it holds
// uuencoded is refused; the cheaper reading of undeclared text parts is not for it.
func TestClassifyDeclaredBase64Digit(t *testing.T) {
	text := append([]byte{0xd0, '\r', '\n'}, m5UUEncode(m2Enveloped)...)
	body := base64.StdEncoding.EncodeToString(text)
	if body[0] != '0' {
		t.Fatalf("base64 starts with %q", body[0])
	}
	msg := "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
		"Content-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		body + "\r\n--b--\r\n"
	if c := Classify([]byte(msg)); c.Class != Refused || !strings.Contains(c.Reason, "uuencoded") {
		t.Fatalf("%v (%s), want refused for an enveloped-data uuencoded", c.Class, c.Reason)
	}
}

// m5SameAsRef fails t when Classify and the reference classifier answer msg differently.
func m5SameAsRef(t *testing.T, name string, msg []byte) {
	t.Helper()
	got, want := Classify(msg), refClassify(msg)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: Classify %v %q, reference %v %q", name, got.Class, got.Reason, want.Class, want.Reason)
	}
}

// TestCleanBase64LongCarry: base64 text in lines that never end on a whole group of 4
// characters (one character, then groups of 4) is carried over line ends, a chunk of 4096
// characters at most, before it is decoded; the text part is classified as the reference does.
func TestCleanBase64LongCarry(t *testing.T) {
	for _, lines := range []int{10, 1100, 2100} {
		body := "A\r\n" + strings.Repeat("AAAA\r\n", lines)
		msg := "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + body
		m5SameAsRef(t, fmt.Sprintf("%d lines", lines), []byte(msg))
		// The same with the carried character at the end, where it cannot be decoded.
		m5SameAsRef(t, fmt.Sprintf("%d lines, then one character", lines), []byte(msg[:len(msg)-len(body)]+body[3:]+"A\r\n"))
	}
}

// TestCleanBase64Shapes: base64 text in lines of every length from 1 to 80 characters and a
// few long ones (about a chunk of 4096, and one longer than the decode buffer holds), with and
// without a blank at each line's end (which no block or line decodes whole, so it is read a
// character at a time), of an envelope, of a longer one and of 9000 octets of no CMS, is
// classified as the reference does: whichever way cleanBase64 reads it (whole blocks of lines,
// a line at a time, a character at a time), the decoded bytes are the same, in order, and the
// first ones are what tells CMS.
func TestCleanBase64Shapes(t *testing.T) {
	data := make([]byte, 9000)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	lengths := []int{200, 1000, 4095, 4096, 4097, 5000, 12000}
	for l := 1; l <= 80; l++ {
		lengths = append(lengths, l)
	}
	for pi, payload := range [][]byte{m2Enveloped, m2BigEnveloped, data} {
		text := base64.StdEncoding.EncodeToString(payload)
		for _, l := range lengths {
			for _, blank := range []string{"", " "} {
				var b strings.Builder
				for s := text; len(s) > 0; s = s[min(l, len(s)):] {
					b.WriteString(s[:min(l, len(s))] + blank + "\r\n")
				}
				msg := "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + b.String()
				m5SameAsRef(t, fmt.Sprintf("payload %d in lines of %d, blank %q", pi, l, blank), []byte(msg))
			}
		}
	}
}

// TestCleanBase64BareLF: in base64 text whose lines end in a bare LF, a blank line followed by
// a line longer than a chunk (4096 characters) is a block of its own, an empty one; the text
// part is classified as the reference does.
func TestCleanBase64BareLF(t *testing.T) {
	long := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("abc"), 1700)) // 6800 characters
	for _, body := range []string{
		"QUJD QUJD\n\n" + long + "\n", // the first block fails on its blank, then the line is read alone
		"QUJD\tQUJD\n\n\n" + long + "\n",
		"QUJD QUJD\r\n\n" + long + "\r\n",
	} {
		msg := "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + body
		m5SameAsRef(t, fmt.Sprintf("%.16q", body), []byte(msg))
	}
}

// TestCleanBase64AfterPadding: base64 text of an envelope on one line ending in padding, then
// more base64 on the next line: a decoder stops at the padding, after the envelope, and the
// text part is classified as the reference does (the envelope's first octets tell CMS), not
// read on past the padding as if it were not there.
func TestCleanBase64AfterPadding(t *testing.T) {
	for extra := range 3 { // no padding, "==" and "="
		der := append(append([]byte{}, m2Enveloped...), make([]byte, extra)...)
		for _, next := range []string{"QUJD", "QUJDREVG", "QQ=="} {
			body := base64.StdEncoding.EncodeToString(der) + "\r\n" + next + "\r\n"
			msg := "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + body
			m5SameAsRef(t, fmt.Sprintf("%q", body), []byte(msg))
		}
	}
}

// TestCleanBase64CarryThenWholeLines: base64 text whose first line is not a whole number of
// groups of 4 characters (3 of them), then lines that are (4 or 76 characters), then the rest:
// what the first line leaves undecoded comes before the next lines' characters, and the text
// part is classified as the reference does.
func TestCleanBase64CarryThenWholeLines(t *testing.T) {
	for pi, payload := range [][]byte{m2Enveloped, m2BigEnveloped} {
		text := base64.StdEncoding.EncodeToString(payload)
		for _, l := range []int{4, 76} {
			var b strings.Builder
			b.WriteString(text[:3] + "\r\n")
			s := text[3:]
			for len(s) > l+4 {
				b.WriteString(s[:l] + "\r\n")
				s = s[l:]
			}
			b.WriteString(s + "\r\n")
			msg := "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + b.String()
			m5SameAsRef(t, fmt.Sprintf("payload %d, lines of %d", pi, l), []byte(msg))
		}
	}
}

// TestCleanBase64StrayPadding: padding after whole groups of 4 characters, or more of it than
// a group can have, is no base64 any decoder reads to the end; the text part is classified as
// the reference does.
func TestCleanBase64StrayPadding(t *testing.T) {
	for _, body := range []string{"QUJD=\r\n", "QUJD==\r\n", "QUJDQ==\r\n", "QUJDQQ=\r\n", "QUJDQQ===\r\n", "QUJD\r\n=\r\n"} {
		msg := "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + body
		m5SameAsRef(t, fmt.Sprintf("%q", body), []byte(msg))
	}
}
