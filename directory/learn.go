package directory

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"appliance/cms"
	"appliance/cms/oid"
	"appliance/smime"
)

// Content profiles as the configuration spells them.
const (
	ProfileCompat = "compat" // EnvelopedData, AES-256-CBC, RSA PKCS #1 v1.5
	ProfileModern = "modern" // AuthEnvelopedData, AES-256-GCM, RSAES-OAEP
)

// ProfileFromCapabilities is the strongest profile both the appliance and
// a correspondent announcing caps support: modern when AES-256-GCM is
// among them, compat otherwise, and "" for no capabilities at all (nothing
// known; policy decides). RSAES-OAEP is not required to be announced:
// every client known to decrypt AuthEnvelopedData (OpenSSL 3) also
// decrypts OAEP, and RFC 8551 clients announce key-transport algorithms
// rarely.
func ProfileFromCapabilities(caps []asn1.ObjectIdentifier) string {
	if len(caps) == 0 {
		return ""
	}
	for _, c := range caps {
		if c.Equal(oid.AES256GCM) {
			return ProfileModern
		}
	}
	return ProfileCompat
}

// capsSuffix marks a learnt-capabilities sidecar in the certificates
// folder; the loader reads these as JSON, not as certificates.
const capsSuffix = ".caps.json"

// LearntCaps is what a signed message from Address taught: the
// SMIMECapabilities signed attribute (RFC 8551 section 2.5.2) of its
// signer. It is stored as JSON next to the certificate it came with.
type LearntCaps struct {
	Address      string       `json:"address"`
	CertID       string       `json:"cert_id"`
	LearntAt     time.Time    `json:"learnt_at"`
	Capabilities []Capability `json:"capabilities"`
	// Profile is written for people reading the file; loading recomputes
	// it from Capabilities, so a newer appliance can read more into them.
	Profile string `json:"profile"`
	File    string `json:"-"`
}

// Capability is one SMIMECapability: an algorithm OID in dotted form and
// its parameters as DER (omitted when absent).
type Capability struct {
	Algorithm  string `json:"algorithm"`
	Parameters []byte `json:"parameters,omitempty"`
}

