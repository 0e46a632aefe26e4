package smime

import (
	"bytes"
	"errors"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
)

func TestEncode7bit(t *testing.T) {
	long := strings.Repeat("x", 1200)
	tests := []struct {
		name    string
		in      string
		want    string // "" means unchanged
		wantErr error
	}{
		{name: "ok 7bit stays byte for byte", in: "Content-Type: text/plain\r\n\r\nhello\r\n"},
		{name: "ok 8bit text becomes quoted-printable",
			in:   "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nContent-Disposition: inline\r\n\r\nGrüße\r\n",
			want: "Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n"},
		{name: "ok long 7bit line becomes quoted-printable",
			in:   "Content-Type: text/plain\r\n\r\n" + long + "\r\n",
			want: "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp(long+"\r\n")},
		{name: "ok binary-ish attachment becomes base64",
			in:   "Content-Type: application/octet-stream\r\n\r\n\x00\x01\xff",
			want: "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAH/\r\n"},
		{name: "ok only the 8bit part of a multipart changes",
			in:   "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nKöln\r\n--b--\r\nepilogue\r\n",
			want: "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nK=C3=B6ln\r\n--b--\r\nepilogue\r\n"},
		{name: "ok nested message/rfc822 is encoded inside",
			in:   "Content-Type: message/rfc822\r\n\r\nSubject: x\r\nContent-Type: text/plain\r\n\r\nÄ\r\n",
			want: "Content-Type: message/rfc822\r\n\r\nSubject: x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=84\r\n"},
		{name: "ok no header at all is text/plain", in: "\r\nÄ", want: "Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=84"},
		{name: "ok 8bit header text is left alone", in: "Content-Type: text/plain\r\nContent-Description: Grüße\r\n\r\nhi\r\n"},
		{name: "fail multipart without its boundary", in: "Content-Type: multipart/mixed; boundary=b\r\n\r\nÄ\r\n", wantErr: ErrMalformed},
		{name: "fail unterminated multipart", in: "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nÄ\r\n", wantErr: ErrMalformed},
		{name: "fail nesting too deep", in: strings.Repeat("Content-Type: message/rfc822\r\n\r\n", 40) + "\r\nÄ", wantErr: ErrTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Encode7bit([]byte(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Encode7bit error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == "" {
				want = tt.in
			}
			if string(got) != want {
				t.Fatalf("Encode7bit =\n%q\nwant\n%q", got, want)
			}
			if _, body := splitEntity(got); tt.want != "" && !is7bit(body) {
				t.Fatalf("body still 8-bit: %q", body)
			}
		})
	}
}

func qp(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	io.WriteString(w, s)
	w.Close()
	return b.String()
}

func FuzzEncode7bit(f *testing.F) {
	seedPackages(f)
	f.Add([]byte("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nKöln\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\n\xff\x00\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		entity := Canonicalize(in)
		once, err := Encode7bit(entity)
		if err != nil {
			return
		}
		if is7bit(entity) && !bytes.Equal(once, entity) {
			t.Fatalf("7bit entity changed")
		}
		if !isCanonical(once) {
			t.Fatalf("result %q has bare line endings", once)
		}
		twice, err := Encode7bit(once)
		if err != nil || !bytes.Equal(once, twice) {
			t.Fatalf("not idempotent: %v\n%q\n%q", err, once, twice)
		}
	})
}
