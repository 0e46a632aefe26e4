package pipeline_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"appliance/cms"
	"appliance/directory"
	"appliance/internal/interop"
	"appliance/lists"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"
)

const listContent = "Content-Type: text/plain; charset=us-ascii\r\n\r\nHello, list members.\r\n"

func postEnv(from string) queue.Envelope {
	return queue.Envelope{MailFrom: from, RcptTo: []string{listAddr}, Helo: "client.example.org", ClientAddr: "192.0.2.1:4000", ReceivedAt: time.Now()}
}

// memberFiles says where interop finds a member's NAME.pem and NAME.key.
type memberFiles struct {
	pkiDir, name string
	cert         *x509.Certificate
}

// TestListEncryptedPost is issue 6's acceptance test: a post encrypted by openssl to the list's
// certificate goes to 50 members, each of whom can decrypt theirs with openssl; the list's outer
// signature verifies and carries mlExpansionHistory; each package has one RecipientInfo, the
// member's; the encrypted content is the submitted one, byte for byte.
func TestListEncryptedPost(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  interop.EncryptOptions
	}{
		{"ok cbc pkcs1", interop.EncryptOptions{}},
		{"ok gcm oaep", interop.EncryptOptions{Cipher: "aes-256-gcm", OAEP: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := listSetupFor(t)
			extra := makeMembers(t, first.env, filepath.Join(t.TempDir(), "x"), 25)
			files := map[string]memberFiles{}
			var members []string
			for i := 1; i <= 25; i++ {
				name := fmt.Sprintf("u%02d", i)
				files[name+"@example.test"] = memberFiles{first.env.PKI, name, first.env.Cert(t, name)}
				members = append(members, name+"@example.test")
			}
			for i, name := range extra.names {
				c := readCert(t, filepath.Join(extra.dir, name+".pem"))
				files[extra.addr(i)] = memberFiles{extra.dir, name, c}
				members = append(members, extra.addr(i))
			}
			if tc.name != "ok cbc pkcs1" {
				members = members[:5] // the full set runs once; this checks the GCM/OAEP path
			}
			ls := newListPipeline(t, split.Policy{}, []memberPKI{extra}, lists.List{Posters: lists.Posters{Anyone: true}}, members)

			der := interop.OpenSSLEncrypt(t, ls.env.PKI, []byte(listContent), []string{"list"}, tc.opt)
			submitted, err := cms.ParseEnveloped(der)
			if err != nil {
				t.Fatal(err)
			}
			wantCiphertext, err := submitted.EncryptedContent()
			if err != nil {
				t.Fatal(err)
			}
			s, err := ls.pipe.Process(context.Background(), "L1", postEnv("olivia@example.org"), bytes.NewReader(encryptedPost(der, "olivia@example.org")))
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Packages) != len(members) || len(s.Refused) != 0 {
				t.Fatalf("got %d packages and %d refusals, want %d and 0", len(s.Packages), len(s.Refused), len(members))
			}
			got := map[string]bool{}
			for _, pk := range s.Packages {
				if len(pk.RcptTo) != 1 {
					t.Fatalf("package for %v: want exactly one envelope recipient", pk.RcptTo)
				}
				rcpt := pk.RcptTo[0]
				got[rcpt] = true
				if pk.Mode != seal.ModeEncrypted || pk.Profile == seal.ProfileNone {
					t.Fatalf("package for %s records %s/%s, want encrypted", rcpt, pk.Mode, pk.Profile)
				}
				if pk.MailFrom != "" {
					t.Fatalf("package for %s has MAIL FROM %q; bounces of list mail must go nowhere", rcpt, pk.MailFrom)
				}
				f, ok := files[rcpt]
				if !ok {
					t.Fatalf("package for %q, who is no member", rcpt)
				}
				data := render(t, pk)
				checkListHeader(t, data, rcpt, members)

				signed, err := smime.ParseSigned(data)
				if err != nil {
					t.Fatalf("package for %s is not multipart/signed: %v", rcpt, err)
				}
				inner, err := interop.OpenSSLVerify(t, ls.env.PKI, data)
				if err != nil {
					t.Fatalf("list signature for %s does not verify: %v", rcpt, err)
				}
				if !bytes.Equal(inner, signed.Content) {
					t.Fatalf("openssl verified other content than the first part for %s", rcpt)
				}
				checkListSignature(t, signed.Signature, ls.chain[0], 1)

				pkg, err := smime.Parse(bytes.NewReader(signed.Content), 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				envd, err := cms.ParseEnveloped(pkg.DER)
				if err != nil {
					t.Fatal(err)
				}
				if len(envd.RecipientInfos) != 1 || !envd.RecipientInfos[0].Matches(f.cert) {
					t.Fatalf("package for %s: %d RecipientInfos, want exactly the member's", rcpt, len(envd.RecipientInfos))
				}
				ct, err := envd.EncryptedContent()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ct, wantCiphertext) || !bytes.Equal(envd.EncryptedContentInfo, submitted.EncryptedContentInfo) {
					t.Fatalf("package for %s: encrypted content differs from the submitted one", rcpt)
				}
				if submitted.Auth() && !bytes.Equal(envd.MAC, submitted.MAC) {
					t.Fatalf("package for %s: MAC differs", rcpt)
				}
				plain, err := interop.OpenSSLDecrypt(t, f.pkiDir, f.name, signed.Content)
				if err != nil {
					t.Fatalf("%s cannot decrypt their package: %v", rcpt, err)
				}
				if !bytes.Equal(plain, []byte(listContent)) {
					t.Fatalf("%s decrypted %q", rcpt, plain)
				}
			}
			if len(got) != len(members) {
				t.Fatalf("%d distinct members got packages, want %d", len(got), len(members))
			}
		})
	}
}

