package pipeline_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"appliance/cms"
	"appliance/directory"
	"appliance/hsm"
	"appliance/internal/interop"
	"appliance/internal/lockedbuf"
	"appliance/internal/softhsmtest"
	"appliance/passthrough"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"
)

// TestMain is pipeline_test.go's: it cleans up interop and softhsmtest.

// rig is a real token, a real directory over the test PKI and the sender alice, shared by the
// tests of this binary.
type rig struct {
	env   *softhsmtest.Env
	tok   *hsm.Token
	dir   *directory.Directory
	alice pipeline.Sender
	users map[string]string // name -> address
	// stranger is a certificate outside the directory, as NAME.pem/NAME.key in its own folder.
	stranger string
}

var (
	rigOnce sync.Once
	theRig  *rig
	rigErr  error

	strangerDir string // removed by TestMain
)

func setup(t testing.TB) *rig {
	t.Helper()
	env := softhsmtest.Setup(t)
	interop.Need(t, "openssl")
	rigOnce.Do(func() {
		r := &rig{env: env}
		if r.tok, rigErr = hsm.Open(hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 4}); rigErr != nil {
			return
		}
		if r.dir, rigErr = directory.Open(directory.Options{CertsDir: env.File("certs"), RootsFile: env.File("roots.pem")}); rigErr != nil {
			return
		}
		chain, err := directory.LoadCertificates(env.File("alice.chain.pem"))
		if err != nil {
			rigErr = err
			return
		}
		r.alice = pipeline.Sender{Address: "alice@example.test", KeyURI: "pkcs11:token=appliance;object=alice", Chain: chain}
		if strangerDir, rigErr = os.MkdirTemp("", "passthrough-stranger-"); rigErr != nil {
			return
		}
		r.stranger = filepath.Join(strangerDir, "stranger")
		if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
			"-subj", "/CN=stranger", "-keyout", r.stranger+".key", "-out", r.stranger+".pem").CombinedOutput(); err != nil {
			rigErr = fmt.Errorf("openssl req: %v: %s", err, out)
			return
		}
		theRig = r
	})
	if rigErr != nil {
		t.Fatalf("setup: %v", rigErr)
	}
	if theRig.users == nil {
		theRig.users = env.Users(t)
	}
	return theRig
}

