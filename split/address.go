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
	a, err := mail.ParseAddress(addr)
	if err != nil {
		return "", err
	}
	return normalizeSpec(a.Address, caseSensitiveLocal)
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
		list, err := mail.ParseAddressList(v)
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
	a, err := mail.ParseAddress(p)
	if err != nil {
		return addr{}, &AddressError{Field: field, Value: path, Err: err}
	}
	n, err := normalizeSpec(a.Address, caseSensitive)
	if err != nil {
		return addr{}, &AddressError{Field: field, Value: path, Err: err}
	}
	return addr{Spec: a.Address, Norm: n}, nil
}

// Header fields, by role. Keys are canonical MIME header keys.
var (
	visibleFields = []string{"To", "Cc", "Resent-To", "Resent-Cc"}
	authorFields  = []string{"From", "Sender", "Reply-To", "Resent-From", "Resent-Sender"}
	hiddenFields  = []string{"Bcc", "Resent-Bcc"}
	// traceFields name envelope recipients of some earlier hop; any of them
	// can name a hidden recipient, and none is meaningful to the next hop.
	traceFields = []string{
		"X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-To",
		"X-Rcpt-To", "X-Real-To", "Apparently-To", "X-Apparently-To",
		"X-Forwarded-To", "X-Envelope-Recipient", "Original-Recipient",
		"X-Original-Recipient",
	}
)

// headerAddrs is the parsed view of the fields that decide visibility.
type headerAddrs struct {
	visible map[string]bool // To ∪ Cc
	author  map[string]bool // From, Sender, Reply-To, Resent- authors
	bcc     []addr          // Bcc ∪ Resent-Bcc, in order, duplicates kept
}

func parseHeader(h *textproto.Header, caseSensitive bool) (*headerAddrs, error) {
	ha := &headerAddrs{visible: map[string]bool{}, author: map[string]bool{}}
	for _, f := range visibleFields {
		l, err := parseField(h, f, caseSensitive)
		if err != nil {
			return nil, err
		}
		for _, a := range l {
			ha.visible[a.Norm] = true
		}
	}
	for _, f := range authorFields {
		l, err := parseField(h, f, caseSensitive)
		if err != nil {
			return nil, err
		}
		for _, a := range l {
			ha.author[a.Norm] = true
		}
	}
	for _, f := range hiddenFields {
		l, err := parseField(h, f, caseSensitive)
		if err != nil {
			return nil, err
		}
		ha.bcc = append(ha.bcc, l...)
	}
	return ha, nil
}
