// Package e2e tests the appliance as an operator runs it: the real binary, a real config, a real
// SoftHSM2 token, SMTP in from go-smtp's client and from swaks, and a capturing sink as next hop.
//
// Its exported helpers are meant for every whole-system test (Postfix in front, crash tests):
// [Check] judges what a next hop received against the privacy rule in package split's doc, using only outside tools
// (openssl for decryption, verification and reading RecipientInfos) so that a bug in the
// appliance's own CMS or MIME code cannot hide itself; [StartDaemon], [Config] and [Build] run the
// binary.
//
// The privacy rule, as checked here for every transaction T with envelope recipients R(T):
//
//	revealed(T) ⊆ visible_to(r) for all r ∈ R(T)
//	visible_to(r) = To ∪ Cc ∪ {From} ∪ {r} ∪ (hidden recipients, if r is hidden and bcc = "group")
//
// revealed(T) is every known person's address in the outer headers, in the headers of the
// decrypted entity and of the signed entity, the owner of every RecipientInfo, and the owner of
// every end-entity certificate in the SignedData. A known person is anyone the PKI has a
// certificate for, or anyone the submission names; other address-like strings (Message-ID) are
// not people. The sender knows every recipient, so a transaction to the sender alone (a DSN) may
// reveal anything. Completeness: every intended recipient is in exactly one R(T), can decrypt it
// (or, for missing_cert = "plaintext", gets a signed-only transaction of its own), and the signed
// content is the content that was submitted.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"appliance/internal/sink"
)

// ErrViolation marks a check failure (as opposed to trouble running the checker); every failure
// Check reports wraps it.
var ErrViolation = errors.New("check failed")

// Expect describes one submitted message and the policy it was sealed under. Addresses are bare
// (local@domain), compared case-insensitively.
type Expect struct {
	From        string
	To, Cc, Bcc []string // header recipients as submitted (Bcc may be empty when the client strips it)
	Rcpt        []string // envelope recipients the appliance accepted
	GroupBcc    bool     // policy.bcc = "group"
	Plaintext   []string // recipients sent signed-only (missing_cert = "plaintext")
	Dropped     []string // recipients dropped with a DSN to the sender (missing_cert = "drop")
	Message     []byte   // the submitted message; nil skips the content comparison
}

// Kind is what a captured transaction carries.
type Kind string

// Kinds of package.
const (
	Encrypted  Kind = "encrypted"   // EnvelopedData or AuthEnvelopedData
	SignedOnly Kind = "signed-only" // multipart/signed or SignedData, no encryption
	DSN        Kind = "dsn"         // a delivery status notification (null reverse-path)
)

// Package is what Check learnt about one transaction.
type Package struct {
	Tx          sink.Transaction
	Kind        Kind
	CMS         CMSInfo  // Encrypted only
	Owners      []string // addresses owning a RecipientInfo, sorted, deduplicated
	OwnerNames  []string // PKI users owning a RecipientInfo, sorted
	Revealed    []string // revealed(T), sorted
	Signer      string   // address of the signing certificate
	Content     []byte   // the verified signed entity
	DSNNames    []string // DSN only: addresses in Final-Recipient/Original-Recipient fields
	Decrypted   []string // PKI users that decrypted it
	OuterHeader textproto.Header
}

// Checker runs the checks; it keeps the PKI index and a scratch directory for openssl's files.
type Checker struct {
	PKI *PKI
	// Tmp is a scratch directory; "" means os.TempDir().
	Tmp string
}

