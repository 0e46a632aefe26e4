// Package journal builds the journal package of a message: one extra package, for the journal
// address only, holding the original message as submitted (message/rfc822) and a machine-readable
// envelope report (JSON: MAIL FROM, the authenticated user, every recipient with its kind To, Cc,
// Bcc or envelope-only, which package each got, each package's RecipientInfo identifiers and
// digest), signed with the journal sender's key and encrypted to the journal certificates alone
// through package seal.
//
// The journal package is its own SMTP transaction: MAIL FROM is the journal sender (never the
// original sender, so a bounce of the journal reaches no one who may not read it), RCPT TO the
// journal address alone; its outer header names the journal sender and address and nothing of
// the original message. Everything about the message is inside the encryption.
package journal

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"

	"appliance/cms"
	"appliance/seal"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

// Recipient kinds.
const (
	KindTo       = "to"
	KindCc       = "cc"
	KindBcc      = "bcc"
	KindEnvelope = "envelope-only" // in the envelope, in no To, Cc or Bcc field
)

// Recipient is one envelope recipient in the report.
type Recipient struct {
	Address string `json:"address"`
	Kind    string `json:"kind"`
	// Package is the index in Report.Packages of the package this recipient got; nil when it got
	// none (Refused says why).
	Package *int   `json:"package,omitempty"`
	Refused string `json:"refused,omitempty"`
}

// Package is one package of the message as the report lists it.
type Package struct {
	Recipients     []string `json:"recipients"`
	Mode           string   `json:"mode,omitempty"`
	Profile        string   `json:"profile,omitempty"`
	RecipientInfos []string `json:"recipient_infos,omitempty"`
	Digest         string   `json:"digest,omitempty"` // "sha256:HEX" of the package as spooled
}

// Report is the machine-readable envelope report.
type Report struct {
	Version    int         `json:"version"` // 1
	Message    string      `json:"message"` // the queue's message ID
	MessageID  string      `json:"message_id,omitempty"`
	Received   time.Time   `json:"received"`
	MailFrom   string      `json:"mail_from"`
	AuthUser   string      `json:"auth_user,omitempty"`
	Recipients []Recipient `json:"recipients"`
	Packages   []Package   `json:"packages"`
}

// NewReport starts a report for a message: every envelope recipient with its kind from the
// header's To, Cc and Bcc fields (Resent-To, Resent-Cc and Resent-Bcc count as those), in
// envelope order. Packages and who got which are added with AddPackage and Refuse.
func NewReport(id string, received time.Time, mailFrom, authUser string, header textproto.Header, rcptTo []string) *Report {
	kinds := Kinds(header)
	r := &Report{Version: 1, Message: id, Received: received.UTC(), MailFrom: mailFrom, AuthUser: authUser,
		MessageID: strings.TrimSpace(header.Get("Message-Id")), Recipients: []Recipient{}, Packages: []Package{}}
	for _, a := range rcptTo {
		k, ok := kinds[fold(a)]
		if !ok {
			k = KindEnvelope
		}
		r.Recipients = append(r.Recipients, Recipient{Address: a, Kind: k})
	}
	return r
}

// AddPackage lists a package; each of its recipients (RCPT TO forms as in the envelope) is
// marked as having got it. It returns the package's index.
func (r *Report) AddPackage(p Package) int {
	i := len(r.Packages)
	r.Packages = append(r.Packages, p)
	for _, a := range p.Recipients {
		for j := range r.Recipients {
			if fold(r.Recipients[j].Address) == fold(a) && r.Recipients[j].Package == nil {
				idx := i
				r.Recipients[j].Package = &idx
			}
		}
	}
	return i
}

// Refuse records why a recipient got no package.
func (r *Report) Refuse(addr, why string) {
	for j := range r.Recipients {
		if fold(r.Recipients[j].Address) == fold(addr) {
			r.Recipients[j].Refused = why
		}
	}
}

