package smime

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		name      string
		msg       string
		wantOuter string // outer header as written by writeOuter
		wantInner string
		wantErr   error
	}{
		{
			name:      "ok plain text with LF endings",
			msg:       "From: a@example.test\nTo: b@example.test\nSubject: hi\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nline 1\nline 2\n",
			wantOuter: "From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n",
			wantInner: "Content-Type: text/plain; charset=utf-8\r\n\r\nline 1\r\nline 2\r\n",
		},
		{
			name:      "ok no content type gets the RFC 2045 default",
			msg:       "From: a@example.test\r\n\r\nbody",
			wantOuter: "From: a@example.test\r\n",
			wantInner: "Content-Type: text/plain; charset=us-ascii\r\n\r\nbody",
		},
		{
			name: "ok every content field moves inside in order, folded",
			msg: "Subject: x\r\nContent-Type: multipart/mixed;\r\n boundary=\"b\"\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n" +
				"Content-Language: de\r\nContent-Transfer-Encoding: 7bit\r\ncontent-id: <x@y>\r\n" +
				"Content-Disposition: inline\r\nContent-Description: d\r\n\r\n--b\r\n\r\np\r\n--b--\r\n",
			wantOuter: "Subject: x\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n",
			wantInner: "Content-Type: multipart/mixed;\r\n boundary=\"b\"\r\nContent-Language: de\r\nContent-Transfer-Encoding: 7bit\r\n" +
				"content-id: <x@y>\r\nContent-Disposition: inline\r\nContent-Description: d\r\n\r\n--b\r\n\r\np\r\n--b--\r\n",
		},
		{
			name:      "ok 8-bit and encoded-word subjects survive byte for byte",
			msg:       "Subject: Grüße aus Köln\r\nX-Other: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nSubject: =?utf-8?b?w6TDtsO8?=\r\n\r\nb\r\n",
			wantOuter: "Subject: Grüße aus Köln\r\nX-Other: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nSubject: =?utf-8?b?w6TDtsO8?=\r\n",
			wantInner: "Content-Type: text/plain; charset=us-ascii\r\n\r\nb\r\n",
		},
		{
			name:      "ok bare CR and mixed endings become CRLF",
			msg:       "From: a\r\n\r\na\rb\nc\r\n\r\rd",
			wantOuter: "From: a\r\n",
			wantInner: "Content-Type: text/plain; charset=us-ascii\r\n\r\na\r\nb\r\nc\r\n\r\n\r\nd",
		},
		{
			name:      "ok bare CR inside a content field does not break the header",
			msg:       "Content-Description: a\rb\r\n\r\nx",
			wantOuter: "",
			wantInner: "Content-Type: text/plain; charset=us-ascii\r\nContent-Description: a b\r\n\r\nx",
		},
		{
			name:    "fail binary transfer encoding",
			msg:     "Content-Transfer-Encoding: Binary\r\n\r\n\x00\r",
			wantErr: ErrBinaryBody,
		},
		{
			name:    "fail malformed header line",
			msg:     "this is not a header\r\n\r\nbody",
			wantErr: ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outer, inner, err := Split(strings.NewReader(tt.msg))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Split error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := writeOuter(&b, outer); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.wantOuter {
				t.Errorf("outer =\n%q\nwant\n%q", b.String(), tt.wantOuter)
			}
			if string(inner) != tt.wantInner {
				t.Errorf("inner =\n%q\nwant\n%q", inner, tt.wantInner)
			}
		})
	}
}

