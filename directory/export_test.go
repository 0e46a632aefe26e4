package directory

import (
	"crypto/x509"
	"testing"
)

// TestSlapd exposes the slapd helper to the external test package, which
// drives the pipeline (an internal test cannot import it: cycle).
type TestSlapd struct{ s *slapd }

// Constants of the test slapd.
const (
	TestSlapdPeople = slapdPeople
	TestSlapdAdmin  = slapdAdmin
	TestSlapdPW     = slapdPW
)

func StartTestSlapd(t testing.TB) *TestSlapd { return &TestSlapd{startSlapd(t)} }

func (s *TestSlapd) URL() string { return s.s.ldapURL }

func (s *TestSlapd) AddPerson(cn, mail string, certs ...*x509.Certificate) {
	s.s.addPerson(cn, mail, certs, nil)
}

func (s *TestSlapd) Stop()    { s.s.stop() }
func (s *TestSlapd) Restart() { s.s.restart() }