// OIDs returns the capabilities' algorithms, skipping malformed ones.
func (l *LearntCaps) OIDs() []asn1.ObjectIdentifier {
	var out []asn1.ObjectIdentifier
	for _, c := range l.Capabilities {
		if o, err := parseOID(c.Algorithm); err == nil {
			out = append(out, o)
		}
	}
	return out
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	var o asn1.ObjectIdentifier
	for _, part := range strings.Split(s, ".") {
		var n int
		if _, err := fmt.Sscanf(part, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != part {
			return nil, fmt.Errorf("bad OID %q", s)
		}
		o = append(o, n)
	}
	if len(o) < 2 {
		return nil, fmt.Errorf("bad OID %q", s)
	}
	return o, nil
}

// addCapsFile indexes a sidecar; the latest learnt per address wins, since
// correspondents upgrade their clients.
func (s *snapshot) addCapsFile(path string, caseSensitiveLocal bool) {
	data, err := os.ReadFile(path)
	if err == nil && len(data) > maxFileSize {
		err = fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	var l LearntCaps
	if err == nil {
		err = json.Unmarshal(data, &l)
	}
	if err == nil && l.Address == "" {
		err = errors.New("no address")
	}
	if err != nil {
		s.problems = append(s.problems, &FileError{Path: path, Err: fmt.Errorf("failed to read learnt capabilities: %w", err)})
		return
	}
	l.File = path
	l.Profile = ProfileFromCapabilities(l.OIDs())
	k := foldAddress(l.Address, caseSensitiveLocal)
	if old := s.learnt[k]; old == nil || l.LearntAt.After(old.LearntAt) {
		s.learnt[k] = &l
	}
}

// profileFor prefers what the owner's own client said over what the CA
// wrote into the certificate.
func (s *snapshot) profileFor(key string, e *Entry) string {
	if l := s.learnt[key]; l != nil {
		return l.Profile
	}
	return ProfileFromCapabilities(e.SMIMECaps)
}

// withProfile returns e with the profile learnt for key, copying it only
// when that differs (LDAP entries are cached across reloads).
func (s *snapshot) withProfile(key string, e *Entry) *Entry {
	p := s.profileFor(key, e)
	if p == e.Profile {
		return e
	}
	c := *e
	c.Profile = p
	return &c
}

// LearntFor returns what was learnt about addr's capabilities, if anything.
func (d *Directory) LearntFor(addr string) (*LearntCaps, bool) {
	l, ok := d.snap.Load().learnt[d.fold(addr)]
	return l, ok
}

// Errors of [Directory.Learn].
var (
	// ErrNotSignedMessage is a message that is neither multipart/signed
	// nor application/pkcs7-mime signed-data.
	ErrNotSignedMessage = errors.New("not an S/MIME signed message")
	// ErrSignature is a signature that does not verify, or a signer that
	// does not chain to the roots: learning from it would let anyone plant
	// a certificate.
	ErrSignature = errors.New("signature does not verify")
)

// Learnt is the outcome of [Directory.Learn].
type Learnt struct {
	Address string // the From address the certificate is filed under
	// Cert is the certificate the correspondent wants encrypted mail for:
	// the one named by its SMIMEEncryptionKeyPreference attribute when the
	// message carries it, else the signing certificate.
	Cert         *x509.Certificate
	Capabilities []Capability
	Profile      string
	// CertFile and CapsFile are the files written into the folder.
	CertFile, CapsFile string
	// Unusable is why Cert cannot be used for encryption (nil when it can);
	// the capabilities are kept either way.
	Unusable error
}

// maxLearnSize bounds the message read by Learn.
const maxLearnSize = 64 << 20

// Learn reads a signed message a correspondent sent (multipart/signed or
// application/pkcs7-mime signed-data), verifies its signature and its
// signer's chain against the directory's roots and that the signer's
// certificate is issued for the From address, and files the certificate
// and the SMIMECapabilities signed attribute in the certificates folder
// under learnt/. It then reloads, so the next lookup sees them.
func (d *Directory) Learn(msg []byte) (*Learnt, error) {
	if len(msg) > maxLearnSize {
		return nil, fmt.Errorf("failed to learn: message larger than %d bytes", maxLearnSize)
	}
	from, err := fromAddress(msg)
	if err != nil {
		return nil, fmt.Errorf("failed to learn: %w", err)
	}
	sd, content, err := signedParts(msg)
	if err != nil {
		return nil, fmt.Errorf("failed to learn: %w", err)
	}
	s := d.snap.Load()
	now := d.opts.Now()
	signers, err := sd.Verify(cms.VerifyOptions{Roots: s.roots, Intermediates: s.intermediates, Content: content, CurrentTime: now})
	if err != nil {
		return nil, fmt.Errorf("failed to learn: %w: %w", ErrSignature, err)
	}
	if len(signers) != 1 || len(sd.Signers) != 1 {
		return nil, fmt.Errorf("failed to learn: %d signers, want one", len(signers))
	}
	signer, si := signers[0], sd.Signers[0]
	if !d.issuedFor(signer, d.fold(from)) {
		return nil, fmt.Errorf("failed to learn: signer %w %q", ErrAddressMismatch, from)
	}
	attrs, err := signedAttributes(si.SignedAttrs)
	if err != nil {
		return nil, fmt.Errorf("failed to learn: %w", err)
	}
	l := &Learnt{Address: from, Cert: signer}
	if pref := encryptionKeyPreference(attrs[oid.AttrEncrypKeyPref.String()], sd.Certificates); pref != nil && d.issuedFor(pref, d.fold(from)) {
		l.Cert = pref
	}
	if raw, ok := attrs[oid.AttrSMIMECapabilities.String()]; ok {
		var caps []smimeCapability
		if rest, err := asn1.Unmarshal(raw, &caps); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("failed to learn: malformed SMIMECapabilities attribute")
		}
		for _, c := range caps {
			l.Capabilities = append(l.Capabilities, Capability{Algorithm: c.ID.String(), Parameters: c.Params.FullBytes})
		}
	}
	var oids []asn1.ObjectIdentifier
	for _, c := range l.Capabilities {
		o, _ := parseOID(c.Algorithm)
		oids = append(oids, o)
	}
	l.Profile = ProfileFromCapabilities(oids)
	l.Unusable = d.ValidateFor(l.Cert, from, now)

	if err := d.writeLearnt(l, sd.Certificates, now); err != nil {
		return nil, err
	}
	if err := d.Reload(); err != nil {
		return nil, fmt.Errorf("failed to reload after learning: %w", err)
	}
	return l, nil
}

func (d *Directory) writeLearnt(l *Learnt, msgCerts []*x509.Certificate, now time.Time) error {
	dir := filepath.Join(d.opts.CertsDir, "learnt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("failed to learn: %w", err)
	}
	id := CertID(l.Cert)
	base := filepath.Join(dir, fileSafe(foldAddress(l.Address, true))+"-"+id[:16])
	l.CertFile, l.CapsFile = base+".pem", base+capsSuffix
	// The CA certificates the message carried go along, so the folder has
	// the intermediates to chain the certificate even when the roots
	// file lacks them.
	var pemData bytes.Buffer
	pem.Encode(&pemData, &pem.Block{Type: "CERTIFICATE", Bytes: l.Cert.Raw})
	for _, c := range msgCerts {
		if c.IsCA && !isSelfSigned(c) {
			pem.Encode(&pemData, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
	}
	caps := LearntCaps{Address: l.Address, CertID: id, LearntAt: now.UTC(), Capabilities: l.Capabilities, Profile: l.Profile}
	if caps.Capabilities == nil {
		caps.Capabilities = []Capability{}
	}
	js, err := json.MarshalIndent(caps, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to learn: %w", err)
	}
	if err := writeAtomic(l.CertFile, pemData.Bytes()); err != nil {
		return err
	}
	return writeAtomic(l.CapsFile, append(js, '\n'))
}

// writeAtomic writes through a dot file (which the loader skips) and a
// rename, so a daemon reloading meanwhile never reads half a file.
func writeAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	return nil
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@.-_+", r) {
			return r
		}
		return '_'
	}, s)
}