// Kinds maps each address (folded: lower case) named in the header's To, Cc and Bcc fields
// (and their Resent- forms) to its kind; an address in several is To before Cc before Bcc.
func Kinds(h textproto.Header) map[string]string {
	out := map[string]string{}
	for _, f := range []struct{ kind, key string }{
		{KindTo, "To"}, {KindTo, "Resent-To"}, {KindCc, "Cc"}, {KindCc, "Resent-Cc"}, {KindBcc, "Bcc"}, {KindBcc, "Resent-Bcc"},
	} {
		for it := h.FieldsByKey(f.key); it.Next(); {
			for _, a := range addresses(it.Value()) {
				if _, seen := out[a]; !seen {
					out[a] = f.kind
				}
			}
		}
	}
	return out
}

// addresses are the folded addr-specs in a field value; a value net/mail cannot parse is
// searched for anything that looks like one, so that a malformed field still counts.
func addresses(v string) []string {
	dec := new(mime.WordDecoder)
	if d, err := dec.DecodeHeader(v); err == nil {
		v = d
	}
	if l, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, 0, len(l))
		for _, a := range l {
			out = append(out, fold(a.Address))
		}
		return out
	}
	var out []string
	for _, w := range strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(" \t,;:<>()\"", r) }) {
		if strings.Count(w, "@") == 1 && !strings.HasPrefix(w, "@") && !strings.HasSuffix(w, "@") {
			out = append(out, fold(w))
		}
	}
	return out
}

// fold is an address as compared here: angle brackets off, lower case.
func fold(a string) string {
	return strings.ToLower(strings.Trim(strings.TrimSpace(a), "<>"))
}

// RecipientInfoIDs names each KeyTrans RecipientInfo by its identifier: "ski:HEX" or
// "issuer-serial:ISSUER DN/0xSERIAL"; other kinds by their kind.
func RecipientInfoIDs(ris []*cms.RecipientInfo) []string {
	out := make([]string, 0, len(ris))
	for _, ri := range ris {
		switch {
		case ri.Kind != cms.KeyTrans:
			out = append(out, ri.Kind.String())
		case ri.SubjectKeyID != nil:
			out = append(out, "ski:"+hex.EncodeToString(ri.SubjectKeyID))
		default:
			issuer := hex.EncodeToString(ri.Issuer)
			var rdn pkix.RDNSequence
			if rest, err := asn1.Unmarshal(ri.Issuer, &rdn); err == nil && len(rest) == 0 {
				issuer = rdn.String()
			}
			out = append(out, fmt.Sprintf("issuer-serial:%s/%#x", issuer, ri.Serial))
		}
	}
	return out
}

// Describe is the report's entry for a sealed package: its RecipientInfo identifiers (read from
// its CMS; none for a signed-only package) and the SHA-256 of its bytes as written.
func Describe(p *seal.Package, mode string) (Package, error) {
	d := Package{Recipients: p.Recipients, Mode: mode, Profile: p.Profile}
	if enc := p.CMS(); enc != nil {
		env, err := cms.ParseEnveloped(enc.Bytes())
		if err != nil {
			return Package{}, fmt.Errorf("journal: read package CMS: %w", err)
		}
		d.RecipientInfos = RecipientInfoIDs(env.RecipientInfos)
	}
	h := sha256.New()
	if _, err := p.WriteTo(h); err != nil {
		return Package{}, err
	}
	d.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return d, nil
}

// Head is the journal message's own outer header.
type Head struct {
	From     string // the journal sender's address
	To       string // the journal address
	Hostname string // for the Message-ID
	Date     time.Time
}

