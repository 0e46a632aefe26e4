package config

import (
	"fmt"
	"strings"
	"time"
)

// InitAnswers are what `appliance init` asked: the token, the listener and next hop, the spool,
// the directory and the senders.
type InitAnswers struct {
	Path                   string // where the file goes, named in its check-config comment
	Module, Token, PINFile string
	Listen, Hostname       string
	NextHop, Spool         string
	Certs, Roots           string
	Senders                []InitSender
	Date                   time.Time
}

// InitSender is one [[sender]]: its address, key URI and certificate chain file.
type InitSender struct{ Address, Key, Cert string }

// InitFile is the commented configuration `appliance init` writes for a.
func InitFile(a InitAnswers) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by appliance init on %s. Every key is described by `+"`appliance help config`"+`;
# deploy/appliance.toml shows all of them. Check this file with:
#   appliance check-config -connect -config %s

# The PKCS#11 module and token that hold the private keys; the PIN is in pin_file (mode 0600).
[hsm]
module = %q
token = %q
pin_file = %q

# The SMTP listener: with Postfix as content_filter, Postfix hands mail over here.
[smtp]
listen = %q
hostname = %q

# Where every package goes: Postfix's re-injection listener, or a smarthost.
[relay]
next_hop = %q

# Messages are on disk here before the client gets 250.
[spool]
dir = %q

# Recipient certificates (PEM or DER, any names) and the trust anchors they must chain to.
[directory]
certs = %q
roots = %q
`, a.Date.UTC().Format(time.DateOnly), a.Path, a.Module, a.Token, a.PINFile, a.Listen, a.Hostname, a.NextHop, a.Spool, a.Certs, a.Roots)
	for _, s := range a.Senders {
		fmt.Fprintf(&b, "\n# Mail from %s is signed with this key; the certificate chain is leaf first.\n[[sender]]\naddress = %q\nkey = %q\ncert = %q\n", s.Address, s.Address, s.Key, s.Cert)
	}
	return []byte(b.String())
}
