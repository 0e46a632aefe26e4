// Package seal turns one submitted message and its plan into sealed packages.
//
// The message is signed once, the signed entity is encrypted once per content profile the plan
// uses, and each certificate's key wrap is done once per profile and shared by every package that
// names it (the sender's self-copy is wrapped once, not once per package). Packages then differ
// only in their RecipientInfos: each is a small DER prefix in front of the shared ciphertext, so
// the cost of a message grows by one key wrap per recipient, never by one encryption per package.
//
// Keys stay on the HSM: the content key comes from Sealer.NewKey (an HSM session key) and the
// signature from a crypto.Signer backed by the token. seal itself does no I/O beyond writing the
// packages it is asked to write.
package seal

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"appliance/cms"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

// Profile says how content and keys are encrypted for one group of recipients.
type Profile struct {
	Content cms.ContentAlgorithm
	// OAEP wraps content keys with RSAES-OAEP (the token's strongest hash) instead of PKCS#1 v1.5.
	OAEP bool
	// RecipientID is how RecipientInfos name certificates; gpgsm 2.2 reads only IssuerAndSerial.
	RecipientID cms.RecipientIDKind
}

// Profiles are the content profiles (README, "Profiles and who can read them"), by the names the configuration uses.
var Profiles = map[string]Profile{
	split.ProfileCompat: {Content: cms.AES256CBC, RecipientID: cms.IssuerAndSerial},
	"modern":            {Content: cms.AES256GCM, OAEP: true, RecipientID: cms.IssuerAndSerial},
}

// Sender is the identity a message is signed as.
type Sender struct {
	Signer crypto.Signer
	Chain  []*x509.Certificate // leaf first, then intermediates
	PSS    bool                // sign with RSASSA-PSS instead of PKCS#1 v1.5
}

// Sealer seals messages. Its fields are set once; it is safe for concurrent use.
type Sealer struct {
	// NewKey makes a fresh content-encryption key, normally an HSM session key. When the key also
	// has a Destroy(context.Context) error method, it is destroyed once the message is sealed.
	NewKey func(ctx context.Context) (cms.ContentKey, error)
	// OAEPHash says the hash for RSAES-OAEP wraps: the token's strongest, asked per message
	// because a token that comes back after an outage may answer differently.
	OAEPHash func() crypto.Hash
	// Profiles overrides the package-level Profiles when not nil.
	Profiles map[string]Profile
	// SKI, when set, names the owners whose RecipientInfos use subjectKeyIdentifier ids.
	SKI func(owner string) bool
	// Parallel bounds concurrent key wraps (HSM sessions in use); 0 means 4.
	Parallel int
	// Now is the signing time; nil means time.Now.
	Now func() time.Time
}

// Sealed is one message, signed once and encrypted once per profile, ready to be written as
// packages.
type Sealed struct {
	Packages []*Package
}

// Package is one outgoing SMTP transaction's message.
type Package struct {
	split.Package
	header    textproto.Header // the outer header after the package's edits
	smimeType string           // "" for a signed-only package
	// passThrough is the smime-type of the client's envelope the package carries, "" when the
	// appliance encrypted it.
	passThrough string
	der         *cms.Encoded        // the package's CMS, sharing the encrypted content
	b64         *smime.SharedBase64 // the shared part of der in base64, made once per profile
	signed      []byte              // the multipart/signed entity, for signed-only packages
}

// Size is the length of the package's CMS in bytes (0 for a signed-only package).
func (p *Package) Size() int {
	if p.der == nil {
		return 0
	}
	return p.der.Len()
}

// CMS is the package's DER (nil for a signed-only package); it shares memory with other packages.
func (p *Package) CMS() *cms.Encoded { return p.der }

// WriteTo writes the whole RFC 5322 message of the package, streaming the shared ciphertext.
func (p *Package) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	var err error
	switch {
	case p.der == nil:
		err = smime.WriteSigned(cw, p.header, p.signed)
	case p.b64 == nil: // made by NewPassThrough: one package of its own
		err = smime.WritePackage(cw, p.header, p.smimeType, p.der)
	default:
		own, _ := p.der.Shared()
		err = smime.WritePackageShared(cw, p.header, p.smimeType, own, p.b64)
	}
	return cw.n, err
}

