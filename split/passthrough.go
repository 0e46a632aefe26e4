package split

// Planning the split of a client-encrypted message (README, "Client-encrypted mail"), without
// the plaintext and without anyone's private key: each RecipientInfo is attributed to an owner
// by its identifier, Make plans the packages exactly as for plain mail (each RecipientInfo group
// is fed to it as a certificate "ri:N" of its owner, so the same oracle checks the privacy rule
// and completeness), and the plan says which RecipientInfos each package carries. Building the
// packages (the client's CMS re-encoded with those RecipientInfos) is seal's; asking the
// directory who owns an identifier is the caller's. This file is pure.
//
// Decisions:
//   - A RecipientInfo is kept only when its owner is an envelope recipient (then it goes where
//     Make puts that recipient) or the sender (self-copy, visible to everyone). Any other,
//     including KEK, Password and Other entries and KeyAgree entries naming several
//     certificates, which cannot be attributed, is dropped from every package, or the message is
//     refused ([RejectUnknown]). A KeyAgree entry for one certificate is attributed by its
//     RecipientEncryptedKey's identifier, kept intact, and its owner gets a package of its own.
//   - An identifier two owners claim is dropped (fail closed).
//   - An envelope recipient without a RecipientInfo cannot be served without decrypting. Under
//     [RefuseMissing] it is refused with a DSN. Under [DeliverMissing] it gets the message with
//     only the RecipientInfos every recipient may see (the visible recipients' and the
//     sender's): "as is" would show it the hidden ones. That package is only readable if the
//     recipient holds one of those keys, so it is the operator's explicit choice, not the
//     default; with no such RecipientInfo at all the recipient is refused as under
//     RefuseMissing.

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// UnknownRecipientInfo is the policy for a RecipientInfo whose owner is unknown or not an
// envelope recipient (configuration key policy.unknown_recipientinfo).
type UnknownRecipientInfo int

const (
	// DropUnknown removes such RecipientInfos from every package ("drop", the default).
	DropUnknown UnknownRecipientInfo = iota
	// RejectUnknown refuses the whole message ("reject": 554 5.7.1 at end of DATA).
	RejectUnknown
)

// MissingRecipientInfo is the policy for an envelope recipient that no RecipientInfo names
// (configuration key policy.passthrough_missing).
type MissingRecipientInfo int

const (
	// RefuseMissing refuses the recipient with a DSN ("refuse", the default).
	RefuseMissing MissingRecipientInfo = iota
	// DeliverMissing delivers a package carrying only RecipientInfos visible to the recipient
	// ("deliver"); see the file comment for why nothing more can be given.
	DeliverMissing
)

// SignedOverEncryptedPolicy is what happens to a client's envelope under the client's
// signature (configuration key policy.signed_over_encrypted).
type SignedOverEncryptedPolicy int

const (
	// RefuseSignedOverEncrypted refuses the message ("refuse", the default): the signature
	// covers every RecipientInfo, so any split breaks it.
	RefuseSignedOverEncrypted SignedOverEncryptedPolicy = iota
	// ResignSignedOverEncrypted splits the inner envelope as a client-encrypted message is
	// split and signs each package again with the sender's key on the HSM ("resign"): the
	// recipients see the appliance's signature for the sender instead of the client's.
	ResignSignedOverEncrypted
)

// PassThroughPolicy shapes how client-encrypted messages are split. The zero value is the
// configuration's defaults.
type PassThroughPolicy struct {
	Unknown UnknownRecipientInfo
	Missing MissingRecipientInfo
	// SignedOverEncrypted is the policy for an envelope under the client's signature.
	SignedOverEncrypted SignedOverEncryptedPolicy
	// MaxRecipientInfos caps the RecipientInfos accepted in one message; 0 means the CMS
	// parser's default.
	MaxRecipientInfos int
}

var (
	// ErrInvalidPassThroughPolicy reports an out-of-range PassThroughPolicy value.
	ErrInvalidPassThroughPolicy = errors.New("invalid pass-through policy")
	// ErrUnsplittable reports a client-encrypted message that cannot be split: malformed MIME
	// or CMS, an unsupported RecipientInfo version, too many RecipientInfos. Permanent.
	ErrUnsplittable = errors.New("client-encrypted message cannot be split")
	// ErrRecipientInfoRejected reports, under RejectUnknown, a RecipientInfo that belongs to no
	// envelope recipient and not to the sender. The front end answers 554 5.7.1.
	ErrRecipientInfoRejected = errors.New("message carries a recipientinfo of no envelope recipient")
)

