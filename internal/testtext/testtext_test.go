package testtext

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestSameBytes: the text is the one the benchmark has always sent, byte for byte (its
// SHA-256 as bench/loadgen and the check benchmarks generated it before this package), so
// results of runs before and after stay comparable.
func TestSameBytes(t *testing.T) {
	for _, tc := range []struct {
		size      int
		n         int
		body, msg string
	}{
		{0, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "3a50809d5b8c42a771193493b1860e8f7561b596a7d61563612061eb51517679"},
		{1, 78, "a22ca4303c2a6676ef252741eb450e407807b4b27ed3e18ca5616ed6aabe6649", "3067d01cd7b18ceb20802ad2f2f7d06c7d8f6f0b74aaf67ede7e16da397ff311"},
		{78, 78, "a22ca4303c2a6676ef252741eb450e407807b4b27ed3e18ca5616ed6aabe6649", "3067d01cd7b18ceb20802ad2f2f7d06c7d8f6f0b74aaf67ede7e16da397ff311"},
		{10 << 10, 10296, "200d416b8446a1937c08ac16c7c8967b05c9ecbf6a42498983683bd50038a309", "6170b43780274da4c72556d5d9e73dc24913b5a680a739f1cc0d5b931bea6525"},
		{50 << 10, 51246, "ee60003a4b110a1ebf7a8f3e0365db6b2740649659fc735a9d7aa37fc7ac6e85", "a8e137f84697de38033a639fec205b611cc3662a3da56041125dd92fc1a53c91"},
		{1 << 20, 1048632, "d7953450c2c72d563d7743fd352edd3268b129feeba9f16a622b31191e7a3dcc", "d0d21d453434aa2962fdf951173f432c77095a18016973553c7345714e462d72"},
	} {
		b := Body(tc.size)
		if sum := sha256.Sum256(b); len(b) != tc.n || hex.EncodeToString(sum[:]) != tc.body {
			t.Errorf("Body(%d): %d bytes, SHA-256 %x; want %d bytes, %s", tc.size, len(b), sum, tc.n, tc.body)
		}
		m := Message(tc.size)
		if sum := sha256.Sum256(m); len(m) != len(Header)+tc.n || hex.EncodeToString(sum[:]) != tc.msg {
			t.Errorf("Message(%d): %d bytes, SHA-256 %x; want %d bytes, %s", tc.size, len(m), sum, len(Header)+tc.n, tc.msg)
		}
		if !bytes.HasPrefix(m, []byte(Header)) || !bytes.Equal(m[len(Header):], b) {
			t.Errorf("Message(%d) is not Header and Body(%d)", tc.size, tc.size)
		}
	}
}

// TestShape: whole 76-column lines of base64's alphabet, each ending in CRLF; none begins with
// a dot (the text goes into SMTP DATA unstuffed in places).
func TestShape(t *testing.T) {
	b := Body(100 << 10)
	if len(b)%78 != 0 || len(b) < 100<<10 || len(b) >= 100<<10+78 {
		t.Fatalf("%d bytes", len(b))
	}
	for i := 0; i < len(b); i += 78 {
		line := b[i : i+78]
		if line[76] != '\r' || line[77] != '\n' {
			t.Fatalf("line at %d does not end in CRLF", i)
		}
		for _, c := range line[:76] {
			if bytes.IndexByte([]byte(alphabet), c) < 0 {
				t.Fatalf("line at %d: byte %q", i, c)
			}
		}
	}
	if got := AppendBody([]byte("x"), 10); !bytes.Equal(got, append([]byte("x"), Body(10)...)) {
		t.Fatalf("AppendBody: %q", got)
	}
}