// SplitBody returns what WriteTo writes in two parts: the package's own head (its header and
// the base64 of its RecipientInfos) and the base64 of the encrypted content it shares with the
// other packages of its message, the same value for each package that shares it byte for byte.
// shared is nil when the package shares nothing (a signed-only or pass-through package); head
// then writes the whole package. The spool stores a shared part once for all its packages.
func (p *Package) SplitBody() (head, shared io.WriterTo) {
	if p.der == nil || p.b64 == nil {
		return p, nil
	}
	own, _ := p.der.Shared()
	t := p.b64.Tail(own...)
	if t == nil {
		return p, nil
	}
	return writerToFunc(func(w io.Writer) error {
		return smime.WritePackageHead(w, p.header, p.smimeType, own, p.b64)
	}), t
}

// writerToFunc is an io.WriterTo from a function that writes.
type writerToFunc func(w io.Writer) error

func (f writerToFunc) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	err := f(cw)
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// ErrUnknownCert reports a plan naming a certificate the caller did not supply.
var ErrUnknownCert = errors.New("seal: plan names an unknown certificate")

// ErrUnknownProfile reports a plan naming a content profile this sealer does not know.
var ErrUnknownProfile = errors.New("seal: unknown content profile")

// Seal signs the message as sender and builds every package of plan. certs maps each
// split.Cert.ID in the plan to its certificate; those certificates must already be validated
// (directory does that): seal wraps for whatever it is given.
func (s *Sealer) Seal(ctx context.Context, msg []byte, plan *split.Plan, sender Sender, certs map[string]*x509.Certificate) (*Sealed, error) {
	outer, entity, err := smime.Split(bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	entity, clear, err := payloads(outer, entity, plan)
	if err != nil {
		return nil, err
	}
	signed, err := s.sign(entity, sender)
	if err != nil {
		return nil, err
	}

	contents := map[string]*cms.EncryptedContent{}
	keys := map[string]cms.ContentKey{}
	defer func() {
		for _, k := range keys {
			if d, ok := k.(interface{ Destroy(context.Context) error }); ok {
				d.Destroy(context.WithoutCancel(ctx))
			}
		}
	}()
	for _, name := range plan.Profiles {
		prof, ok := s.profile(name)
		if !ok {
			return nil, fmt.Errorf("failed to seal: %w: %q", ErrUnknownProfile, name)
		}
		key, err := s.NewKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("failed to make content key: %w", err)
		}
		keys[name] = key
		ec, err := cms.Encrypt(ctx, key, prof.Content, signed.reader())
		if err != nil {
			return nil, fmt.Errorf("failed to encrypt content: %w", err)
		}
		contents[name] = ec
	}

	ris, err := s.wrapAll(ctx, plan, keys, certs)
	if err != nil {
		return nil, err
	}

	out := &Sealed{}
	var signedBytes []byte // made once, if a signed-only package needs it
	// Every package of a profile ends with the same encrypted content; its base64 is made once
	// and copied into each package as it is written (it was the largest cost of writing the 21
	// packages of a 1 MB message, bench/HISTORY.md).
	b64 := map[string]*smime.SharedBase64{}
	for _, pk := range plan.Packages {
		p := &Package{Package: pk, header: outer.Copy()}
		pk.Edits.Apply(&p.header)
		obscure(plan, pk, &p.header)
		if pk.Profile == "" {
			if signedBytes == nil {
				if signedBytes, err = s.signedOnly(plan, signed, clear, sender); err != nil {
					return nil, err
				}
			}
			p.signed = signedBytes
			out.Packages = append(out.Packages, p)
			continue
		}
		list := make([]*cms.RecipientInfo, 0, len(pk.Certs))
		for _, c := range pk.Certs {
			list = append(list, ris[wrapKey{pk.Profile, c.ID}])
		}
		ec := contents[pk.Profile]
		if p.der, err = cms.Envelope(ec, list); err != nil {
			return nil, fmt.Errorf("failed to assemble package: %w", err)
		}
		if b64[pk.Profile] == nil {
			_, shared := p.der.Shared()
			b64[pk.Profile] = smime.NewSharedBase64(shared)
		}
		p.b64 = b64[pk.Profile]
		p.smimeType = smime.TypeEnvelopedData
		if ec.Algorithm == cms.AES256GCM {
			p.smimeType = smime.TypeAuthEnvelopedData
		}
		out.Packages = append(out.Packages, p)
	}
	return out, nil
}

