package pipeline_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"appliance/cms"
	"appliance/directory"
	"appliance/hsm"
	"appliance/internal/lockedbuf"
	"appliance/internal/softhsmtest"
	"appliance/lists"
	"appliance/pipeline"
	"appliance/split"
)

// listTok adapts hsm.Token to lists.ListToken the way the daemon does.
type listTok struct{ *hsm.Token }

func (t listTok) UnwrapCEK(ctx context.Context, uri string, wrapped []byte, h crypto.Hash) (cms.ContentKey, error) {
	k, err := t.Token.UnwrapCEK(ctx, uri, wrapped, h)
	if err != nil {
		if errors.Is(err, hsm.ErrUnwrap) || errors.Is(err, hsm.ErrOAEPHash) {
			return nil, fmt.Errorf("%w: %w", lists.ErrWrappedKey, err)
		}
		return nil, err
	}
	return k, nil
}

func (t listTok) UnwrapAgreedCEK(ctx context.Context, uri string, ka *cms.KeyAgreement) (cms.ContentKey, error) {
	k, err := t.Token.UnwrapAgreedCEK(ctx, uri, hsm.KeyAgreement{OriginatorKey: ka.OriginatorKey,
		Hash: ka.Hash, SharedInfo: ka.SharedInfo, KEKSize: ka.KEKSize, Wrapped: ka.EncryptedKey})
	if err != nil {
		if errors.Is(err, hsm.ErrUnwrap) {
			return nil, fmt.Errorf("%w: %w", lists.ErrWrappedKey, err)
		}
		return nil, err
	}
	return k, nil
}

const listAddr = "list@example.test"

// memberPKI is a folder of extra member certificates signed by the test PKI's intermediate
// (NAME.pem, NAME.key, as interop expects), all sharing one RSA-2048 key: generating thousands
// of keys would take minutes and tells nothing more about the list agent.
type memberPKI struct {
	dir   string
	names []string // x00001 ...
}

func (m memberPKI) addr(i int) string { return m.names[i] + "@example.test" }

