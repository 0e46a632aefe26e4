package e2e

import (
	"bytes"
	"context"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"appliance/smime"
)

// TestHeaderProtectionServe: with policy.header_protection on, a message to To, Cc and two Bcc
// recipients goes through `serve` as three packages. The checker decrypts each as each of its
// recipients, verifies the signature (which covers the protected header) and counts every
// address of the header inside as revealed, so no package's inner header may name another
// package's hidden recipient; on top, each inner header is read here: hp="cipher", the real
// Subject, no Bcc field, From/To/Cc and HP-Outer inside the package's visible set, and the
// outer header shows "[...]".
func TestHeaderProtectionServe(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *Config) { c.Policy.HeaderProtection = true })
	msg := rawMessage("", "From: Alice <"+alice+">\r\nTo: Bob <"+bob+">\r\nCc: "+carol+"\r\nBcc: "+dave+", "+erin+"\r\nReply-To: "+dave+"\r\n")
	exp := Expect{From: alice, To: []string{bob}, Cc: []string{carol}, Bcc: []string{dave, erin}, Rcpt: []string{bob, carol, dave, erin}}
	if code, text := sendRaw(t, r.daemon.Addr, alice, exp.Rcpt, msg); code != 250 {
		t.Fatalf("end of DATA: %d %s", code, text)
	}
	// exp.Message stays nil: the signed entity is the protected payload, not the submitted body
	// (it starts with the legacy display element), so it is compared below instead.
	pkgs := r.expect(t, exp, 3)
	bin := Build(t)
	for _, p := range pkgs {
		inspectProtected(t, r, bin, p)
		if p.Kind != Encrypted {
			t.Fatalf("package to %v is %s", p.Tx.RcptTo, p.Kind)
		}
		if got := p.OuterHeader.Get("Subject"); got != smime.ObscuredSubject {
			t.Fatalf("package to %v: outer Subject %q", p.Tx.RcptTo, got)
		}
		vis := map[string]bool{alice: true, bob: true, carol: true}
		for _, a := range p.Tx.RcptTo {
			vis[strings.ToLower(a)] = true
		}
		pr, err := smime.ReadProtected(smime.Canonicalize(p.Content))
		if err != nil {
			t.Fatal(err)
		}
		if pr.Mode != smime.HPCipher || pr.Header.Get("Subject") != "headers" || pr.Header.Has("Bcc") || !pr.Legacy {
			t.Fatalf("package to %v: hp=%q subject %q bcc %v legacy %v", p.Tx.RcptTo, pr.Mode, pr.Header.Get("Subject"), pr.Header.Has("Bcc"), pr.Legacy)
		}
		if !slices.Contains(pr.Outer, "Subject: [...]") {
			t.Fatalf("package to %v: HP-Outer %q", p.Tx.RcptTo, pr.Outer)
		}
		if !bytes.Contains(smime.Canonicalize(p.Content), []byte("\r\n\r\nSubject: headers\r\n\r\nhello\r\n")) {
			t.Fatalf("package to %v: no legacy display before the body:\n%s", p.Tx.RcptTo, p.Content)
		}
		var lines []string
		for f := pr.Header.Fields(); f.Next(); {
			lines = append(lines, f.Key()+": "+f.Value())
		}
		for _, line := range append(lines, pr.Outer...) {
			k, v, _ := strings.Cut(line, ": ")
			if k != "From" && k != "To" && k != "Cc" {
				continue
			}
			list, err := mail.ParseAddressList(v)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			for _, a := range list {
				if !vis[strings.ToLower(a.Address)] {
					t.Fatalf("package to %v: inner %s names %s", p.Tx.RcptTo, k, a.Address)
				}
			}
		}
	}
}

// inspectProtected runs `appliance inspect` on a package: without -key it shows the obscured
// outer header and says the inside was not read; with a recipient's key it shows the protected
// header; with the key of someone the package is not for, it says it cannot decrypt.
func inspectProtected(t *testing.T, r *rig, bin string, p Package) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pkg.eml")
	if err := os.WriteFile(file, p.Tx.Data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		out, err := Run(ctx, r.env, bin, nil, append(append([]string{"inspect"}, args...), file)...)
		if err != nil {
			t.Fatalf("inspect %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run(); !strings.Contains(out, "inside: not read") || strings.Contains(out, "Subject: ") {
		t.Fatalf("inspect without a key:\n%s", out)
	}
	name := r.checker.PKI.Names(p.Tx.RcptTo[0])[0]
	out := run("-key", r.checker.PKI.File(name+".key"), "-cert", r.checker.PKI.File(name+".pem"))
	if !strings.Contains(out, "inside: protected header, hp=cipher") || !strings.Contains(out, "Subject:     headers") ||
		!strings.Contains(out, "HP-Outer): ") || strings.Contains(out, "Bcc:") {
		t.Fatalf("inspect with %s's key:\n%s", name, out)
	}
	t.Logf("inspect -key %s:\n%s", name, out)
	other := "grace"
	if out := run("-key", r.checker.PKI.File(other+".key"), "-cert", r.checker.PKI.File(other+".pem")); !strings.Contains(out, "inside: cannot decrypt") {
		t.Fatalf("inspect with the key of someone else:\n%s", out)
	}
}
