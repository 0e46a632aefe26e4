package directory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

const minRSABits = 2048

// validateCtx runs the cheap local checks before the chain, so the reason
// given is the most specific one: an expired certificate from a trusted CA
// says "expired", not "does not chain". ctx bounds CRL fetching.
func (s *snapshot) validateCtx(ctx context.Context, c *x509.Certificate, now time.Time) error {
	if now.Before(c.NotBefore) {
		return certError(c, fmt.Errorf("%w (not before %s)", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339)))
	}
	if now.After(c.NotAfter) {
		return certError(c, fmt.Errorf("%w (not after %s)", ErrExpired, c.NotAfter.UTC().Format(time.RFC3339)))
	}
	// The key type first: an unusable key is the reason an operator can act on, whatever the
	// keyUsage says. RSA keys are wrapped for (keyEncipherment); EC keys on P-256 and P-384
	// agree a key with an ephemeral one (keyAgreement, RFC 5753). keyUsage 0 means the
	// extension is absent, which RFC 5280 reads as "any use".
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return certError(c, fmt.Errorf("%w (%d bits)", ErrWeakKey, k.N.BitLen()))
		}
		if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
			return certError(c, ErrKeyUsage)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return certError(c, fmt.Errorf("%w: %w (%s)", ErrKeyAlgorithm, ErrECKey, k.Curve.Params().Name))
		}
		if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageKeyAgreement == 0 {
			return certError(c, ErrKeyAgreeUsage)
		}
	default:
		return certError(c, fmt.Errorf("%w: %s", ErrKeyAlgorithm, c.PublicKeyAlgorithm))
	}
	if len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0 {
		if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageEmailProtection) &&
			!slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) {
			return certError(c, ErrExtKeyUsage)
		}
	}
	id := CertID(c)
	if cc, ok := s.chainCache.Load(id); ok && cc.(cachedChain).contains(now) {
		return s.fetchedRevocation(ctx, c, cc.(cachedChain).chain, now)
	}
	// Asking for emailProtection also enforces EKU constraints that
	// intermediates place on what they issue.
	chains, err := c.Verify(x509.VerifyOptions{
		Roots:         s.roots,
		Intermediates: s.intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	})
	if err != nil {
		return certError(c, fmt.Errorf("%w: %w", ErrUntrusted, err))
	}
	// Any one chain free of revoked certificates will do. Revocation is
	// fixed for the life of a snapshot, so the cached success stays right.
	var good []*x509.Certificate
	var revoked *x509.Certificate
	for _, ch := range chains {
		if r := s.revokedIn(ch); r == nil {
			good = ch
			break
		} else if revoked == nil {
			revoked = r
		}
	}
	if good == nil {
		if revoked == c {
			return certError(c, ErrRevoked)
		}
		return certError(c, fmt.Errorf("%w (chain certificate %q serial %#x)", ErrRevoked, revoked.Subject.String(), revoked.SerialNumber))
	}
	if s.cached.Add(1) <= maxChainCache {
		s.chainCache.Store(id, cachedChain{window: chainWindow(good), chain: good})
	}
	return s.fetchedRevocation(ctx, c, good, now)
}

// fetchedRevocation checks chain against CRLs fetched from distribution
// points. Unlike the CRL folder these change during a snapshot's life, so
// the check runs on every validation, cached chain or not; it costs map
// lookups once the CRLs are fetched.
func (s *snapshot) fetchedRevocation(ctx context.Context, c *x509.Certificate, chain []*x509.Certificate, now time.Time) error {
	if s.crls == nil {
		return nil
	}
	revoked, err := s.crls.revokedIn(ctx, chain, now)
	switch {
	case err != nil:
		return certError(c, err)
	case revoked == nil:
		return nil
	case revoked == c:
		return certError(c, fmt.Errorf("%w (by a CRL from its distribution point)", ErrRevoked))
	}
	return certError(c, fmt.Errorf("%w (chain certificate %q serial %#x)", ErrRevoked, revoked.Subject.String(), revoked.SerialNumber))
}

// cachedChain is a verified chain and the window in which it stays valid.
type cachedChain struct {
	window
	chain []*x509.Certificate
}

// Chain building costs two RSA verifications or more per certificate, and
// a message to 1000 recipients looks up 1000 certificates. The roots and
// intermediates of a snapshot never change, so a verified chain stays
// verified for as long as every certificate in it is in its validity
// period; only successes are cached, failures are rare and re-checked.
// The bound keeps Validate on certificates from outside the folder (which
// are cached too) from growing memory without limit.
const maxChainCache = 1 << 16

type window struct{ from, to time.Time }

func (w window) contains(t time.Time) bool { return !t.Before(w.from) && !t.After(w.to) }

func chainWindow(chain []*x509.Certificate) window {
	w := window{from: chain[0].NotBefore, to: chain[0].NotAfter}
	for _, c := range chain[1:] {
		if c.NotBefore.After(w.from) {
			w.from = c.NotBefore
		}
		if c.NotAfter.Before(w.to) {
			w.to = c.NotAfter
		}
	}
	return w
}