// Check judges the transactions a next hop received for one submitted message: txs must be all of
// them and nothing else (filter by envelope first when several messages share a sink). It returns
// what it learnt per transaction (in the order given) and an error joining every violation found,
// each wrapping ErrViolation; other errors mean the check itself could not run.
func (c *Checker) Check(ctx context.Context, exp Expect, txs []sink.Transaction) ([]Package, error) {
	tmp, err := os.MkdirTemp(c.Tmp, "check-")
	if err != nil {
		return nil, fmt.Errorf("failed to make scratch directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	v := &violations{}
	people := c.people(exp)
	hidden := hiddenSet(exp)
	var pkgs []Package
	for i, tx := range txs {
		dir := filepath.Join(tmp, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		p, err := c.read(ctx, dir, exp, tx, people, v.prefix(fmt.Sprintf("transaction %d (rcpt %v)", i+1, tx.RcptTo)))
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}

	seen := map[string]int{}
	var dsnNamed []string
	for i, p := range pkgs {
		at := v.prefix(fmt.Sprintf("transaction %d (rcpt %v)", i+1, p.Tx.RcptTo))
		if p.Kind == DSN {
			dsnNamed = append(dsnNamed, p.DSNNames...)
			continue
		}
		for _, r := range p.Tx.RcptTo {
			seen[norm(r)]++
		}
		for _, r := range p.Tx.RcptTo {
			visible := visibleTo(exp, norm(r), hidden)
			for _, a := range p.Revealed {
				if visible != nil && !visible[a] {
					at.add("reveals %q to %q", a, r)
				}
			}
		}
	}

	// Completeness: every intended recipient in exactly one transaction, nobody else.
	dropped := set(exp.Dropped)
	for _, r := range exp.Rcpt {
		r = norm(r)
		switch n := seen[r]; {
		case dropped[r] && n != 0:
			v.add("dropped recipient %q was delivered %d times", r, n)
		case !dropped[r] && n != 1:
			v.add("recipient %q is in %d transactions, want 1", r, n)
		}
	}
	intended := set(exp.Rcpt)
	for r := range seen {
		if !intended[r] {
			v.add("transaction to %q, who is not an accepted recipient", r)
		}
	}
	slices.Sort(dsnNamed)
	dsnNamed = slices.Compact(dsnNamed)
	wantDSN := sorted(exp.Dropped)
	if !slices.Equal(dsnNamed, wantDSN) {
		v.add("DSNs name %v, want exactly the dropped recipients %v", dsnNamed, wantDSN)
	}
	return pkgs, v.err()
}

// read examines one transaction: its kind, what it reveals, who can decrypt it, and its content.
func (c *Checker) read(ctx context.Context, dir string, exp Expect, tx sink.Transaction, people map[string]bool, v *violations) (Package, error) {
	p := Package{Tx: tx}
	rcpt := normAll(tx.RcptTo)
	outer, _, err := splitMessage(tx.Data)
	if err != nil {
		v.add("unreadable message: %v", err)
		return p, nil
	}
	p.OuterHeader = outer
	revealed := map[string]bool{}
	addHeader(revealed, outer, people)

	if tx.MailFrom == "" {
		p.Kind = DSN
		p.DSNNames = dsnRecipients(tx.Data)
		if !slices.Equal(rcpt, []string{norm(exp.From)}) {
			v.add("DSN to %v, want only the sender %q", tx.RcptTo, exp.From)
		}
		for _, a := range p.DSNNames {
			if !set(exp.Dropped)[a] {
				v.add("DSN names %q, who was not dropped", a)
			}
		}
		p.Revealed = keys(revealed)
		return p, nil
	}
	if norm(tx.MailFrom) != norm(exp.From) {
		v.add("MAIL FROM %q, want %q", tx.MailFrom, exp.From)
	}

	msgFile := filepath.Join(dir, "msg.eml")
	if err := os.WriteFile(msgFile, tx.Data, 0o600); err != nil {
		return p, err
	}
	mt, params, _ := mime.ParseMediaType(outer.Get("Content-Type"))
	smimeType := strings.ToLower(params["smime-type"])
	isCMS := mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime"
	var entity string // the file holding the signed entity to verify
	switch {
	case isCMS && (smimeType == "enveloped-data" || smimeType == "authenveloped-data"):
		p.Kind = Encrypted
		dec, err := c.decryptAll(ctx, dir, &p, rcpt, revealed, v)
		if err != nil {
			return p, err
		}
		if dec == "" {
			p.Revealed = keys(revealed)
			return p, nil
		}
		entity = dec
	case mt == "multipart/signed" || isCMS && smimeType == "signed-data":
		p.Kind = SignedOnly
		entity = msgFile
	default:
		v.add("neither encrypted nor signed: Content-Type %q", outer.Get("Content-Type"))
		p.Revealed = keys(revealed)
		return p, nil
	}
	if p.Kind == SignedOnly {
		plain := set(exp.Plaintext)
		if len(rcpt) != 1 || !plain[rcpt[0]] {
			v.add("signed-only transaction to %v, want one plaintext recipient of %v", tx.RcptTo, exp.Plaintext)
		}
	} else {
		for _, r := range rcpt {
			if set(exp.Plaintext)[r] {
				v.add("plaintext recipient %q in an encrypted transaction", r)
			}
		}
	}

	if err := c.verify(ctx, dir, entity, &p, exp, revealed, people, v); err != nil {
		return p, err
	}
	p.Revealed = keys(revealed)
	return p, nil
}

// decryptAll reads the RecipientInfos and decrypts as every envelope recipient, returning the file
// holding the decrypted entity ("" when nobody could decrypt).
func (c *Checker) decryptAll(ctx context.Context, dir string, p *Package, rcpt []string, revealed map[string]bool, v *violations) (string, error) {
	out, err := printRecipientInfos(ctx, filepath.Join(dir, "msg.eml"))
	if err != nil {
		v.add("openssl cannot read the CMS: %v", err)
		return "", nil
	}
	p.CMS, err = ParseCMSPrint(string(out))
	if err != nil {
		v.add("%v", err)
		return "", nil
	}
	if p.CMS.OriginatorInfo {
		v.add("originatorInfo present: its certificates are not checked, so it is refused")
	}
	present := map[string]bool{}
	for _, id := range p.CMS.Recipients {
		name, ok := c.PKI.Owner(id)
		if !ok {
			// An identifier nobody can map could be anyone's, a hidden recipient's included.
			v.add("RecipientInfo %s belongs to nobody known", id)
			continue
		}
		present[name] = true
		revealed[c.PKI.Address(name)] = true
	}
	p.OwnerNames = keys(present)
	owners := map[string]bool{}
	for n := range present {
		owners[c.PKI.Address(n)] = true
	}
	p.Owners = keys(owners)

	var first []byte
	dec := filepath.Join(dir, "dec.eml")
	for _, r := range rcpt {
		var names []string
		for _, n := range c.PKI.Names(r) {
			if present[n] {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			v.add("no RecipientInfo for envelope recipient %q", r)
			continue
		}
		for _, n := range names {
			out := filepath.Join(dir, "dec-"+n+".eml")
			if _, err := openssl(ctx, "cms", "-decrypt", "-recip", c.PKI.File(n+".pem"), "-inkey", c.PKI.File(n+".key"),
				"-in", filepath.Join(dir, "msg.eml"), "-out", out); err != nil {
				v.add("%s (%s) cannot decrypt: %v", r, n, err)
				continue
			}
			b, err := os.ReadFile(out)
			if err != nil {
				return "", err
			}
			p.Decrypted = append(p.Decrypted, n)
			if first == nil {
				first = b
				if err := os.WriteFile(dec, b, 0o600); err != nil {
					return "", err
				}
			} else if !bytes.Equal(first, b) {
				v.add("%s (%s) decrypts to different content", r, n)
			}
		}
	}
	if first == nil {
		return "", nil
	}
	return dec, nil
}

// verify checks the signature on the entity in file, the signer and the certificates it carries,
// the headers inside, and compares the content with the submission.
func (c *Checker) verify(ctx context.Context, dir, file string, p *Package, exp Expect, revealed, people map[string]bool, v *violations) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if h, _, err := splitMessage(raw); err == nil {
		addHeader(revealed, h, people)
	}
	content := filepath.Join(dir, "content")
	signer := filepath.Join(dir, "signer.pem")
	certs := filepath.Join(dir, "certs.pem")
	if _, err := openssl(ctx, "cms", "-verify", "-CAfile", c.PKI.File("roots.pem"), "-in", file, "-out", content,
		"-signer", signer, "-certsout", certs); err != nil {
		v.add("signature does not verify: %v", err)
		return nil
	}
	if p.Content, err = os.ReadFile(content); err != nil {
		return err
	}
	signers, err := readCerts(signer)
	if err != nil {
		return err
	}
	for _, cert := range signers {
		name, ok := c.PKI.CertOwner(cert)
		if !ok || norm(c.PKI.Address(name)) != norm(exp.From) {
			v.add("signed by %q, not by the sender %q", cert.Subject, exp.From)
			continue
		}
		p.Signer = c.PKI.Address(name)
	}
	carried, err := readCerts(certs)
	if err != nil {
		return err
	}
	for _, cert := range carried {
		if cert.IsCA {
			continue
		}
		name, ok := c.PKI.CertOwner(cert)
		if !ok {
			v.add("SignedData carries certificate %q of nobody known", cert.Subject)
			continue
		}
		revealed[c.PKI.Address(name)] = true
	}

	h, inner, err := splitMessage(p.Content)
	if err != nil {
		v.add("signed content unreadable: %v", err)
		return nil
	}
	addHeader(revealed, h, people)
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt == "message/rfc822" {
		// Header protection (RFC 8551 section 3.1) wraps the whole message: its headers count too.
		if h2, _, err := splitMessage(inner); err == nil {
			addHeader(revealed, h2, people)
		}
	}
	if exp.Message != nil {
		if err := sameContent(exp.Message, p.Content); err != nil {
			v.add("signed content differs from the submission: %v", err)
		}
	}
	return nil
}

// sameContent compares the submitted message with the signed entity. The appliance moves the
// message's own header to the outside, so the body after the header block is compared, with line
// ends made CRLF; if it re-encoded parts (8bit to quoted-printable, say), the decoded leaves must
// still be the same.
func sameContent(submitted, signed []byte) error {
	_, sub, err := splitMessage(submitted)
	if err != nil {
		return err
	}
	h, got, err := splitMessage(signed)
	if err != nil {
		return err
	}
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt == "message/rfc822" {
		if _, got, err = splitMessage(got); err != nil {
			return err
		}
	}
	if bytes.Equal(sub, got) || bytes.Equal(crlf(sub), crlf(got)) {
		return nil
	}
	a, err := leaves(submitted)
	if err != nil {
		return fmt.Errorf("failed to read submission: %w", err)
	}
	b, err := leaves(signed)
	if err != nil {
		return fmt.Errorf("failed to read signed entity: %w", err)
	}
	if len(a) != len(b) {
		return fmt.Errorf("%d parts, submitted %d", len(b), len(a))
	}
	for i := range a {
		if a[i].typ != b[i].typ || !bytes.Equal(a[i].body, b[i].body) {
			return fmt.Errorf("part %d: %s of %d bytes, submitted %s of %d bytes", i+1, b[i].typ, len(b[i].body), a[i].typ, len(a[i].body))
		}
	}
	return nil
}

type leaf struct {
	typ  string
	body []byte
}

// leaves decodes every non-multipart part; text is compared with LF line ends.
func leaves(msg []byte) ([]leaf, error) {
	e, err := message.Read(bytes.NewReader(crlf(msg)))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, err
	}
	var out []leaf
	err = e.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) {
			return err
		}
		mt, _, _ := part.Header.ContentType()
		if strings.HasPrefix(mt, "multipart/") {
			return nil
		}
		b, err := io.ReadAll(part.Body)
		if err != nil {
			return err
		}
		if mt == "" || strings.HasPrefix(mt, "text/") {
			b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
		}
		out = append(out, leaf{typ: mt, body: b})
		return nil
	})
	return out, err
}

