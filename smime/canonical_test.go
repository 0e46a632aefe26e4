package smime

import "testing"

// isCanonicalRef is the definition, byte by byte: every CR is followed by LF, every LF
// preceded by CR.
func isCanonicalRef(b []byte) bool {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return false
			}
			i++
		case '\n':
			return false
		}
	}
	return true
}

func TestIsCanonical(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", true}, {"a\r\nb\r\n", true}, {"\r\n\r\n", true},
		{"a\nb", false}, {"a\rb", false}, {"a\r", false}, {"\n\r", false}, {"\r\r\n", false}, {"\r\n\n", false},
	} {
		if got := isCanonical([]byte(tc.in)); got != tc.want {
			t.Errorf("isCanonical(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestIsCanonicalRandom compares with the definition on every string of up to 8 bytes over
// "a", CR and LF (9841 of them), which covers each way CR and LF can neighbour each other.
func TestIsCanonicalRandom(t *testing.T) {
	alphabet := []byte("a\r\n")
	var walk func(b []byte)
	walk = func(b []byte) {
		if got, want := isCanonical(b), isCanonicalRef(b); got != want {
			t.Fatalf("isCanonical(%q) = %v, want %v", b, got, want)
		}
		if len(b) == 8 {
			return
		}
		for _, c := range alphabet {
			walk(append(b, c))
		}
	}
	walk(nil)
}
