package audit_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"appliance/audit"
	"appliance/hsm"
	"appliance/internal/softhsmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	softhsmtest.Cleanup()
	os.Exit(code)
}

// clock is a test clock that moves only when told to.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// writeTrail writes n messages (accepted, one sealed package, one delivery each: 3 records a
// message) with files rotated by size, and returns the files in order.
func writeTrail(t *testing.T, dir string, signer crypto.Signer, messages int, maxBytes int64) []string {
	t.Helper()
	c := &clock{time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)}
	l, err := audit.Open(audit.Options{Dir: dir, MaxBytes: maxBytes, Signer: signer, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range messages {
		c.t = c.t.Add(time.Second)
		id := fmt.Sprintf("m%03d", i)
		if err := l.Accepted(audit.Accepted{Message: id, From: "alice@example.com", AuthUser: "alice",
			Recipients: []string{"bob@example.org", "dave@example.net"}, Size: 1234, Digest: sha256.Sum256([]byte(id))}); err != nil {
			t.Fatal(err)
		}
		if err := l.Sealed(audit.Sealed{Message: id, Package: 0, Mode: "plain", Profile: "modern",
			Recipients: []string{"bob@example.org"}, RecipientInfos: []string{"ski:0102"}, Digest: sha256.Sum256([]byte(id + "p"))}); err != nil {
			t.Fatal(err)
		}
		if err := l.Delivery(audit.Delivery{Message: id, Package: 0, Recipient: "bob@example.org", Outcome: audit.Delivered, Reply: "250 ok"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "audit-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func lines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func writeLines(t *testing.T, path string, ls [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, append(bytes.Join(ls, []byte("\n")), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
}

func seqOf(t *testing.T, line []byte) uint64 {
	t.Helper()
	var r audit.Record
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	return r.Seq
}

func softKey(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestVerifyTamper: an untouched trail over several files verifies; each way of tampering is
// named with the exact record (file, line, seq) or file.
func TestVerifyTamper(t *testing.T) {
	key := softKey(t) // the signature's own test with the HSM is TestSealSignedOnHSM
	base := t.TempDir()
	orig := writeTrail(t, base, key, 12, 1500)
	if len(orig) < 3 {
		t.Fatalf("want a rotated trail of 3 files or more, got %d", len(orig))
	}
	trusted := audit.VerifyOptions{Trusted: []crypto.PublicKey{key.Public()}}
	rep, err := audit.Verify(orig, trusted)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Problem != nil || rep.Files != len(orig) || rep.Sealed != len(orig) || rep.Signed != len(orig) || rep.FirstSeq != 1 {
		t.Fatalf("untouched trail: %+v problem %v", rep, rep.Problem)
	}
	// Files given in any order are put in trail order.
	rev := append([]string(nil), orig...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if rep, _ := audit.Verify(rev, trusted); rep.Problem != nil {
		t.Fatalf("reversed order: %v", rep.Problem)
	}

	second := lines(t, orig[1])
	if len(second) < 5 {
		t.Fatalf("second file has %d lines", len(second))
	}
	copyTrail := func(t *testing.T) []string {
		dir := t.TempDir()
		var out []string
		for _, f := range orig {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, filepath.Base(f))
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	type want struct {
		kind audit.Kind
		file int // index into the trail's files; -1: none
		line int
		seq  uint64
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, files []string) []string
		want   want
	}{
		{"edited recipient", func(t *testing.T, files []string) []string {
			ls := lines(t, files[1])
			ls[2] = bytes.Replace(ls[2], []byte("bob@example.org"), []byte("eve@example.org"), 1)
			writeLines(t, files[1], ls)
			return files
		}, want{audit.Changed, 1, 3, seqOf(t, second[2])}},
		{"edited last record before the seal", func(t *testing.T, files []string) []string {
			ls := lines(t, files[1])
			n := len(ls) - 2
			ls[n] = bytes.Replace(ls[n], []byte(`"time":"2026`), []byte(`"time":"2025`), 1)
			writeLines(t, files[1], ls)
			return files
		}, want{audit.Changed, 1, len(second) - 1, seqOf(t, second[len(second)-2])}},
		{"deleted record", func(t *testing.T, files []string) []string {
			ls := lines(t, files[1])
			ls = append(ls[:3:3], ls[4:]...)
			writeLines(t, files[1], ls)
			return files
		}, want{audit.Removed, 1, 4, seqOf(t, second[3])}},
		{"deleted two records", func(t *testing.T, files []string) []string {
			ls := lines(t, files[1])
			ls = append(ls[:2:2], ls[4:]...)
			writeLines(t, files[1], ls)
			return files
		}, want{audit.Removed, 1, 3, seqOf(t, second[2])}},
		{"swapped records", func(t *testing.T, files []string) []string {
			ls := lines(t, files[1])
			ls[2], ls[3] = ls[3], ls[2]
			writeLines(t, files[1], ls)
			return files
		}, want{audit.Reordered, 1, 4, seqOf(t, second[2])}},
		{"record moved to the next file", func(t *testing.T, files []string) []string {
			ls := lines(t, files[1])
			moved := ls[2]
			writeLines(t, files[1], append(ls[:2:2], ls[3:]...))
			ls2 := lines(t, files[2])
			writeLines(t, files[2], append([][]byte{ls2[0], moved}, ls2[1:]...))
			return files
		}, want{audit.Reordered, 2, 2, seqOf(t, second[2])}},
		{"tail of a file cut with its seal", func(t *testing.T, files []string) []string {
			ls := lines(t, files[1])
			writeLines(t, files[1], ls[:len(ls)-2])
			return files
		}, want{audit.Removed, 1, len(second) - 2, seqOf(t, second[len(second)-3])}},
		{"seq field edited", func(t *testing.T, files []string) []string {
			ls := lines(t, files[1])
			seq := seqOf(t, ls[2])
			ls[2] = bytes.Replace(ls[2], []byte(fmt.Sprintf(`"seq":%d,`, seq)), []byte(fmt.Sprintf(`"seq":%d,`, seq+40)), 1)
			writeLines(t, files[1], ls)
			return files
		}, want{audit.Changed, 1, 3, seqOf(t, second[2])}},
		{"open record removed", func(t *testing.T, files []string) []string {
			ls := lines(t, files[1])
			writeLines(t, files[1], ls[1:])
			return files
		}, want{audit.Removed, 1, 1, seqOf(t, second[1])}},
		{"missing file", func(t *testing.T, files []string) []string {
			return append(files[:1:1], files[2:]...)
		}, want{audit.MissingFile, 2, 1, seqOf(t, lines(t, orig[2])[0])}},
		{"seal's signature replaced", func(t *testing.T, files []string) []string {
			ls := lines(t, files[1])
			var r audit.Record
			if err := json.Unmarshal(ls[len(ls)-1], &r); err != nil {
				t.Fatal(err)
			}
			r.Signature = "AAAA" + r.Signature[4:]
			ls[len(ls)-1], _ = json.Marshal(&r)
			writeLines(t, files[1], ls)
			return files
		}, want{audit.BadSignature, 1, len(second), seqOf(t, second[len(second)-1])}},
		{"record appended after the seal", func(t *testing.T, files []string) []string {
			ls := lines(t, files[0])
			writeLines(t, files[0], append(ls, ls[1]))
			return files
		}, want{audit.Added, 0, len(lines(t, orig[0])) + 1, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := c.tamper(t, copyTrail(t))
			rep, err := audit.Verify(files, trusted)
			if err != nil {
				t.Fatal(err)
			}
			p := rep.Problem
			if p == nil {
				t.Fatal("tampering not found")
			}
			wantFile := filepath.Base(orig[c.want.file])
			if p.Kind != c.want.kind || filepath.Base(p.File) != wantFile || p.Line != c.want.line || (c.want.seq != 0 && p.Seq != c.want.seq) {
				t.Fatalf("got %v (seq %d), want %s at %s:%d seq %d", p, p.Seq, c.want.kind, wantFile, c.want.line, c.want.seq)
			}
		})
	}

	t.Run("re-signed by another key", func(t *testing.T) {
		dir := t.TempDir()
		other := writeTrail(t, dir, softKey(t), 2, 1<<20)
		rep, err := audit.Verify(other, trusted)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Problem == nil || rep.Problem.Kind != audit.Untrusted {
			t.Fatalf("got %v, want %s", rep.Problem, audit.Untrusted)
		}
	})
}

// TestResumeAndAge: a log reopened after a crash continues the unsealed file (a torn line cut
// off), one reopened after Close starts the next file, and age rotates.
func TestResumeAndAge(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)}
	l, err := audit.Open(audit.Options{Dir: dir, MaxAge: time.Hour, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Delivery(audit.Delivery{Message: "a", Recipient: "bob@example.org", Outcome: audit.Deferred, Reply: "451 later"}); err != nil {
		t.Fatal(err)
	}
	// A crash: the log is dropped without Close, with half a line written after the last record.
	f, err := os.OpenFile(filepath.Join(dir, audit.FileName(1)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":3,"prev":"`)
	f.Close()
	l, err = audit.Open(audit.Options{Dir: dir, MaxAge: time.Hour, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if file, seq, _ := l.Head(); file != 1 || seq != 2 {
		t.Fatalf("after crash: file %d seq %d, want 1 and 2", file, seq)
	}
	c.t = c.t.Add(2 * time.Hour)
	if err := l.Delivery(audit.Delivery{Message: "a", Recipient: "bob@example.org", Outcome: audit.Delivered}); err != nil {
		t.Fatal(err)
	}
	if file, _, _ := l.Head(); file != 2 {
		t.Fatalf("age did not rotate: file %d", file)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash after a file was created, before its open record was on disk: the file is empty
	// (or holds half a line) and is started again.
	if err := os.WriteFile(filepath.Join(dir, audit.FileName(3)), []byte(`{"seq":5,`), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err = audit.Open(audit.Options{Dir: dir, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if file, seq, _ := l.Head(); file != 3 || seq != 7 {
		t.Fatalf("after an empty file: file %d seq %d, want 3 and 7", file, seq)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.log"))
	if len(files) != 3 {
		t.Fatalf("files %v", files)
	}
	rep, err := audit.Verify(files, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Problem != nil || rep.Sealed != 3 || rep.Signed != 0 {
		t.Fatalf("%+v %v", rep, rep.Problem)
	}
	if rep, _ := audit.Verify(files, audit.VerifyOptions{RequireSigned: true}); rep.Problem == nil || rep.Problem.Kind != audit.Unsigned {
		t.Fatalf("unsigned seal not reported: %v", rep.Problem)
	}
	var out strings.Builder
	if err := audit.Show(&out, files, false); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{" open     file=1", "delivery message=a", `reply="451 later"`, "seal     file=3", "unsigned"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("show lacks %q:\n%s", w, out.String())
		}
	}
	out.Reset()
	if err := audit.Show(&out, files, true); err != nil {
		t.Fatal(err)
	}
	for i, ln := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(ln), &r); err != nil || r.Seq != uint64(i+1) {
			t.Fatalf("json line %d: %q (%v)", i, ln, err)
		}
	}
}

// TestSealSignedOnHSM: the head of each file is signed by a key on a real SoftHSM2 token, and
// Verify checks it against that key's certificate.
func TestSealSignedOnHSM(t *testing.T) {
	env := softhsmtest.Setup(t)
	tok, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	signer, err := tok.Signer(context.Background(), "pkcs11:token=appliance;object=alice")
	if err != nil {
		t.Fatal(err)
	}
	files := writeTrail(t, t.TempDir(), signer, 4, 1500)
	cert := env.Cert(t, "alice")
	rep, err := audit.Verify(files, audit.VerifyOptions{Trusted: []crypto.PublicKey{cert.PublicKey}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Problem != nil || rep.Signed != len(files) || len(files) < 2 || len(rep.Keys) != 1 {
		t.Fatalf("%+v %v", rep, rep.Problem)
	}
	// The statement's seq is bound: a seal moved to another seq fails its signature.
	ls := lines(t, files[0])
	var r audit.Record
	if err := json.Unmarshal(ls[len(ls)-1], &r); err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifySignature(cert.PublicKey, audit.Statement(r.File, r.Seq+1, r.Head), mustB64(t, r.Signature)); err == nil {
		t.Fatal("signature verified over another seq")
	}
	if err := audit.VerifySignature(cert.PublicKey, audit.Statement(r.File, r.Seq, r.Head), mustB64(t, r.Signature)); err != nil {
		t.Fatal(err)
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConcurrentAppend: records appended from many goroutines, through rotations, make one
// intact chain with every record in it.
func TestConcurrentAppend(t *testing.T) {
	dir := t.TempDir()
	l, err := audit.Open(audit.Options{Dir: dir, MaxBytes: 8 << 10, Signer: softKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 150
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				if err := l.Delivery(audit.Delivery{Message: fmt.Sprintf("w%d-%d", w, i), Recipient: "bob@example.org", Outcome: audit.Delivered}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.log"))
	rep, err := audit.Verify(files, audit.VerifyOptions{RequireSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Problem != nil || len(files) < 3 || rep.Records != workers*each+2*len(files) {
		t.Fatalf("%d files, %+v %v", len(files), rep, rep.Problem)
	}
}