// Build writes the journal message in the clear (what Journal.Seal signs and encrypts): a
// multipart/mixed of the report (application/json, envelope-report.json) and the original
// message as submitted (message/rfc822; a message with 8-bit or binary content is carried as
// it is, Content-Transfer-Encoding 8bit or binary).
func Build(w io.Writer, h Head, rep *Report, original []byte) error {
	if h.From == "" || h.To == "" {
		return errors.New("journal: the journal sender and address are required")
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	var rb [12]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return err
	}
	boundary := "journal-" + hex.EncodeToString(rb[:])
	if bytes.Contains(original, []byte(boundary)) {
		// 96 random bits: only a message made to collide gets here.
		return errors.New("journal: boundary collision")
	}
	date := h.Date
	if date.IsZero() {
		date = time.Now()
	}
	host := h.Hostname
	if host == "" {
		host = "appliance.invalid"
	}
	cte := "7bit"
	for _, c := range original {
		if c >= 0x80 {
			cte = "8bit"
		}
		if c == 0 {
			cte = "binary"
			break
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: Journal report\r\nDate: %s\r\nMessage-ID: <journal.%s@%s>\r\nMIME-Version: 1.0\r\n",
		h.From, h.To, date.UTC().Format(time.RFC1123Z), hex.EncodeToString(rb[:8]), host)
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Disposition: attachment; filename=\"envelope-report.json\"\r\n\r\n", boundary)
	b.Write(js)
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: %s\r\nContent-Disposition: attachment; filename=\"original.eml\"\r\n\r\n", boundary, cte)
	if _, err := w.Write(b.Bytes()); err != nil {
		return err
	}
	if _, err := w.Write(original); err != nil {
		return err
	}
	end := "\r\n--" + boundary + "--\r\n"
	if !bytes.HasSuffix(original, []byte("\n")) {
		end = "\r\n" + end
	}
	_, err = io.WriteString(w, end)
	return err
}

// Journal seals journal packages. Its fields are set once.
type Journal struct {
	Address  string              // the journal address: the package's only recipient
	Certs    []*x509.Certificate // the journal certificates: the only RecipientInfos
	Sender   seal.Sender         // signs the journal message (the journal sender's key on the HSM)
	From     string              // the journal sender's address: MAIL FROM and From
	Hostname string
	Sealer   *seal.Sealer
	Profile  string // content profile; "" is compat
}

// Sealed is one journal package ready for the queue.
type Sealed struct {
	MailFrom string
	RcptTo   []string
	Body     *seal.Package
}

// Seal builds the journal message for rep and original and seals it for the journal
// certificates alone.
func (j *Journal) Seal(ctx context.Context, rep *Report, original []byte) (*Sealed, error) {
	if j.Address == "" || len(j.Certs) == 0 || j.Sealer == nil {
		return nil, errors.New("journal: address, certificates and sealer are required")
	}
	var msg bytes.Buffer
	if err := Build(&msg, Head{From: j.From, To: j.Address, Hostname: j.Hostname, Date: time.Now()}, rep, original); err != nil {
		return nil, err
	}
	prof := j.Profile
	if prof == "" {
		prof = split.ProfileCompat
	}
	certs := map[string]*x509.Certificate{}
	pk := split.Package{Recipients: []string{j.Address}, Profile: prof, ReceivedFor: j.Address}
	for _, c := range j.Certs {
		sum := sha256.Sum256(c.Raw)
		id := hex.EncodeToString(sum[:])
		if _, dup := certs[id]; dup {
			continue
		}
		certs[id] = c
		pk.Certs = append(pk.Certs, split.Cert{ID: id, Owner: j.Address, NotBefore: c.NotBefore})
	}
	// The outer header is the journal message's own, field for field.
	for _, k := range []string{"From", "To", "Subject", "Date", "Message-Id", "Mime-Version"} {
		pk.Edits.Fields = append(pk.Edits.Fields, split.FieldEdit{Key: k, N: 0})
	}
	plan := &split.Plan{Packages: []split.Package{pk}, Profiles: []string{prof}}
	s, err := j.Sealer.Seal(ctx, msg.Bytes(), plan, j.Sender, certs)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if len(s.Packages) != 1 {
		return nil, fmt.Errorf("journal: %d packages sealed, want 1", len(s.Packages))
	}
	return &Sealed{MailFrom: j.From, RcptTo: []string{j.Address}, Body: s.Packages[0]}, nil
}