// sign makes the multipart/signed entity that every package carries or encrypts.
func (s *Sealer) sign(entity []byte, sender Sender) (*signedEntity, error) {
	if sender.Signer == nil || len(sender.Chain) == 0 {
		return nil, errors.New("failed to sign: sender has no key or certificate")
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	sig, err := cms.Sign(sender.Signer, sender.Chain, entity, cms.SignOptions{
		Hash:           crypto.SHA256,
		PSS:            sender.PSS,
		Detached:       true,
		SigningTime:    now(),
		EncryptionCert: sender.Chain[0],
	})
	if err != nil {
		return nil, fmt.Errorf("failed to sign: %w", err)
	}
	micalg, err := smime.MicAlg(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	head, tail := smime.SignedEntityParts(entity, sig, micalg)
	return &signedEntity{head: head, entity: entity, tail: tail}, nil
}

// signedEntity is the multipart/signed entity in its three pieces: the large middle is the
// message's own entity, which is encrypted straight from where it is rather than copied.
type signedEntity struct{ head, entity, tail []byte }

// reader streams the entity; its Len lets cms size the ciphertext buffer once.
func (e *signedEntity) reader() *lenReader {
	return &lenReader{Reader: io.MultiReader(bytes.NewReader(e.head), bytes.NewReader(e.entity), bytes.NewReader(e.tail)),
		n: len(e.head) + len(e.entity) + len(e.tail)}
}

func (e *signedEntity) bytes() []byte {
	b := make([]byte, 0, len(e.head)+len(e.entity)+len(e.tail))
	return append(append(append(b, e.head...), e.entity...), e.tail...)
}

type lenReader struct {
	io.Reader
	n int
}

func (r *lenReader) Len() int { return r.n }

func (s *Sealer) profile(name string) (Profile, bool) {
	m := s.Profiles
	if m == nil {
		m = Profiles
	}
	p, ok := m[name]
	return p, ok
}

type wrapKey struct{ profile, certID string }

// wrapAll makes one RecipientInfo per (profile, certificate) that any package needs, in parallel
// on the HSM's sessions.
func (s *Sealer) wrapAll(ctx context.Context, plan *split.Plan, keys map[string]cms.ContentKey, certs map[string]*x509.Certificate) (map[wrapKey]*cms.RecipientInfo, error) {
	type job struct {
		wk    wrapKey
		owner string
	}
	var jobs []job
	seen := map[wrapKey]bool{}
	oaep := crypto.SHA1 // RFC 4055's default, and all SoftHSM2 can do
	if s.OAEPHash != nil {
		oaep = s.OAEPHash()
	}
	for _, pk := range plan.Packages {
		for _, c := range pk.Certs {
			wk := wrapKey{pk.Profile, c.ID}
			if seen[wk] {
				continue
			}
			if certs[c.ID] == nil {
				return nil, fmt.Errorf("failed to wrap content key: %w: %s of %q", ErrUnknownCert, c.ID, c.Owner)
			}
			seen[wk] = true
			jobs = append(jobs, job{wk, c.Owner})
		}
	}

	n := s.Parallel
	if n <= 0 {
		n = 4
	}
	ris := make(map[wrapKey]*cms.RecipientInfo, len(jobs))
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan job, len(jobs))
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, j := range jobs {
		next <- j
	}
	close(next)
	work := func() {
		for j := range next {
			if ctx.Err() != nil {
				continue // failed or cancelled: the rest is not wrapped
			}
			prof, _ := s.profile(j.wk.profile)
			opts := cms.KeyTransOptions{ID: prof.RecipientID}
			if s.SKI != nil && s.SKI(j.owner) {
				opts.ID = cms.SubjectKeyID
			}
			if prof.OAEP {
				opts.OAEPHash = oaep
			}
			cert := certs[j.wk.certID]
			ri, err := recipientInfo(ctx, keys[j.wk.profile], cert, opts)
			mu.Lock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("failed to wrap content key for %q (certificate %q serial %#x): %w",
					j.owner, cert.Subject.String(), cert.SerialNumber, err)
				cancel()
			}
			ris[j.wk] = ri
			mu.Unlock()
		}
	}
	// The calling goroutine is one of the workers: a message with one recipient and the
	// self-copy starts one goroutine, not two.
	for range min(n, len(jobs)) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return ris, nil
}