func fromAddress(msg []byte) (string, error) {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return "", fmt.Errorf("failed to read header: %w", err)
	}
	from := m.Header.Get("From")
	if from == "" {
		return "", errors.New("message has no From field")
	}
	a, err := mail.ParseAddress(from)
	if err != nil {
		return "", fmt.Errorf("failed to parse From %q: %w", from, err)
	}
	return a.Address, nil
}

// signedParts finds the SignedData and, for a detached signature, the
// content it covers.
func signedParts(msg []byte) (*cms.Signed, []byte, error) {
	if ms, err := smime.ParseSigned(msg); err == nil {
		sd, err := cms.ParseSigned(ms.Signature)
		if err != nil {
			return nil, nil, err
		}
		return sd, ms.Content, nil
	} else if !errors.Is(err, smime.ErrNotSigned) {
		return nil, nil, err
	}
	pkg, err := smime.Parse(bytes.NewReader(msg), maxLearnSize)
	if err != nil {
		if errors.Is(err, smime.ErrNotPKCS7MIME) {
			return nil, nil, fmt.Errorf("%w: %w", ErrNotSignedMessage, err)
		}
		return nil, nil, err
	}
	if pkg.SMIMEType != "" && pkg.SMIMEType != smime.TypeSignedData {
		return nil, nil, fmt.Errorf("%w: smime-type %q", ErrNotSignedMessage, pkg.SMIMEType)
	}
	sd, err := cms.ParseSigned(pkg.DER)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotSignedMessage, err)
	}
	return sd, nil, nil
}

type attribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

// signedAttributes maps attribute OIDs (dotted) to the DER of their first
// value. raw is the [0] IMPLICIT SET OF Attribute element.
func signedAttributes(raw []byte) (map[string][]byte, error) {
	out := map[string][]byte{}
	if len(raw) == 0 {
		return out, nil
	}
	set := append([]byte{0x31}, raw[1:]...) // [0] IMPLICIT -> SET
	var attrs []attribute
	if rest, err := asn1.UnmarshalWithParams(set, &attrs, "set"); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("failed to parse signed attributes: %v", cmpOr(err, errors.New("trailing data")))
	}
	for _, a := range attrs {
		if len(a.Values) > 0 {
			if _, dup := out[a.Type.String()]; !dup {
				out[a.Type.String()] = a.Values[0].FullBytes
			}
		}
	}
	return out, nil
}

// encryptionKeyPreference resolves RFC 8551 section 2.5.3's
// SMIMEEncryptionKeyPreference against the message's certificates: by
// issuerAndSerialNumber [0] or subjectAltKeyIdentifier [2]. nil when
// absent, malformed, or naming a certificate the message lacks.
func encryptionKeyPreference(raw []byte, certs []*x509.Certificate) *x509.Certificate {
	if raw == nil {
		return nil
	}
	var choice asn1.RawValue
	if _, err := asn1.Unmarshal(raw, &choice); err != nil || choice.Class != asn1.ClassContextSpecific {
		return nil
	}
	switch choice.Tag {
	case 0:
		var ias struct {
			Issuer asn1.RawValue
			Serial asn1.RawValue
		}
		// IMPLICIT SEQUENCE: re-tag to parse.
		seq := append([]byte{0x30}, choice.FullBytes[1:]...)
		if _, err := asn1.Unmarshal(seq, &ias); err != nil {
			return nil
		}
		for _, c := range certs {
			serial, err := asn1.Marshal(c.SerialNumber)
			if err == nil && bytes.Equal(ias.Issuer.FullBytes, c.RawIssuer) && bytes.Equal(ias.Serial.FullBytes, serial) {
				return c
			}
		}
	case 2:
		for _, c := range certs {
			if len(c.SubjectKeyId) > 0 && bytes.Equal(choice.Bytes, c.SubjectKeyId) {
				return c
			}
		}
	}
	return nil
}

// ReadMessage reads a message for [Directory.Learn], bounded.
func ReadMessage(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxLearnSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read message: %w", err)
	}
	if len(b) > maxLearnSize {
		return nil, fmt.Errorf("failed to read message: larger than %d bytes", maxLearnSize)
	}
	return b, nil
}
