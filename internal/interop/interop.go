// Package interop runs the real S/MIME decoders (OpenSSL, GnuPG's gpgsm, NSS's cmsutil) over
// what the appliance makes, so tests prove that mail is readable by the software recipients
// actually use, not merely by our own parser. It is imported only from _test.go files.
//
// Each helper takes the PKI directory made by softhsm-test/mkpki.sh (softhsmtest.Env.PKI) and
// returns the decoded content, or an error wrapping [ErrRejected] that carries the tool's output
// when the decoder says no. Trouble setting a tool up is not a verdict: the test fails at once.
// A missing tool skips the test, except under CI (any value) where it fails: CI must not pass by testing
// nothing.
//
// The verdict never rests on exit codes alone, because the tools disagree about them
// (docs/decisions.md, Interop facts): gpgsm can exit 2 after decrypting fine when dirmngr is off, so it is judged by its
// DECRYPTION_OKAY and GOODSIG status lines; cmsutil exits 0 even for a bad signature, so it is
// judged by its signerN.status lines.
//
// gpgsm and NSS need per-user state (a GNUPGHOME, a certificate database) that takes a fraction
// of a second to make; it is made once per test binary, user and PKI and removed by [Cleanup],
// which TestMain calls after m.Run.
package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"appliance/internal/ci"
	"appliance/smime"
)

// ErrRejected is wrapped by every error that is a decoder's negative verdict.
var ErrRejected = errors.New("interop: decoder rejected the message")

// Timeout bounds one tool run; a hung pinentry or agent must fail a test, not stall it.
var Timeout = time.Minute

// ToolError is a decoder's negative verdict with what the tool printed.
type ToolError struct {
	Tool   string // command line, e.g. "gpgsm --decrypt"
	Reason string // why the verdict is negative
	Output string // stdout and stderr (status lines included)
}

func (e *ToolError) Error() string {
	return fmt.Sprintf("%s: %s\n%s", e.Tool, e.Reason, strings.TrimSpace(e.Output))
}

func (e *ToolError) Unwrap() error { return ErrRejected }

// Need skips the test when a tool is missing, or fails it under CI (any value).
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if ci.On() {
				t.Fatalf("interop: %s not found (CI set: a missing decoder is a failure, not a skip)", tool)
			}
			t.Skipf("interop: %s not found", tool)
		}
	}
}

type result struct {
	stdout, stderr []byte
	err            error
}

func (r result) output() string { return string(r.stdout) + string(r.stderr) }

// run runs a tool with stdin (closed when nil: cmsutil and gpgsm must never wait on a prompt).
func run(dir string, env []string, stdin []byte, name string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", Timeout, ctx.Err())
	}
	return result{out.Bytes(), errb.Bytes(), err}
}

func workDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "interop-")
	if err != nil {
		t.Fatalf("interop: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func write(t testing.TB, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("interop: %v", err)
	}
	return path
}

func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("interop: %v", err)
	}
	return b
}

func pkiFile(t testing.TB, pkiDir, name string) string {
	t.Helper()
	p := filepath.Join(pkiDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("interop: test PKI file: %v", err)
	}
	return p
}

// isDER tells DER (a SEQUENCE) from S/MIME text.
func isDER(b []byte) bool { return len(b) > 0 && b[0] == 0x30 }

// derOf returns the CMS DER of a message, decoding an application/pkcs7-mime wrapper if needed.
func derOf(t testing.TB, smimeOrDER []byte) []byte {
	t.Helper()
	if isDER(smimeOrDER) {
		return smimeOrDER
	}
	p, err := smime.Parse(bytes.NewReader(smimeOrDER), 1<<30)
	if err != nil {
		t.Fatalf("interop: input is neither DER nor S/MIME: %v", err)
	}
	return p.DER
}

// splitSigned takes a signed message apart the way a mail client does: encapsulated SignedData
// (DER, or application/pkcs7-mime signed-data) comes back as der; multipart/signed comes back as
// its signature and its first part, canonicalized to CRLF as a client does before verifying.
func splitSigned(signed []byte) (der, content, sig []byte, err error) {
	if isDER(signed) {
		return signed, nil, nil, nil
	}
	s, err := smime.ParseSigned(signed)
	if errors.Is(err, smime.ErrNotSigned) {
		p, perr := smime.Parse(bytes.NewReader(signed), 1<<30)
		if perr != nil {
			return nil, nil, nil, err
		}
		return p.DER, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return nil, smime.Canonicalize(s.Content), s.Signature, nil
}

// state holds the per-binary GNUPGHOMEs and NSS databases, keyed by PKI and user.
var state struct {
	sync.Mutex
	gnupg map[string]string
	nss   map[string]string
}

// Cleanup stops the gpg-agents started for this test binary and removes every GNUPGHOME and NSS
// database. Call it from TestMain after m.Run.
func Cleanup() {
	state.Lock()
	defer state.Unlock()
	for _, home := range state.gnupg {
		run(home, []string{"GNUPGHOME=" + home}, nil, "gpgconf", "--kill", "all")
		os.RemoveAll(home)
	}
	for _, dir := range state.nss {
		os.RemoveAll(dir)
	}
	state.gnupg, state.nss = nil, nil
}
