package split

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

var (
	// ErrPrivacy: a package reveals someone outside visible_to(r) of one
	// of its recipients.
	ErrPrivacy = errors.New("privacy rule violated")
	// ErrIncomplete: an envelope recipient is missing, duplicated, wrongly
	// refused, or cannot decrypt its package.
	ErrIncomplete = errors.New("plan incomplete")
	// ErrNotMinimal: more packages or encryptions than the mode needs.
	ErrNotMinimal = errors.New("plan not minimal")
)

// The oracle keeps its own field lists and certificate rules rather than
// sharing Make's, so that a mistake in one is caught by the other.
var (
	oracleVisible = []string{"To", "Cc", "Resent-To", "Resent-Cc"}
	oracleAuthor  = []string{"From", "Sender", "Reply-To", "Resent-From", "Resent-Sender"}
	oracleHidden  = []string{"Bcc", "Resent-Bcc"}
	oracleTrace   = []string{
		"X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-To", "X-Rcpt-To",
		"X-Real-To", "Apparently-To", "X-Apparently-To", "X-Forwarded-To", "X-Envelope-Recipient",
	}
)

// anyAddr finds address-like tokens in fields that are not address lists.
var anyAddr = regexp.MustCompile(`[^\s<>(),;:"\[\]]+@[^\s<>(),;:"\[\]]+`)

// forClause finds the paths of Received "for" clauses.
var forClause = regexp.MustCompile(`(?i)\bfor\s+<?([^\s;<>()]*@[^\s;<>(),]*)`)