// Validate reports an out-of-range value.
func (pol PassThroughPolicy) Validate() error {
	switch {
	case pol.Unknown != DropUnknown && pol.Unknown != RejectUnknown:
		return fmt.Errorf("%w: unknown_recipientinfo %d", ErrInvalidPassThroughPolicy, pol.Unknown)
	case pol.Missing != RefuseMissing && pol.Missing != DeliverMissing:
		return fmt.Errorf("%w: passthrough_missing %d", ErrInvalidPassThroughPolicy, pol.Missing)
	case pol.SignedOverEncrypted != RefuseSignedOverEncrypted && pol.SignedOverEncrypted != ResignSignedOverEncrypted:
		return fmt.Errorf("%w: signed_over_encrypted %d", ErrInvalidPassThroughPolicy, pol.SignedOverEncrypted)
	case pol.MaxRecipientInfos < 0:
		return fmt.Errorf("%w: max recipientinfos %d", ErrInvalidPassThroughPolicy, pol.MaxRecipientInfos)
	}
	return nil
}

// PassThroughProfile is the profile of every package of a client-encrypted message: the client
// chose the algorithms, so all recipients share one encryption, whatever the policy's profiles
// say.
const PassThroughProfile = "passthrough"

// PassThroughPlan is what splitting a client-encrypted message does, for `appliance inspect`,
// the audit log and the packages.
type PassThroughPlan struct {
	// Opaque is set when the content is not EnvelopedData or AuthEnvelopedData (signed-data,
	// compressed-data, ...): nothing is split, the message is sealed as ordinary content and
	// only ContentType and Label are set.
	Opaque bool
	// ContentType is the smime-type the DER says (e.g. "enveloped-data"), or the content type
	// OID in dotted form when it is none of RFC 8551's.
	ContentType string
	// Label is the smime-type parameter as written; it may be missing or disagree.
	Label string
	// RecipientInfos lists every RecipientInfo of the message, in order.
	RecipientInfos []PlannedRecipientInfo
	// Packages are the outgoing packages, in the order of Plan.Packages.
	Packages []PlannedPackage
	// Refused are the envelope recipients that get no package, with their reasons.
	Refused []Refusal
	// Plan is Make's plan, certificates named "ri:N" after the first RecipientInfo of each
	// group naming one certificate.
	Plan *Plan
}

// PlannedRecipientInfo is one RecipientInfo and what happens to it.
type PlannedRecipientInfo struct {
	Index int
	Kind  string // "keytrans", "keyagree", "kek", "password", "other"
	// ID describes the identifier: "issuer=<DN> serial=<hex>" or "ski=<hex>"; "" when the
	// kind carries none that can be attributed.
	ID string
	// Owner is the address the identifier maps to, "" when unknown.
	Owner string
	// Sender is set when Owner is the sender (the self-copy).
	Sender bool
	// Packages are the indexes of the packages carrying it; empty when Dropped.
	Packages []int
	// Dropped says why it goes into no package; "" when it is kept.
	Dropped string
}

// PlannedPackage is one outgoing package of a client-encrypted message.
type PlannedPackage struct {
	Recipients []string
	Hidden     bool
	// RecipientInfos are the indexes of the RecipientInfos it carries, ascending.
	RecipientInfos []int
	// Owners are the distinct owners of those RecipientInfos.
	Owners []string
}

// RecipientRef is one RecipientInfo of the client's envelope as the planning sees it.
type RecipientRef struct {
	// Key is the identifier in the key space of the certificates' keys (KeyOwner); "" when the
	// kind names no certificate.
	Key string
	// Kind is the kind's name ("keytrans" ...); ID describes the identifier for the audit.
	Kind, ID string
	// DirOwner is who the directory's identifier index says owns Key, "" when nobody;
	// Ambiguous when certificates of more than one owner claim it.
	DirOwner  string
	Ambiguous bool
}

// KeyOwner is the owner of one identifier key, learnt from a participant's certificates.
type KeyOwner struct {
	Addr string // normalized
	// Recipient is set when Addr is an envelope recipient (else it is an author).
	Recipient bool
}

