package smtpfront

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
)

// CertReloader serves the SMTP listeners' certificate through tls.Config.GetCertificate, so that
// SIGHUP can put a renewed certificate in force without a restart: the queue keeps working,
// connections in flight keep the certificate they shook hands with, and every handshake after
// the reload presents the new one. A pair that fails to load (the key not matching the
// certificate because only one file was replaced yet, a truncated file) leaves the previous pair
// in force; the operator sees the error in the log and sends SIGHUP again once both files are in
// place.
type CertReloader struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// NewCertReloader loads the pair once; at start a broken pair is fatal, as there is nothing
// older to fall back on.
func NewCertReloader(certFile, keyFile string) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the pair again and returns its leaf certificate. On error the pair in force
// stays.
func (r *CertReloader) Reload() (*x509.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("failed to load smtp.tls_cert %q and smtp.tls_key %q: %w", r.certFile, r.keyFile, err)
	}
	if pair.Leaf == nil {
		// Go fills Leaf since 1.23; this keeps Leaf usable for the log line whatever the
		// GODEBUG says.
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("failed to parse smtp.tls_cert %q: %w", r.certFile, err)
		}
	}
	r.cur.Store(&pair)
	return pair.Leaf, nil
}

// GetCertificate is the tls.Config hook: the pair in force, whatever the client asks for (one
// listener, one name).
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// Config is a server config that presents the pair in force.
func (r *CertReloader) Config() *tls.Config {
	return &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}
}