// listSetupFor gives the softhsmtest environment (and the shared token) for helpers that need
// the PKI before the pipeline exists.
func listSetupFor(t *testing.T) *listSetup {
	t.Helper()
	_, env := newPipeline(t, split.Policy{}, nil)
	return &listSetup{env: env}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := directory.LoadCertificates(path)
	if err != nil || len(certs) != 1 {
		t.Fatalf("%s: %v", path, err)
	}
	return certs[0]
}

// checkListHeader: To stays the list, List-Id and List-Post are there, the Bcc is gone, and no
// member but the package's own is named anywhere in it (nor is that one: it is in the envelope).
func checkListHeader(t *testing.T, data []byte, rcpt string, members []string) {
	t.Helper()
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	h := string(head)
	for _, want := range []string{"\r\nTo: " + listAddr + "\r\n", "\r\nList-Id: <list.example.test>\r\n", "\r\nList-Post: <mailto:" + listAddr + ">\r\n", "Received: from client.example.org"} {
		if !strings.Contains("\r\n"+h+"\r\n", want) {
			t.Fatalf("package for %s lacks %q in its header:\n%s", rcpt, strings.TrimSpace(want), h)
		}
	}
	// A Bcc field, not the letters: a boundary or Message-ID of random hex may hold "bcc".
	if regexp.MustCompile(`(?im)^(resent-)?bcc:`).MatchString(h) || strings.Contains(h, "hidden@") {
		t.Fatalf("package for %s keeps the Bcc", rcpt)
	}
	from := ""
	if i := strings.Index(h, "\r\nFrom: "); i >= 0 {
		from, _, _ = strings.Cut(h[i+len("\r\nFrom: "):], "\r\n")
	}
	for _, m := range members {
		// The poster's own From is visible to every recipient (the privacy rule in package split's doc), member or not.
		if m != from && bytes.Contains(data, []byte(m)) {
			t.Fatalf("package for %s names member %s", rcpt, m)
		}
	}
}

// checkListSignature: one signer, the list, with an mlExpansionHistory of want entries whose
// last names the list by issuer and serial.
func checkListSignature(t *testing.T, sig []byte, list *x509.Certificate, want int) {
	t.Helper()
	sd, err := cms.ParseSigned(sig)
	if err != nil {
		t.Fatal(err)
	}
	if len(sd.Signers) != 1 || !sd.Signers[0].Matches(list) {
		t.Fatal("the outer signature is not the list's")
	}
	h := expansionHistory(t, sd.Signers[0].SignedAttrs)
	if len(h) != want {
		t.Fatalf("mlExpansionHistory has %d entries, want %d", len(h), want)
	}
	var id struct {
		Issuer asn1.RawValue
		Serial asn1.RawValue
	}
	if _, err := asn1.Unmarshal(h[len(h)-1].ID.FullBytes, &id); err != nil {
		t.Fatalf("mailListIdentifier is not issuerAndSerialNumber: %v", err)
	}
	if !bytes.Equal(id.Issuer.FullBytes, list.RawIssuer) {
		t.Fatal("mailListIdentifier names another issuer")
	}
	if time.Since(h[len(h)-1].Time) > time.Hour {
		t.Fatalf("expansionTime %v", h[len(h)-1].Time)
	}
}

