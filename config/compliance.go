package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// A DKIM signing key: one entry per domain and selector. Packages are signed with every key of
// their From domain (or of its nearest parent domain with keys, or else of the Sender's domain),
// relaxed/relaxed; the algorithm
// follows the key: rsa-sha256 for RSA (2048 bits recommended), ed25519-sha256 for Ed25519.
// `appliance keys dkim-record -domain D` prints the DNS record to publish.
type DKIM struct {
	// The signing domain (the d= tag); the key is published at SELECTOR._domainkey.DOMAIN.
	// Value: domain, required
	// Example: "example.test"
	Domain string `toml:"domain"`
	// The selector (the s= tag).
	// Value: DNS label, required
	// Example: "appliance1"
	Selector string `toml:"selector"`
	// The domain's key on the token.
	// Value: PKCS#11 URI, required
	// Example: "pkcs11:token=appliance;object=dkim-example"
	Key string `toml:"key"`
}

// The tamper-evident audit trail: one record per accepted message, per package sealed and per
// delivery outcome, each chained to the one before by its SHA-256; files rotate by size and age
// and each closed file ends with its head signed by key. `appliance audit verify` checks it.
type Audit struct {
	// The trail's directory (files audit-NNNNNN.log); empty keeps no trail.
	// Value: path; off while empty
	// Example: "/var/lib/appliance/audit"
	Dir string `toml:"dir"`
	// A file is closed and the next started before it would grow past this size.
	// Value: bytes, at least 4096
	// Example: 67108864
	MaxBytes int64 `toml:"max_bytes"`
	// A file is closed at the first record written after it is this old.
	// Value: duration, at least 1m
	// Example: "24h"
	MaxAge time.Duration `toml:"max_age"`
	// The key that signs each file's head when the file is closed; without it the seals are
	// unsigned, and `audit verify -require-signed` refuses them.
	// Value: PKCS#11 URI
	// Example: "pkcs11:token=appliance;object=audit"
	Key string `toml:"key"`
}

// The journal: for every message, one extra package to the journal address alone, holding the
// original message and an envelope report (every recipient with its kind, Bcc included, and
// which package each got), signed with the journal sender's key and encrypted to the journal
// certificates alone.
type Journal struct {
	// The journal address: the journal package's only recipient; empty keeps no journal.
	// Value: address; off while empty
	// Example: "journal@example.test"
	Address string `toml:"address"`
	// The journal certificates (PEM, one or more per file): every RecipientInfo of the journal
	// package, one per officer who may read it.
	// Value: array of paths, required with address
	// Example: ["/etc/appliance/journal/officer1.pem"]
	Certs []string `toml:"certs"`
	// The [[sender]] whose key signs the journal package; its address is the journal package's
	// MAIL FROM and From (never the original sender's).
	// Value: address of a [[sender]], required with address
	// Example: "journal-sender@example.test"
	Sender string `toml:"sender"`
	// Whether a message waits for its journal: "nowait" delivers its packages beside the journal
	// package, which is retried like any package when it cannot be delivered. "wait" sends none
	// of the message's packages before the next hop has accepted the journal package (the hold
	// is kept in the spool and survives a restart); if the journal package fails or expires,
	// the message's packages are never sent and the sender gets a DSN saying the journal copy
	// could not be delivered (naming neither the journal address nor its recipients).
	// Value: "nowait" (default) or "wait"
	// Example: "nowait"
	Policy string `toml:"policy"`
}

// Journal policies.
const (
	JournalWait   = "wait"
	JournalNoWait = "nowait"
)

// Enabled reports whether a journal is configured.
func (j Journal) Enabled() bool { return j.Address != "" }

// Enabled reports whether an audit trail is configured.
func (a Audit) Enabled() bool { return a.Dir != "" }

var dkimSelector = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// DKIMKeys returns the [[dkim]] entries of domain (case-insensitive).
func (c *Config) DKIMKeys(domain string) []DKIM {
	var out []DKIM
	for _, d := range c.DKIM {
		if strings.EqualFold(strings.TrimSuffix(d.Domain, "."), strings.TrimSuffix(domain, ".")) {
			out = append(out, d)
		}
	}
	return out
}