// PassThroughInput is what planning a split needs: the envelope and header, the RecipientInfos,
// and which identifier key belongs to which participant (the caller asks the directory; see
// [PassThroughAuthors] for whose certificates count as the sender's).
type PassThroughInput struct {
	Header         textproto.Header
	MailFrom       string
	RcptTo         []string
	Policy         Policy
	PassThrough    PassThroughPolicy
	RecipientInfos []RecipientRef
	Owners         map[string]KeyOwner
	// Authors are the normalized sender identities (PassThroughAuthors).
	Authors []string
}

// PassThroughAuthors are the sender identities whose RecipientInfo is a self-copy: MAIL FROM,
// From and Sender, normalized. All of them are visible to every recipient.
func PassThroughAuthors(mailFrom string, h textproto.Header, cs bool) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if n, err := Normalize(s, cs); err == nil && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if mf := strings.TrimSpace(mailFrom); mf != "" && mf != "<>" {
		add(mf)
	}
	for _, f := range []string{"From", "Sender"} {
		if v := h.Get(f); v != "" {
			if list, err := mail.ParseAddressList(v); err == nil {
				for _, a := range list {
					add(a.Address)
				}
			}
		}
	}
	return out
}

// PlanPassThrough plans the split. Under RejectUnknown with a RecipientInfo dropped it returns
// the plan and an error wrapping ErrRecipientInfoRejected, so the caller can log what was
// refused; a plan Make cannot make wraps ErrUnsplittable, one the oracle refuses ErrPrivacy.
func PlanPassThrough(pin PassThroughInput) (*PassThroughPlan, error) {
	a := attribute(pin)
	in := Input{
		Header:      pin.Header,
		MailFrom:    pin.MailFrom,
		RcptTo:      pin.RcptTo,
		Certs:       a.certs,
		Policy:      pin.Policy,
		SenderCerts: a.self,
	}
	// The client chose the algorithms and the identities: keep every RecipientInfo a recipient
	// owns and the sender's own, in one profile.
	in.Policy.SelfCopy = true
	in.Policy.CertChoice = All
	in.Policy.Profile = PassThroughProfile
	in.Policy.DomainProfiles = nil
	in.Policy.MissingCert = Drop
	if pin.PassThrough.Missing == DeliverMissing {
		in.Policy.MissingCert = Plaintext
	}
	plan, err := Make(in)
	if err != nil {
		return nil, fmt.Errorf("failed to split: %w: %w", ErrUnsplittable, err)
	}
	// The oracle costs little next to the message and turns a planning mistake into a refusal
	// instead of a leak.
	if err := CheckPrivacy(in, plan); err != nil {
		return nil, fmt.Errorf("failed to split: %w", err)
	}
	finishPassThrough(plan, in.SenderCerts)
	pt := &PassThroughPlan{Plan: plan, Refused: plan.Refused, RecipientInfos: a.planned}
	// The refusal names the first three dropped RecipientInfos and counts the rest: a message
	// may carry thousands, and memory follows the input, not the refusal's text.
	var rejected []string
	nRejected := 0
	for _, ri := range a.planned {
		if ri.Dropped != "" {
			if nRejected < 3 {
				rejected = append(rejected, fmt.Sprintf("#%d (%s)", ri.Index, ri.Dropped))
			}
			nRejected++
		}
	}
	for i, pk := range plan.Packages {
		pp := PlannedPackage{Recipients: pk.Recipients, Hidden: pk.Hidden}
		seen := map[string]bool{}
		for _, c := range pk.Certs {
			for _, n := range a.groups[c.ID] {
				pp.RecipientInfos = append(pp.RecipientInfos, n)
				a.planned[n].Packages = append(a.planned[n].Packages, i)
			}
			if !seen[c.Owner] {
				seen[c.Owner] = true
				pp.Owners = append(pp.Owners, c.Owner)
			}
		}
		sort.Ints(pp.RecipientInfos)
		pt.Packages = append(pt.Packages, pp)
	}
	for i := range a.planned {
		if ri := &a.planned[i]; ri.Dropped == "" && len(ri.Packages) == 0 {
			// The sender's self-copy goes into every encrypted package, and there may be
			// none when every recipient is refused. Not the client's fault: not rejected.
			ri.Dropped = "no package carries it"
		}
	}
	if pin.PassThrough.Unknown == RejectUnknown && nRejected > 0 {
		if nRejected > 3 {
			rejected = append(rejected, fmt.Sprintf("and %d more", nRejected-3))
		}
		return pt, fmt.Errorf("failed to split: %w: %s", ErrRecipientInfoRejected, strings.Join(rejected, ", "))
	}
	return pt, nil
}

