package split

import (
	"errors"
	"strings"
	"testing"
)

// ecCert is cert for an EC (KeyAgree) certificate.
func ecCert(owner string, day int) Cert {
	c := cert(owner, "", day)
	c.ID += "/ec"
	c.KeyAgree = true
	return c
}

// TestMakeKeyAgree: a recipient with an EC certificate gets a package of its own in both Bcc
// modes, visible or hidden; the sender's EC certificate goes only into such packages unless the
// sender has an RSA one, which is then used everywhere.
func TestMakeKeyAgree(t *testing.T) {
	alice, aliceEC := cert("alice@example.test", "", 0), ecCert("alice@example.test", 1)
	hdr := base + "To: bob@x.test, frank@x.test, erin@x.test\nBcc: peggy@y.test, carol@y.test, dave@y.test\n"
	rcpt := []string{"bob@x.test", "frank@x.test", "erin@x.test", "peggy@y.test", "carol@y.test", "dave@y.test"}
	certs := certsFor("bob@x.test", "erin@x.test", "carol@y.test", "dave@y.test")
	certs["frank@x.test"] = []Cert{ecCert("frank@x.test", 0)}
	certs["peggy@y.test"] = []Cert{ecCert("peggy@y.test", 0)}
	tests := []struct {
		name string
		pol  Policy
		self []Cert
		want []string
	}{
		{"ok individual", Policy{KeepBcc: true}, nil, []string{
			"vis compat [frank@x.test] {frank@x.test//0/ec}",
			"vis compat [bob@x.test,erin@x.test] {bob@x.test//0,erin@x.test//0}",
			"hid compat [peggy@y.test] {peggy@y.test//0/ec} bcc=peggy@y.test",
			"hid compat [carol@y.test] {carol@y.test//0} bcc=carol@y.test",
			"hid compat [dave@y.test] {dave@y.test//0} bcc=dave@y.test",
		}},
		{"ok group", Policy{Bcc: Group, KeepBcc: true}, nil, []string{
			"vis compat [frank@x.test] {frank@x.test//0/ec}",
			"vis compat [bob@x.test,erin@x.test] {bob@x.test//0,erin@x.test//0}",
			"hid compat [peggy@y.test] {peggy@y.test//0/ec} bcc=peggy@y.test",
			"hid compat [carol@y.test,dave@y.test] {carol@y.test//0,dave@y.test//0} bcc=peggy@y.test,carol@y.test,dave@y.test",
		}},
		{"ok ec sender copy only in ec packages", Policy{Bcc: Group, SelfCopy: true}, []Cert{aliceEC}, []string{
			"vis compat [frank@x.test] {frank@x.test//0/ec,alice@example.test//1/ec}",
			"vis compat [bob@x.test,erin@x.test] {bob@x.test//0,erin@x.test//0}",
			"hid compat [peggy@y.test] {peggy@y.test//0/ec,alice@example.test//1/ec}",
			"hid compat [carol@y.test,dave@y.test] {carol@y.test//0,dave@y.test//0}",
		}},
		{"ok sender with rsa and ec uses rsa everywhere", Policy{SelfCopy: true, CertChoice: Newest}, []Cert{aliceEC, alice}, []string{
			"vis compat [frank@x.test] {frank@x.test//0/ec,alice@example.test//0}",
			"vis compat [bob@x.test,erin@x.test] {bob@x.test//0,erin@x.test//0,alice@example.test//0}",
			"hid compat [peggy@y.test] {peggy@y.test//0/ec,alice@example.test//0}",
			"hid compat [carol@y.test] {carol@y.test//0,alice@example.test//0}",
			"hid compat [dave@y.test] {dave@y.test//0,alice@example.test//0}",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Header: header(hdr), MailFrom: "alice@example.test", RcptTo: rcpt, Certs: certs, SenderCerts: tt.self, Policy: tt.pol}
			p, err := Make(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(p); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err := CheckPrivacy(in, p); err != nil {
				t.Fatalf("CheckPrivacy() = %v", err)
			}
		})
	}
}

// TestCheckKeyAgree: the oracle refuses a plan that puts an EC recipient with another, or an EC
// self-copy into a package of RSA recipients.
func TestCheckKeyAgree(t *testing.T) {
	hdr := base + "To: bob@x.test, frank@x.test\n"
	certs := certsFor("bob@x.test")
	certs["frank@x.test"] = []Cert{ecCert("frank@x.test", 0)}
	in := Input{Header: header(hdr), MailFrom: "alice@example.test", RcptTo: []string{"bob@x.test", "frank@x.test"}, Certs: certs,
		SenderCerts: []Cert{ecCert("alice@example.test", 0)}, Policy: Policy{SelfCopy: true}}
	good, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivacy(in, good); err != nil {
		t.Fatal(err)
	}
	t.Run("fail ec recipient shares a package", func(t *testing.T) {
		p, _ := Make(in)
		merged := p.Packages[0]
		merged.Recipients = append(append([]string(nil), p.Packages[0].Recipients...), p.Packages[1].Recipients...)
		merged.Certs = append(append([]Cert(nil), p.Packages[0].Certs...), p.Packages[1].Certs...)
		merged.ReceivedFor = ""
		p.Packages = []Package{merged}
		if err := CheckPrivacy(in, p); !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrNotMinimal) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("fail ec self-copy in an rsa package", func(t *testing.T) {
		p, _ := Make(in)
		for i := range p.Packages {
			if p.Packages[i].Recipients[0] == "bob@x.test" {
				p.Packages[i].Certs = append(p.Packages[i].Certs, in.SenderCerts[0])
			}
		}
		if err := CheckPrivacy(in, p); !errors.Is(err, ErrNotMinimal) {
			t.Fatalf("got %v", err)
		}
	})
}