// CheckPrivacy verifies a plan made for in: DESIGN's privacy rule for every
// package (its certificates' owners and its edited header), completeness
// (every envelope recipient in exactly one package it can decrypt, or refused
// as the policy says), the certificate choice and self-copy, minimality (the
// package count of the mode) and one encryption per profile. It is the oracle
// of this package's property and fuzz tests and of end-to-end tests.
func CheckPrivacy(in Input, p *Plan) error {
	if p == nil {
		return fmt.Errorf("%w: nil plan", ErrIncomplete)
	}
	pol := in.Policy
	cs := pol.CaseSensitiveLocalPart
	h := in.Header
	fieldSet := func(fields []string) (map[string]bool, error) {
		m := map[string]bool{}
		for _, f := range fields {
			l, err := parseField(&h, f, cs)
			if err != nil {
				return nil, fmt.Errorf("failed to parse header: %w", err)
			}
			for _, a := range l {
				m[a.Norm] = true
			}
		}
		return m, nil
	}
	visible, err := fieldSet(oracleVisible)
	if err != nil {
		return err
	}
	base, err := fieldSet(oracleAuthor)
	if err != nil {
		return err
	}
	for a := range visible {
		base[a] = true
	}
	bccSet, err := fieldSet(oracleHidden)
	if err != nil {
		return err
	}
	for a := range bccSet {
		if visible[a] {
			delete(bccSet, a)
		}
	}
	if mf, err := normalizeEnvelope("MAIL FROM", in.MailFrom, cs); err == nil {
		base[mf] = true
	}

	// Envelope, in order and deduplicated.
	var env []string
	envSet := map[string]bool{}
	for _, r := range in.RcptTo {
		n, err := normalizeEnvelope("RCPT TO", r, cs)
		if err != nil {
			return err
		}
		if !envSet[n] {
			envSet[n] = true
			env = append(env, n)
		}
		if !visible[n] {
			bccSet[n] = true
		}
	}
	hidden := func(n string) bool { return !visible[n] }

	dir := map[string][]Cert{}
	certOwner := map[string]string{}
	for k, list := range in.Certs {
		n, err := normalizeEnvelope("certificate key", k, cs)
		if err != nil {
			return err
		}
		for _, c := range list {
			dir[n] = appendCert(dir[n], c)
			certOwner[c.ID] = n
		}
	}
	selfIDs := map[string]bool{}
	if pol.SelfCopy {
		byOwner := map[string][]Cert{}
		for _, c := range in.SenderCerts {
			o, err := normalizeEnvelope("sender certificate owner", c.Owner, cs)
			if err != nil {
				return err
			}
			certOwner[c.ID] = o
			byOwner[o] = appendCert(byOwner[o], c)
		}
		for _, list := range byOwner {
			for _, c := range oracleChoose(list, pol.CertChoice) {
				selfIDs[c.ID] = true
			}
		}
	}

	if err := checkInner(in, p.Inner, cs, base); err != nil {
		return err
	}

	where := map[string]int{} // normalized recipient -> package index
	visProfiles, hidProfiles := map[string]bool{}, map[string]bool{}
	hiddenEncrypted, plainCount := 0, 0
	for i, pk := range p.Packages {
		if len(pk.Recipients) == 0 {
			return fmt.Errorf("%w: package %d has no recipients", ErrIncomplete, i)
		}
		rs := make([]string, len(pk.Recipients))
		for j, r := range pk.Recipients {
			n, err := normalizeEnvelope("RCPT TO", r, cs)
			if err != nil {
				return err
			}
			if !envSet[n] {
				return fmt.Errorf("%w: package %d delivers to %q, not in the envelope", ErrPrivacy, i, r)
			}
			if _, dup := where[n]; dup {
				return fmt.Errorf("%w: %q is in more than one package", ErrIncomplete, r)
			}
			where[n] = i
			rs[j] = n
			if hidden(n) != pk.Hidden {
				return fmt.Errorf("%w: package %d mixes hidden and visible recipients or is mislabeled", ErrPrivacy, i)
			}
		}

		// revealed(T): certificate owners and edited header addresses.
		revealed := map[string]string{}
		ids := map[string]bool{}
		for _, c := range pk.Certs {
			o, ok := certOwner[c.ID]
			if !ok {
				return fmt.Errorf("%w: package %d carries unknown certificate %q", ErrPrivacy, i, c.ID)
			}
			if ids[c.ID] {
				return fmt.Errorf("%w: package %d carries certificate %q twice", ErrNotMinimal, i, c.ID)
			}
			ids[c.ID] = true
			revealed[o] = "certificate " + c.ID
		}
		hdr := in.Header.Copy()
		pk.Edits.Apply(&hdr)
		for _, f := range append(append(append([]string{}, oracleVisible...), oracleAuthor...), oracleHidden...) {
			l, err := parseField(&hdr, f, cs)
			if err != nil {
				return fmt.Errorf("%w: package %d field %s unparsable after edits", ErrPrivacy, i, f)
			}
			for _, a := range l {
				revealed[a.Norm] = "field " + f
			}
		}
		for _, f := range oracleTrace {
			for _, v := range hdr.Values(f) {
				for _, m := range anyAddr.FindAllString(v, -1) {
					revealed[normLoose(m, cs)] = "field " + f
				}
			}
		}
		for _, v := range hdr.Values("Received") {
			for _, m := range forClause.FindAllStringSubmatch(v, -1) {
				revealed[normLoose(m[1], cs)] = "Received for clause"
			}
		}
		for _, r := range rs {
			for a, how := range revealed {
				if base[a] || a == r || (pol.Bcc == Group && hidden(r) && bccSet[a]) {
					continue
				}
				return fmt.Errorf("%w: package %d reveals %q (%s) to %q", ErrPrivacy, i, a, how, r)
			}
		}
		if len(rs) > 1 && pk.ReceivedFor != "" {
			return fmt.Errorf("%w: package %d allows a Received for clause with %d recipients", ErrPrivacy, i, len(rs))
		}
		if len(rs) == 1 && pk.ReceivedFor != "" && normLoose(pk.ReceivedFor, cs) != rs[0] {
			return fmt.Errorf("%w: package %d allows a Received for clause naming %q", ErrPrivacy, i, pk.ReceivedFor)
		}
		// Decryption, certificate choice and self-copy.
		if pk.Profile == "" {
			if len(pk.Certs) != 0 || len(rs) != 1 {
				return fmt.Errorf("%w: signed-only package %d has %d certificates and %d recipients", ErrPrivacy, i, len(pk.Certs), len(rs))
			}
			if pol.MissingCert != Plaintext || len(dir[rs[0]]) != 0 {
				return fmt.Errorf("%w: %q sent signed-only", ErrIncomplete, rs[0])
			}
			plainCount++
			continue
		}
		for _, r := range rs {
			want := oracleChoose(dir[r], pol.CertChoice)
			if len(want) == 0 {
				return fmt.Errorf("%w: %q has no certificate in encrypted package %d", ErrIncomplete, r, i)
			}
			for _, c := range want {
				if !ids[c.ID] {
					return fmt.Errorf("%w: certificate %q of %q missing from package %d", ErrIncomplete, c.ID, r, i)
				}
			}
			if !oracleProfileOK(pol, r, want, pk.Profile) {
				return fmt.Errorf("%w: %q cannot read profile %q of package %d", ErrIncomplete, r, pk.Profile, i)
			}
		}
		for id := range selfIDs {
			if !ids[id] {
				return fmt.Errorf("%w: self-copy certificate %q missing from package %d", ErrIncomplete, id, i)
			}
		}
		for id := range ids {
			if selfIDs[id] {
				continue
			}
			mine := false
			for _, r := range rs {
				for _, c := range oracleChoose(dir[r], pol.CertChoice) {
					mine = mine || c.ID == id
				}
			}
			if !mine {
				return fmt.Errorf("%w: package %d carries certificate %q of no recipient of it", ErrNotMinimal, i, id)
			}
		}
		if pk.Hidden {
			hiddenEncrypted++
			hidProfiles[pk.Profile] = true
		} else {
			visProfiles[pk.Profile] = true
		}
	}

	// Completeness over the envelope and the refusals.
	refused := map[string]bool{}
	for _, rf := range p.Refused {
		n, err := normalizeEnvelope("RCPT TO", rf.Recipient, cs)
		if err != nil {
			return err
		}
		if _, ok := where[n]; ok || refused[n] || !envSet[n] {
			return fmt.Errorf("%w: refusal of %q is duplicated or not an undelivered envelope recipient", ErrIncomplete, rf.Recipient)
		}
		refused[n] = true
		if len(dir[n]) != 0 || pol.MissingCert == Plaintext {
			return fmt.Errorf("%w: %q refused though deliverable", ErrIncomplete, rf.Recipient)
		}
		if rf.Code != 550 || rf.Enhanced != "5.7.1" || rf.DSN != (pol.MissingCert == Drop) {
			return fmt.Errorf("%w: refusal of %q has status %d %s dsn=%v", ErrIncomplete, rf.Recipient, rf.Code, rf.Enhanced, rf.DSN)
		}
		// The refused recipient may be named; whatever else looks like an
		// address must not be another recipient.
		own, _ := parseEnvelope("RCPT TO", rf.Recipient, cs)
		reason := strings.ReplaceAll(rf.Reason, own.Spec, "")
		for _, m := range anyAddr.FindAllString(reason, -1) {
			if o := normLoose(m, cs); o != n && (envSet[o] || bccSet[o]) {
				return fmt.Errorf("%w: refusal of %q names %q", ErrPrivacy, rf.Recipient, m)
			}
		}
	}
	for _, n := range env {
		if _, ok := where[n]; !ok && !refused[n] {
			return fmt.Errorf("%w: %q is neither delivered nor refused", ErrIncomplete, n)
		}
	}

	// Minimality and one encryption per profile.
	wantHidden := hiddenEncrypted
	if pol.Bcc == Group {
		wantHidden = len(hidProfiles)
	}
	want := len(visProfiles) + wantHidden + plainCount
	if len(p.Packages) != want || hiddenEncrypted != wantHidden {
		return fmt.Errorf("%w: %d packages, want %d", ErrNotMinimal, len(p.Packages), want)
	}
	if pol.Bcc == Individual {
		for _, pk := range p.Packages {
			if pk.Hidden && len(pk.Recipients) != 1 {
				return fmt.Errorf("%w: individual mode package with %d hidden recipients", ErrPrivacy, len(pk.Recipients))
			}
		}
	}
	profiles := map[string]bool{}
	for pr := range visProfiles {
		profiles[pr] = true
	}
	for pr := range hidProfiles {
		profiles[pr] = true
	}
	var list []string
	for pr := range profiles {
		list = append(list, pr)
	}
	sort.Strings(list)
	if strings.Join(list, "\x00") != strings.Join(p.Profiles, "\x00") || len(list) != len(p.Profiles) {
		return fmt.Errorf("%w: profiles %q, packages use %q", ErrNotMinimal, p.Profiles, list)
	}
	return nil
}