// dsnRecipients reads the recipients a DSN reports on from its message/delivery-status part (or,
// failing a proper report, from the Final-Recipient lines anywhere in it).
func dsnRecipients(msg []byte) []string {
	var out []string
	for _, line := range strings.Split(string(crlf(msg)), "\r\n") {
		k, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "final-recipient", "original-recipient":
			_, a, _ := strings.Cut(val, ";")
			out = append(out, norm(strings.Trim(strings.TrimSpace(a), "<>")))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

var addrRE = regexp.MustCompile(`(?i)[a-z0-9.!#$%&'*+/=?^_{|}~-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+`)

// addHeader adds every known person named anywhere in h: in any field, so that an address in a
// field nobody thought of (Received "for", X-Original-To, Resent-*, a display name) still counts.
func addHeader(revealed map[string]bool, h textproto.Header, people map[string]bool) {
	fields := h.Fields()
	for fields.Next() {
		val := fields.Value()
		if dec, err := (&mime.WordDecoder{CharsetReader: nil}).DecodeHeader(val); err == nil {
			val += " " + dec
		}
		for _, a := range addrRE.FindAllString(val, -1) {
			if a = norm(a); people[a] {
				revealed[a] = true
			}
		}
	}
}

// people is every address the rule talks about.
func (c *Checker) people(exp Expect) map[string]bool {
	m := map[string]bool{}
	for _, l := range [][]string{c.PKI.Addresses(), {exp.From}, exp.To, exp.Cc, exp.Bcc, exp.Rcpt, exp.Plaintext, exp.Dropped} {
		for _, a := range l {
			m[norm(a)] = true
		}
	}
	return m
}

// hiddenSet is the hidden recipients: in Bcc, or in the envelope but in no To/Cc header.
func hiddenSet(exp Expect) map[string]bool {
	visible := set(append(slices.Clone(exp.To), exp.Cc...))
	h := map[string]bool{}
	for _, a := range append(slices.Clone(exp.Bcc), exp.Rcpt...) {
		if a = norm(a); !visible[a] {
			h[a] = true
		}
	}
	return h
}

// visibleTo is visible_to(r); nil means everyone (the sender knows every recipient).
func visibleTo(exp Expect, r string, hidden map[string]bool) map[string]bool {
	if r == norm(exp.From) {
		return nil
	}
	m := set(append(append([]string{exp.From, r}, exp.To...), exp.Cc...))
	if exp.GroupBcc && hidden[r] {
		for a := range hidden {
			m[a] = true
		}
	}
	return m
}

// splitMessage parses the header block (CRLF or LF line ends) and returns the rest unchanged,
// without copying: bodies can be tens of megabytes.
func splitMessage(b []byte) (textproto.Header, []byte, error) {
	br := bytes.NewReader(b)
	r := bufio.NewReader(br)
	h, err := textproto.ReadHeader(r)
	if err != nil {
		return h, nil, fmt.Errorf("failed to read header: %w", err)
	}
	consumed := len(b) - br.Len() - r.Buffered()
	return h, b[consumed:], nil
}

// crlf makes every line end CRLF (RFC 5322 canonical form).
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("failed to parse certificate in %q: %w", path, err)
		}
		out = append(out, c)
	}
}