// TestListPlainPost: a plain post is signed by the list inside, encrypted once and wrapped per
// member, and signed by the list outside.
func TestListPlainPost(t *testing.T) {
	members := []string{"bob@example.test", "carol@example.test", "dave@example.test"}
	ls := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: lists.Posters{Members: true}}, members)
	post := "From: bob@example.test\r\nTo: " + listAddr + "\r\nSubject: plain\r\n\r\nplain body\r\n"
	s, err := ls.pipe.Process(context.Background(), "L2", postEnv("bob@example.test"), strings.NewReader(post))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Packages) != 3 {
		t.Fatalf("got %d packages, want 3", len(s.Packages))
	}
	var shared []byte
	for _, pk := range s.Packages {
		rcpt := pk.RcptTo[0]
		data := render(t, pk)
		checkListHeader(t, data, rcpt, members)
		if _, err := interop.OpenSSLVerify(t, ls.env.PKI, data); err != nil {
			t.Fatalf("outer signature for %s: %v", rcpt, err)
		}
		signed, err := smime.ParseSigned(data)
		if err != nil {
			t.Fatal(err)
		}
		checkListSignature(t, signed.Signature, ls.chain[0], 1)
		pkg, err := smime.Parse(bytes.NewReader(signed.Content), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		envd, err := cms.ParseEnveloped(pkg.DER)
		if err != nil {
			t.Fatal(err)
		}
		if len(envd.RecipientInfos) != 1 || !envd.RecipientInfos[0].Matches(ls.env.Cert(t, strings.TrimSuffix(rcpt, "@example.test"))) {
			t.Fatalf("package for %s does not carry exactly the member's RecipientInfo", rcpt)
		}
		ct, _ := envd.EncryptedContent()
		if shared == nil {
			shared = ct
		} else if !bytes.Equal(shared, ct) {
			t.Fatal("the post was encrypted more than once")
		}
		plain, err := interop.OpenSSLDecrypt(t, ls.env.PKI, strings.TrimSuffix(rcpt, "@example.test"), signed.Content)
		if err != nil {
			t.Fatalf("%s cannot decrypt: %v", rcpt, err)
		}
		inner, err := interop.OpenSSLVerify(t, ls.env.PKI, plain)
		if err != nil {
			t.Fatalf("inner signature for %s: %v", rcpt, err)
		}
		if !bytes.Contains(inner, []byte("plain body")) {
			t.Fatalf("inner content %q", inner)
		}
	}
}

