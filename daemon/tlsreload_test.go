package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-smtp"

	"appliance/config"
	"appliance/internal/softhsmtest"
	"appliance/smtpfront"
)

type testPair = softhsmtest.TLSPair

func newTestPair(t *testing.T, serial int64) testPair { return softhsmtest.NewTLSPair(t, serial) }

func writeTestFile(t *testing.T, path string, b []byte) { softhsmtest.WriteFile(t, path, b) }

func servedSerial(t *testing.T, addr string, trust ...testPair) int64 {
	t.Helper()
	pool := x509.NewCertPool()
	for _, p := range trust {
		pool.AddCert(p.Parsed)
	}
	c, err := smtp.DialStartTLS(addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c.Close()
	if err := c.Hello("client.example.test"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	st, ok := c.TLSConnectionState()
	if !ok || st.Version < tls.VersionTLS12 {
		t.Fatalf("TLS state %v, version %x", ok, st.Version)
	}
	return st.PeerCertificates[0].SerialNumber.Int64()
}

// serveFront runs the SMTP front end with f's options, as serve does.
func serveFront(t *testing.T, f *front) string {
	t.Helper()
	srv := smtpfront.New(f.options(smtpfront.Options{Hostname: "relay.example.test"}), nil, nextPolicy{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return l.Addr().String()
}

func TestCertReload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// renew replaces the files after the first pair is in force.
		renew      func(t *testing.T, certFile, keyFile string, next testPair)
		wantErr    bool
		wantSerial int64 // presented after the reload
	}{
		{"ok renewed pair is presented", func(t *testing.T, c, k string, next testPair) {
			writeTestFile(t, c, next.Cert)
			writeTestFile(t, k, next.Key)
		}, false, 2},
		{"ok renewed pair moved into place", func(t *testing.T, c, k string, next testPair) {
			// Tools like certbot swap files by rename; the path is what counts.
			tmpC, tmpK := c+".new", k+".new"
			writeTestFile(t, tmpC, next.Cert)
			writeTestFile(t, tmpK, next.Key)
			if err := os.Rename(tmpC, c); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmpK, k); err != nil {
				t.Fatal(err)
			}
		}, false, 2},
		{"fail only the certificate replaced yet keeps the old pair", func(t *testing.T, c, _ string, next testPair) {
			writeTestFile(t, c, next.Cert)
		}, true, 1},
		{"fail truncated certificate keeps the old pair", func(t *testing.T, c, k string, next testPair) {
			writeTestFile(t, c, next.Cert[:len(next.Cert)/2])
			writeTestFile(t, k, next.Key)
		}, true, 1},
		{"fail garbage key keeps the old pair", func(t *testing.T, c, k string, next testPair) {
			writeTestFile(t, c, next.Cert)
			writeTestFile(t, k, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
		}, true, 1},
		{"fail key file removed keeps the old pair", func(t *testing.T, _, k string, _ testPair) {
			if err := os.Remove(k); err != nil {
				t.Fatal(err)
			}
		}, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.key")
			first, second := newTestPair(t, 1), newTestPair(t, 2)
			writeTestFile(t, certFile, first.Cert)
			writeTestFile(t, keyFile, first.Key)

			// Through the front, as serve builds it: the same config
			// object must present the new pair after ReloadTLS.
			cfg := config.Defaults()
			cfg.SMTP.TLSCert, cfg.SMTP.TLSKey = certFile, keyFile
			f, err := newFront(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			addr := serveFront(t, f)
			if got := servedSerial(t, addr, first, second); got != 1 {
				t.Fatalf("before reload: serial %d, want 1", got)
			}

			tt.renew(t, certFile, keyFile, second)
			leaf, err := f.ReloadTLS()
			if tt.wantErr {
				if err == nil {
					t.Fatal("reload of a broken pair succeeded")
				}
			} else {
				if err != nil {
					t.Fatalf("reload: %v", err)
				}
				if leaf == nil || leaf.SerialNumber.Int64() != tt.wantSerial {
					t.Errorf("reload returned leaf %v, want serial %d", leaf, tt.wantSerial)
				}
			}
			if got := servedSerial(t, addr, first, second); got != tt.wantSerial {
				t.Fatalf("after reload: serial %d, want %d", got, tt.wantSerial)
			}
		})
	}
}

func TestReloadTLSWithoutTLS(t *testing.T) {
	t.Parallel()
	f, err := newFront(config.Defaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if leaf, err := f.ReloadTLS(); leaf != nil || err != nil {
		t.Fatalf("ReloadTLS without tls_cert = %v, %v; want nil, nil", leaf, err)
	}
}