// finishPassThrough turns Make's plan into the pass-through one: the refusal reasons say why,
// and under DeliverMissing (fed to Make as Plaintext) each signed-only package becomes one with
// the RecipientInfos every recipient may see, or a refusal when there are none.
func finishPassThrough(plan *Plan, self []Cert) {
	for i := range plan.Refused {
		plan.Refused[i].Reason = missingReason(plan.Refused[i].Recipient)
	}
	var visible []Cert
	for _, pk := range plan.Packages {
		if !pk.Hidden && pk.Profile != "" {
			visible = append(visible, pk.Certs...)
		}
	}
	if visible == nil {
		// No visible package: the self-copy alone is what everyone may see.
		visible = self
	}
	kept := plan.Packages[:0]
	for _, pk := range plan.Packages {
		if pk.Profile != "" {
			kept = append(kept, pk)
			continue
		}
		if len(visible) == 0 {
			plan.Refused = append(plan.Refused, Refusal{
				Recipient: pk.Recipients[0], Reason: missingReason(pk.Recipients[0]),
				Code: 550, Enhanced: "5.7.1", DSN: true,
			})
			continue
		}
		pk.Certs = append([]Cert(nil), visible...)
		pk.Profile = PassThroughProfile
		kept = append(kept, pk)
	}
	plan.Packages = kept
	plan.Profiles = nil
	if len(kept) > 0 {
		plan.Profiles = []string{PassThroughProfile}
	}
}

func missingReason(rcpt string) string {
	return fmt.Sprintf("no RecipientInfo for %q; the appliance does not decrypt", strings.Trim(rcpt, "<>"))
}

// attribution is every RecipientInfo mapped to an owner, grouped by the certificate it names.
type attribution struct {
	certs   map[string][]Cert // envelope recipient -> its groups, as Make wants them
	self    []Cert            // the sender's groups
	groups  map[string][]int  // "ri:N" -> indexes of the RecipientInfos of the group
	planned []PlannedRecipientInfo
}

// attribute maps each RecipientInfo to an owner. Grouping by identifier keeps what Make sees
// bounded by the participants' certificates, however many RecipientInfos a hostile message
// repeats.
func attribute(pin PassThroughInput) *attribution {
	authors := map[string]bool{}
	for _, a := range pin.Authors {
		authors[a] = true
	}
	a := &attribution{certs: map[string][]Cert{}, groups: map[string][]int{}}
	groupOf := map[string]string{} // identifier key -> "ri:N"
	unattributable := map[string]string{}
	a.planned = make([]PlannedRecipientInfo, 0, len(pin.RecipientInfos))
	for i, ri := range pin.RecipientInfos {
		pr := PlannedRecipientInfo{Index: i, Kind: ri.Kind, ID: ri.ID}
		switch o, ok := pin.Owners[ri.Key]; {
		case ri.Key != "" && ri.Ambiguous:
			pr.Dropped = "identifier claimed by certificates of more than one owner" // fail closed
		case ri.Key == "":
			// Made once per kind rather than per RecipientInfo of a message that may carry
			// thousands.
			if pr.Dropped = unattributable[ri.Kind]; pr.Dropped == "" {
				pr.Dropped = strings.TrimPrefix(ri.Kind+" recipientinfo cannot be attributed", " ")
				unattributable[ri.Kind] = pr.Dropped
			}
		case ok:
			pr.Owner, pr.Sender = o.Addr, authors[o.Addr]
			id, seen := groupOf[ri.Key]
			if !seen {
				id = "ri:" + strconv.Itoa(i)
				groupOf[ri.Key] = id
				// A client's KeyAgreeRecipientInfo is an EC recipient's: a package of its own.
				c := Cert{ID: id, Owner: o.Addr, Profile: PassThroughProfile, KeyAgree: ri.Kind == "keyagree"}
				if o.Recipient {
					a.certs[o.Addr] = append(a.certs[o.Addr], c)
				}
				if authors[o.Addr] {
					a.self = append(a.self, c)
				}
			}
			a.groups[id] = append(a.groups[id], i)
		default:
			pr.Dropped = "owner unknown"
			if ri.DirOwner != "" {
				pr.Owner = ri.DirOwner
				pr.Dropped = "owner is not an envelope recipient"
			}
		}
		a.planned = append(a.planned, pr)
	}
	return a
}