func (r *rig) pipeline(t testing.TB, pol split.Policy, pt split.PassThroughPolicy) (*pipeline.Pipeline, *lockedbuf.Buffer) {
	t.Helper()
	logs := &lockedbuf.Buffer{}
	p, err := pipeline.New(pipeline.Options{
		Directory: r.dir, Token: token{Token: r.tok}, Senders: []pipeline.Sender{r.alice}, Policy: pol,
		Hostname: "relay.example.test", Logger: slog.New(slog.NewTextHandler(logs, nil)),
		PassThrough: pt,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, logs
}

// pem names a user's certificate file: a PKI user by name, or the stranger.
func (r *rig) pem(name string) string {
	if name == "stranger" {
		return r.stranger + ".pem"
	}
	return r.env.File(name + ".pem")
}

type encryptOpts struct {
	gcm, ski, stream, oaep bool
}

// encrypt is the client: `openssl cms -encrypt` of content for the named users, as DER (BER
// with indefinite lengths when stream is set, as clients that stream emit).
func (r *rig) encrypt(t testing.TB, content []byte, users []string, o encryptOpts) []byte {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out.der")
	if err := os.WriteFile(in, content, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"cms", "-encrypt", "-binary", "-outform", "DER", "-in", in, "-out", out}
	if o.gcm {
		args = append(args, "-aes-256-gcm")
	} else {
		args = append(args, "-aes-256-cbc")
	}
	if o.ski {
		args = append(args, "-keyid")
	}
	if o.stream {
		args = append(args, "-stream")
	}
	for _, u := range users {
		args = append(args, "-recip", r.pem(u))
		if o.oaep && u != "frank" {
			args = append(args, "-keyopt", "rsa_padding_mode:oaep")
		}
	}
	if b, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl cms -encrypt: %v: %s", err, b)
	}
	der, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

const content = "Content-Type: text/plain; charset=utf-8\r\n\r\nThe quarterly numbers, for your eyes only.\r\n"

// mimeMessage wraps der as the client would submit it.
func mimeMessage(hdr, contentType string, der []byte) []byte {
	var b bytes.Buffer
	b.WriteString(hdr)
	b.WriteString("Subject: numbers\r\nMessage-ID: <pt@example.test>\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: " + contentType + "\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(der)
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\r\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

const envelopedType = "application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m"

func addr(name string) string { return name + "@example.test" }

// visibleTo is the privacy rule's visible_to(r) for the headers the tests write: To and Cc are bob and
// carol, From is alice; group mode adds every Bcc recipient for a hidden one.
func visibleTo(r string, bcc []string, group bool) map[string]bool {
	v := map[string]bool{"alice": true, "bob": true, "carol": true, r: true}
	if group && slices.Contains(bcc, r) {
		for _, b := range bcc {
			v[b] = true
		}
	}
	return v
}

type delivered struct {
	rcpts []string // user names
	text  []byte   // the rendered package
	env   *cms.Enveloped
	owner []string // user name of each RecipientInfo, "?" when none matches
}

// run seals msg through p and renders, parses and attributes every package.
func (r *rig) run(t testing.TB, p *pipeline.Pipeline, env queue.Envelope, msg []byte) (*pipeline.Result, []delivered) {
	t.Helper()
	res, err := p.Seal(context.Background(), "t1", env, msg)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	var out []delivered
	for _, pk := range res.Sealed.Packages {
		var b bytes.Buffer
		if _, err := pk.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		d := delivered{text: b.Bytes()}
		for _, a := range pk.Recipients {
			d.rcpts = append(d.rcpts, strings.TrimSuffix(strings.Trim(a, "<>"), "@example.test"))
		}
		parsed, err := smime.Parse(bytes.NewReader(d.text), int64(len(d.text)))
		if err != nil {
			t.Fatalf("package for %v does not parse: %v", d.rcpts, err)
		}
		if d.env, err = cms.ParseEnveloped(parsed.DER); err != nil {
			t.Fatalf("package for %v: %v", d.rcpts, err)
		}
		for _, ri := range d.env.RecipientInfos {
			d.owner = append(d.owner, r.ownerOf(t, ri))
		}
		out = append(out, d)
	}
	return res, out
}

var everyone = []string{"alice", "bob", "carol", "dave", "erin", "u01", "u02", "u03", "stranger"}

func (r *rig) ownerOf(t testing.TB, ri *cms.RecipientInfo) string {
	for _, name := range everyone {
		c := r.env.Cert(t, name)
		if name == "stranger" {
			b, _ := os.ReadFile(r.stranger + ".pem")
			cs, err := directory.ParseCertificates(b)
			if err != nil {
				t.Fatal(err)
			}
			c = cs[0]
		}
		if ri.Matches(c) {
			return name
		}
	}
	return "?"
}

// checkPackages is the acceptance oracle: every package's RecipientInfos and header are
// within visible_to of each of its recipients, every recipient decrypts its package with
// openssl, and the encrypted content (and MAC) are the client's, byte for byte.
func (r *rig) checkPackages(t *testing.T, orig []byte, bcc []string, group bool, pkgs []delivered, decrypt map[string]bool) {
	t.Helper()
	client, err := cms.ParseEnveloped(orig)
	if err != nil {
		t.Fatal(err)
	}
	want, err := client.EncryptedContent()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range pkgs {
		got, err := d.env.EncryptedContent()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("package for %v: encrypted content differs from the client's (%v)", d.rcpts, err)
		}
		if !bytes.Equal(d.env.EncryptedContentInfo, client.EncryptedContentInfo) || !bytes.Equal(d.env.MAC, client.MAC) ||
			!bytes.Equal(d.env.AuthAttrs, client.AuthAttrs) {
			t.Errorf("package for %v: encryptedContentInfo, authAttrs or mac not reused byte for byte", d.rcpts)
		}
		hdr, _, _ := bytes.Cut(d.text, []byte("\r\n\r\n"))
		for _, rc := range d.rcpts {
			vis := visibleTo(rc, bcc, group)
			for i, o := range d.owner {
				if !vis[o] {
					t.Errorf("package for %v carries recipientinfo #%d of %q, not visible to %q", d.rcpts, i, o, rc)
				}
			}
			for _, b := range bcc {
				if !vis[b] && bytes.Contains(bytes.ToLower(hdr), []byte(addr(b))) {
					t.Errorf("package for %v names hidden %q in its header", d.rcpts, b)
				}
			}
			if !decrypt[rc] {
				continue
			}
			plain, err := interop.OpenSSLDecrypt(t, r.env.PKI, rc, d.text)
			if err != nil {
				t.Errorf("%s cannot decrypt its package: %v", rc, err)
			} else if string(plain) != content {
				t.Errorf("%s decrypted %q", rc, plain)
			}
		}
	}
}

func rcptsOf(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = addr(n)
	}
	return out
}

const toCc = "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nCc: Carol <carol@example.test>\r\n"

// TestSplitClientEncrypted is issue 5's acceptance: client-style messages to To, Cc and Bcc
// recipients together, split, decrypted by each recipient, and checked against the rule.
func TestSplitClientEncrypted(t *testing.T) {
	r := setup(t)
	all := []string{"alice", "bob", "carol", "dave", "erin"}
	tests := []struct {
		name     string
		enc      encryptOpts
		ctype    string
		hdrBcc   bool // the submitted header still has its Bcc field
		group    bool
		packages int
	}{
		{name: "ok cbc issuer-serial", packages: 3},
		{name: "ok gcm issuer-serial", enc: encryptOpts{gcm: true}, packages: 3},
		{name: "ok cbc ski", enc: encryptOpts{ski: true}, packages: 3},
		{name: "ok gcm ski oaep", enc: encryptOpts{gcm: true, ski: true, oaep: true}, packages: 3},
		{name: "ok cbc indefinite-length ber", enc: encryptOpts{stream: true}, packages: 3},
		{name: "ok gcm indefinite-length ber", enc: encryptOpts{gcm: true, stream: true}, packages: 3},
		{name: "ok bcc header on submission removed", hdrBcc: true, packages: 3},
		{name: "ok group mode", group: true, hdrBcc: true, packages: 2},
		{name: "ok smime-type missing", ctype: "application/pkcs7-mime; name=smime.p7m", packages: 3},
		{name: "ok x-pkcs7-mime", ctype: "application/x-pkcs7-mime; smime-type=enveloped-data", packages: 3},
		{name: "ok octet-stream p7m", ctype: "application/octet-stream; name=\"mail.P7M\"", packages: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der := r.encrypt(t, []byte(content), all, tt.enc)
			hdr := toCc
			if tt.hdrBcc {
				hdr += "Bcc: dave@example.test, erin@example.test\r\n"
			}
			ctype := tt.ctype
			if ctype == "" {
				ctype = envelopedType
			}
			pol := split.Policy{}
			if tt.group {
				pol.Bcc = split.Group
			}
			p, _ := r.pipeline(t, pol, split.PassThroughPolicy{})
			msg := mimeMessage(hdr, ctype, der)
			env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "carol", "dave", "erin")}
			if err := p.CheckMessage(context.Background(), env, msg); err != nil {
				t.Fatalf("CheckMessage: %v", err)
			}
			res, pkgs := r.run(t, p, env, msg)
			if len(pkgs) != tt.packages || len(res.Plan.Refused) != 0 {
				t.Fatalf("%d packages, %d refused; want %d, 0", len(pkgs), len(res.Plan.Refused), tt.packages)
			}
			wantType := "smime-type=enveloped-data"
			if tt.enc.gcm {
				wantType = "smime-type=authEnveloped-data"
			}
			wantProfile := seal.ProfileCompat
			if tt.enc.gcm {
				wantProfile = seal.ProfileModern
			}
			for _, sp := range res.Sealed.Packages {
				if mode, profile := sp.Kind(); mode != seal.ModePassThrough || profile != wantProfile {
					t.Errorf("package for %v records %s/%s, want %s/%s", sp.Recipients, mode, profile, seal.ModePassThrough, wantProfile)
				}
			}
			for _, d := range pkgs {
				if !bytes.Contains(d.text, []byte(wantType)) {
					t.Errorf("package for %v is not labelled %s", d.rcpts, wantType)
				}
				if !slices.Contains(d.owner, "alice") {
					t.Errorf("package for %v lost the sender's self-copy", d.rcpts)
				}
			}
			decrypt := map[string]bool{"bob": true, "carol": true, "dave": true, "erin": true}
			r.checkPackages(t, der, []string{"dave", "erin"}, tt.group, pkgs, decrypt)
		})
	}
}

