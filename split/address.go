package split

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// ErrInvalidAddress is matched (errors.Is) by every [*AddressError].
var ErrInvalidAddress = errors.New("invalid address")

// AddressError reports an address (or address list) that cannot be parsed.
// Field is the header field name, or "MAIL FROM"/"RCPT TO" for the envelope.
type AddressError struct {
	Field string
	Value string
	Err   error
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("failed to parse %s %q: %v", e.Field, e.Value, e.Err)
}

func (e *AddressError) Unwrap() error { return e.Err }

// Is makes every AddressError match ErrInvalidAddress.
func (e *AddressError) Is(target error) bool { return target == ErrInvalidAddress }

// Normalize returns the comparison form of one address: display names,
// comments, angle brackets and quoting removed, the domain lower-cased (with a
// trailing dot dropped) and the local part lower-cased unless
// caseSensitiveLocal. It accepts anything RFC 5322 calls a mailbox, so
// "Bob <BOB@Example.ORG>" and "bob@example.org" normalize alike.
func Normalize(addr string, caseSensitiveLocal bool) (string, error) {
	if plainSpec(addr) {
		return normalizeSpec(addr, caseSensitiveLocal)
	}
	a, err := mail.ParseAddress(addr)
	if err != nil {
		return "", err
	}
	return normalizeSpec(a.Address, caseSensitiveLocal)
}

// plainSpec reports whether s is a bare addr-spec of the plainest kind, which mail.ParseAddress
// returns unchanged as the address: a local part of ASCII letters, digits, '.', '_', '+' and '-',
// an '@', a domain of ASCII letters, digits, '.' and '-', neither part empty nor starting or
// ending with a dot nor holding two dots in a row. Nearly every envelope path and certificate
// owner is one; everything else is parsed by net/mail.
func plainSpec(s string) bool {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return false
	}
	return dotAtom(s[:at], true) && dotAtom(s[at+1:], false)
}

// parseAddressList is mail.ParseAddressList, without running its parser for a list of plain
// addr-specs (plainSpec) separated by commas and spaces, the usual To and Cc, which it reads
// as those addresses with no names.
func parseAddressList(v string) ([]*mail.Address, error) {
	n := strings.Count(v, ",") + 1
	list := make([]*mail.Address, 0, n)
	for piece := range strings.SplitSeq(v, ",") {
		spec := strings.Trim(piece, " \t")
		if !plainSpec(spec) {
			return mail.ParseAddressList(v)
		}
		list = append(list, &mail.Address{Address: spec})
	}
	return list, nil
}

func dotAtom(s string, local bool) bool {
	if s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-':
		case local && (c == '_' || c == '+'):
		default:
			return false
		}
	}
	return true
}

// normalizeSpec normalizes an unquoted addr-spec as net/mail returns it. The
// last '@' separates the domain because a quoted local part may contain '@'.
func normalizeSpec(spec string, caseSensitiveLocal bool) (string, error) {
	at := strings.LastIndexByte(spec, '@')
	if at <= 0 || at == len(spec)-1 {
		return "", fmt.Errorf("missing local part or domain in %q", spec)
	}
	local, domain := spec[:at], strings.TrimSuffix(strings.ToLower(spec[at+1:]), ".")
	if domain == "" {
		return "", fmt.Errorf("empty domain in %q", spec)
	}
	if !caseSensitiveLocal {
		local = strings.ToLower(local)
	}
	if local == spec[:at] && domain == spec[at+1:] {
		return spec, nil // already in normal form
	}
	return local + "@" + domain, nil
}

// addr is one parsed address: Spec as written (unquoted, for headers we
// write), Norm for comparisons.
type addr struct {
	Spec string
	Norm string
}

// parseField parses every instance of an address field. go-message's
// Header.AddressList reads only the first instance, which would let a second
// To or Bcc field slip past; group syntax is handled by net/mail.
func parseField(h *textproto.Header, key string, caseSensitive bool) ([]addr, error) {
	var out []addr
	for _, v := range h.Values(key) {
		if strings.TrimSpace(v) == "" {
			continue
		}
		list, err := parseAddressList(v)
		if err != nil {
			return nil, &AddressError{Field: key, Value: v, Err: err}
		}
		for _, a := range list {
			n, err := normalizeSpec(a.Address, caseSensitive)
			if err != nil {
				return nil, &AddressError{Field: key, Value: v, Err: err}
			}
			out = append(out, addr{Spec: a.Address, Norm: n})
		}
	}
	return out, nil
}

// normalizeEnvelope normalizes an SMTP path (with or without angle brackets).
func normalizeEnvelope(field, path string, caseSensitive bool) (string, error) {
	a, err := parseEnvelope(field, path, caseSensitive)
	return a.Norm, err
}