func (c *Config) resolveCompliance(abs func(*string)) {
	abs(&c.Audit.Dir)
	for i := range c.Journal.Certs {
		abs(&c.Journal.Certs[i])
	}
}

func (c *Config) validateCompliance(v *validator) {
	seen := map[string]int{}
	for i := range c.DKIM {
		d := &c.DKIM[i]
		k := fmt.Sprintf("dkim[%d]", i)
		d.Domain = strings.ToLower(strings.TrimSuffix(d.Domain, "."))
		switch {
		case d.Domain == "":
			v.add(k+".domain", ErrMissing, "the signing domain")
		case !dkimSelector.MatchString(d.Domain) || !strings.Contains(d.Domain, "."):
			v.add(k+".domain", ErrInvalid, "%q is not a domain name", d.Domain)
		}
		switch {
		case d.Selector == "":
			v.add(k+".selector", ErrMissing, "the selector, a DNS label like \"appliance1\"")
		case !dkimSelector.MatchString(d.Selector):
			v.add(k+".selector", ErrInvalid, "%q is not a DNS label", d.Selector)
		}
		id := d.Domain + " " + strings.ToLower(d.Selector)
		if j, dup := seen[id]; dup {
			v.add(k+".selector", ErrDuplicate, "domain %q selector %q is already dkim[%d]", d.Domain, d.Selector, j)
		}
		seen[id] = i
		if d.Key == "" {
			v.add(k+".key", ErrMissing, "a PKCS#11 URI of the domain's key, like \"pkcs11:token=appliance;object=dkim\"")
		} else if err := c.checkKeyURI(d.Key); err != nil {
			v.add(k+".key", ErrInvalid, "%q: %v", d.Key, err)
		}
	}
	c.validateJournal(v)
	a := &c.Audit
	if !a.Enabled() {
		if a.MaxBytes != 0 || a.MaxAge != 0 || a.Key != "" {
			v.add("audit.dir", ErrMissing, "audit keys are set but dir is empty, so no trail is kept")
		}
		return
	}
	if a.MaxBytes == 0 {
		a.MaxBytes = 64 << 20
	} else if a.MaxBytes < 4096 {
		v.add("audit.max_bytes", ErrInvalid, "%d: at least 4096", a.MaxBytes)
	}
	if a.MaxAge == 0 {
		a.MaxAge = 24 * time.Hour
	} else if a.MaxAge < time.Minute {
		v.add("audit.max_age", ErrInvalid, "%v: at least 1m", a.MaxAge)
	}
	if a.Key != "" {
		if err := c.checkKeyURI(a.Key); err != nil {
			v.add("audit.key", ErrInvalid, "%q: %v", a.Key, err)
		}
	}
}

func (c *Config) validateJournal(v *validator) {
	j := &c.Journal
	if !j.Enabled() {
		if len(j.Certs) > 0 || j.Sender != "" || j.Policy != "" {
			v.add("journal.address", ErrMissing, "journal keys are set but address is empty, so nothing is journaled")
		}
		return
	}
	if canon, err := canonicalAddress(j.Address); err != nil {
		v.add("journal.address", ErrInvalid, "%q: %v", j.Address, err)
	} else {
		j.Address = canon
		if _, ok := c.Sender(canon); ok {
			v.add("journal.address", ErrConflict, "%q is also a [[sender]]", canon)
		}
		for i, l := range c.Lists {
			if foldAddress(l.Address) == foldAddress(canon) {
				v.add("journal.address", ErrConflict, "%q is also list[%d]", canon, i)
			}
		}
	}
	if len(j.Certs) == 0 {
		v.add("journal.certs", ErrMissing, "at least one journal certificate file")
	}
	for i, f := range j.Certs {
		if f == "" {
			v.add("journal.certs", ErrInvalid, "entry %d is empty", i+1)
		}
	}
	if j.Sender == "" {
		v.add("journal.sender", ErrMissing, "the [[sender]] whose key signs the journal")
	} else if _, ok := c.Sender(j.Sender); !ok {
		v.add("journal.sender", ErrInvalid, "%q is not a [[sender]]", j.Sender)
	}
	if j.Policy == "" {
		j.Policy = JournalNoWait
	}
	oneOf(v, "journal.policy", j.Policy, JournalWait, JournalNoWait)
}