// TestSplitPolicies covers RecipientInfos nobody in the envelope owns and recipients nobody
// encrypted to, under each policy.
func TestSplitPolicies(t *testing.T) {
	r := setup(t)
	tests := []struct {
		name    string
		users   []string // encrypted to
		rcpts   []string // envelope
		pol     split.PassThroughPolicy
		wantErr error
		// what the split gives: package recipients (sorted, joined) -> owners of its
		// RecipientInfos (sorted, joined); refused recipients
		want    map[string]string
		refused []string
		logged  []string
	}{
		{name: "ok unknown owner dropped", users: []string{"alice", "bob", "dave", "stranger"}, rcpts: []string{"bob", "dave"},
			want:   map[string]string{"bob": "alice bob", "dave": "alice dave"},
			logged: []string{"owner unknown"}},
		{name: "ok known owner outside the envelope dropped", users: []string{"alice", "bob", "u01"}, rcpts: []string{"bob"},
			want:   map[string]string{"bob": "alice bob"},
			logged: []string{"owner is not an envelope recipient", "owner=u01@example.test"}},
		{name: "ok keyagree recipientinfo of a non-recipient dropped", users: []string{"alice", "bob", "frank"}, rcpts: []string{"bob"},
			want:   map[string]string{"bob": "alice bob"},
			logged: []string{"kind=keyagree", "owner=frank@example.test", "owner is not an envelope recipient"}},
		{name: "ok no self-copy", users: []string{"bob", "dave"}, rcpts: []string{"bob", "dave"},
			want: map[string]string{"bob": "bob", "dave": "dave"}},
		{name: "ok missing recipientinfo refused", users: []string{"alice", "bob", "dave"}, rcpts: []string{"bob", "dave", "u02"},
			want: map[string]string{"bob": "alice bob", "dave": "alice dave"}, refused: []string{"u02"}},
		{name: "ok missing recipientinfo delivered with visible ones only", users: []string{"alice", "bob", "dave"},
			rcpts: []string{"bob", "dave", "u02"}, pol: split.PassThroughPolicy{Missing: split.DeliverMissing},
			want: map[string]string{"bob": "alice bob", "dave": "alice dave", "u02": "alice bob"}},
		{name: "ok missing visible recipient delivered", users: []string{"alice", "bob", "dave"},
			rcpts: []string{"bob", "carol", "dave"}, pol: split.PassThroughPolicy{Missing: split.DeliverMissing},
			want: map[string]string{"bob": "alice bob", "carol": "alice bob", "dave": "alice dave"}},
		{name: "ok deliver with nothing visible refuses", users: []string{"dave"},
			rcpts: []string{"dave", "u02"}, pol: split.PassThroughPolicy{Missing: split.DeliverMissing},
			want: map[string]string{"dave": "dave"}, refused: []string{"u02"}},
		{name: "fail unknown owner rejected", users: []string{"alice", "bob", "stranger"}, rcpts: []string{"bob"},
			pol: split.PassThroughPolicy{Unknown: split.RejectUnknown}, wantErr: split.ErrRecipientInfoRejected},
		{name: "fail keyagree rejected", users: []string{"bob", "frank"}, rcpts: []string{"bob"},
			pol: split.PassThroughPolicy{Unknown: split.RejectUnknown}, wantErr: split.ErrRecipientInfoRejected},
		{name: "ok reject policy passes a clean message", users: []string{"alice", "bob", "dave"}, rcpts: []string{"bob", "dave"},
			pol:  split.PassThroughPolicy{Unknown: split.RejectUnknown},
			want: map[string]string{"bob": "alice bob", "dave": "alice dave"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der := r.encrypt(t, []byte(content), tt.users, encryptOpts{})
			p, logs := r.pipeline(t, split.Policy{}, tt.pol)
			msg := mimeMessage("From: alice@example.test\r\nTo: bob@example.test\r\nCc: carol@example.test\r\n", envelopedType, der)
			env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf(tt.rcpts...)}
			checkErr := p.CheckMessage(context.Background(), env, msg)
			if tt.wantErr != nil {
				if !errors.Is(checkErr, tt.wantErr) {
					t.Fatalf("CheckMessage: %v, want %v", checkErr, tt.wantErr)
				}
				if _, err := p.Seal(context.Background(), "t1", env, msg); !errors.Is(err, tt.wantErr) {
					t.Fatalf("Seal: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if checkErr != nil {
				t.Fatalf("CheckMessage: %v", checkErr)
			}
			res, pkgs := r.run(t, p, env, msg)
			got := map[string]string{}
			for _, d := range pkgs {
				owners := slices.Clone(d.owner)
				slices.Sort(owners)
				got[strings.Join(d.rcpts, " ")] = strings.Join(slices.Compact(owners), " ")
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("packages %v, want %v", got, tt.want)
			}
			var refused []string
			for _, rf := range res.Plan.Refused {
				refused = append(refused, strings.TrimSuffix(rf.Recipient, "@example.test"))
				if rf.Enhanced != "5.7.1" || !rf.DSN || !strings.Contains(rf.Reason, "no RecipientInfo for") {
					t.Errorf("refusal %+v", rf)
				}
			}
			if fmt.Sprint(refused) != fmt.Sprint(tt.refused) {
				t.Errorf("refused %v, want %v", refused, tt.refused)
			}
			for _, l := range tt.logged {
				if !strings.Contains(logs.String(), l) {
					t.Errorf("log lacks %q:\n%s", l, logs)
				}
			}
			decrypt := map[string]bool{}
			for _, u := range tt.users {
				decrypt[u] = u != "frank" && u != "stranger"
			}
			r.checkPackages(t, der, []string{"dave", "u02"}, false, pkgs, decrypt)
		})
	}
}

// TestPlanPassThrough is what `appliance inspect` shows.
func TestPlanPassThrough(t *testing.T) {
	r := setup(t)
	der := r.encrypt(t, []byte(content), []string{"alice", "bob", "dave", "stranger"}, encryptOpts{})
	p, _ := r.pipeline(t, split.Policy{}, split.PassThroughPolicy{})
	msg := mimeMessage(toCc, envelopedType, der)
	plan, err := p.PlanPassThrough(queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "dave")}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Opaque || plan.ContentType != smime.TypeEnvelopedData || len(plan.RecipientInfos) != 4 || len(plan.Packages) != 2 {
		t.Fatalf("plan %+v", plan)
	}
	dropped := 0
	for _, ri := range plan.RecipientInfos {
		if ri.Dropped != "" {
			dropped++
			if ri.Owner != "" || len(ri.Packages) != 0 {
				t.Errorf("dropped %+v", ri)
			}
			continue
		}
		if ri.Owner == "alice@example.test" != ri.Sender || !strings.HasPrefix(ri.ID, "issuer=") {
			t.Errorf("kept %+v", ri)
		}
	}
	if dropped != 1 {
		t.Errorf("%d dropped, want 1", dropped)
	}
	for _, pk := range plan.Packages {
		if len(pk.Recipients) != 1 || len(pk.RecipientInfos) != 2 || !slices.Contains(pk.Owners, "alice@example.test") {
			t.Errorf("package %+v", pk)
		}
	}

	if _, err := p.PlanPassThrough(queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob")},
		[]byte("From: alice@example.test\r\nContent-Type: text/plain\r\n\r\nhi\r\n")); !errors.Is(err, passthrough.ErrNotClientEncrypted) {
		t.Errorf("plain message: %v", err)
	}
	if err := p.CheckMessage(context.Background(), queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob")},
		[]byte("From: alice@example.test\r\n\r\nhi\r\n")); err != nil {
		t.Errorf("CheckMessage of plain mail: %v", err)
	}
}