// checkInner verifies the shared inner header names only what everyone sees.
func checkInner(in Input, e HeaderEdits, cs bool, base map[string]bool) error {
	if len(e.Bcc) > 0 {
		return fmt.Errorf("%w: inner header keeps a Bcc field", ErrPrivacy)
	}
	hdr := in.Header.Copy()
	e.Apply(&hdr)
	for _, f := range append(append([]string{}, oracleHidden...), oracleTrace...) {
		if hdr.Has(f) {
			return fmt.Errorf("%w: inner header keeps %s", ErrPrivacy, f)
		}
	}
	for _, v := range hdr.Values("Received") {
		for _, m := range forClause.FindAllStringSubmatch(v, -1) {
			if !base[normLoose(m[1], cs)] {
				return fmt.Errorf("%w: inner header keeps a Received for clause", ErrPrivacy)
			}
		}
	}
	return nil
}

// normLoose normalizes a token that may not parse as an address; an
// unparsable one is compared lower-cased, so it can only fail to match.
func normLoose(s string, cs bool) string {
	if n, err := normalizeSpec(strings.Trim(s, "<>"), cs); err == nil {
		return n
	}
	return strings.ToLower(s)
}

// oracleChoose restates the certificate choice: all, or those with the latest
// NotBefore, of which the smallest ID.
func oracleChoose(certs []Cert, how CertChoice) []Cert {
	if how == All || len(certs) == 0 {
		return certs
	}
	sorted := append([]Cert(nil), certs...)
	sort.Slice(sorted, func(i, j int) bool {
		if !sorted[i].NotBefore.Equal(sorted[j].NotBefore) {
			return sorted[i].NotBefore.After(sorted[j].NotBefore)
		}
		return sorted[i].ID < sorted[j].ID
	})
	return sorted[:1]
}

// oracleProfileOK says whether every holder of certs can read a package of
// profile pr: a certificate's profile is its own, else its domain's, else the
// default; compat is readable by all, any other profile only by its own; and
// the package uses a profile one of the certificates asks for.
func oracleProfileOK(pol Policy, owner string, certs []Cert, pr string) bool {
	domain := owner[strings.LastIndexByte(owner, '@')+1:]
	asked := false
	for _, c := range certs {
		want := c.Profile
		if want == "" {
			want = pol.DomainProfiles[domain]
		}
		if want == "" {
			want = pol.Profile
		}
		if want == "" {
			want = ProfileCompat
		}
		if pr != ProfileCompat && pr != want {
			return false
		}
		asked = asked || pr == want
	}
	return asked
}
