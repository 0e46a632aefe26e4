package split

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	nettextproto "net/textproto"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"github.com/emersion/go-message/textproto"
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

// The oracle keeps its own field lists, address parsing and reading of
// HeaderEdits rather than sharing Make's, so that a mistake in one is caught
// by the other.
var (
	oracleNeverCarried = []string{
		"Bcc", "Return-Path", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To",
		"X-Envelope-Recipient", "Original-Recipient", "X-Original-Recipient", "X-Rcpt-To",
		"Disposition-Notification-To", "Return-Receipt-To", "X-Confirm-Reading-To", "Apparently-To",
	}
)

// forClause finds the paths of Received "for" clauses.
var forClause = regexp.MustCompile(`(?i)\bfor\s+<?([^\s;<>()]*@[^\s;<>(),]*)`)

// CheckPrivacy verifies a plan made for in: the privacy rule (package doc) for every
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
	oh, err := oracleReadHeader(in.Header, cs)
	if err != nil {
		return err
	}
	visible, base, bccSet := oh.shown, oh.base, map[string]bool{}
	for _, a := range oh.listed {
		if !visible[a] {
			bccSet[a] = true
		}
	}
	if mf, err := oracleEnvelope(in.MailFrom, cs); err == nil {
		base[mf] = true
	}
	participants := map[string]bool{}
	for _, a := range oh.allBcc {
		participants[a] = true
	}

	// Envelope, in order and deduplicated.
	var env []string
	envSet := map[string]bool{}
	for _, r := range in.RcptTo {
		n, err := oracleEnvelope(r, cs)
		if err != nil {
			return err
		}
		participants[n] = true
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
		n, err := oracleEnvelope(k, cs)
		if err != nil {
			return err
		}
		for _, c := range list {
			dir[n] = appendCert(dir[n], c)
			certOwner[c.ID] = n
		}
	}
	// selfIDs are the self-copy certificates every package carries; ownSelfIDs those only the
	// package of a recipient with a KeyAgree certificate carries (a sender who has nothing else).
	selfIDs, ownSelfIDs := map[string]bool{}, map[string]bool{}
	if pol.SelfCopy {
		byOwner := map[string][]Cert{}
		for _, c := range in.SenderCerts {
			o, err := oracleEnvelope(c.Owner, cs)
			if err != nil {
				return err
			}
			certOwner[c.ID] = o
			byOwner[o] = appendCert(byOwner[o], c)
		}
		for _, list := range byOwner {
			var other []Cert
			for _, c := range list {
				if !c.KeyAgree {
					other = append(other, c)
				}
			}
			if len(other) > 0 {
				list = other
			}
			for _, c := range oracleChoose(list, pol.CertChoice) {
				if c.KeyAgree {
					ownSelfIDs[c.ID] = true
				} else {
					selfIDs[c.ID] = true
				}
			}
		}
	}
	// A recipient with a KeyAgree certificate has a package of its own.
	ownPackage := func(r string) bool {
		for _, c := range oracleChoose(dir[r], pol.CertChoice) {
			if c.KeyAgree {
				return true
			}
		}
		return false
	}

	secretKeys := map[string]string{} // squeezed form -> normalized, for every participant not in base
	for a := range participants {
		if !base[a] {
			secretKeys[oracleSqueeze(a)] = a
		}
	}
	if err := checkInner(in, p.Inner, secretKeys); err != nil {
		return err
	}
	if err := checkProtected(in, p, base, secretKeys); err != nil {
		return err
	}

	memo := map[string][]string{}
	where := map[string]int{} // normalized recipient -> package index
	visProfiles, hidProfiles, profilesUsed := map[string]bool{}, map[string]bool{}, map[string]bool{}
	hiddenEncrypted, plainCount, ownCount := 0, 0, 0
	for i, pk := range p.Packages {
		if len(pk.Recipients) == 0 {
			return fmt.Errorf("%w: package %d has no recipients", ErrIncomplete, i)
		}
		rs := make([]string, len(pk.Recipients))
		for j, r := range pk.Recipients {
			n, err := oracleEnvelope(r, cs)
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
		if err := oracleHeaderReveals(in, pk.Edits, pk.Hidden, cs, secretKeys, revealed, memo); err != nil {
			return fmt.Errorf("%w: package %d: %v", ErrPrivacy, i, err)
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
		if len(rs) == 1 && pk.ReceivedFor != "" && oracleLoose(pk.ReceivedFor, cs) != rs[0] {
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
		own := false
		for _, r := range rs {
			if ownPackage(r) {
				own = true
				if len(rs) != 1 {
					return fmt.Errorf("%w: %q has a KeyAgree certificate and shares package %d", ErrIncomplete, r, i)
				}
			}
		}
		for id := range selfIDs {
			if !ids[id] {
				return fmt.Errorf("%w: self-copy certificate %q missing from package %d", ErrIncomplete, id, i)
			}
		}
		for id := range ownSelfIDs {
			if own && !ids[id] {
				return fmt.Errorf("%w: self-copy certificate %q missing from package %d", ErrIncomplete, id, i)
			}
		}
		for id := range ids {
			if selfIDs[id] || own && ownSelfIDs[id] {
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
		switch {
		case own:
			ownCount++
			profilesUsed[pk.Profile] = true
		case pk.Hidden:
			hiddenEncrypted++
			hidProfiles[pk.Profile] = true
		default:
			visProfiles[pk.Profile] = true
		}
	}

	// Completeness over the envelope and the refusals.
	refused := map[string]bool{}
	for _, rf := range p.Refused {
		n, err := oracleEnvelope(rf.Recipient, cs)
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
		for _, o := range oracleTokens(rf.Reason, secretKeys, cs) {
			if o != n {
				return fmt.Errorf("%w: refusal of %q names %q", ErrPrivacy, rf.Recipient, o)
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
	want := len(visProfiles) + wantHidden + plainCount + ownCount
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
	profiles := profilesUsed
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
// the package uses a profile one of the certificates asks for, or compat where
// they ask for different ones.
func oracleProfileOK(pol Policy, owner string, certs []Cert, pr string) bool {
	domain := owner[strings.LastIndexByte(owner, '@')+1:]
	asked := false
	wants := map[string]bool{}
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
		wants[want] = true
	}
	return asked || (pr == ProfileCompat && len(wants) > 1)
}

// oracleHeader is the oracle's own reading of the submitted header.
type oracleHeader struct {
	shown  map[string]bool // recipients whose receipt everyone sees
	base   map[string]bool // addresses everyone may read
	listed []string        // Bcc (or newest Resent-Bcc) addresses
	allBcc []string        // every Bcc and Resent-Bcc address
}

var oracleParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// oracleAddresses parses an address list with the standard library.
func oracleAddresses(v string, cs bool) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	list, err := oracleParser.ParseList(v)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		n, ok := oracleNorm(a.Address, cs)
		if !ok {
			return nil, fmt.Errorf("no domain in %q", a.Address)
		}
		out = append(out, n)
	}
	return out, nil
}

// oracleNorm: domain lower-cased without a trailing dot, the local part
// lower-cased unless cs; the last '@' splits them.
func oracleNorm(spec string, cs bool) (string, bool) {
	at := strings.LastIndex(spec, "@")
	if at < 1 || at == len(spec)-1 {
		return "", false
	}
	local, domain := spec[:at], strings.ToLower(strings.TrimSuffix(spec[at+1:], "."))
	if domain == "" {
		return "", false
	}
	if !cs {
		local = strings.ToLower(local)
	}
	return local + "@" + domain, true
}

// oracleEnvelope normalizes an SMTP path.
func oracleEnvelope(path string, cs bool) (string, error) {
	p := strings.TrimSpace(path)
	if strings.HasPrefix(p, "<") && strings.HasSuffix(p, ">") {
		p = p[1 : len(p)-1]
	}
	a, err := oracleParser.Parse(p)
	if err != nil {
		return "", fmt.Errorf("%w: path %q: %v", ErrIncomplete, path, err)
	}
	n, ok := oracleNorm(a.Address, cs)
	if !ok {
		return "", fmt.Errorf("%w: path %q has no domain", ErrIncomplete, path)
	}
	return n, nil
}

func oracleLoose(s string, cs bool) string {
	if n, err := oracleEnvelope(s, cs); err == nil {
		return n
	}
	return strings.ToLower(s)
}

// oracleReadHeader reads visibility as RFC 5322 section 3.6.6 says: with
// Resent- blocks, the newest (topmost) block names the recipients of this
// copy and the original To and Cc are only text everyone may read.
func oracleReadHeader(h textproto.Header, cs bool) (*oracleHeader, error) {
	type fv struct{ key, value string }
	var fs []fv
	for it := h.Fields(); it.Next(); {
		fs = append(fs, fv{nettextproto.CanonicalMIMEHeaderKey(it.Key()), it.Value()})
	}
	// The newest block: from the first Resent- field, while fields are
	// Resent- (each name once) or trace fields.
	newest := map[int]bool{}
	resent := false
	for i := 0; i < len(fs); i++ {
		if !strings.HasPrefix(fs[i].key, "Resent-") {
			continue
		}
		resent = true
		names := map[string]bool{}
		for j := i; j < len(fs); j++ {
			k := fs[j].key
			if k == "Received" || k == "Return-Path" {
				continue
			}
			if !strings.HasPrefix(k, "Resent-") || names[k] {
				break
			}
			names[k] = true
			newest[j] = true
		}
		break
	}
	oh := &oracleHeader{shown: map[string]bool{}, base: map[string]bool{}}
	for i, f := range fs {
		var to, everyone, bcc bool
		switch f.key {
		case "To", "Cc":
			to, everyone = !resent, true
		case "Resent-To", "Resent-Cc":
			to, everyone = newest[i], true
		case "From", "Sender", "Resent-From", "Resent-Sender":
			everyone = true
		case "Bcc", "Resent-Bcc":
			bcc = true
		default:
			continue
		}
		list, err := oracleAddresses(f.value, cs)
		if err != nil {
			return nil, fmt.Errorf("%w: field %s does not parse: %v", ErrIncomplete, f.key, err)
		}
		for _, a := range list {
			if to {
				oh.shown[a] = true
			}
			if everyone {
				oh.base[a] = true
			}
			if bcc {
				oh.allBcc = append(oh.allBcc, a)
				if (!resent && f.key == "Bcc") || newest[i] {
					oh.listed = append(oh.listed, a)
				}
			}
		}
	}
	return oh, nil
}

// oracleApply is the oracle's reading of HeaderEdits: the package's fields,
// key and unfolded value, top to bottom.
func oracleApply(h textproto.Header, e HeaderEdits) [][2]string {
	byKey := map[string][]string{}
	for it := h.Fields(); it.Next(); {
		k := nettextproto.CanonicalMIMEHeaderKey(it.Key())
		byKey[k] = append(byKey[k], it.Value())
	}
	var out [][2]string
	for _, f := range e.Fields {
		k := nettextproto.CanonicalMIMEHeaderKey(f.Key)
		switch {
		case f.N < 0 && f.Value != "":
			out = append(out, [2]string{k, f.Value})
		case f.N >= 0 && f.N < len(byKey[k]):
			v := byKey[k][f.N]
			if f.Value != "" {
				v = f.Value
			}
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

// oracleSqueeze removes white space, quotes and backslashes.
func oracleSqueeze(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}

// oracleAroundAt removes white space next to '@' and '.'.
func oracleAroundAt(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if oracleSpace(s[i]) {
			j := i
			for j < len(s) && oracleSpace(s[j]) {
				j++
			}
			if (len(b) > 0 && (b[len(b)-1] == '@' || b[len(b)-1] == '.')) || j < len(s) && (s[j] == '@' || s[j] == '.') {
				i = j - 1
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

func oracleSpace(c byte) bool { return strings.IndexByte(" \t\r\n\v\f", c) >= 0 }

// oracleTokenRune: the characters of an address token (atext, '.', '@' and
// anything beyond ASCII).
func oracleTokenRune(r rune) bool {
	return r >= 0x80 || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
		strings.ContainsRune("!#$%&'*+/=?^_`{|}~.@-", r)
}

var oracleUnquote = strings.NewReplacer(`"`, "", `\\`, "")

// oracleMsgID are the fields that hold message identifiers, not addresses.
var oracleMsgID = map[string]bool{"Message-Id": true, "In-Reply-To": true, "References": true, "Resent-Message-Id": true}

// oracleTokens returns the secret participants (keys: squeezed form) that
// text names as a whole token, in any of its spellings: as written or with
// encoded words decoded, with or without comments, with or without white
// space and quotes. With keys nil it returns every address token, in the
// spellings a reader sees (white space only removed around '@' and '.').
func oracleTokens(text string, keys map[string]string, cs bool) []string {
	if !strings.ContainsAny(text, "@=") {
		return nil
	}
	decoded, err := oracleParser.WordDecoder.DecodeHeader(text)
	if err != nil {
		decoded = text
	}
	var out []string
	seen := map[string]bool{}
	for _, t := range []string{text, decoded} {
		for _, c := range []string{t, oracleUncomment(t)} {
			forms := []string{c, oracleAroundAt(oracleUnquote.Replace(c))}
			if keys != nil {
				forms = append(forms, oracleSqueeze(c))
			}
			for _, form := range forms {
				for _, tok := range strings.FieldsFunc(form, func(r rune) bool { return !oracleTokenRune(r) }) {
					if !strings.Contains(tok, "@") {
						continue
					}
					tok, ok := oracleNorm(strings.TrimRight(tok, "."), cs)
					if !ok {
						continue
					}
					n, ok := tok, true
					if keys != nil {
						n, ok = keys[tok]
					}
					if ok && !seen[n] {
						seen[n] = true
						out = append(out, n)
					}
				}
			}
		}
	}
	return out
}

// oracleUncomment drops parenthesized text (nested, with backslash escapes).
func oracleUncomment(s string) string {
	var b []byte
	depth, esc := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
			if depth == 0 {
				b = append(b, c)
			}
		case c == '\\':
			esc = true
			if depth == 0 {
				b = append(b, c)
			}
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b = append(b, c)
		}
	}
	return string(b)
}

// oracleHeaderReveals adds to revealed every address the package's header
// names, and fails on a field the header policy never carries.
func oracleHeaderReveals(in Input, e HeaderEdits, hidden bool, cs bool, secret map[string]string, revealed map[string]string, memo map[string][]string) error {
	for _, f := range oracleApply(in.Header, e) {
		k, v := f[0], f[1]
		if strings.HasPrefix(k, "X-") {
			return fmt.Errorf("carries %s", k)
		}
		for _, never := range oracleNeverCarried {
			if k == never && !(hidden && k == "Bcc") {
				return fmt.Errorf("carries %s", k)
			}
		}
		switch k {
		case "To", "Cc", "From", "Sender", "Reply-To", "Resent-To", "Resent-Cc", "Resent-From", "Resent-Sender", "Bcc", "Resent-Bcc":
			list, err := oracleAddresses(v, cs)
			if err != nil {
				return fmt.Errorf("field %s unparsable after edits", k)
			}
			for _, a := range list {
				revealed[a] = "field " + k
			}
		case "Received":
			for _, m := range forClause.FindAllStringSubmatch(v, -1) {
				revealed[oracleLoose(m[1], cs)] = "Received for clause"
			}
		}
		// Packages share most of their fields: scan each text once.
		// Message identifiers look like addresses: there only the
		// participants count. So in Content-* fields and MIME-Version,
		// which are inside the signature and the same in every package:
		// a participant there refuses the message (CheckRefusal judges
		// that), anyone else names no recipient. Anywhere else every
		// address does.
		keys := secret
		if !oracleMsgID[k] && !strings.HasPrefix(k, "Content-") && k != "Mime-Version" {
			keys = nil
		}
		found, ok := memo[k+":"+v]
		if !ok {
			found = oracleTokens(v, keys, cs)
			memo[k+":"+v] = found
		}
		for _, a := range found {
			revealed[a] = "field " + k
		}
	}
	return nil
}

// checkInner verifies the header shared inside the signature carries only
// content fields and names no one outside what everyone reads.
func checkInner(in Input, e HeaderEdits, secret map[string]string) error {
	if len(e.Bcc) > 0 {
		return fmt.Errorf("%w: inner header keeps a Bcc field", ErrPrivacy)
	}
	for _, f := range oracleApply(in.Header, e) {
		if !strings.HasPrefix(f[0], "Content-") && f[0] != "Mime-Version" {
			return fmt.Errorf("%w: inner header keeps %s", ErrPrivacy, f[0])
		}
		if m := oracleTokens(f[1], secret, in.Policy.CaseSensitiveLocalPart); len(m) > 0 {
			return fmt.Errorf("%w: inner header field %s names %q", ErrPrivacy, f[0], m[0])
		}
	}
	return nil
}

// ErrWrongRefusal: Make refused an input for a reason that does not hold.
var ErrWrongRefusal = errors.New("refusal without a reason that holds")

// oracleSingle are the fields RFC 5322 section 3.6 allows once.
var oracleSingle = map[string]bool{
	"Date": true, "From": true, "Sender": true, "Reply-To": true, "To": true, "Cc": true, "Bcc": true,
	"Message-Id": true, "In-Reply-To": true, "References": true, "Subject": true,
}

// CheckRefusal judges an error of Make: it must state a reason that holds
// for in, checked here without Make's code. It is the other half of the
// oracle: a plan is checked by CheckPrivacy, a refusal by CheckRefusal, so
// a wrong refusal is as visible as a leak.
func CheckRefusal(in Input, err error) error {
	if err == nil {
		return fmt.Errorf("%w: no error", ErrWrongRefusal)
	}
	cs := in.Policy.CaseSensitiveLocalPart
	wrong := func(why string) error { return fmt.Errorf("%w: %v (%s)", ErrWrongRefusal, err, why) }
	var fe *FieldError
	var ae *AddressError
	switch {
	case errors.Is(err, ErrNoRecipients):
		if len(in.RcptTo) != 0 {
			return wrong("the envelope has recipients")
		}
	case errors.Is(err, ErrInvalidPolicy):
		p := in.Policy
		if p.Bcc >= Individual && p.Bcc <= Group && p.MissingCert >= Reject && p.MissingCert <= Drop && p.CertChoice >= All && p.CertChoice <= Newest {
			return wrong("the policy is valid")
		}
	case errors.As(err, &fe) && errors.Is(err, ErrDuplicateField):
		n := 0
		for it := in.Header.Fields(); it.Next(); {
			if nettextproto.CanonicalMIMEHeaderKey(it.Key()) == fe.Field {
				n++
			}
		}
		if !oracleSingle[fe.Field] || n < 2 {
			return wrong(fmt.Sprintf("%s appears %d times", fe.Field, n))
		}
	case errors.As(err, &fe) && errors.Is(err, ErrHiddenInContent):
		if !strings.HasPrefix(fe.Field, "Content-") && fe.Field != "Mime-Version" {
			return wrong("not a content field")
		}
		oh, herr := oracleReadHeader(in.Header, cs)
		if herr != nil {
			return wrong("the header does not parse, so nothing is known to be hidden")
		}
		var hiddenOnes []string
		hiddenOnes = append(hiddenOnes, oh.allBcc...)
		for _, r := range in.RcptTo {
			if n, err := oracleEnvelope(r, cs); err == nil && !oh.shown[n] {
				hiddenOnes = append(hiddenOnes, n)
			}
		}
		for it := in.Header.Fields(); it.Next(); {
			if nettextproto.CanonicalMIMEHeaderKey(it.Key()) != fe.Field {
				continue
			}
			text := it.Value()
			if d, err := oracleParser.WordDecoder.DecodeHeader(text); err == nil {
				text += " " + d
			}
			text = strings.ToLower(oracleSqueeze(text))
			for _, h := range hiddenOnes {
				if oh.base[h] {
					continue
				}
				at := strings.LastIndex(h, "@")
				local := strings.ToLower(oracleSqueeze(h[:at]))
				label, _, _ := strings.Cut(h[at+1:], ".")
				if strings.Contains(text, local) && (strings.Contains(text, h[at+1:]) || strings.Contains(text, local+"@"+label)) {
					return nil
				}
			}
		}
		return wrong("the content field names no hidden recipient")
	case errors.As(err, &ae):
		switch ae.Field {
		case "MAIL FROM", "RCPT TO", "certificate key", "certificate owner", "sender certificate owner":
			if _, perr := oracleEnvelope(ae.Value, cs); perr == nil {
				return wrong("the path parses")
			}
			return nil
		}
		found := false
		for it := in.Header.Fields(); it.Next(); {
			found = found || nettextproto.CanonicalMIMEHeaderKey(it.Key()) == ae.Field && it.Value() == ae.Value
		}
		if !found {
			return wrong("no such field")
		}
		if _, perr := oracleAddresses(ae.Value, cs); perr == nil {
			return wrong("the field parses")
		}
	case errors.Is(err, ErrInvalidCert):
		if !oracleBadCert(in) {
			return wrong("every certificate belongs to its address")
		}
	default:
		return wrong("unknown reason")
	}
	return nil
}

// oracleBadCert reports a certificate without an ID, listed for an address
// other than its owner's, listed for two owners, or (self-copy) owned by
// someone other than an author or the envelope sender.
func oracleBadCert(in Input) bool {
	cs := in.Policy.CaseSensitiveLocalPart
	owner := map[string]string{}
	bad := func(key string, c Cert) bool {
		o, err := oracleEnvelope(c.Owner, cs)
		if c.ID == "" || err != nil || o != key {
			return true
		}
		if prev, ok := owner[c.ID]; ok && prev != o {
			return true
		}
		owner[c.ID] = o
		return false
	}
	for k, list := range in.Certs {
		n, err := oracleEnvelope(k, cs)
		if err != nil {
			return true
		}
		for _, c := range list {
			if bad(n, c) {
				return true
			}
		}
	}
	if !in.Policy.SelfCopy || len(in.SenderCerts) == 0 {
		return false
	}
	senders := map[string]bool{}
	if mf, err := oracleEnvelope(in.MailFrom, cs); err == nil {
		senders[mf] = true
	}
	for it := in.Header.Fields(); it.Next(); {
		switch nettextproto.CanonicalMIMEHeaderKey(it.Key()) {
		case "From", "Sender", "Resent-From", "Resent-Sender":
			l, _ := oracleAddresses(it.Value(), cs)
			for _, a := range l {
				senders[a] = true
			}
		}
	}
	for _, c := range in.SenderCerts {
		o, err := oracleEnvelope(c.Owner, cs)
		if err != nil || !senders[o] || bad(o, c) {
			return true
		}
	}
	return false
}