// printRecipientInfos runs `openssl cms -cmsout -print` and keeps its output up to the encrypted
// content: openssl dumps that in hex, which for a 20 MB message is 150 MB of text nobody needs.
func printRecipientInfos(ctx context.Context, smimeFile string) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "cms", "-cmsout", "-print", "-in", smimeFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to run openssl cms: %w", err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	complete := false
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "encryptedContentInfo:") || strings.HasPrefix(text, "authEncryptedContentInfo:") {
			complete = true
			break
		}
		out.Write(sc.Bytes())
		out.WriteByte('\n')
	}
	if complete {
		cancel() // the rest is the ciphertext
		cmd.Wait()
		return out.Bytes(), nil
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("failed to run openssl cms: %w: %s", err, firstLines(stderr.String(), 3))
	}
	return out.Bytes(), nil
}

// openssl runs openssl with stdin closed and returns its stdout; the error carries stderr.
func openssl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "openssl", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("failed to run openssl %s: %w: %s", args[0], err, firstLines(stderr.String(), 3))
	}
	return stdout.Bytes(), nil
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " / ")
}

func norm(a string) string { return strings.ToLower(strings.TrimSpace(a)) }

func normAll(l []string) []string {
	out := make([]string, len(l))
	for i, a := range l {
		out[i] = norm(a)
	}
	return out
}

func set(l []string) map[string]bool {
	m := map[string]bool{}
	for _, a := range l {
		m[norm(a)] = true
	}
	return m
}

func sorted(l []string) []string {
	out := normAll(l)
	slices.Sort(out)
	return slices.Compact(out)
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// violations collects check failures with a location prefix.
type violations struct {
	at   string
	errs *[]error
}

func (v *violations) prefix(at string) *violations {
	if v.errs == nil {
		v.errs = new([]error)
	}
	return &violations{at: at, errs: v.errs}
}

func (v *violations) add(format string, args ...any) {
	if v.errs == nil {
		v.errs = new([]error)
	}
	msg := fmt.Sprintf(format, args...)
	if v.at != "" {
		msg = v.at + ": " + msg
	}
	*v.errs = append(*v.errs, fmt.Errorf("%w: %s", ErrViolation, msg))
}

func (v *violations) err() error {
	if v.errs == nil {
		return nil
	}
	return errors.Join(*v.errs...)
}
