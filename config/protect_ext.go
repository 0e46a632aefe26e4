package config

import "strings"

// Values of [[policy.domain]] header_protection.
const (
	HeaderProtectionOn  = "on"
	HeaderProtectionOff = "off"
)

// HeaderProtectionDomains returns the domains whose [[policy.domain]] overrides
// policy.header_protection, lower case, with whether they have it on.
func (p Policy) HeaderProtectionDomains() map[string]bool {
	m := map[string]bool{}
	for _, d := range p.Domains {
		if d.HeaderProtection != "" {
			m[strings.ToLower(d.Domain)] = d.HeaderProtection == HeaderProtectionOn
		}
	}
	return m
}