// TestListLoop: a package the list sent, posted back to it, is not expanded again; a history at
// the RFC 2634 bound is refused, one below it is extended.
func TestListLoop(t *testing.T) {
	members := []string{"bob@example.test", "dave@example.test"}
	ls := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: lists.Posters{Anyone: true}}, members)
	der := interop.OpenSSLEncrypt(t, ls.env.PKI, []byte(listContent), []string{"list"}, interop.EncryptOptions{})
	s, err := ls.pipe.Process(context.Background(), "L3", postEnv("olivia@example.org"), bytes.NewReader(encryptedPost(der, "olivia@example.org")))
	if err != nil || len(s.Packages) != 2 {
		t.Fatalf("first expansion: %v, %d packages", err, len(s.Packages))
	}
	looped := render(t, s.Packages[0])

	// A post signed by an upstream list with a history of n entries, carrying the post encrypted
	// to this list.
	upstream := func(n int) []byte {
		entity := "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + string(appendBase64Lines(nil, der))
		sig, err := cms.Sign(ls.env.Key(t, "bob"), []*x509.Certificate{ls.env.Cert(t, "bob")}, []byte(entity),
			cms.SignOptions{Detached: true, Extra: []cms.Attribute{historyAttr(t, n)}})
		if err != nil {
			t.Fatal(err)
		}
		micalg, _ := smime.MicAlg(crypto.SHA256)
		return append([]byte("From: bob@example.test\r\nTo: "+listAddr+"\r\nSubject: relayed\r\nMIME-Version: 1.0\r\n"),
			smime.SignedEntity([]byte(entity), sig, micalg)...)
	}

	for _, tc := range []struct {
		name    string
		msg     []byte
		refused error
		history int
	}{
		{"fail own package posted back", looped, lists.ErrListLoop, 0},
		{"fail history at the bound", upstream(lists.MaxExpansionHistory), lists.ErrHistoryFull, 0},
		{"fail history beyond the bound", upstream(lists.MaxExpansionHistory + 1), lists.ErrHistoryFull, 0},
		{"fail history far beyond the bound", upstream(lists.MaxExpansionHistory + 10), lists.ErrHistoryFull, 0},
		{"ok history below the bound", upstream(lists.MaxExpansionHistory - 1), nil, lists.MaxExpansionHistory},
		{"ok upstream list", upstream(1), nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ls.pipe.Process(context.Background(), "L4", postEnv("bob@example.test"), bytes.NewReader(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			if tc.refused != nil {
				if len(s.Packages) != 0 || len(s.Refused) != 1 || s.Refused[0].Status != "5.4.6" || s.Refused[0].Reason != tc.refused.Error() {
					t.Fatalf("got %d packages, refused %+v; want only a 5.4.6 refusal %q", len(s.Packages), s.Refused, tc.refused)
				}
				return
			}
			if len(s.Packages) != 2 || len(s.Refused) != 0 {
				t.Fatalf("got %d packages, refused %+v", len(s.Packages), s.Refused)
			}
			signed, err := smime.ParseSigned(render(t, s.Packages[0]))
			if err != nil {
				t.Fatal(err)
			}
			checkListSignature(t, signed.Signature, ls.chain[0], tc.history)
		})
	}
}

// TestListPosters: who may post, at the front end's question and in Process.
func TestListPosters(t *testing.T) {
	members := []string{"bob@example.test", "Dave@Example.TEST"}
	for _, tc := range []struct {
		name    string
		posters lists.Posters
		from    string
		ok      bool
	}{
		{"ok member", lists.Posters{Members: true}, "bob@example.test", true},
		{"ok member case folded", lists.Posters{Members: true}, "DAVE@example.test", true},
		{"fail outsider to members list", lists.Posters{Members: true}, "olivia@example.org", false},
		{"fail null sender to members list", lists.Posters{Members: true}, "", false},
		{"ok anyone", lists.Posters{Anyone: true}, "olivia@example.org", true},
		{"ok null sender to anyone list", lists.Posters{Anyone: true}, "", true},
		{"ok listed poster", lists.Posters{Addresses: []string{"olivia@example.org"}}, "olivia@example.org", true},
		{"fail member of a listed-only list", lists.Posters{Addresses: []string{"olivia@example.org"}}, "bob@example.test", false},
		{"ok member or listed", lists.Posters{Members: true, Addresses: []string{"olivia@example.org"}}, "bob@example.test", true},
		{"fail nobody", lists.Posters{}, "bob@example.test", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: tc.posters}, members)
			err := ls.pipe.CheckPoster(context.Background(), listAddr, tc.from)
			if tc.ok != (err == nil) || !tc.ok && !errors.Is(err, lists.ErrNotPoster) {
				t.Fatalf("CheckPoster(%q) = %v", tc.from, err)
			}
			if tc.ok {
				return
			}
			post := "From: x@example.org\r\nTo: " + listAddr + "\r\n\r\nhi\r\n"
			s, err := ls.pipe.Process(context.Background(), "L5", postEnv(tc.from), strings.NewReader(post))
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Packages) != 0 || len(s.Refused) != 1 || s.Refused[0].Status != "5.7.1" || s.Refused[0].Recipient != listAddr {
				t.Fatalf("got %d packages, refused %+v; want the list refused 5.7.1", len(s.Packages), s.Refused)
			}
			if strings.Contains(s.Refused[0].Reason, "bob") || strings.Contains(s.Refused[0].Reason, "dave") {
				t.Fatalf("refusal %q names a member", s.Refused[0].Reason)
			}
		})
	}
	t.Run("fail not a list", func(t *testing.T) {
		ls := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: lists.Posters{Anyone: true}}, members)
		if err := ls.pipe.CheckPoster(context.Background(), "bob@example.test", "bob@example.test"); !errors.Is(err, lists.ErrNotList) {
			t.Fatalf("CheckPoster = %v", err)
		}
		if ls.pipe.IsList("bob@example.test") || !ls.pipe.IsList("LIST@example.test") {
			t.Fatal("IsList is wrong")
		}
	})
}

