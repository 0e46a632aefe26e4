package smtpfront

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// testTLS makes a throwaway server certificate for 127.0.0.1 and a client
// config that trusts it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "front.example.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client
}

func TestTLS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		implicit bool
		maxVer   uint16
		wantErr  bool
	}{
		{"ok starttls then auth", false, 0, false},
		{"ok implicit tls then auth", true, 0, false},
		{"fail starttls below tls 1.2", false, tls.VersionTLS11, true},
		{"fail implicit tls below tls 1.2", true, tls.VersionTLS11, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srvCfg, cliCfg := testTLS(t)
			cliCfg.MaxVersion = tt.maxVer
			spool := newFileSpool(t)
			ts := &testServer{spool: spool}
			ts.srv = New(Options{TLSConfig: srvCfg, Auth: passwords{"alice": "secret"}}, spool, newTestPolicy())
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			serve := ts.srv.Serve
			if tt.implicit {
				serve = ts.srv.ServeTLS
			}
			done := make(chan error, 1)
			go func() { done <- serve(l) }()
			defer func() {
				ts.srv.Close()
				if err := <-done; err != nil {
					t.Errorf("Serve = %v", err)
				}
			}()

			var c *smtp.Client
			if tt.implicit {
				c, err = smtp.DialTLS(l.Addr().String(), cliCfg)
			} else {
				c, err = smtp.DialStartTLS(l.Addr().String(), cliCfg)
			}
			if err == nil {
				defer c.Close()
				// The client handshakes lazily; EHLO forces it.
				err = c.Hello("client.example.test")
			}
			if tt.wantErr {
				if err == nil {
					t.Fatal("handshake below TLS 1.2 succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if state, ok := c.TLSConnectionState(); !ok || state.Version < tls.VersionTLS12 {
				t.Fatalf("TLS state %v %x", ok, state.Version)
			}
			if ok, _ := c.Extension("STARTTLS"); ok {
				t.Error("STARTTLS offered again inside TLS")
			}
			if err := c.Auth(sasl.NewPlainClient("", "alice", "secret")); err != nil {
				t.Fatalf("AUTH over TLS: %v", err)
			}
			if err := c.SendMail("alice@example.test", []string{"bob@example.test"}, strings.NewReader(goodMsg)); err != nil {
				t.Fatal(err)
			}
			if env := spool.envelope("m0001"); env.AuthUser != "alice" {
				t.Errorf("AuthUser = %q", env.AuthUser)
			}
		})
	}
}

func TestServeTLSWithoutConfig(t *testing.T) {
	t.Parallel()
	s := New(Options{}, newFileSpool(t), newTestPolicy())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := s.ServeTLS(l); err == nil {
		t.Fatal("ServeTLS without TLSConfig succeeded")
	}
}
