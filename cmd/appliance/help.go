package main

// `appliance help config`: every configuration key, man-page style. The text lives here, next
// to the commands, and help_test.go fails when a key of config.Config is missing from it or from
// deploy/appliance.toml, so neither can drift from the code.

import (
	"fmt"
	"io"
	"strings"
)

type helpKey struct {
	name  string // as written in the file, inside its table
	value string // type, default
	text  string
}

type helpSection struct {
	table string // "hsm", "[sender]" for an array of tables
	intro string
	keys  []helpKey
}

var configHelp = []helpSection{
	{"hsm", "The PKCS#11 module and token that hold every private key. The PIN is never in this file.", []helpKey{
		{"module", "path, required", "The PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so. A bare file name is searched on the library path."},
		{"token", "string, required", "The token label."},
		{"pin_file", "path", "A file holding the user PIN (mode 0600, nothing readable by group or others). Exactly one of pin_file and pin_env."},
		{"pin_env", "string", "The environment variable holding the user PIN."},
		{"max_sessions", "integer 2..1024, default 8", "PKCS#11 sessions to open; one is kept by crypto11 for itself, so 2 means no parallelism."},
		{"require_up", "boolean, default false", "Answer 451 4.3.0 at MAIL while the token is unavailable. Off, mail is accepted while the spool has room and sealed when the token is back."},
		{"reconnect_max", "duration, default \"30s\"", "The longest wait between reconnection attempts after the token was lost (100ms..10m)."},
	}},
	{"smtp", "The submission listener: who may hand mail to the appliance, and how much a client may cost.", []helpKey{
		{"listen", "host:port, default \"127.0.0.1:2525\"", "The SMTP listener. With Postfix as content filter: 127.0.0.1:10025."},
		{"hostname", "host name, default the machine's", "The name in the greeting and in the Received field each package gets."},
		{"max_message_bytes", "integer, default 26214400", "The largest message accepted (552 5.3.4 above it); also advertised with SIZE."},
		{"max_recipients", "integer 1..100000, default 1000", "Recipients per transaction."},
		{"tls_cert", "path", "PEM certificate chain for STARTTLS (and listen_tls); goes with tls_key. SIGHUP rereads the pair."},
		{"tls_key", "path", "PEM private key for tls_cert."},
		{"require_auth", "boolean, default false", "Refuse MAIL before AUTH (530 5.7.0); needs users_file."},
		{"users_file", "path", "Users for AUTH PLAIN and LOGIN and the sender addresses each may use. SIGHUP rereads it."},
		{"listen_tls", "host:port", "A second listener speaking TLS from the first byte (port 465 style); needs tls_cert and tls_key."},
		{"require_tls_for_auth", "boolean, default true", "Offer AUTH only on encrypted connections."},
		{"max_connections_per_ip", "integer, default 50", "Concurrent connections from one address."},
		{"max_commands_before_mail", "integer, default 50", "Commands a client may send before MAIL."},
		{"max_auth_failures", "integer, default 3", "Failed AUTH attempts per connection before it is closed."},
		{"auth_failure_delay", "duration, default \"1s\"", "Wait before answering a failed AUTH."},
		{"max_auth_failures_per_ip", "integer, default 10", "Failed AUTH attempts from one address before it is locked out."},
		{"auth_lockout", "duration, default \"15m\"", "How long such an address is locked out."},
		{"max_line_length", "integer, default 2000", "Longest command or DATA line."},
		{"max_header_bytes", "integer, default 1048576", "Largest message header."},
		{"max_header_fields", "integer, default 1000", "Most header fields in a message."},
		{"max_mime_depth", "integer, default 20", "Deepest MIME nesting accepted."},
		{"max_mime_parts", "integer, default 1000", "Most MIME parts accepted."},
		{"idle_timeout", "duration, default \"5m\"", "Idle time allowed per command or DATA read."},
		{"data_timeout", "duration, default \"10m\"", "Time allowed for a whole DATA phase."},
		{"session_timeout", "duration, default \"30m\"", "Time allowed for a whole connection."},
	}},
	{"[smtp.trusted_networks]", "[[smtp.trusted_networks]]: clients in a network that may send without AUTH, and as whom. Absent: loopback is trusted for every [[sender]] (the Postfix setups); trusted_networks = [] trusts no network.", []helpKey{
		{"cidr", "CIDR or address, required", "The network, e.g. \"10.1.0.0/16\"."},
		{"senders", "array of strings, required", "The addresses its clients may send as: an address, \"@domain\", or \"*\" for every configured sender."},
	}},
	{"relay", "The outbound side.", []helpKey{
		{"next_hop", "host:port, required", "The smarthost every package goes to. With Postfix as content filter: its re-injection listener, 127.0.0.1:10026. MX lookup is not supported yet."},
	}},
	{"queue", "Delivery workers and retries.", []helpKey{
		{"workers", "integer 1..1024, default 4", "Messages worked on at once."},
		{"retry", "array of durations, default [\"1m\", \"5m\", \"15m\", \"1h\"]", "Waits before each further attempt after a temporary failure; the last repeats."},
		{"max_age", "duration, default \"120h\"", "How long a package may stay undelivered before it fails and the sender gets a DSN."},
	}},
	{"spool", "The durable store: every message is on disk (fsync'd) before the client gets 250.", []helpKey{
		{"dir", "path, required", "The spool directory, created if missing; one appliance process per directory."},
	}},
	{"directory", "Recipient certificates and trust anchors.", []helpKey{
		{"certs", "path, required", "A folder of recipient certificates (PEM or DER, any file names, bundles). SIGHUP rereads it."},
		{"roots", "path, required", "Trust anchors and intermediates for recipients and signers."},
		{"crls", "path", "A folder of CRLs (PEM or DER), checked when present."},
		{"case_sensitive_local_part", "boolean, default false", "Keep RFC 5321's case-sensitive local parts instead of folding them."},
		{"sources", "array of strings", "Where to look, in order: \"folder\", \"ldap\". Default: the folder, then LDAP when configured."},
		{"crl_url_prefixes", "array of URLs", "Fetch CRLs from distribution points starting with these http(s) prefixes."},
		{"crl_fetch_timeout", "duration", "Timeout of one CRL fetch."},
	}},
	{"directory.ldap", "An LDAP server to search for recipient certificates; off while url is empty.", []helpKey{
		{"url", "ldap:// or ldaps:// URL", "The server."},
		{"tls", "\"starttls\" or \"none\"", "For ldap:// only; default starttls. Leave unset for ldaps://."},
		{"ca_file", "path", "Verifies the server's certificate; default the system roots."},
		{"bind_dn", "string", "Bind as this DN (with bind_password_file); neither binds anonymously."},
		{"bind_password_file", "path", "The bind password."},
		{"base_dn", "string, required with url", "Where to search."},
		{"filter", "string, default \"(mail=%s)\"", "The search filter; %s is the address, escaped."},
		{"attributes", "array of strings", "Certificate attributes; default userCertificate;binary and userSMIMECertificate."},
		{"timeout", "duration, default \"5s\"", "Per search."},
		{"pool_size", "integer, default 4", "Connections kept open."},
		{"cache_ttl", "duration, default \"10m\"", "How long an answer is cached."},
		{"negative_ttl", "duration, default \"1m\"", "How long \"no certificate\" is cached."},
	}},
	{"policy", "How messages are split and sealed. The privacy rule holds under every setting: no package reveals a hidden recipient to anyone else.", []helpKey{
		{"bcc", "\"individual\" (default) or \"group\"", "Hidden (Bcc) recipients get a package each, or share one that names them to each other only."},
		{"missing_cert", "\"reject\" (default), \"plaintext\" or \"drop\"", "A recipient without a valid certificate: refused at RCPT (550 5.7.1), sent a signed-only package of its own, or dropped with a DSN to the sender."},
		{"profile", "\"compat\" (default) or \"modern\"", "compat: EnvelopedData, AES-256-CBC, RSA PKCS#1 v1.5 (read by OpenSSL, gpgsm, NSS, Outlook, Apple Mail). modern: AuthEnvelopedData, AES-256-GCM, RSA-OAEP (OpenSSL only)."},
		{"self_copy", "boolean, default true", "Add the sender's own certificate to every package, so the sender can read sent mail."},
		{"rid", "\"issuer_serial\" (default) or \"ski\"", "How RecipientInfos name certificates; gpgsm 2.2 reads only issuer_serial."},
		{"cert_choice", "\"all\" (default) or \"newest\"", "Which of a recipient's valid certificates get a RecipientInfo."},
		{"bcc_header", "\"strip\" (default) or \"own\"", "A submitted Bcc field is removed, or kept on a hidden recipient's own package naming only them."},
		{"unknown_recipientinfo", "\"drop\" (default) or \"reject\"", "A client-encrypted message with a RecipientInfo of nobody on the envelope: drop it from every package, or refuse the message."},
		{"passthrough_missing", "\"refuse\" (default) or \"deliver\"", "An envelope recipient of a client-encrypted message with no RecipientInfo in it: DSN, or deliver a package it cannot decrypt."},
		{"signed_over_encrypted", "\"refuse\" (default) or \"resign\"", "A client's envelope under the client's signature: refuse it (554 5.7.1), or split the envelope and sign each package again with the sender's key."},
	}},
	{"[policy.domain]", "[[policy.domain]]: per recipient domain, overrides profile and rid for that domain.", []helpKey{
		{"domain", "domain, required", "The recipient domain, matched exactly and case-insensitively."},
		{"profile", "\"compat\" or \"modern\"", "Overrides policy.profile."},
		{"rid", "\"issuer_serial\" or \"ski\"", "Overrides policy.rid."},
	}},
	{"log", "The daemon's log on stderr: one line per step with message and package ids, counts and durations, and an audit line per package (its envelope recipients and the owners of its RecipientInfos); never content or PINs.", []helpKey{
		{"format", "\"text\" (default) or \"json\"", "log/slog's text or JSON handler."},
		{"level", "\"debug\", \"info\" (default), \"warn\" or \"error\"", "The least severe level logged."},
	}},
	{"metrics", "Prometheus metrics, /healthz and /readyz on a listener of their own; off while listen is empty.", []helpKey{
		{"listen", "host:port", "E.g. \"127.0.0.1:9464\". /readyz is 503 while the HSM is down, the spool is not writable, or the next hop was not reachable recently; keep it off public networks."},
	}},
	{"[sender]", "[[sender]]: an address the appliance signs as, with its key on the token. Mail from any other address is refused.", []helpKey{
		{"address", "address, required", "The sender address (MAIL FROM and header From)."},
		{"key", "PKCS#11 URI, required", "The signing key, e.g. pkcs11:token=appliance;object=alice."},
		{"cert", "path, required", "The sender's certificate chain, leaf first."},
	}},
	{"[list]", "[[list]]: a secure mailing list the appliance expands itself (RFC 2634 mail list agent); mail encrypted to the list is re-wrapped for each member on the HSM, never decrypted.", []helpKey{
		{"address", "address, required", "The list address."},
		{"key", "PKCS#11 URI, required", "The list's RSA key (CKA_UNWRAP and CKA_SIGN)."},
		{"cert", "path, required", "The list's certificate chain, leaf first."},
		{"members_file", "path, required", "One member address per line; SIGHUP rereads it."},
		{"posters", "\"members\" (default), \"anyone\" or an array of addresses", "Who may post."},
	}},
}