// TestOpaqueContentSealed: signed-data is not split (nothing to split); it is sealed as ordinary
// content, and every recipient decrypts the appliance's package to find the client's
// application/pkcs7-mime inside.
func TestOpaqueContentSealed(t *testing.T) {
	r := setup(t)
	signed := interop.OpenSSLSign(t, r.env.PKI, "alice", []byte(content), interop.SignOptions{Encapsulated: true})
	p, _ := r.pipeline(t, split.Policy{SelfCopy: true}, split.PassThroughPolicy{})
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "dave")}
	// Labelled as an envelope, the same bytes are refused: a reader going by the label and one
	// going by the DER would not see the same message.
	mislabelled := mimeMessage(toCc, "application/pkcs7-mime; smime-type=enveloped-data", signed)
	if _, err := p.Seal(context.Background(), "t0", env, mislabelled); err == nil || !strings.Contains(err.Error(), "labelled smime-type=enveloped-data but holds signed-data") {
		t.Fatalf("signed-data labelled enveloped-data: %v, want a refusal naming the label", err)
	}
	for _, ctype := range []string{"application/pkcs7-mime; smime-type=signed-data; name=smime.p7m"} {
		msg := mimeMessage(toCc, ctype, signed)
		plan, err := p.PlanPassThrough(env, msg)
		if err != nil || !plan.Opaque || plan.ContentType != smime.TypeSignedData {
			t.Fatalf("plan %+v, %v", plan, err)
		}
		if err := p.CheckMessage(context.Background(), env, msg); err != nil {
			t.Fatalf("CheckMessage: %v", err)
		}
		res, err := p.Seal(context.Background(), "t1", env, msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Sealed.Packages) != 2 {
			t.Fatalf("%d packages", len(res.Sealed.Packages))
		}
		var b bytes.Buffer
		if _, err := res.Sealed.Packages[1].WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		plain, err := interop.OpenSSLDecrypt(t, r.env.PKI, "dave", b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(plain, []byte("application/pkcs7-mime")) || !bytes.Contains(plain, []byte("multipart/signed")) {
			t.Errorf("dave got %.300q", plain)
		}
	}
}