func parseEnvelope(field, path string, caseSensitive bool) (addr, error) {
	p := strings.TrimSpace(path)
	if strings.HasPrefix(p, "<") && strings.HasSuffix(p, ">") {
		p = p[1 : len(p)-1]
	}
	spec := p
	if !plainSpec(p) {
		a, err := mail.ParseAddress(p)
		if err != nil {
			return addr{}, &AddressError{Field: field, Value: path, Err: err}
		}
		spec = a.Address
	}
	n, err := normalizeSpec(spec, caseSensitive)
	if err != nil {
		return addr{}, &AddressError{Field: field, Value: path, Err: err}
	}
	return addr{Spec: spec, Norm: n}, nil
}

// Header fields, by role. Keys are canonical MIME header keys.
var (
	visibleFields = []string{"To", "Cc", "Resent-To", "Resent-Cc"}
	authorFields  = []string{"From", "Sender", "Resent-From", "Resent-Sender"}
	// replyFields carry addresses the sender chose, but make nobody visible: one naming a
	// hidden recipient is dropped from the packages of those who may not see them.
	replyFields  = []string{"Reply-To"}
	hiddenFields = []string{"Bcc", "Resent-Bcc"}
)

// headerAddrs is the parsed view of the fields that decide visibility.
type headerAddrs struct {
	// shown are the recipients whose receipt everyone sees: To and Cc, or
	// for resent mail the newest Resent- block's Resent-To and Resent-Cc.
	shown map[string]bool
	// base is every address all packages may name: every address field but
	// Bcc and Resent-Bcc, of the original header and every Resent- block.
	base   map[string]bool
	author map[string]bool // From, Sender, Resent- authors
	// bcc is what a fresh hidden-recipient field may list: Bcc, or for
	// resent mail the newest block's Resent-Bcc; in order, duplicates kept.
	bcc []addr
	// allBcc is every address of every Bcc and Resent-Bcc field.
	allBcc []addr
	// bccKey names the fresh field, and bccAt is the index of the field
	// it takes the place of (-1: it goes last).
	bccKey string
	bccAt  int
}

// resentBlock is one Resent- block (RFC 5322 section 3.6.6): each resend
// prepends one, so the first from the top is the newest. A block runs over
// consecutive Resent- fields (trace fields may sit between them) and ends at
// any other field or at a second field of a name it already has.
func resentBlocks(h *textproto.Header) [][]int {
	var blocks [][]int
	var cur []int
	have := map[string]bool{}
	i := 0
	for it := h.Fields(); it.Next(); i++ {
		k := canonicalKey(it.Key())
		switch {
		case strings.HasPrefix(k, "Resent-"):
			if cur == nil || have[k] {
				if cur != nil {
					blocks = append(blocks, cur)
				}
				cur, have = nil, map[string]bool{}
			}
			cur = append(cur, i)
			have[k] = true
		case k == "Received" || k == "Return-Path":
		default:
			if cur != nil {
				blocks = append(blocks, cur)
				cur = nil
			}
		}
	}
	if cur != nil {
		blocks = append(blocks, cur)
	}
	return blocks
}

func parseHeader(h *textproto.Header, caseSensitive bool) (*headerAddrs, error) {
	ha := &headerAddrs{shown: map[string]bool{}, base: map[string]bool{}, author: map[string]bool{}, bccKey: "Bcc", bccAt: -1}
	blocks := resentBlocks(h)
	newest := map[int]bool{}
	if len(blocks) > 0 {
		for _, i := range blocks[0] {
			newest[i] = true
		}
		ha.bccKey, ha.bccAt = "Resent-Bcc", blocks[0][0]
	}
	i := 0
	for it := h.Fields(); it.Next(); i++ {
		k := canonicalKey(it.Key())
		var role string
		switch {
		case k == "To" || k == "Cc":
			role = "to"
		case k == "Resent-To" || k == "Resent-Cc":
			role = "resent-to"
		case k == "Bcc" || k == "Resent-Bcc":
			role = "bcc"
		case k == "From" || k == "Sender" || k == "Resent-From" || k == "Resent-Sender":
			role = "author"
		default:
			continue
		}
		v := it.Value()
		if strings.TrimSpace(v) == "" {
			continue
		}
		list, err := parseAddressList(v)
		if err != nil {
			return nil, &AddressError{Field: k, Value: v, Err: err}
		}
		for _, a := range list {
			n, err := normalizeSpec(a.Address, caseSensitive)
			if err != nil {
				return nil, &AddressError{Field: k, Value: v, Err: err}
			}
			ad := addr{Spec: a.Address, Norm: n}
			switch role {
			case "to":
				ha.base[n] = true
				if len(blocks) == 0 {
					ha.shown[n] = true
				}
			case "resent-to":
				ha.base[n] = true
				if newest[i] {
					ha.shown[n] = true
				}
			case "author":
				ha.base[n] = true
				ha.author[n] = true
			case "bcc":
				ha.allBcc = append(ha.allBcc, ad)
				if (len(blocks) == 0 && k == "Bcc") || newest[i] {
					ha.bcc = append(ha.bcc, ad)
				}
			}
		}
		if role == "bcc" && len(blocks) == 0 && k == "Bcc" && ha.bccAt < 0 {
			ha.bccAt = i
		}
	}
	return ha, nil
}