// makeMembers makes n member certificates under dir, or reuses them when dir already has them.
func makeMembers(tb testing.TB, env *softhsmtest.Env, dir string, n int) memberPKI {
	tb.Helper()
	m := memberPKI{dir: dir}
	for i := range n {
		m.names = append(m.names, fmt.Sprintf("x%05d", i+1))
	}
	done := filepath.Join(dir, "done")
	if _, err := os.Stat(done); err == nil {
		return m
	}
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o755); err != nil {
		tb.Fatal(err)
	}
	inter := env.Cert(tb, "inter")
	interKey := env.Key(tb, "inter")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})
	now := time.Now()
	for _, name := range m.names {
		serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
		email := name + "@example.test"
		tmpl := &x509.Certificate{
			SerialNumber:   serial,
			Subject:        pkix.Name{Organization: []string{"Appliance Test"}, CommonName: name},
			NotBefore:      now.Add(-time.Hour),
			NotAfter:       now.Add(365 * 24 * time.Hour),
			KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
			EmailAddresses: []string{email},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, &key.PublicKey, interKey)
		if err != nil {
			tb.Fatal(err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		for path, data := range map[string][]byte{
			filepath.Join(dir, name+".pem"):          certPEM,
			filepath.Join(dir, "certs", name+".pem"): certPEM,
			filepath.Join(dir, name+".key"):          keyPEM,
		} {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		tb.Fatal(err)
	}
	return m
}

// cachedMembers keeps n member certificates under os.TempDir()/appliance-test-cache, keyed by
// the PKI they chain to, the way softhsmtest caches the PKI itself.
func cachedMembers(tb testing.TB, env *softhsmtest.Env, n int) memberPKI {
	tb.Helper()
	sum := sha256.Sum256(env.Cert(tb, "inter").Raw)
	dir := filepath.Join(os.TempDir(), "appliance-test-cache", fmt.Sprintf("list-members-%d-%s", n, hex.EncodeToString(sum[:6])))
	return makeMembers(tb, env, dir, n)
}

type listSetup struct {
	pipe   *pipeline.Pipeline
	dir    *directory.Directory
	env    *softhsmtest.Env
	logs   *lockedbuf.Buffer
	chain  []*x509.Certificate
	folder string // certificates folder of the directory
}

// newListPipeline builds a pipeline over a directory of the test PKI's certificates plus extra,
// with one list whose members are given; with set the options can be changed before New.
func newListPipeline(tb testing.TB, pol split.Policy, extra []memberPKI, list lists.List, members []string, set ...func(*pipeline.Options)) *listSetup {
	tb.Helper()
	env := softhsmtest.Setup(tb)
	if sharedToken == nil {
		tok, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 6})
		if err != nil {
			tb.Fatal(err)
		}
		sharedToken = tok
	}
	folder := tb.TempDir()
	ents, err := os.ReadDir(env.File("certs"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		copyFile(tb, env.File(filepath.Join("certs", e.Name())), filepath.Join(folder, e.Name()))
	}
	for _, m := range extra {
		for _, name := range m.names {
			from, to := filepath.Join(m.dir, "certs", name+".pem"), filepath.Join(folder, name+".pem")
			// A hard link keeps thousands of benchmark certificates uncopied.
			if err := os.Link(from, to); err != nil {
				copyFile(tb, from, to)
			}
		}
	}
	dir, err := directory.Open(directory.Options{CertsDir: folder, RootsFile: env.File("roots.pem")})
	if err != nil {
		tb.Fatal(err)
	}
	alice, err := directory.LoadCertificates(env.File("alice.chain.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	logs := &lockedbuf.Buffer{}
	opts := pipeline.Options{
		Directory: dir,
		Token:     token{Token: sharedToken},
		Senders:   []pipeline.Sender{{Address: "alice@example.test", KeyURI: "pkcs11:token=appliance;object=alice", Chain: alice}},
		Policy:    pol,
		Hostname:  "relay.example.test",
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
	}
	for _, f := range set {
		f(&opts)
	}
	p, err := pipeline.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	chain, err := directory.LoadCertificates(env.File("list.chain.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	if list.Address == "" {
		list.Address = listAddr
	}
	if list.KeyURI == "" {
		list.KeyURI = "pkcs11:token=appliance;object=list"
	}
	if list.Chain == nil {
		list.Chain = chain
	}
	list.MembersFile = filepath.Join(tb.TempDir(), "members")
	writeMembers(tb, list.MembersFile, members)
	if err := p.SetLists([]lists.List{list}, listTok{sharedToken}); err != nil {
		tb.Fatal(err)
	}
	return &listSetup{pipe: p, dir: dir, env: env, logs: logs, chain: chain, folder: folder}
}

func writeMembers(tb testing.TB, path string, members []string) {
	tb.Helper()
	content := "# members of the test list\n\n" + strings.Join(members, "\n") + "\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	in, err := os.Open(from)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
}

// encryptedPost is a message to the list whose body is what openssl made for the list's
// certificate, as a poster's client would send it.
func encryptedPost(der []byte, from string) []byte {
	var b bytes.Buffer
	b.WriteString("From: " + from + "\r\nTo: " + listAddr + "\r\nSubject: to the list\r\n" +
		"Message-ID: <l1@example.org>\r\nBcc: hidden@example.org\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	enc := make([]byte, 0, len(der)*4/3+4)
	enc = appendBase64Lines(enc, der)
	b.Write(enc)
	return b.Bytes()
}

func appendBase64Lines(dst, der []byte) []byte {
	s := base64.StdEncoding.EncodeToString(der)
	for len(s) > 76 {
		dst = append(append(dst, s[:76]...), '\r', '\n')
		s = s[76:]
	}
	return append(append(dst, s...), '\r', '\n')
}

// mlData is MLData of RFC 2634 section 4.2.1, for decoding what the list signed.
type mlData struct {
	ID   asn1.RawValue
	Time time.Time `asn1:"generalized"`
}

type attribute struct {
	Type   asn1.ObjectIdentifier
	Values asn1.RawValue `asn1:"set"`
}

// expansionHistory decodes the mlExpansionHistory of a SignerInfo's raw signedAttrs.
func expansionHistory(tb testing.TB, signedAttrs []byte) []mlData {
	tb.Helper()
	raw := append([]byte{0x31}, signedAttrs[1:]...) // [0] IMPLICIT -> SET OF
	var attrs []attribute
	if _, err := asn1.UnmarshalWithParams(raw, &attrs, "set"); err != nil {
		tb.Fatalf("signed attributes: %v", err)
	}
	for _, a := range attrs {
		if a.Type.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 3}) {
			var h []mlData
			if _, err := asn1.Unmarshal(a.Values.Bytes, &h); err != nil {
				tb.Fatalf("mlExpansionHistory: %v", err)
			}
			return h
		}
	}
	return nil
}

// historyAttr encodes an mlExpansionHistory naming n made-up lists.
func historyAttr(tb testing.TB, n int) cms.Attribute {
	tb.Helper()
	type ias struct {
		Issuer asn1.RawValue
		Serial *big.Int
	}
	issuer, _ := asn1.Marshal(pkix.Name{CommonName: "Some Other List CA"}.ToRDNSequence())
	var entries []asn1.RawValue
	for i := range n {
		id, err := asn1.Marshal(ias{Issuer: asn1.RawValue{FullBytes: issuer}, Serial: big.NewInt(int64(1000 + i))})
		if err != nil {
			tb.Fatal(err)
		}
		d, err := asn1.Marshal(mlData{ID: asn1.RawValue{FullBytes: id}, Time: time.Now().UTC().Truncate(time.Second)})
		if err != nil {
			tb.Fatal(err)
		}
		entries = append(entries, asn1.RawValue{FullBytes: d})
	}
	v, err := asn1.Marshal(entries)
	if err != nil {
		tb.Fatal(err)
	}
	return cms.Attribute{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 3}, Value: v}
}