// TestHostile feeds broken and abusive client messages: each is refused (ErrUnaccountable when
// the classifier finds no CMS under the label, ErrUnsplittable when the CMS does not parse) or
// handled, never a panic, and memory stays near the input size.
func TestHostile(t *testing.T) {
	r := setup(t)
	good := r.encrypt(t, []byte(content), []string{"alice", "bob"}, encryptOpts{})
	base, err := cms.ParseEnveloped(good)
	if err != nil {
		t.Fatal(err)
	}
	var bobRI []byte
	for _, ri := range base.RecipientInfos {
		if r.ownerOf(t, ri) == "bob" {
			bobRI = ri.Raw
		}
	}
	kek := []byte{0xa2, 0x03, 0x02, 0x01, 0x04} // KEKRecipientInfo, carried opaque
	repeat := func(ri []byte, n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = ri
		}
		return out
	}
	v1 := bytes.Clone(bobRI)
	v1[hdrLen(v1)+2] = 1 // version 0 -> 1 with issuerAndSerialNumber
	badLen := bytes.Clone(good)
	badLen[1], badLen[2], badLen[3] = 0x84, 0x7f, 0xff

	tests := []struct {
		name     string
		der      []byte
		wantErr  error
		packages int
		kept     int // RecipientInfos in bob's package
	}{
		{name: "fail truncated der", der: good[:len(good)/2], wantErr: split.ErrUnsplittable},
		{name: "fail truncated header", der: good[:5], wantErr: pipeline.ErrUnaccountable},
		{name: "fail wrong outer length", der: badLen, wantErr: pipeline.ErrUnaccountable},
		{name: "fail not der at all", der: []byte("hello, world"), wantErr: pipeline.ErrUnaccountable},
		{name: "fail unknown recipientinfo version", der: envelope(t, base, 0, [][]byte{v1}), wantErr: split.ErrUnsplittable},
		{name: "fail 10001 recipientinfos", der: envelope(t, base, 0, repeat(bobRI, 10001)), wantErr: split.ErrUnsplittable},
		{name: "ok 10000 recipientinfos of bob", der: envelope(t, base, 0, repeat(bobRI, 10000)), packages: 1, kept: 10000},
		{name: "ok 10000 opaque recipientinfos dropped", der: envelope(t, base, 3, append(repeat(kek, 9999), bobRI)), packages: 1, kept: 1},
	}
	p, logs := r.pipeline(t, split.Policy{}, split.PassThroughPolicy{})
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob")}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := mimeMessage("From: alice@example.test\r\nTo: bob@example.test\r\n", envelopedType, tt.der)
			if tt.wantErr != nil {
				if err := p.CheckMessage(context.Background(), env, msg); !errors.Is(err, tt.wantErr) {
					t.Fatalf("CheckMessage: %v, want %v", err, tt.wantErr)
				}
				_, err := p.Seal(context.Background(), "t1", env, msg)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Seal: %v, want %v", err, tt.wantErr)
				}
				t.Logf("error: %v", err)
				return
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			res, err := p.Seal(context.Background(), "t1", env, msg)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			// Memory follows the input: the RecipientInfos are parsed in place and grouped by
			// certificate before split sees them; what remains is a small record per
			// RecipientInfo for the plan.
			limit := 8*uint64(len(msg)) + 512*10000
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > limit {
				t.Errorf("allocated %d bytes for a %d-byte message, limit %d", alloc, len(msg), limit)
			} else {
				t.Logf("allocated %d bytes for a %d-byte message", alloc, len(msg))
			}
			if tt.kept == 1 && strings.Count(logs.String(), "recipientinfo dropped") != 10 {
				t.Errorf("dropped recipientinfos not logged as 10 lines and a count:\n%.2000s", logs)
			}
			if len(res.Sealed.Packages) != tt.packages {
				t.Fatalf("%d packages", len(res.Sealed.Packages))
			}
			pkgEnv, err := cms.ParseEnveloped(res.Sealed.Packages[0].CMS().Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if len(pkgEnv.RecipientInfos) != tt.kept {
				t.Errorf("%d recipientinfos kept, want %d", len(pkgEnv.RecipientInfos), tt.kept)
			}
			if _, err := res.Sealed.Packages[0].WriteTo(io.Discard); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// envelope builds an EnvelopedData around base's encryptedContentInfo with the given raw
// RecipientInfos, as a hostile or unusual client might.
func envelope(t testing.TB, base *cms.Enveloped, version int, ris [][]byte) []byte {
	t.Helper()
	var set []byte
	for _, ri := range ris {
		set = append(set, ri...)
	}
	body := append([]byte{0x02, 0x01, byte(version)}, tlv(0x31, set)...)
	body = append(body, base.EncryptedContentInfo...)
	ct := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}
	return tlv(0x30, append(ct, tlv(0xa0, tlv(0x30, body))...))
}

