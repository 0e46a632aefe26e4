package smtpfront

import (
	"fmt"
	"net/netip"
	"strings"
)

// RFC 5321 section 4.5.3.1 size limits.
const (
	maxLocalPart = 64
	maxDomain    = 255
	maxPath      = 254 // 256 for the path minus the angle brackets
)

// checkMailbox reports whether addr, as go-smtp handed it over (brackets
// and quotes removed), is a plain ASCII addr-spec: a dot-atom local part
// and a domain of LDH labels or an address literal. go-smtp's own grammar
// only splits at the first '@' and accepts anything up to '>' as the
// domain, so "a@b@c" or "a@exa_mple" reach the session. The appliance
// does not advertise SMTPUTF8, so non-ASCII is a syntax error too.
func checkMailbox(addr string) error {
	if len(addr) > maxPath {
		return fmt.Errorf("failed to parse address %q: longer than %d octets: %w", addr, maxPath, ErrBadAddress)
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return fmt.Errorf("failed to parse address %q: want local@domain: %w", addr, ErrBadAddress)
	}
	local, domain := addr[:at], addr[at+1:]
	if err := checkLocalPart(local); err != nil {
		return fmt.Errorf("failed to parse address %q: %v: %w", addr, err, ErrBadAddress)
	}
	if err := checkDomain(domain); err != nil {
		return fmt.Errorf("failed to parse address %q: %v: %w", addr, err, ErrBadAddress)
	}
	return nil
}

func checkLocalPart(s string) error {
	if len(s) > maxLocalPart {
		return fmt.Errorf("local part longer than %d octets", maxLocalPart)
	}
	for _, atom := range strings.Split(s, ".") {
		if atom == "" {
			return fmt.Errorf("empty atom in local part")
		}
		for i := 0; i < len(atom); i++ {
			if !isAtext(atom[i]) {
				return fmt.Errorf("invalid character %q in local part", atom[i])
			}
		}
	}
	return nil
}

// isAtext is RFC 5322 atext (ASCII only).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func checkDomain(s string) error {
	if len(s) > maxDomain {
		return fmt.Errorf("domain longer than %d octets", maxDomain)
	}
	if strings.HasPrefix(s, "[") {
		return checkAddressLiteral(s)
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("invalid domain label length")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("domain label starts or ends with a hyphen")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("invalid character %q in domain", c)
			}
		}
	}
	return nil
}

func checkAddressLiteral(s string) error {
	if !strings.HasSuffix(s, "]") {
		return fmt.Errorf("unterminated address literal")
	}
	inner := s[1 : len(s)-1]
	if v6, ok := strings.CutPrefix(inner, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Errorf("invalid IPv6 address literal")
		}
		return nil
	}
	a, err := netip.ParseAddr(inner)
	if err != nil || !a.Is4() {
		return fmt.Errorf("invalid IPv4 address literal")
	}
	return nil
}

// canonicalAddress folds the domain to lower case: domains are
// case-insensitive, local parts are not (RFC 5321 section 2.4), and the
// policy and the envelope should see one spelling per recipient.
func canonicalAddress(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	return addr[:at+1] + strings.ToLower(addr[at+1:])
}