const helpHeader = `APPLIANCE.TOML(5)

NAME
    appliance.toml - configuration of the appliance, an outbound S/MIME relay

SYNOPSIS
    appliance serve -config /etc/appliance/appliance.toml
    appliance check-config -config /etc/appliance/appliance.toml [-connect]

DESCRIPTION
    One TOML file. Unknown keys are errors; every error names the key and its line. Durations are
    strings ("30s", "5m", "2h"). Relative paths resolve against the file's directory. An annotated
    example with every key is deploy/appliance.toml.
`

const helpFooter = `
SIGNALS
    SIGHUP rereads the certificate directory, the users file, the TLS certificate and key, and list
    members (a file that fails to load leaves the previous one in force); SIGTERM stops accepting
    mail, lets work in flight finish for up to 20s and leaves the rest in the spool.

SEE ALSO
    appliance help, deploy/postfix/ (Postfix as content filter or relayhost), DESIGN.md
`

func writeConfigHelp(w io.Writer) {
	fmt.Fprint(w, helpHeader)
	for _, s := range configHelp {
		// "[sender]" names an array of tables, printed [[sender]] as in the file.
		fmt.Fprintf(w, "\n[%s]\n%s", s.table, wrap(s.intro, "    "))
		for _, k := range s.keys {
			fmt.Fprintf(w, "\n    %s (%s)\n%s", k.name, k.value, wrap(k.text, "        "))
		}
	}
	fmt.Fprint(w, helpFooter)
}

// wrap fills text to 100 columns with indent.
func wrap(text, indent string) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line)+1+len(word) > 100 && line != indent {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
	return b.String()
}

func runHelp(args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && args[0] == "config" {
		writeConfigHelp(stdout)
		return nil
	}
	fmt.Fprintln(stderr, "usage: appliance help [config]")
	return errUsage
}