func tlv(tag byte, body []byte) []byte {
	n := len(body)
	out := []byte{tag}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(out, body...)
}

// hdrLen is the length of a DER element's identifier and length octets.
func hdrLen(b []byte) int {
	if b[1] < 0x80 {
		return 2
	}
	return 2 + int(b[1]&0x7f)
}

func TestPassThroughPolicyOption(t *testing.T) {
	r := setup(t)
	tests := []struct {
		name string
		pol  split.PassThroughPolicy
		ok   bool
	}{
		{"ok defaults", split.PassThroughPolicy{}, true},
		{"ok reject and deliver", split.PassThroughPolicy{Unknown: split.RejectUnknown, Missing: split.DeliverMissing, MaxRecipientInfos: 5}, true},
		{"fail unknown value", split.PassThroughPolicy{Unknown: 7}, false},
		{"fail missing value", split.PassThroughPolicy{Missing: -1}, false},
		{"fail negative max", split.PassThroughPolicy{MaxRecipientInfos: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pipeline.New(pipeline.Options{Directory: r.dir, Token: token{Token: r.tok}, Senders: []pipeline.Sender{r.alice}, PassThrough: tt.pol})
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, split.ErrInvalidPassThroughPolicy)) {
				t.Fatalf("got %v", err)
			}
		})
	}
	// The cap applies: two RecipientInfos over a limit of one.
	p, _ := r.pipeline(t, split.Policy{}, split.PassThroughPolicy{MaxRecipientInfos: 1})
	msg := mimeMessage(toCc, envelopedType, r.encrypt(t, []byte(content), []string{"alice", "bob"}, encryptOpts{}))
	err := p.CheckMessage(context.Background(), queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob")}, msg)
	if !errors.Is(err, split.ErrUnsplittable) || !errors.Is(err, cms.ErrTooManyRecipients) {
		t.Fatalf("over the cap: %v", err)
	}
}

