package directory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lines records a Reporter's calls, one line each.
type lines []string

func (l *lines) OK(what, detail string)      { *l = append(*l, "ok "+what+": "+detail) }
func (l *lines) Warn(what, detail string)    { *l = append(*l, "warn "+what+": "+detail) }
func (l *lines) Fail(what string, err error) { *l = append(*l, "FAIL "+what+": "+err.Error()) }

func (l lines) String() string { return strings.Join(l, "\n") }

func TestCertAddresses(t *testing.T) {
	p := testPKI(t)
	both := leafTemplate("Both", "alice@example.org")
	both.Subject.ExtraNames = emailOnlyInSubject("x", "alias@example.org").Subject.ExtraNames
	c := p.leaf(both)
	got := CertAddresses(c)
	if strings.Join(got, ",") != "alice@example.org,alias@example.org" {
		t.Fatalf("CertAddresses = %v, want the SAN and the subject's emailAddress", got)
	}
	if !CoversAddress(c, "Alias@Example.ORG") || CoversAddress(c, "bob@example.org") {
		t.Fatal("CoversAddress does not follow CertAddresses, case-insensitively")
	}
}

func TestCheckSignerCert(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	roots, inters, err := LoadRoots(f.roots)
	if err != nil {
		t.Fatal(err)
	}
	good := p.leaf(leafTemplate("Alice", "alice@example.org"))
	soon := leafTemplate("Soon", "alice@example.org")
	soon.NotAfter = t0.Add(5 * 24 * time.Hour)
	expired := leafTemplate("Old", "alice@example.org")
	expired.NotBefore, expired.NotAfter = t0.AddDate(-2, 0, 0), t0.AddDate(-1, 0, 0)
	tests := []struct {
		name, addr string
		file       []byte
		want       []string
	}{
		{"ok", "alice@example.org", pemOf(good, p.interA), []string{"ok sender certificate: \"CN=Alice", "(in "}},
		{"fail other address", "bob@example.org", pemOf(good), []string{"does not name bob@example.org (it names: alice@example.org)"}},
		{"warn expiring", "alice@example.org", pemOf(p.leaf(soon)), []string{"warn sender certificate", "renew it"}},
		{"fail expired", "alice@example.org", pemOf(p.leaf(expired)), []string{"FAIL sender certificate: certificate \"CN=Old", "expired"}},
		{"fail other root", "alice@example.org", pemOf(mustCert(leafTemplate("Stray", "alice@example.org"), p.rootB, p.leafKey, p.rootBKey)), []string{"does not verify to directory.roots"}},
		{"fail empty", "alice@example.org", nil, []string{"FAIL sender certificate: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chain.pem")
			writeFile(t, path, tt.file)
			var got lines
			CheckSignerCert(&got, "sender", tt.addr, "pkcs11:object=a", nil, path, roots, inters, t0)
			for _, w := range tt.want {
				if !strings.Contains(got.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, got)
				}
			}
			if fails := strings.Count(got.String(), "FAIL"); (fails > 0) != strings.HasPrefix(tt.name, "fail") {
				t.Errorf("%d failure(s):\n%s", fails, got)
			}
		})
	}
	// A key that is not the certificate's.
	var got lines
	path := filepath.Join(t.TempDir(), "chain.pem")
	writeFile(t, path, pemOf(good))
	CheckSignerCert(&got, "sender", "alice@example.org", "pkcs11:object=a", p.ecKey.Public(), path, roots, inters, t0)
	if !strings.Contains(got.String(), "is not for the key pkcs11:object=a") {
		t.Errorf("a certificate for another key passes:\n%s", got)
	}
}

func TestReports(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	f.add(t, "alice.pem", p.leaf(leafTemplate("Alice", "alice@example.org")))
	old := leafTemplate("Old", "old@example.org")
	old.NotAfter = t0.AddDate(0, 0, -1)
	f.add(t, "old.pem", p.leaf(old))
	d := f.open(t, t0)
	pol := ReportPolicy{Newest: true, MissingCert: "reject", Pinned: map[string]string{}, Profile: "modern"}

	var b bytes.Buffer
	d.WriteList(&b, pol, t0)
	for _, w := range []string{"sources: folder", "alice@example.org\t", "\tok\t", "old@example.org\t", "refused: "} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("list lacks %q:\n%s", w, b.String())
		}
	}
	b.Reset()
	n, err := d.WriteShow(context.Background(), &b, "alice@example.org", pol)
	if err != nil || n != 1 || !strings.Contains(b.String(), "only the newest valid certificate") || !strings.Contains(b.String(), "profile: ") {
		t.Errorf("show = %d, %v:\n%s", n, err, b.String())
	}
	b.Reset()
	err = d.WriteCheck(context.Background(), &b, "nobody@example.org", pol)
	if !errors.Is(err, ErrNoUsableCertificate) || !strings.Contains(b.String(), "no usable certificate (none found)") {
		t.Errorf("check of an unknown address = %v:\n%s", err, b.String())
	}
	if err := d.WriteCheck(context.Background(), &b, "alice@example.org", pol); err != nil {
		t.Errorf("check alice: %v", err)
	}
	if got := Reason(fmt.Errorf("wrapped: %w", &CertError{Err: errors.New("expired")})); got != "expired" {
		t.Errorf("Reason = %q", got)
	}
	if AlgorithmName("2.16.840.1.101.3.4.1.46") != "AES-256-GCM" || AlgorithmName("1.2.3") != "1.2.3" {
		t.Error("AlgorithmName")
	}
}
