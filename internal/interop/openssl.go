package interop

import (
	"path/filepath"
	"testing"

	"appliance/smime"
)

// OpenSSLDecrypt decrypts an EnvelopedData or AuthEnvelopedData, given as an S/MIME message or
// as DER, with `openssl cms -decrypt -recip USER.pem -inkey USER.key` and returns the content.
func OpenSSLDecrypt(t testing.TB, pkiDir, user string, smimeOrDER []byte) ([]byte, error) {
	t.Helper()
	Need(t, "openssl")
	dir := workDir(t)
	in, inform := inputFile(t, dir, smimeOrDER)
	out := filepath.Join(dir, "out")
	args := []string{"cms", "-decrypt", "-inform", inform, "-in", in, "-out", out,
		"-recip", pkiFile(t, pkiDir, user+".pem"), "-inkey", pkiFile(t, pkiDir, user+".key")}
	if r := run(dir, nil, nil, "openssl", args...); r.err != nil {
		return nil, &ToolError{Tool: "openssl cms -decrypt (" + user + ")", Reason: r.err.Error(), Output: r.output()}
	}
	return read(t, out), nil
}

// OpenSSLVerify verifies a signed message, either an S/MIME multipart/signed (or
// application/pkcs7-mime signed-data) message or encapsulated SignedData DER, with `openssl cms
// -verify -CAfile roots.pem`, and returns the signed content.
func OpenSSLVerify(t testing.TB, pkiDir string, signed []byte) ([]byte, error) {
	t.Helper()
	Need(t, "openssl")
	dir := workDir(t)
	in, inform := inputFile(t, dir, signed)
	out := filepath.Join(dir, "out")
	r := run(dir, nil, nil, "openssl", "cms", "-verify", "-inform", inform, "-in", in, "-out", out,
		"-CAfile", pkiFile(t, pkiDir, "roots.pem"))
	if r.err != nil {
		return nil, &ToolError{Tool: "openssl cms -verify", Reason: r.err.Error(), Output: r.output()}
	}
	return read(t, out), nil
}

// OpenSSLPrint returns `openssl cms -cmsout -print` of DER: every RecipientInfo and its
// identifier, algorithm parameters, and the structure of AuthEnvelopedData too.
func OpenSSLPrint(t testing.TB, der []byte) (string, error) {
	t.Helper()
	Need(t, "openssl")
	dir := workDir(t)
	in := write(t, filepath.Join(dir, "in.der"), der)
	r := run(dir, nil, nil, "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", in)
	if r.err != nil {
		return "", &ToolError{Tool: "openssl cms -cmsout -print", Reason: r.err.Error(), Output: r.output()}
	}
	return string(r.stdout), nil
}

// EncryptOptions choose what [OpenSSLEncrypt] makes.
type EncryptOptions struct {
	Cipher     string // openssl cipher name, default "aes-256-cbc"; "aes-256-gcm" makes AuthEnvelopedData
	KeyID      bool   // identify recipients by subjectKeyIdentifier instead of issuer and serial
	OAEP       bool   // RSAES-OAEP key transport instead of PKCS #1 v1.5
	OAEPDigest string // OAEP hash and MGF1 hash, e.g. "sha256"; default OpenSSL's (SHA-1)
	// KeyOpts are further -keyopt values for every recipient, e.g. "ecdh_kdf_md:sha256" for
	// an EC certificate's key agreement.
	KeyOpts []string
}

// OpenSSLEncrypt encrypts content for the users named with `openssl cms -encrypt` and returns
// the DER: a reference implementation's output, for testing decoders and parsers.
func OpenSSLEncrypt(t testing.TB, pkiDir string, content []byte, users []string, opt EncryptOptions) []byte {
	t.Helper()
	files := make([]string, len(users))
	for i, u := range users {
		files[i] = pkiFile(t, pkiDir, u+".pem")
	}
	return OpenSSLEncryptFiles(t, files, content, opt)
}

// OpenSSLEncryptFiles is [OpenSSLEncrypt] for the certificates in the PEM files named.
func OpenSSLEncryptFiles(t testing.TB, certFiles []string, content []byte, opt EncryptOptions) []byte {
	t.Helper()
	Need(t, "openssl")
	dir := workDir(t)
	cipher := opt.Cipher
	if cipher == "" {
		cipher = "aes-256-cbc"
	}
	out := filepath.Join(dir, "out.der")
	args := []string{"cms", "-encrypt", "-binary", "-" + cipher, "-outform", "DER", "-out", out,
		"-in", write(t, filepath.Join(dir, "in"), content)}
	if opt.KeyID {
		args = append(args, "-keyid")
	}
	for _, f := range certFiles {
		// -keyopt applies to the -recip before it.
		args = append(args, "-recip", f)
		if opt.OAEP {
			args = append(args, "-keyopt", "rsa_padding_mode:oaep")
			if opt.OAEPDigest != "" {
				args = append(args, "-keyopt", "rsa_oaep_md:"+opt.OAEPDigest, "-keyopt", "rsa_mgf1_md:"+opt.OAEPDigest)
			}
		}
		for _, k := range opt.KeyOpts {
			args = append(args, "-keyopt", k)
		}
	}
	if r := run(dir, nil, nil, "openssl", args...); r.err != nil {
		t.Fatalf("interop: openssl cms -encrypt: %v\n%s", r.err, r.output())
	}
	return read(t, out)
}

// SignOptions choose what [OpenSSLSign] makes.
type SignOptions struct {
	Encapsulated bool // SignedData DER with the content inside, instead of S/MIME multipart/signed
	PSS          bool // RSASSA-PSS with salt length = hash length, instead of PKCS #1 v1.5
}

// OpenSSLSign signs content (made canonical first) as user with `openssl cms -sign -md sha256`,
// including the intermediate certificate: by default an S/MIME multipart/signed entity whose
// first part is the canonical content, otherwise as opt says.
func OpenSSLSign(t testing.TB, pkiDir, user string, content []byte, opt SignOptions) []byte {
	t.Helper()
	Need(t, "openssl")
	dir := workDir(t)
	out := filepath.Join(dir, "out")
	args := []string{"cms", "-sign", "-binary", "-md", "sha256", "-out", out,
		"-in", write(t, filepath.Join(dir, "in"), smime.Canonicalize(content)),
		"-signer", pkiFile(t, pkiDir, user+".pem"), "-inkey", pkiFile(t, pkiDir, user+".key"),
		"-certfile", pkiFile(t, pkiDir, "inter.pem")}
	if opt.PSS {
		args = append(args, "-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:digest")
	}
	if opt.Encapsulated {
		args = append(args, "-nodetach", "-outform", "DER")
	} else {
		args = append(args, "-outform", "SMIME")
	}
	if r := run(dir, nil, nil, "openssl", args...); r.err != nil {
		t.Fatalf("interop: openssl cms -sign: %v\n%s", r.err, r.output())
	}
	return read(t, out)
}

func inputFile(t testing.TB, dir string, b []byte) (path, inform string) {
	t.Helper()
	if isDER(b) {
		return write(t, filepath.Join(dir, "in.der"), b), "DER"
	}
	return write(t, filepath.Join(dir, "in.eml"), b), "SMIME"
}