// FuzzPassThrough runs MIME bytes through planning and splitting: no panic, and whatever comes
// out parses and carries only RecipientInfos the plan lists.
func FuzzPassThrough(f *testing.F) {
	r := setup(f)
	for _, o := range []encryptOpts{{}, {gcm: true, ski: true}, {stream: true}} {
		der := r.encrypt(f, []byte(content), []string{"alice", "bob", "dave", "stranger"}, o)
		f.Add(mimeMessage(toCc, envelopedType, der))
		f.Add(mimeMessage(toCc, "application/pkcs7-mime", der[:len(der)-7]))
	}
	f.Add([]byte("Content-Type: application/pkcs7-mime\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\r\n"))
	f.Add([]byte("Content-Type: application/octet-stream; name=a.p7m\r\nContent-Transfer-Encoding: binary\r\n\r\n0\x80"))
	p, _ := r.pipeline(f, split.Policy{}, split.PassThroughPolicy{})
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "dave")}
	f.Fuzz(func(t *testing.T, msg []byte) {
		plan, err := p.PlanPassThrough(env, msg)
		if err != nil || plan.Opaque {
			return // the opaque path signs on the HSM: the seal tests cover it
		}
		res, err := p.Seal(context.Background(), "f", env, msg)
		if err != nil {
			t.Fatalf("planned but not split: %v", err)
		}
		for i, pk := range res.Sealed.Packages {
			var b bytes.Buffer
			if _, err := pk.WriteTo(&b); err != nil {
				t.Fatal(err)
			}
			parsed, err := smime.Parse(&b, int64(b.Len()))
			if err != nil {
				t.Fatalf("package %d: %v", i, err)
			}
			e, err := cms.ParseEnveloped(parsed.DER)
			if err != nil {
				t.Fatalf("package %d: %v", i, err)
			}
			if len(e.RecipientInfos) != len(plan.Packages[i].RecipientInfos) {
				t.Fatalf("package %d carries %d recipientinfos, plan says %d", i, len(e.RecipientInfos), len(plan.Packages[i].RecipientInfos))
			}
		}
	})
}
