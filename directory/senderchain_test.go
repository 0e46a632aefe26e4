package directory

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSenderChain(t *testing.T) {
	p := testPKI(t)
	c := p.leaf(leafTemplate("Alice", "alice@example.org"))
	file := filepath.Join(t.TempDir(), "alice.pem")
	if err := os.WriteFile(file, EncodeChain([]*x509.Certificate{c, p.interA}), 0o600); err != nil {
		t.Fatal(err)
	}
	chain, err := LoadSenderChain(file, "Alice@Example.org")
	if err != nil || len(chain) != 2 || !bytes.Equal(chain[0].Raw, c.Raw) {
		t.Fatalf("LoadSenderChain = %d certificates, %v", len(chain), err)
	}
	if _, err := LoadSenderChain(file, "bob@example.org"); err == nil || !strings.Contains(err.Error(), "names alice@example.org, not bob@example.org") {
		t.Fatalf("another address: %v", err)
	}

	for _, tt := range []struct{ msg, want string }{
		{"From: alice@example.org\r\n\r\n", ""},
		{"From: Alice <ALICE@example.org>\r\nSender: bob@example.org\r\n\r\n", "bob@example.org"},
		{"From: mallory@example.org\r\n\r\n", "mallory@example.org"},
	} {
		if got, err := UncoveredSender([]byte(tt.msg), c); err != nil || got != tt.want {
			t.Errorf("UncoveredSender(%q) = %q, %v; want %q", tt.msg, got, err, tt.want)
		}
	}
}