func TestCanonicalize(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ok already canonical", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"ok LF", "a\nb\n", "a\r\nb\r\n"},
		{"ok CR", "a\rb\r", "a\r\nb\r\n"},
		{"ok CR LF CR", "\r\n\n\r", "\r\n\r\n\r\n"},
		{"ok LF CR is two endings", "a\n\rb", "a\r\n\r\nb"},
		{"ok empty", "", ""},
		{"ok no endings", "abc", "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(Canonicalize([]byte(tt.in))); got != tt.want {
				t.Errorf("Canonicalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestMicAlg(t *testing.T) {
	tests := []struct {
		name string
		h    crypto.Hash
		want string
	}{
		{"ok sha-256", crypto.SHA256, "sha-256"},
		{"ok sha-1", crypto.SHA1, "sha-1"},
		{"ok sha-512", crypto.SHA512, "sha-512"},
		{"fail md5", crypto.MD5, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MicAlg(tt.h)
			if tt.want == "" {
				if !errors.Is(err, ErrUnknownMicAlg) {
					t.Fatalf("MicAlg error = %v, want ErrUnknownMicAlg", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("MicAlg = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestSignedEntityRoundTrip(t *testing.T) {
	sig := bytes.Repeat([]byte{0x30, 0x82, 0xff, 0x01}, 200)
	tests := []struct{ name, entity string }{
		{"ok entity ending in CRLF", "Content-Type: text/plain\r\n\r\nhello\r\n"},
		{"ok entity without final CRLF", "Content-Type: text/plain\r\n\r\nhello"},
		{"ok entity with trailing blank lines", "Content-Type: text/plain\r\n\r\nhello\r\n\r\n\r\n"},
		{"ok entity that looks like our boundaries", "Content-Type: text/plain\r\n\r\n------smime-\r\n--\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signed := SignedEntity([]byte(tt.entity), sig, "sha-256")
			s, err := ParseSigned(signed)
			if err != nil {
				t.Fatal(err)
			}
			if string(s.Content) != tt.entity {
				t.Errorf("content = %q, want %q", s.Content, tt.entity)
			}
			if !bytes.Equal(s.Signature, sig) {
				t.Errorf("signature did not round-trip")
			}
			if s.MicAlg != "sha-256" {
				t.Errorf("micalg = %q", s.MicAlg)
			}
			if !isCanonical(signed) {
				t.Errorf("signed entity has bare line endings")
			}
			checkLines(t, signed)
			for _, want := range []string{"protocol=\"application/pkcs7-signature\"", "Content-Disposition: attachment; filename=smime.p7s",
				"Content-Type: application/pkcs7-signature; name=smime.p7s"} {
				if !bytes.Contains(signed, []byte(want)) {
					t.Errorf("signed entity lacks %q", want)
				}
			}
		})
	}
}

func TestBoundaryAvoidsEntity(t *testing.T) {
	for range 50 {
		entity := []byte("Content-Type: text/plain\r\n\r\nx\r\n")
		b := newBoundary(entity)
		if bytes.Contains(entity, []byte(b)) || len(b) > 70 {
			t.Fatalf("bad boundary %q", b)
		}
		if newBoundary(entity) == b {
			t.Fatalf("boundary is not random")
		}
	}
}

// checkLines asserts CRLF lines of at most 998 octets and base64 lines of at most 76.
func checkLines(t *testing.T, b []byte) {
	t.Helper()
	for _, line := range strings.Split(string(b), "\r\n") {
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("bare line ending in %q", line)
		}
		if len(line) > 998 {
			t.Fatalf("line of %d octets", len(line))
		}
	}
}

func TestParseSigned(t *testing.T) {
	good := string(SignedEntity([]byte("Content-Type: text/plain\r\n\r\nhi\r\n"), []byte{0x30, 0}, "sha-256"))
	tests := []struct {
		name        string
		msg         string
		wantContent string
		wantErr     error
	}{
		{"ok ours", good, "Content-Type: text/plain\r\n\r\nhi\r\n", nil},
		{"ok LF endings and x- types and padding", "Content-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; boundary=b\n\n--b \nA: 1\n\nx\n--b\nContent-Type: application/x-pkcs7-signature\n\nMA\n  A\n--b--\n", "A: 1\n\nx", nil},
		{"ok empty first part", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n--b\r\n--b\r\nContent-Type: application/pkcs7-signature\r\n\r\nMAA=\r\n--b--", "", nil},
		{"fail not signed", "Content-Type: text/plain\r\n\r\nx", "", ErrNotSigned},
		{"fail pgp protocol", "Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=b\r\n\r\n", "", ErrNotSigned},
		{"fail no boundary parameter", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"\r\n\r\n", "", ErrMalformed},
		{"fail truncated", good[:len(good)/2], "", ErrMalformed},
		{"fail boundary only inside a line", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\nx--b\r\n", "", ErrMalformed},
		{"fail signature part of another type", strings.Replace(good, "application/pkcs7-signature; name", "text/plain; name", 1), "", ErrNotSigned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSigned([]byte(tt.msg))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseSigned error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(s.Content) != tt.wantContent {
				t.Errorf("content = %q, want %q", s.Content, tt.wantContent)
			}
			if len(s.Signature) != 2 || s.Signature[0] != 0x30 {
				t.Errorf("signature = %x", s.Signature)
			}
		})
	}
}

func outerHeader(t testing.TB, s string) textproto.Header {
	t.Helper()
	outer, _, err := Split(strings.NewReader(s + "\r\nbody"))
	if err != nil {
		t.Fatal(err)
	}
	return outer
}

// chunkedDER writes its bytes in small pieces, like a CMS writer streaming encrypted content.
type chunkedDER []byte

func (c chunkedDER) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for b := []byte(c); len(b) > 0; {
		k := min(7, len(b))
		m, err := w.Write(b[:k])
		n += int64(m)
		if err != nil {
			return n, err
		}
		b = b[k:]
	}
	return n, nil
}

func TestWritePackage(t *testing.T) {
	outer := outerHeader(t, "From: a@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?= Grüße\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n")
	for _, size := range []int{1, 56, 57, 58, 4096, 100_000} {
		der := make([]byte, size)
		for i := range der {
			der[i] = byte(i * 7)
		}
		der[0] = 0x30
		for _, typ := range []string{TypeEnvelopedData, TypeAuthEnvelopedData} {
			t.Run("ok "+typ, func(t *testing.T) {
				var b bytes.Buffer
				if err := WritePackage(&b, outer, typ, chunkedDER(der)); err != nil {
					t.Fatal(err)
				}
				msg := b.String()
				head, body, ok := strings.Cut(msg, "\r\n\r\n")
				if !ok {
					t.Fatal("no header/body separator")
				}
				wantHead := "From: a@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?= Grüße\r\nMIME-Version: 1.0\r\n" +
					"Content-Type: application/pkcs7-mime; smime-type=" + typ + ";\r\n name=smime.p7m\r\n" +
					"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7m"
				if head != wantHead {
					t.Errorf("header =\n%s\nwant\n%s", head, wantHead)
				}
				lines := strings.Split(strings.TrimSuffix(body, "\r\n"), "\r\n")
				for i, l := range lines {
					if len(l) > LineLength || (i < len(lines)-1 && len(l) != LineLength) || strings.ContainsAny(l, "\r\n") {
						t.Fatalf("line %d is %d long: %q", i, len(l), l)
					}
				}
				got, err := base64.StdEncoding.DecodeString(strings.Join(lines, ""))
				if err != nil || !bytes.Equal(got, der) {
					t.Fatalf("body does not decode to the DER: %v", err)
				}
				p, err := Parse(strings.NewReader(msg), int64(len(msg)))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p.DER, der) || p.SMIMEType != typ || p.CheckType() != nil {
					t.Errorf("Parse round trip: type %q, %d bytes", p.SMIMEType, len(p.DER))
				}
			})
		}
	}
	t.Run("fail unknown smime-type", func(t *testing.T) {
		err := WritePackage(io.Discard, outer, "enveloped", bytes.NewReader([]byte{0x30}))
		if !errors.Is(err, ErrUnknownSMIMEType) {
			t.Fatalf("error = %v, want ErrUnknownSMIMEType", err)
		}
	})
	t.Run("fail writer error", func(t *testing.T) {
		err := WritePackage(failWriter{}, outer, TypeEnvelopedData, bytes.NewReader(make([]byte, 100_000)))
		if !errors.Is(err, errWrite) {
			t.Fatalf("error = %v, want errWrite", err)
		}
	})
}

var errWrite = errors.New("disk full")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestWriteSigned(t *testing.T) {
	outer := outerHeader(t, "From: a@example.test\r\nTo: b@example.test\r\nContent-Type: text/plain\r\n")
	entity := SignedEntity([]byte("Content-Type: text/plain\r\n\r\nhi\r\n"), []byte{0x30, 0}, "sha-256")
	var b bytes.Buffer
	if err := WriteSigned(&b, outer, entity); err != nil {
		t.Fatal(err)
	}
	want := "From: a@example.test\r\nTo: b@example.test\r\nMIME-Version: 1.0\r\n" + string(entity)
	if b.String() != want {
		t.Fatalf("WriteSigned =\n%q\nwant\n%q", b.String(), want)
	}
	s, err := ParseSigned(b.Bytes())
	if err != nil || string(s.Content) != "Content-Type: text/plain\r\n\r\nhi\r\n" || s.Header.Get("To") != "b@example.test" {
		t.Fatalf("ParseSigned of the package: %v", err)
	}
}

func TestParse(t *testing.T) {
	der := []byte{0x30, 0x03, 0x02, 0x01, 0x05, 0xfe}
	b64 := base64.StdEncoding.EncodeToString(der) // "MAMCAQX+"
	tests := []struct {
		name      string
		msg       string
		limit     int64
		wantType  string
		wantMedia string
		wantCheck error
		wantErr   error
	}{
		{name: "ok standard", msg: "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 + "\r\n",
			wantType: TypeEnvelopedData, wantMedia: "application/pkcs7-mime"},
		{name: "ok x-pkcs7-mime, folded, LF, odd lines, no padding", msg: "Subject: x\nContent-Type: application/x-pkcs7-mime;\n\tsmime-type=\"Enveloped-Data\";\n name=smime.p7m\nContent-Transfer-Encoding: BASE64\n\nMAM\n CAQ \nX+\n\n",
			wantType: TypeEnvelopedData, wantMedia: "application/x-pkcs7-mime"},
		{name: "ok authEnveloped-data in any case", msg: "Content-Type: application/pkcs7-mime; smime-type=authenveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64,
			wantType: TypeAuthEnvelopedData, wantMedia: "application/pkcs7-mime"},
		{name: "ok missing smime-type is reported", msg: "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64,
			wantMedia: "application/pkcs7-mime", wantCheck: ErrMissingSMIMEType},
		{name: "ok unknown smime-type is reported", msg: "Content-Type: application/pkcs7-mime; smime-type=encrypted\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64,
			wantMedia: "application/pkcs7-mime", wantCheck: ErrUnknownSMIMEType},
		{name: "ok octet-stream with a p7m file name", msg: "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"SMIME.P7M\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64,
			wantMedia: "application/octet-stream", wantCheck: ErrMissingSMIMEType},
		{name: "ok binary DER without transfer encoding", msg: "Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n\r\n" + string(der),
			wantType: TypeSignedData, wantMedia: "application/pkcs7-mime"},
		{name: "ok base64 labelled 7bit", msg: "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\r\n" + b64,
			wantType: TypeEnvelopedData, wantMedia: "application/pkcs7-mime"},
		{name: "ok limit exactly the size", msg: "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\n" + b64, limit: int64(len("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\n" + b64)),
			wantType: TypeEnvelopedData, wantMedia: "application/pkcs7-mime"},
		{name: "fail multipart/signed", msg: "Content-Type: multipart/signed; boundary=b\r\n\r\n", wantErr: ErrNotPKCS7MIME},
		{name: "fail no content type", msg: "Subject: x\r\n\r\n" + b64, wantErr: ErrNotPKCS7MIME},
		{name: "fail octet-stream without a p7m name", msg: "Content-Type: application/octet-stream; name=x.bin\r\n\r\n" + b64, wantErr: ErrNotPKCS7MIME},
		{name: "fail one byte over the limit", msg: "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\n" + b64, limit: int64(len("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\n"+b64)) - 1, wantErr: ErrTooLarge},
		{name: "fail header over the limit", msg: "Subject: " + strings.Repeat("x", 10000) + "\r\n\r\n", limit: 100, wantErr: ErrTooLarge},
		{name: "fail bad base64", msg: "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\nMA*M\r\n", wantErr: ErrMalformed},
		{name: "fail empty body", msg: "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n\r\n", wantErr: ErrMalformed},
		{name: "fail quoted-printable", msg: "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n0=00", wantErr: ErrMalformed},
		{name: "fail header garbage", msg: "\x00\x01\r\n\r\n", wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := tt.limit
			if limit == 0 {
				limit = 1 << 20
			}
			p, err := Parse(strings.NewReader(tt.msg), limit)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Parse error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p.DER, der) {
				t.Errorf("DER = %x, want %x", p.DER, der)
			}
			if p.SMIMEType != tt.wantType || p.MediaType != tt.wantMedia {
				t.Errorf("type = %q %q, want %q %q", p.MediaType, p.SMIMEType, tt.wantMedia, tt.wantType)
			}
			if err := p.CheckType(); !errors.Is(err, tt.wantCheck) || (tt.wantCheck == nil) != (err == nil) {
				t.Errorf("CheckType = %v, want %v", err, tt.wantCheck)
			}
		})
	}
}

func TestBase64WriterMemoryIsConstant(t *testing.T) {
	w := NewBase64Writer(io.Discard)
	chunk := make([]byte, 64<<10)
	allocs := testing.AllocsPerRun(20, func() { w.Write(chunk) })
	if allocs > 0 {
		t.Fatalf("Write allocates %v times per 64 KB chunk; it must stream", allocs)
	}
}

func BenchmarkWritePackage(b *testing.B) {
	outer := outerHeader(b, "From: a@example.test\r\n")
	der := make([]byte, 10<<20)
	b.SetBytes(int64(len(der)))
	for b.Loop() {
		if err := WritePackage(io.Discard, outer, TypeEnvelopedData, bytes.NewReader(der)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	var msg bytes.Buffer
	if err := WritePackage(&msg, outerHeader(b, "From: a@example.test\r\n"), TypeEnvelopedData, bytes.NewReader(make([]byte, 10<<20))); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(msg.Len()))
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(msg.Bytes()), 1<<30); err != nil {
			b.Fatal(err)
		}
	}
}