// TestListUnusableMembers: members whose certificate is expired (grace), lacks keyEncipherment (ivan) or is missing
// are skipped with a log line naming them, never sent anything; the rest get their packages.
func TestListUnusableMembers(t *testing.T) {
	members := []string{"grace@example.test", "ivan@example.test", "nocert@example.test", "bob@example.test"}
	ls := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: lists.Posters{Anyone: true}}, members)
	for _, tc := range []struct {
		name string
		post []byte
	}{
		{"ok encrypted post", encryptedPost(interop.OpenSSLEncrypt(t, ls.env.PKI, []byte(listContent), []string{"list"}, interop.EncryptOptions{}), "olivia@example.org")},
		{"ok plain post", []byte("From: olivia@example.org\r\nTo: " + listAddr + "\r\n\r\nhi\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ls.pipe.Process(context.Background(), "L6", postEnv("olivia@example.org"), bytes.NewReader(tc.post))
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Packages) != 1 || s.Packages[0].RcptTo[0] != "bob@example.test" || len(s.Refused) != 0 {
				t.Fatalf("got packages %v, refused %+v; want bob's only", s.Packages, s.Refused)
			}
			logs := ls.logs.String()
			for _, m := range []string{"grace@example.test", "ivan@example.test", "nocert@example.test"} {
				if !strings.Contains(logs, "list member skipped") || !strings.Contains(logs, "member="+m) {
					t.Fatalf("no log line skipping %s:\n%s", m, logs)
				}
			}
			if !strings.Contains(logs, "expired") {
				t.Fatalf("the log does not say grace's certificate expired:\n%s", logs)
			}
		})
	}
	t.Run("fail nobody left", func(t *testing.T) {
		ls := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: lists.Posters{Anyone: true}}, members[:3])
		s, err := ls.pipe.Process(context.Background(), "L7", postEnv("olivia@example.org"), strings.NewReader("From: olivia@example.org\r\n\r\nhi\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Packages) != 0 || len(s.Refused) != 1 || s.Refused[0].Recipient != listAddr {
			t.Fatalf("got %d packages, refused %+v", len(s.Packages), s.Refused)
		}
	})
}

