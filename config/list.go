package config

import (
	"fmt"
)

// A secure mailing list the appliance expands itself (RFC 2634 mail list agent); mail encrypted
// to the list is re-wrapped for each member on the HSM, never decrypted.
type List struct {
	// The list address.
	// Value: address, required
	// Example: "team@example.test"
	Address string `toml:"address"`
	// The list's key pair: RSA (CKA_UNWRAP and CKA_SIGN) or EC P-256 (CKA_DERIVE and CKA_SIGN;
	// `keys generate -type p256` makes one). Posts to a P-256 list are encrypted to it by key
	// agreement (ECDH), and the list signs with ECDSA.
	// Value: PKCS#11 URI, required
	// Example: "pkcs11:token=appliance;object=team"
	Key string `toml:"key"`
	// The list's certificate chain, leaf first. A P-256 certificate's key usage, when present,
	// must allow keyAgreement and digitalSignature.
	// Value: path, required
	// Example: "/etc/appliance/lists/team.pem"
	Cert string `toml:"cert"`
	// One member address per line; SIGHUP rereads it.
	// Value: path, required
	// Example: "/etc/appliance/lists/team.members"
	MembersFile string `toml:"members_file"`
	// Who may post.
	// Value: "members" (default), "anyone" or an array of addresses
	// Example: "members"
	Posters Posters `toml:"posters"`
}

// Who may post to a list, as posters spells it.
const (
	PostersMembers = "members"
	PostersAnyone  = "anyone"
)

// Posters is the posters key: either a word (PostersMembers, the default, or PostersAnyone) in
// Kind, or a list of addresses in Addresses, never both.
type Posters struct {
	Kind      string
	Addresses []string
}

// UnmarshalTOML reads a string or an array of strings.
func (p *Posters) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		p.Kind = v
		return nil
	case []any:
		p.Addresses = make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("posters: %v is not a string", e)
			}
			p.Addresses = append(p.Addresses, s)
		}
		return nil
	}
	return fmt.Errorf("posters: want %q, %q or a list of addresses, not %T", PostersMembers, PostersAnyone, v)
}

// resolveLists makes the lists' paths absolute, as resolve does for the rest.
func (c *Config) resolveLists(abs func(*string)) {
	for i := range c.Lists {
		abs(&c.Lists[i].Cert)
		abs(&c.Lists[i].MembersFile)
	}
}

func (c *Config) validateLists(v *validator) {
	senders := map[string]bool{}
	for _, s := range c.Senders {
		senders[foldAddress(s.Address)] = true
	}
	seen := map[string]int{}
	for i := range c.Lists {
		l := &c.Lists[i]
		k := fmt.Sprintf("list[%d]", i)
		if l.Address == "" {
			v.add(k+".address", ErrMissing, "the list's address")
		} else if canon, err := canonicalAddress(l.Address); err != nil {
			v.add(k+".address", ErrInvalid, "%q: %v", l.Address, err)
		} else {
			l.Address = canon
			f := foldAddress(canon)
			if j, dup := seen[f]; dup {
				v.add(k+".address", ErrDuplicate, "%q is already configured in list[%d]", canon, j)
			}
			seen[f] = i
			if senders[f] {
				// Mail from a sender is sealed; mail to a list is expanded: one address cannot be both.
				v.add(k+".address", ErrConflict, "%q is also a [[sender]]", canon)
			}
		}
		if l.Key == "" {
			v.add(k+".key", ErrMissing, "a PKCS#11 URI of the list's RSA or P-256 key, like \"pkcs11:token=appliance;object=list\"")
		} else if err := c.checkKeyURI(l.Key); err != nil {
			v.add(k+".key", ErrInvalid, "%q: %v", l.Key, err)
		}
		required(v, k+".cert", l.Cert)
		required(v, k+".members_file", l.MembersFile)
		p := &l.Posters
		switch {
		case p.Kind == "" && p.Addresses == nil:
			p.Kind = PostersMembers
		case p.Addresses != nil && len(p.Addresses) == 0:
			v.add(k+".posters", ErrInvalid, "an empty list admits nobody; give addresses, %q or %q", PostersMembers, PostersAnyone)
		case p.Addresses == nil:
			oneOf(v, k+".posters", p.Kind, PostersMembers, PostersAnyone)
		}
		for j, a := range p.Addresses {
			canon, err := canonicalAddress(a)
			if err != nil {
				v.add(k+".posters", ErrInvalid, "entry %d %q: %v", j+1, a, err)
				continue
			}
			p.Addresses[j] = canon
		}
	}
}
