package split

import (
	"errors"
	"fmt"
	"io"
	"mime"
	nettextproto "net/textproto"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Header policy. Every submitted field falls in one class, by its name, and
// the class says what a package does with it. The list is an allowlist: a
// field not named here is unknown and is carried only when it holds no '@'
// at all (so it cannot name an address); every X- field is dropped.
type fieldClass int

const (
	// classUnknown: kept only when it holds no '@' (raw or decoded).
	classUnknown fieldClass = iota
	// classText: known fields that name no recipient by design (Subject,
	// Date, Message-ID ...). Kept unless the field mentions a participant
	// outside the package's visible set; then dropped from that package.
	classText
	// classContent: Content-* and MIME-Version. They go into the signed
	// entity every package shares, so one that mentions a hidden
	// participant refuses the whole message.
	classContent
	// classAddress: originator and recipient fields. Their addresses are
	// seen by everyone; a comment or display name that mentions anyone
	// else makes the package carry the field rebuilt from bare addresses.
	classAddress
	// classHidden: Bcc and Resent-Bcc. Never carried; a package of hidden
	// recipients may get a fresh one naming only what it may see.
	classHidden
	// classTrace: Received. Carried with every "for" clause removed,
	// unless what is left still mentions someone outside the visible set.
	classTrace
	// classDrop: delivery, envelope and receipt-request fields, and every
	// X- field: never carried.
	classDrop
)

var fieldClasses = map[string]fieldClass{}

func init() {
	for _, k := range []string{
		"Date", "Subject", "Message-Id", "In-Reply-To", "References", "Comments", "Keywords",
		"Organization", "Importance", "Priority", "Sensitivity", "Language", "Auto-Submitted",
		"Thread-Topic", "Thread-Index", "User-Agent", "Resent-Date", "Resent-Message-Id",
		"Expires", "Supersedes", "Precedence", "Autocrypt",
	} {
		fieldClasses[canonicalKey(k)] = classText
	}
	for _, k := range append(append(append([]string{}, visibleFields...), authorFields...), replyFields...) {
		fieldClasses[canonicalKey(k)] = classAddress
	}
	for _, k := range hiddenFields {
		fieldClasses[canonicalKey(k)] = classHidden
	}
	fieldClasses["Received"] = classTrace
	fieldClasses["Mime-Version"] = classContent
	for _, k := range dropFields {
		fieldClasses[canonicalKey(k)] = classDrop
	}
}

// dropFields name an envelope recipient of some hop, ask recipients for a
// receipt, or are set by the next hop itself: none is carried.
var dropFields = []string{
	"Return-Path", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To",
	"X-Envelope-Recipient", "Original-Recipient", "X-Original-Recipient", "X-Rcpt-To",
	"X-Real-To", "Apparently-To", "X-Apparently-To", "X-Forwarded-To", "Envelope-Recipient",
	"Disposition-Notification-To", "Disposition-Notification-Options", "Return-Receipt-To",
	"X-Confirm-Reading-To", "Original-Envelope-Id", "Errors-To", "Resent-Reply-To",
}

func canonicalKey(k string) string { return nettextproto.CanonicalMIMEHeaderKey(k) }

func classOf(key string) fieldClass {
	k := canonicalKey(key)
	if c, ok := fieldClasses[k]; ok {
		return c
	}
	switch {
	case strings.HasPrefix(k, "X-"):
		return classDrop
	case strings.HasPrefix(k, "Content-"):
		return classContent
	}
	return classUnknown
}

// singleFields may appear at most once (RFC 5322 section 3.6).
var singleFields = []string{
	"Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc",
	"Message-Id", "In-Reply-To", "References", "Subject",
}

// ErrDuplicateField is matched by a [*FieldError] for a second instance of a
// field RFC 5322 allows once.
var ErrDuplicateField = errors.New("duplicate header field")

// ErrHiddenInContent is matched by a [*FieldError] for a Content-* field
// (which every package shares inside the signature) that mentions a hidden
// recipient.
var ErrHiddenInContent = errors.New("content field names a hidden recipient")

// FieldError refuses a message because of one header field.
type FieldError struct {
	Field string // canonical name
	Err   error  // ErrDuplicateField or ErrHiddenInContent
}

func (e *FieldError) Error() string {
	if e.Err == ErrDuplicateField {
		return fmt.Sprintf("message has more than one %s field", e.Field)
	}
	return fmt.Sprintf("%s field: %v", e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// CheckFields refuses a header with two instances of a field RFC 5322 section
// 3.6 allows once: which one a reader shows is anyone's guess, so neither the
// signature nor the visibility rule could say what a recipient sees.
func CheckFields(h textproto.Header) error {
	for _, k := range singleFields {
		if len(h.Values(k)) > 1 {
			return &FieldError{Field: canonicalKey(k), Err: ErrDuplicateField}
		}
	}
	return nil
}

// Originators returns every address of every From, Sender, Resent-From and
// Resent-Sender field (each instance), in header order: the identities a
// signature over the message vouches for. It fails on an unparsable field.
func Originators(h textproto.Header) ([]string, error) {
	var out []string
	for it := h.Fields(); it.Next(); {
		switch canonicalKey(it.Key()) {
		case "From", "Sender", "Resent-From", "Resent-Sender":
		default:
			continue
		}
		list, err := parseList(it.Value())
		if err != nil {
			return nil, &AddressError{Field: canonicalKey(it.Key()), Value: it.Value(), Err: err}
		}
		for _, a := range list {
			out = append(out, a.Address)
		}
	}
	return out, nil
}

func parseList(v string) ([]*mail.Address, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	return parseAddressList(v)
}

// hfield is one submitted field as the policy sees it.
type hfield struct {
	key   string // canonical
	n     int    // instance of key, from the top
	value string
	class fieldClass
	addrs []*mail.Address // classAddress only
	// rebuiltMentions are what the field rebuilt from its bare addresses still names
	// (classAddress only): an address whose own spelling reads as someone else's
	// ("bob b"@x.test holds b@x.test) cannot be made clean by rebuilding.
	rebuiltMentions []string
	// mentions are the secret participants (normalized) the field names in
	// any spelling; for a Received field, after its "for" clauses go.
	mentions []string
	atSign   bool   // an '@' anywhere, raw or decoded
	received string // classTrace: the value without "for" clauses
}

// participants are the addresses a header mention is checked against.
type participants struct {
	secret []string // normalized, not seen by everyone
	keys   []string // their comparison forms (see squeeze)
	cs     bool     // local parts compare case-sensitively
}

// readFields classifies h and finds what each field mentions; cs says
// whether local parts are case-sensitive.
func readFields(h textproto.Header, secret []string, cs bool) ([]hfield, error) {
	ps := participants{secret: secret, cs: cs}
	for _, s := range secret {
		ps.keys = append(ps.keys, squeeze(readable(s)))
	}
	var out []hfield
	count := map[string]int{}
	for it := h.Fields(); it.Next(); {
		k := canonicalKey(it.Key())
		f := hfield{key: k, n: count[k], value: it.Value(), class: classOf(k)}
		count[k]++
		text := f.value
		if f.class == classTrace {
			f.received = stripReceived(f.value)
			text = f.received
		}
		f.atSign = strings.Contains(f.value, "@") || strings.Contains(decodeWords(f.value), "@")
		if f.class == classAddress {
			list, err := parseList(f.value)
			if err != nil {
				return nil, &AddressError{Field: k, Value: f.value, Err: err}
			}
			f.addrs = list
			f.rebuiltMentions = ps.mentionedIn(rebuild(list))
		}
		if f.class != classHidden && f.class != classDrop {
			f.mentions = ps.mentionedIn(text)
		}
		if f.class == classContent && !msgIDFields[k] {
			f.mentions = appendNew(f.mentions, ps.looselyIn(text))
		}
		out = append(out, f)
	}
	return out, nil
}

// mentionedIn lists the secret participants text names, in any spelling:
// as written, with RFC 2047 encoded words decoded, with or without
// comments, quotes, backslashes and folding white space.
func (ps participants) mentionedIn(text string) []string {
	if len(ps.secret) == 0 || !strings.ContainsAny(text, "@=") {
		return nil
	}
	forms := spellings(text)
	var out []string
	for i, key := range ps.keys {
		for _, f := range forms {
			if containsAddr(f, key, ps.cs) {
				out = append(out, ps.secret[i])
				break
			}
		}
	}
	return out
}

// spellings are the forms of text a reader may see an address in: as
// written and with encoded words decoded, each with and without comments,
// each as is and squeezed.
func spellings(text string) []string {
	// Each distinct form once: most fields have no encoded word, comment or quote, so most
	// of the eight are the text itself, and every form is searched for every secret.
	forms := make([]string, 0, 8)
	add := func(f string) {
		if !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	for _, t := range []string{readable(text), readable(decodeWords(text))} {
		for _, c := range []string{t, stripComments(t)} {
			add(c)
			add(squeeze(c))
		}
	}
	return forms
}

// msgIDFields hold message identifiers, which look like addresses and name
// no one.
var msgIDFields = map[string]bool{"Message-Id": true, "In-Reply-To": true, "References": true, "Resent-Message-Id": true, "Content-Id": true}

// addressesIn returns every address-like token of text, in any spelling,
// normalized: a maximal run of local-part and domain characters holding an
// '@', split at its last '@'.
func addressesIn(text string, cs bool) []string {
	if !strings.ContainsAny(text, "@=") {
		return nil
	}
	var out []string
	for _, f := range spellings(text) {
		for i := 0; i < len(f); {
			if !isTokenByte(f[i]) {
				i++
				continue
			}
			j := i
			for j < len(f) && isTokenByte(f[j]) {
				j++
			}
			tok := strings.TrimRight(f[i:j], ".")
			i = j
			if !strings.Contains(tok, "@") {
				continue
			}
			if n, err := normalizeSpec(tok, cs); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func isTokenByte(c byte) bool { return c == '@' || isLocalByte(c) }

// readable is text as the header policy judges it: every byte that is not UTF-8 becomes
// U+FFFD, as normalization (strings.ToLower) turns it, so an address holding such bytes
// compares alike in a field and in the participants' list. Every byte or rune >= 0x80 is an
// address character (isLocalByte, isDomainByte), as the oracle reads it (oracleTokenRune):
// "0000\xff@0" is one address, which is nobody's and so names someone outside every
// visible set, never the local part "0" of someone's "0@0".
func readable(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.Map(func(r rune) rune { return r }, s)
}

// squeeze removes quotes and backslashes, and white space next to '@' or
// '.', so `"carol" @ y.test` and carol@y.test compare alike. It only widens
// what counts as a mention, which can only drop more.
func squeeze(s string) string {
	if strings.IndexAny(s, "\"\\ \t\r\n\v\f") < 0 {
		return s // nothing to remove
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
		case ' ', '\t', '\r', '\n', '\v', '\f':
			j := i
			for j < len(s) && isSpaceByte(s[j]) {
				j++
			}
			prev := byte(0)
			if len(b) > 0 {
				prev = b[len(b)-1]
			}
			if !(prev == '@' || prev == '.' || j < len(s) && (s[j] == '@' || s[j] == '.')) {
				b = append(b, ' ')
			}
			i = j - 1
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// stripComments removes RFC 5322 comments (nested parentheses) from s.
func stripComments(s string) string {
	if strings.IndexByte(s, '(') < 0 {
		return s // no comment: every byte is kept
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}

var wordDecoder = &mime.WordDecoder{CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil }}

// decodeWords decodes every RFC 2047 encoded word in s, wherever it is
// (readers decode them in places RFC 2047 does not allow too).
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "=?")
		if i < 0 {
			break
		}
		b.WriteString(s[:i])
		end := wordEnd(s[i:])
		if end < 0 {
			b.WriteString(s[i : i+2])
			s = s[i+2:]
			continue
		}
		w := s[i : i+end]
		if d, err := wordDecoder.Decode(w); err == nil {
			b.WriteString(d)
		} else {
			b.WriteString(w)
		}
		s = s[i+end:]
	}
	b.WriteString(s)
	return b.String()
}

// wordEnd returns the length of the encoded word "=?charset?x?text?=" at the
// start of s, or -1.
func wordEnd(s string) int {
	q := 0
	for i := 2; i+1 < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' {
			return -1
		}
		if s[i] == '?' {
			q++
			if q == 3 && s[i+1] == '=' {
				return i + 2
			}
		}
	}
	return -1
}

// containsAddr reports whether key (a squeezed, normalized address) occurs
// in s as a whole address: not preceded by a local-part character and not
// followed by a domain character. The domain compares in any case, the local
// part too unless cs.
func containsAddr(s, key string, cs bool) bool {
	ls, lkey := asciiLower(s), asciiLower(key)
	local := key[:max(strings.LastIndexByte(key, '@'), 0)]
	for from := 0; ; {
		i := strings.Index(ls[from:], lkey)
		if i < 0 {
			return false
		}
		i += from
		end := i + len(key)
		before := i == 0 || !isLocalByte(s[i-1])
		after := end == len(s) || !isDomainByte(s[end]) && !(s[end] == '.' && end+1 < len(s) && isDomainByte(s[end+1]))
		if before && after && (!cs || s[i:i+len(local)] == local) {
			return true
		}
		from = i + 1
	}
}

func isLocalByte(c byte) bool {
	return c == '.' || isAtextByte(c) || c >= 0x80
}

func isAtextByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isDomainByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c >= 0x80
}

// allowedSet says which secret participants a package may name.
type allowedSet func(norm string) bool

// edits builds one package's header: the allowlist applied to fields, with
// the fresh hidden-recipient field bcc (named bccKey) when not empty.
func edits(fields []hfield, allowed allowedSet, bccKey string, bcc []string, bccAt int) HeaderEdits {
	var e HeaderEdits
	e.Bcc = bcc
	cleanOf := func(mentions []string) bool {
		for _, m := range mentions {
			if !allowed(m) {
				return false
			}
		}
		return true
	}
	clean := func(f hfield) bool { return cleanOf(f.mentions) }
	addBcc := func() {
		if len(bcc) > 0 {
			e.Fields = append(e.Fields, FieldEdit{Key: bccKey, N: -1, Value: strings.Join(bcc, ", ")})
		}
	}
	for i, f := range fields {
		if i == bccAt {
			addBcc()
		}
		keep := FieldEdit{Key: f.key, N: f.n}
		switch f.class {
		case classText, classContent:
			if !clean(f) {
				e.Dropped = append(e.Dropped, f.key+" (names a hidden recipient)")
				continue
			}
		case classUnknown:
			if f.atSign {
				e.Dropped = append(e.Dropped, f.key+" (unknown field with an address)")
				continue
			}
		case classAddress:
			if !clean(f) && isReplyField(f.key) {
				// Reply-To makes nobody visible, so its own addresses may be the hidden ones:
				// rebuilding would keep them. The field goes from this package.
				e.Dropped = append(e.Dropped, f.key+" (names a hidden recipient)")
				continue
			}
			if !clean(f) && !cleanOf(f.rebuiltMentions) {
				e.Dropped = append(e.Dropped, f.key+" (an address in it reads as a hidden recipient's)")
				continue
			}
			if !clean(f) {
				keep.Value = rebuild(f.addrs)
				e.Dropped = append(e.Dropped, f.key+" (rebuilt: a comment or name named a hidden recipient)")
			}
		case classTrace:
			if !clean(f) {
				e.Dropped = append(e.Dropped, f.key+" (names a hidden recipient)")
				continue
			}
			if f.received != f.value {
				keep.Value = f.received
				e.Dropped = append(e.Dropped, f.key+" (for clause removed)")
			}
		case classHidden:
			e.Dropped = append(e.Dropped, f.key)
			continue
		default:
			e.Dropped = append(e.Dropped, f.key)
			continue
		}
		e.Fields = append(e.Fields, keep)
	}
	if bccAt < 0 || bccAt >= len(fields) {
		addBcc()
	}
	return e
}

// rebuild writes an address field from its bare addresses: no display
// name, no comment, nothing but what everyone already sees.
func rebuild(list []*mail.Address) string {
	if len(list) == 0 {
		return "undisclosed-recipients:;"
	}
	specs := make([]string, len(list))
	for i, a := range list {
		specs[i] = (&mail.Address{Address: a.Address}).String()
	}
	return strings.Join(specs, ", ")
}

// asciiLower lower-cases ASCII letters only, so byte offsets stay put.
func asciiLower(s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s // already lower case
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func isReplyField(key string) bool {
	for _, k := range replyFields {
		if canonicalKey(k) == key {
			return true
		}
	}
	return false
}

// looselyIn lists the secret participants whose local part, an '@' and the first label of
// their domain stand in text once white space and quoting are gone ("carol"@Y test). A
// Content-* field is in every package, so it is judged by this wider net: what a reader
// could take for a hidden recipient's address refuses the message.
func (ps participants) looselyIn(text string) []string {
	if len(ps.secret) == 0 || !strings.ContainsAny(text, "@=") {
		return nil
	}
	var out []string
	for _, t := range []string{readable(text), readable(decodeWords(text))} {
		t = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' || r == '"' || r == '\\' {
				return -1
			}
			return r
		}, asciiLower(t))
		for _, s := range ps.secret {
			s := readable(s)
			at := strings.LastIndexByte(s, '@')
			if at <= 0 {
				continue
			}
			label, _, _ := strings.Cut(s[at+1:], ".")
			if strings.Contains(t, asciiLower(s[:at])+"@"+asciiLower(label)) {
				out = appendNew(out, []string{s})
			}
		}
	}
	return out
}

func appendNew(list, more []string) []string {
	for _, m := range more {
		if !slices.Contains(list, m) {
			list = append(list, m)
		}
	}
	return list
}