// TestListSkippedCounted: every skipped member is reported to Events.ListExpanded by reason, once
// per expansion: no valid certificate (expired, EC, none at all), or a valid one the key cannot
// be wrapped for (a subjectKeyIdentifier id wanted from a certificate without one).
func TestListSkippedCounted(t *testing.T) {
	first := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: lists.Posters{Anyone: true}}, []string{"bob@example.test"})
	extra := cachedMembers(t, first.env, 2)
	noSKI, plain := extra.addr(0), extra.addr(1)
	if c := readCert(t, filepath.Join(extra.dir, extra.names[0]+".pem")); len(c.SubjectKeyId) != 0 {
		t.Fatal("the generated member certificate has a subjectKeyIdentifier; the test needs one without")
	}
	ski := func(o *pipeline.Options) { o.SKI = func(owner string) bool { return owner == noSKI } }
	encrypted := func(ls *listSetup) []byte {
		return encryptedPost(interop.OpenSSLEncrypt(t, ls.env.PKI, []byte(listContent), []string{"list"}, interop.EncryptOptions{}), "olivia@example.org")
	}
	plainPost := func(*listSetup) []byte {
		return []byte("From: olivia@example.org\r\nTo: " + listAddr + "\r\n\r\nhi\r\n")
	}
	tests := []struct {
		name     string
		members  []string
		post     func(*listSetup) []byte
		want     map[string]int
		packages int
	}{
		{"ok encrypted post", []string{"grace@example.test", "ivan@example.test", "nocert@example.test", "bob@example.test", noSKI, plain},
			encrypted, map[string]int{lists.SkipNoCertificate: 3, lists.SkipUnusableCertificate: 1}, 2},
		{"ok plain post", []string{"nocert@example.test", "bob@example.test", noSKI},
			plainPost, map[string]int{lists.SkipNoCertificate: 1, lists.SkipUnusableCertificate: 1}, 1},
		{"ok nobody skipped", []string{"bob@example.test", plain}, encrypted, map[string]int{}, 2},
		{"fail nobody left", []string{"nocert@example.test", noSKI},
			plainPost, map[string]int{lists.SkipNoCertificate: 1, lists.SkipUnusableCertificate: 1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			got := map[string]int{}
			calls, packages := 0, 0
			expanded := func(o *pipeline.Options) {
				o.Events.ListExpanded = func(list string, n int, skipped map[string]int) {
					mu.Lock()
					defer mu.Unlock()
					if list != listAddr {
						t.Errorf("expansion reported for list %q", list)
					}
					packages += n
					for reason, n := range skipped {
						if n > 0 {
							got[reason] += n
							calls++
						}
					}
				}
			}
			ls := newListPipeline(t, split.Policy{}, []memberPKI{extra}, lists.List{Posters: lists.Posters{Anyone: true}}, tt.members, ski, expanded)
			s, err := ls.pipe.Process(context.Background(), "L8", postEnv("olivia@example.org"), bytes.NewReader(tt.post(ls)))
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Packages) != tt.packages {
				t.Fatalf("%d packages, want %d (refused %+v)", len(s.Packages), tt.packages, s.Refused)
			}
			mu.Lock()
			defer mu.Unlock()
			if !maps.Equal(got, tt.want) || calls != len(tt.want) || packages != tt.packages {
				t.Fatalf("skips reported %v (%d reasons), %d packages; want %v, %d", got, calls, packages, tt.want, tt.packages)
			}
		})
	}
}

// TestListKeyMissing: a list whose key is not on the token is a temporary error, so the queue
// keeps the message; so is a token that cannot be reached.
func TestListKeyMissing(t *testing.T) {
	members := []string{"bob@example.test"}
	ls := newListPipeline(t, split.Policy{}, nil, lists.List{KeyURI: "pkcs11:token=appliance;object=no-such-list", Posters: lists.Posters{Anyone: true}}, members)
	for _, tc := range []struct {
		name string
		post []byte
	}{
		{"fail encrypted post", encryptedPost(interop.OpenSSLEncrypt(t, ls.env.PKI, []byte(listContent), []string{"list"}, interop.EncryptOptions{}), "olivia@example.org")},
		{"fail plain post", []byte("From: olivia@example.org\r\nTo: " + listAddr + "\r\n\r\nhi\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ls.pipe.Process(context.Background(), "L8", postEnv("olivia@example.org"), bytes.NewReader(tc.post))
			if err == nil {
				t.Fatalf("Process succeeded with %d packages", len(s.Packages))
			}
			var tmp interface{ Temporary() bool }
			if !errors.As(err, &tmp) || !tmp.Temporary() {
				t.Fatalf("error %v is not temporary", err)
			}
			if !strings.Contains(err.Error(), "no-such-list") {
				t.Fatalf("error %q does not name the key", err)
			}
		})
	}
	t.Run("fail post not encrypted to the list", func(t *testing.T) {
		ls := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: lists.Posters{Anyone: true}}, members)
		der := interop.OpenSSLEncrypt(t, ls.env.PKI, []byte(listContent), []string{"dave"}, interop.EncryptOptions{})
		s, err := ls.pipe.Process(context.Background(), "L9", postEnv("olivia@example.org"), bytes.NewReader(encryptedPost(der, "olivia@example.org")))
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Packages) != 0 || len(s.Refused) != 1 || s.Refused[0].Status != "5.7.5" {
			t.Fatalf("got %d packages, refused %+v", len(s.Packages), s.Refused)
		}
	})
}

