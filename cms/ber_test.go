package cms

import (
	"encoding/hex"
	"errors"
	"testing"
)

func TestReadElem(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantTag   uint32
		wantClass byte
		wantRest  int
		octets    string // value when the element is an OCTET STRING
		wantErr   bool
	}{
		{name: "ok short definite", in: "040201020a", wantTag: 4, wantRest: 1, octets: "0102"},
		{name: "ok non-minimal long length", in: "0481020102", wantTag: 4, octets: "0102"},
		{name: "ok four-byte length", in: "04840000000101", wantTag: 4, octets: "01"},
		{name: "ok high tag number", in: "9f8101020102", wantTag: 129, wantClass: classContext},
		{name: "ok indefinite constructed octets", in: "2480040101040202030000", wantTag: 4, octets: "010203"},
		{name: "ok nested constructed octets", in: "24800403010203248004010400000000", wantTag: 4, octets: "01020304"},
		{name: "fail indefinite without end of contents", in: "24800401010402", wantErr: true},
		{name: "fail primitive indefinite", in: "04800000", wantErr: true},
		{name: "fail five-byte length", in: "0485000000000101", wantErr: true},
		{name: "fail reserved length", in: "04ff", wantErr: true},
		{name: "fail length beyond input", in: "040501", wantErr: true},
		{name: "fail truncated high tag", in: "1f81", wantErr: true},
		{name: "fail over-long high tag", in: "1f8181818101", wantErr: true},
		{name: "fail non-octets inside constructed octets", in: "2403020100", wantTag: 4, octets: "!"},
		{name: "fail one byte", in: "04", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, _ := hex.DecodeString(tt.in)
			e, rest, err := readElem(in, 0)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.tag != tt.wantTag || e.class != tt.wantClass || len(rest) != tt.wantRest {
				t.Fatalf("tag %d class %d rest %d", e.tag, e.class, len(rest))
			}
			if len(e.raw)+len(rest) != len(in) {
				t.Fatalf("raw %d + rest %d != %d", len(e.raw), len(rest), len(in))
			}
			if tt.octets != "" {
				got, err := e.octets(0)
				if tt.octets == "!" {
					if !errors.Is(err, ErrMalformed) {
						t.Fatalf("got %v", err)
					}
					return
				}
				if err != nil || hex.EncodeToString(got) != tt.octets {
					t.Fatalf("octets %x, %v", got, err)
				}
			}
		})
	}
}

func TestSortSetOf(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"ok by first octet", []string{"3103", "3002"}, []string{"3002", "3103"}},
		{"ok prefix shorter first", []string{"300101", "3001"}, []string{"3001", "300101"}},
		{"ok zero padding equal keeps order", []string{"300100", "3001"}, []string{"300100", "3001"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in [][]byte
			for _, h := range tt.in {
				b, _ := hex.DecodeString(h)
				in = append(in, b)
			}
			sortSetOf(in)
			for i, b := range in {
				if hex.EncodeToString(b) != tt.want[i] {
					t.Fatalf("got %x", in)
				}
			}
		})
	}
}
