package directory

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// Reasons a certificate is not usable for encryption; a [*CertError]
// unwraps to one of them.
var (
	ErrExpired      = errors.New("certificate has expired")
	ErrNotYetValid  = errors.New("certificate is not valid yet")
	ErrKeyUsage     = errors.New("keyUsage lacks keyEncipherment")
	ErrExtKeyUsage  = errors.New("extKeyUsage lacks emailProtection")
	ErrKeyAlgorithm = errors.New("unsupported public key algorithm")
	// ErrECKey also matches ErrKeyAlgorithm: EC recipients get a
	// KeyAgreeRecipientInfo (RFC 5753), which the appliance builds on P-256
	// and P-384 only (README, EC recipients).
	ErrECKey           = errors.New("EC keys on curves other than P-256 and P-384 are refused")
	ErrWeakKey         = errors.New("RSA key shorter than 2048 bits")
	ErrUntrusted       = errors.New("certificate does not chain to the configured roots")
	ErrAddressMismatch = errors.New("certificate is not issued for this address")
	ErrNoAddress       = errors.New("certificate names no email address")
)

// ErrKeyAgreeUsage is the keyUsage refusal of an EC certificate: it lacks
// keyAgreement, which ECDH needs. It also matches [ErrKeyUsage].
var ErrKeyAgreeUsage error = keyAgreeUsage{}

type keyAgreeUsage struct{}

func (keyAgreeUsage) Error() string { return "keyUsage lacks keyAgreement" }
func (keyAgreeUsage) Unwrap() error { return ErrKeyUsage }

// ErrNoRoots is returned by [Open] and [Directory.Reload] when the roots
// file holds no self-signed certificate to anchor trust in.
var ErrNoRoots = errors.New("no self-signed root certificate")

// CertError says which certificate was refused and why, e.g.
// `certificate "CN=ivan,O=Example" serial 0x1f: keyUsage lacks keyEncipherment`.
type CertError struct {
	Subject string // RFC 2253 form
	Serial  string // hex, 0x-prefixed
	Err     error
}

func (e *CertError) Error() string {
	return fmt.Sprintf("certificate %q serial %s: %v", e.Subject, e.Serial, e.Err)
}

func (e *CertError) Unwrap() error { return e.Err }

func certError(c *x509.Certificate, err error) *CertError {
	serial := "<none>"
	if c.SerialNumber != nil {
		serial = fmt.Sprintf("%#x", c.SerialNumber)
	}
	return &CertError{Subject: c.Subject.String(), Serial: serial, Err: err}
}

// FileError is a file in the certificates folder that contributed nothing:
// unreadable, not a certificate, or holding a certificate that cannot be
// indexed. It does not stop the other files from loading.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("failed to load %q: %v", e.Path, e.Err) }

func (e *FileError) Unwrap() error { return e.Err }

// ErrUnavailable is a source or a CRL that could not be consulted (LDAP
// down, CRL distribution point unreachable). It is never a verdict on a
// certificate: the caller should try again later, which is why
// [*UnavailableError] says Temporary.
var ErrUnavailable = errors.New("certificate source unavailable")

// UnavailableError names what could not be consulted. It unwraps to both
// [ErrUnavailable] and the cause, and reports Temporary() true so the queue
// defers the message instead of bouncing it.
type UnavailableError struct {
	Source string // "ldap ldaps://ldap.example.test", "crl http://crl.example.test/inter.crl"
	Err    error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%v: %s: %v", ErrUnavailable, e.Source, e.Err)
}

func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// Temporary marks the error for the queue's retry logic.
func (e *UnavailableError) Temporary() bool { return true }
