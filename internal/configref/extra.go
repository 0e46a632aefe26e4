package configref

// extraDocs describe fields of config/hsm_ext.go and config/smtp_ext.go for operators, keyed
// "Type.Field" (or "Type" for a table's introduction), in place of their doc comments, which
// are written for readers of the code. A field added there without an entry here is described
// by its doc comment.
var extraDocs = map[string]string{
	"HSMHealth.RequireUp": `Answer 451 4.3.0 at MAIL while the token is unavailable. Off, mail is
accepted while the spool has room and sealed when the token is back.`,
	"HSMHealth.ReconnectMax": `The longest wait between reconnection attempts after the token was
lost (100ms..10m).
Value: duration, default "30s"
Example: "30s"`,

	"SMTPSecurity.ListenTLS": `A second listener speaking TLS from the first byte (port 465 style);
needs tls_cert and tls_key.
Value: host:port
Example: ":465"`,
	"SMTPSecurity.RequireTLSForAuth":     `Offer AUTH only on encrypted connections.`,
	"SMTPSecurity.MaxConnectionsPerIP":   `Concurrent connections from one address.`,
	"SMTPSecurity.MaxCommandsBeforeMail": `Commands a client may send before MAIL.`,
	"SMTPSecurity.MaxAuthFailures":       `Failed AUTH attempts per connection before it is closed.`,
	"SMTPSecurity.AuthFailureDelay":      `Wait before answering a failed AUTH.`,
	"SMTPSecurity.MaxAuthFailuresPerIP":  `Failed AUTH attempts from one address before it is locked out.`,
	"SMTPSecurity.AuthLockout":           `How long such an address is locked out.`,
	"SMTPSecurity.MaxLineLength":         `Longest command or DATA line.`,
	"SMTPSecurity.MaxHeaderBytes":        `Largest message header.`,
	"SMTPSecurity.MaxHeaderFields":       `Most header fields in a message.`,
	"SMTPSecurity.MaxMIMEDepth":          `Deepest MIME nesting accepted.`,
	"SMTPSecurity.MaxMIMEParts":          `Most MIME parts accepted.`,
	"SMTPSecurity.IdleTimeout":           `Idle time allowed per command or DATA read.`,
	"SMTPSecurity.DataTimeout":           `Time allowed for a whole DATA phase.`,
	"SMTPSecurity.SessionTimeout":        `Time allowed for a whole connection.`,

	"TrustedNetwork": `Clients in a network that may send without AUTH, and as whom. Absent:
loopback is trusted for every [[sender]] (the Postfix setups); trusted_networks = [] trusts no
network.`,
	"TrustedNetwork.CIDR": `The network.
Value: CIDR or address, required
Example: "10.1.0.0/16"`,
	"TrustedNetwork.Senders": `The addresses its clients may send as: an address, "@domain", or "*"
for every configured sender.
Value: array of strings, required
Example: ["@example.test"]`,
}