// TestListMixedRecipients: a list and an ordinary recipient in one transaction; the list's
// members and the ordinary recipient get separate packages, and neither names the other side.
func TestListMixedRecipients(t *testing.T) {
	ls := newListPipeline(t, split.Policy{SelfCopy: true}, nil, lists.List{Posters: lists.Posters{Anyone: true}}, []string{"bob@example.test"})
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: []string{listAddr, "carol@example.test"}, ReceivedAt: time.Now()}
	post := "From: alice@example.test\r\nTo: " + listAddr + ", carol@example.test\r\nSubject: both\r\n\r\nhi\r\n"
	s, err := ls.pipe.Process(context.Background(), "L10", env, strings.NewReader(post))
	if err != nil {
		t.Fatal(err)
	}
	var rcpts []string
	for _, pk := range s.Packages {
		rcpts = append(rcpts, pk.RcptTo...)
	}
	if strings.Join(rcpts, ",") != "bob@example.test,carol@example.test" {
		t.Fatalf("packages go to %v", rcpts)
	}
	if data := render(t, s.Packages[1]); bytes.Contains(data, []byte("bob@")) {
		t.Fatal("carol's package names a list member")
	}
}

// TestListReload: members come from the file as it is when Reload is called; a broken file keeps
// the old members.
func TestListReload(t *testing.T) {
	ls := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: lists.Posters{Members: true}}, []string{"bob@example.test"})
	file := filepath.Join(t.TempDir(), "members")
	chain := ls.chain
	writeMembers(t, file, []string{"bob@example.test"})
	if err := ls.pipe.SetLists([]lists.List{{Address: listAddr, KeyURI: "pkcs11:object=list", Chain: chain, MembersFile: file, Posters: lists.Posters{Members: true}}}, listTok{sharedToken}); err != nil {
		t.Fatal(err)
	}
	can := func(who string) bool { return ls.pipe.CheckPoster(context.Background(), listAddr, who) == nil }
	if !can("bob@example.test") || can("dave@example.test") {
		t.Fatal("members before reload are wrong")
	}
	writeMembers(t, file, []string{"dave@example.test"})
	if err := ls.pipe.Reload(); err != nil {
		t.Fatal(err)
	}
	if can("bob@example.test") || !can("dave@example.test") {
		t.Fatal("reload did not replace the members")
	}
	if err := os.WriteFile(file, []byte("dave@example.test\nnot an address\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := ls.pipe.Reload()
	var me *lists.MembersError
	if !errors.As(err, &me) || me.Line != 2 || me.File != file {
		t.Fatalf("Reload = %v, want a MembersError for line 2", err)
	}
	if !can("dave@example.test") {
		t.Fatal("a failed reload dropped the members")
	}
}

func TestSetLists(t *testing.T) {
	ls := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: lists.Posters{Anyone: true}}, []string{"bob@example.test"})
	file := filepath.Join(t.TempDir(), "members")
	writeMembers(t, file, []string{"bob@example.test"})
	good := lists.List{Address: listAddr, KeyURI: "pkcs11:object=list", Chain: ls.chain, MembersFile: file}
	peggy := ls.env.Cert(t, "peggy")
	for _, tc := range []struct {
		name  string
		lists []lists.List
		tok   lists.ListToken
		want  error
	}{
		{"ok one list", []lists.List{good}, listTok{sharedToken}, nil},
		{"ok none", nil, nil, nil},
		{"fail no token", []lists.List{good}, nil, lists.ErrListConfig},
		{"fail twice", []lists.List{good, good}, listTok{sharedToken}, lists.ErrListConfig},
		{"fail a sender", []lists.List{func() lists.List { l := good; l.Address = "alice@example.test"; return l }()}, listTok{sharedToken}, lists.ErrListConfig},
		{"fail no key", []lists.List{func() lists.List { l := good; l.KeyURI = ""; return l }()}, listTok{sharedToken}, lists.ErrListConfig},
		{"fail p384 certificate", []lists.List{func() lists.List { l := good; l.Chain = []*x509.Certificate{peggy}; return l }()}, listTok{sharedToken}, lists.ErrListConfig},
		{"fail members file missing", []lists.List{func() lists.List { l := good; l.MembersFile = file + ".nope"; return l }()}, listTok{sharedToken}, os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ls.pipe.SetLists(tc.lists, tc.tok)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("SetLists = %v, want %v", err, tc.want)
			}
		})
	}
}
