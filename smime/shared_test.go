package smime

import (
	"bytes"
	"testing"
)

func TestWritePackageShared(t *testing.T) {
	outer := outerHeader(t, "From: a@example.test\r\nTo: b@example.test\r\nSubject: s\r\n")
	data := make([]byte, 5000)
	for i := range data {
		data[i] = byte(i*31 + 7)
	}
	tests := []struct {
		name              string
		own, tail1, tail2 int // the tail in two parts, as cms.Encoded keeps it
	}{
		{"ok nothing shared", 40, 0, 0},
		{"ok tail shorter than the rest of the line", 40, 10, 0},
		{"ok tail ends at the line boundary", 40, 17, 0},
		{"ok own is whole lines", 2 * lineInput, 300, 20},
		{"ok no own part", 0, 1000, 0},
		{"ok long both", 333, 3000, 16},
		{"ok one byte past the boundary", 56, 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			own := [][]byte{data[:tc.own/2], data[tc.own/2 : tc.own]}
			tail := [][]byte{data[1000 : 1000+tc.tail1], data[4000 : 4000+tc.tail2]}
			whole := bytes.Join(append(append([][]byte{}, own...), tail...), nil)
			var want bytes.Buffer
			if err := WritePackage(&want, outer, TypeEnvelopedData, bytes.NewReader(whole)); err != nil {
				t.Fatal(err)
			}
			shared := NewSharedBase64(tail)
			for range 2 { // the second write uses the cached lines
				var got bytes.Buffer
				if err := WritePackageShared(&got, outer, TypeEnvelopedData, own, shared); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Fatalf("got\n%q\nwant\n%q", got.Bytes(), want.Bytes())
				}
			}
			if len(shared.phases) > 1 {
				t.Errorf("%d phases cached for one own length, want at most 1", len(shared.phases))
			}
		})
	}
}

func TestWritePackageSharedPhases(t *testing.T) {
	outer := outerHeader(t, "From: a@example.test\r\n")
	tail := [][]byte{bytes.Repeat([]byte{0xa5}, 1000)}
	shared := NewSharedBase64(tail)
	for _, ownLen := range []int{10, 10 + lineInput, 11, 10} {
		own := [][]byte{bytes.Repeat([]byte{1}, ownLen)}
		var got, want bytes.Buffer
		WritePackage(&want, outer, TypeEnvelopedData, bytes.NewReader(bytes.Join(append(own, tail...), nil)))
		if err := WritePackageShared(&got, outer, TypeEnvelopedData, own, shared); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("own of %d bytes: output differs from WritePackage", ownLen)
		}
	}
	if len(shared.phases) != 2 {
		t.Errorf("%d phases cached, want 2 (own lengths 10 and 11 mod 57)", len(shared.phases))
	}
}

func TestWritePackageSharedUnknownType(t *testing.T) {
	err := WritePackageShared(&bytes.Buffer{}, outerHeader(t, "From: a@example.test\r\n"), "nonsense", nil, NewSharedBase64(nil))
	if err == nil {
		t.Fatal("fail unknown smime-type: no error")
	}
}
