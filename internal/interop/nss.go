package interop

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// CmsutilDecrypt decrypts DER (or an S/MIME message) with NSS `cmsutil -D` using a database
// holding user's key, and returns the content. cmsutil's exit status is the verdict here.
func CmsutilDecrypt(t testing.TB, pkiDir, user string, smimeOrDER []byte) ([]byte, error) {
	t.Helper()
	Need(t, "cmsutil", "certutil", "pk12util")
	db := nssDB(t, pkiDir, user)
	dir := workDir(t)
	in := write(t, filepath.Join(dir, "in.der"), derOf(t, smimeOrDER))
	out := filepath.Join(dir, "out")
	r := run(dir, nil, nil, "cmsutil", "-D", "-d", "sql:"+db, "-p", "", "-i", in, "-o", out)
	if r.err != nil {
		return nil, &ToolError{Tool: "cmsutil -D (" + user + ")", Reason: r.err.Error(), Output: r.output()}
	}
	return read(t, out), nil
}

var signerStatus = regexp.MustCompile(`signer\d+\.status=(\w+)`)

// CmsutilVerify verifies a signed message with NSS `cmsutil -D` and returns the signed content:
// multipart/signed (its first part canonicalized to CRLF first, as a mail client does),
// application/pkcs7-mime signed-data, or SignedData DER. cmsutil exits 0 for a bad signature
// too, so the verdict is every signerN.status line of its report reading GoodSignature, with at
// least one signer.
func CmsutilVerify(t testing.TB, pkiDir string, signed []byte) ([]byte, error) {
	t.Helper()
	Need(t, "cmsutil", "certutil", "pk12util")
	db := nssDB(t, pkiDir, "")
	dir := workDir(t)
	out := filepath.Join(dir, "out")
	args := []string{"-D", "-d", "sql:" + db, "-p", "", "-h", "1", "-o", out}
	der, content, sig, err := splitSigned(signed)
	if err != nil {
		return nil, &ToolError{Tool: "cmsutil -D", Reason: err.Error()}
	}
	if der != nil {
		args = append(args, "-i", write(t, filepath.Join(dir, "sig.der"), der))
	} else {
		args = append(args, "-n", "-i", write(t, filepath.Join(dir, "sig.der"), sig),
			"-c", write(t, filepath.Join(dir, "content"), content))
	}
	r := run(dir, nil, nil, "cmsutil", args...)
	if r.err != nil {
		return nil, &ToolError{Tool: "cmsutil -D", Reason: r.err.Error(), Output: r.output()}
	}
	// With -o the -h report goes to the output file, before the content if there is any; only
	// the report is searched, so signed text cannot pose as a status line.
	report, rest := splitSMIMEReport(read(t, out))
	statuses := signerStatus.FindAllSubmatch(report, -1)
	if len(statuses) == 0 {
		return nil, &ToolError{Tool: "cmsutil -D", Reason: "no signerN.status line", Output: string(report) + r.output()}
	}
	for _, s := range statuses {
		if string(s[1]) != "GoodSignature" {
			return nil, &ToolError{Tool: "cmsutil -D", Reason: "signer status " + string(s[1]), Output: string(report) + r.output()}
		}
	}
	if content == nil {
		content = rest
	}
	return content, nil
}

// splitSMIMEReport separates the "SMIME: ..." block that -h puts before the content (its first
// line and the continuation lines, which start with a tab) from the content.
func splitSMIMEReport(b []byte) (report, content []byte) {
	if !bytes.HasPrefix(b, []byte("SMIME:")) {
		return nil, b
	}
	n := 0
	for {
		i := bytes.IndexByte(b[n:], '\n')
		if i < 0 {
			return b, nil
		}
		n += i + 1
		if n == len(b) || b[n] != '\t' {
			return b[:n], b[n:]
		}
	}
}

// nssDB returns this binary's NSS database for user ("" for none) under the PKI in pkiDir,
// making it on first use: an empty-password database, the user's PKCS #12, the root trusted
// for everything and the intermediate imported without trust.
func nssDB(t testing.TB, pkiDir, user string) string {
	t.Helper()
	key := pkiDir + "\x00" + user
	state.Lock()
	defer state.Unlock()
	if d, ok := state.nss[key]; ok {
		return d
	}
	db, err := os.MkdirTemp("", "nss-")
	if err != nil {
		t.Fatalf("interop: failed to make NSS database directory: %v", err)
	}
	if state.nss == nil {
		state.nss = map[string]string{}
	}
	state.nss[key] = db
	steps := [][]string{
		{"certutil", "-N", "--empty-password", "-d", "sql:" + db},
		{"certutil", "-A", "-n", "root", "-t", "C,C,C", "-i", pkiFile(t, pkiDir, "root.pem"), "-d", "sql:" + db},
		{"certutil", "-A", "-n", "inter", "-t", ",,", "-i", pkiFile(t, pkiDir, "inter.pem"), "-d", "sql:" + db},
	}
	if user != "" {
		steps = append(steps, []string{"pk12util", "-i", pkiFile(t, pkiDir, user+".p12"), "-d", "sql:" + db, "-W", "test"})
	}
	for _, s := range steps {
		if r := run(db, nil, nil, s[0], s[1:]...); r.err != nil {
			t.Fatalf("interop: failed to set up NSS database (%s): %v\n%s", s[0], r.err, r.output())
		}
	}
	return db
}
