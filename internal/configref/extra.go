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
	"SMTPSecurity.MaxConnectionsPerIP":   `Concurrent connections from one address outside trusted_networks.`,
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
	"SMTPSecurity.IdleTimeout":           `Idle time allowed per read of the connection, DATA included.`,
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

	"HSMHealth.WaitForToken": `Start serve even when a configured token is not present (a card not yet
inserted, a network HSM not yet up) and wait for it: mail is accepted (or refused with 451 4.3.0
under require_up) and sealed once it appears. Off, a token label that matches no token of the
module stops the start with the label named, so a mistyped label is found at once.`,
	"HSMHealth.ContentToken": `With [[token]] entries: the token that makes content keys; may be left
out when one token has role content.`,
	"HSMHealth.ContentFallback": `With [[token]] entries: a second token with role content that makes
content keys while content_token is unavailable.`,
	"Token": `[[token]]: one of several tokens (instead of module, token and PIN in [hsm]). Each
sender's and list's key URI picks its token by its token attributes. Start refuses a token lacking
a mechanism its roles need.`,
	"Token.Name":    `What the logs and ` + "`keys -token`" + ` call the token.`,
	"Token.Module":  `The PKCS#11 library reaching the token (p11-kit-client.so for a remote one).`,
	"Token.URI":     `Selects the token: token= (label) or serial=, optionally manufacturer= and model=.`,
	"Token.PINFile": `A file holding the token's user PIN (mode 0600). Exactly one of pin_file and pin_env.`,
	"Token.PINEnv":  `The environment variable holding the token's user PIN.`,
	"Token.Roles": `sign: senders' and lists' keys; content: content keys, encryption and key wrapping
(a list's token needs both).`,
	"Token.Standby": `Another [[token]] holding the same keys and every role of this one: while this
token is down its work goes there, and comes back when it is up. Give the pair two modules: tokens of
one module share its initialisation, and a token that went away may then come back only at a
restart (check-config warns of a pair on one module).`,
	"Token.MaxSessions": `PKCS#11 sessions to open on this token.
Value: integer 2..1024, default hsm.max_sessions`,

	"SMTPLoad.MaxConnections": `All connections together; one more gets 421 4.7.0 and is closed at
once. Bounds descriptors and memory.`,
	"SMTPLoad.MaxConnectionsPerTrustedIP": `Connections from one address of trusted_networks
(max_connections_per_ip is for the others).
Value: integer, default max_connections`,
	"SMTPLoad.ReservedTrustedConnections": `Slots of max_connections only trusted networks may take.`,
	"SMTPLoad.StressConnections": `From this many connections on, reads get stress_idle_timeout and
longer waits are cut short.
Value: integer, default 3/4 of max_connections`,
	"SMTPLoad.StressIdleTimeout":   `Idle time per read under stress.`,
	"SMTPLoad.MinTransferBytes":    `Least a client that has begun a command or message must send per min_transfer_interval; below it 421 4.4.2 (0: off).`,
	"SMTPLoad.MinTransferInterval": `The window of min_transfer_bytes (time spent waiting for the client).`,
	"SMTPLoad.ShedSpoolMessages":   `Unfinished messages in the spool past which new MAIL gets 451 4.3.2 (0: off).`,
	"SMTPLoad.ShedSpoolBytes":      `Bytes in the spool past which new MAIL gets 451 4.3.2 (0: off).`,
	"SMTPLoad.ShedMemoryBytes":     `Go heap in use past which new MAIL gets 451 4.3.2 (0: off).`,
	"SMTPLoad.ShedHSMBacklog":      `Messages waiting to be sealed past which new MAIL gets 451 4.3.2 (0: off).`,
}
