package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// SMTPSecurity is the part of [smtp] that decides who may submit and how
// much a client may cost: TLS, authentication, trusted networks and limits.
// It is embedded in [SMTP], so its keys sit directly in [smtp].
//
// Who may send as whom: an authenticated user as the addresses its line in
// users_file lists; an unauthenticated client only if its address is in a
// trusted network, as that network's senders; anyone else as nobody (530
// 5.7.0), so the appliance is never an open relay. When trusted_networks is
// absent, loopback is trusted for every configured [[sender]] (the
// content_filter setup: a local MTA hands mail over); trusted_networks = []
// trusts no network at all.
type SMTPSecurity struct {
	// ListenTLS is a second listener speaking TLS from the first byte
	// (port 465 style); it needs tls_cert and tls_key.
	ListenTLS string `toml:"listen_tls"`
	// RequireTLSForAuth hides AUTH until the connection is encrypted;
	// on by default.
	RequireTLSForAuth bool             `toml:"require_tls_for_auth"`
	TrustedNetworks   []TrustedNetwork `toml:"trusted_networks"`

	MaxConnectionsPerIP   int           `toml:"max_connections_per_ip"`
	MaxCommandsBeforeMail int           `toml:"max_commands_before_mail"`
	MaxAuthFailures       int           `toml:"max_auth_failures"`
	AuthFailureDelay      time.Duration `toml:"auth_failure_delay"`
	MaxAuthFailuresPerIP  int           `toml:"max_auth_failures_per_ip"`
	AuthLockout           time.Duration `toml:"auth_lockout"`
	MaxLineLength         int           `toml:"max_line_length"`
	MaxHeaderBytes        int           `toml:"max_header_bytes"`
	MaxHeaderFields       int           `toml:"max_header_fields"`
	MaxMIMEDepth          int           `toml:"max_mime_depth"`
	MaxMIMEParts          int           `toml:"max_mime_parts"`
	IdleTimeout           time.Duration `toml:"idle_timeout"`
	DataTimeout           time.Duration `toml:"data_timeout"`
	SessionTimeout        time.Duration `toml:"session_timeout"`

	SMTPLoad
}

// SMTPLoad is the part of [smtp] that keeps real mail flowing under
// hostile load: the global connection limit and its fairness, the minimum
// transfer rate, and the thresholds past which new MAIL is shed with 451
// 4.3.2. The README's "Limits under load" section gives the reason for
// each default.
type SMTPLoad struct {
	// MaxConnections bounds all connections, and so the descriptors the
	// front end holds.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerTrustedIP bounds one address of trusted_networks
	// (max_connections_per_ip is for the others); 0: max_connections.
	MaxConnectionsPerTrustedIP int `toml:"max_connections_per_trusted_ip"`
	// ReservedTrustedConnections of max_connections only trusted
	// networks may take.
	ReservedTrustedConnections int `toml:"reserved_trusted_connections"`
	// StressConnections open connections mean stress: idle reads get
	// stress_idle_timeout (or idle_timeout, if shorter); 0: three
	// quarters of max_connections.
	StressConnections int           `toml:"stress_connections"`
	StressIdleTimeout time.Duration `toml:"stress_idle_timeout"`
	// MinTransferBytes per MinTransferInterval of waiting is the least
	// a client that has begun a command or message must send.
	MinTransferBytes    int64         `toml:"min_transfer_bytes"`
	MinTransferInterval time.Duration `toml:"min_transfer_interval"`
	// Shedding thresholds; 0 turns one off.
	ShedSpoolMessages int   `toml:"shed_spool_messages"`
	ShedSpoolBytes    int64 `toml:"shed_spool_bytes"`
	ShedMemoryBytes   int64 `toml:"shed_memory_bytes"`
	ShedHSMBacklog    int   `toml:"shed_hsm_backlog"`
}

func defaultSMTPLoad() SMTPLoad {
	return SMTPLoad{
		MaxConnections:             500,
		ReservedTrustedConnections: 50,
		StressIdleTimeout:          10 * time.Second,
		MinTransferBytes:           5000,
		MinTransferInterval:        10 * time.Second,
		ShedSpoolMessages:          20000,
		ShedMemoryBytes:            1 << 30,
		ShedHSMBacklog:             1000,
	}
}

func (c *Config) validateSMTPLoad(v *validator) {
	s := &c.SMTP.SMTPLoad
	intRange(v, "smtp.max_connections", int64(s.MaxConnections), 1, 100000)
	intRange(v, "smtp.max_connections_per_trusted_ip", int64(s.MaxConnectionsPerTrustedIP), 0, 100000)
	intRange(v, "smtp.reserved_trusted_connections", int64(s.ReservedTrustedConnections), 0, 100000)
	intRange(v, "smtp.stress_connections", int64(s.StressConnections), 0, 100000)
	if s.ReservedTrustedConnections >= s.MaxConnections && s.MaxConnections >= 1 {
		v.add("smtp.reserved_trusted_connections", ErrConflict, "%d leaves no slot of max_connections %d for other clients", s.ReservedTrustedConnections, s.MaxConnections)
	}
	if s.StressConnections > s.MaxConnections && s.MaxConnections >= 1 {
		v.add("smtp.stress_connections", ErrConflict, "%d is above max_connections %d: stress would never begin", s.StressConnections, s.MaxConnections)
	}
	durRange(v, "smtp.stress_idle_timeout", s.StressIdleTimeout, time.Second, time.Hour)
	intRange(v, "smtp.min_transfer_bytes", s.MinTransferBytes, 0, 1<<30)
	durRange(v, "smtp.min_transfer_interval", s.MinTransferInterval, time.Second, time.Hour)
	intRange(v, "smtp.shed_spool_messages", int64(s.ShedSpoolMessages), 0, 1<<31-1)
	intRange(v, "smtp.shed_spool_bytes", s.ShedSpoolBytes, 0, 1<<60)
	intRange(v, "smtp.shed_memory_bytes", s.ShedMemoryBytes, 0, 1<<60)
	intRange(v, "smtp.shed_hsm_backlog", int64(s.ShedHSMBacklog), 0, 1<<31-1)
}

// TrustedNetwork is one [[smtp.trusted_networks]]: clients in CIDR may send
// without AUTH as the addresses Senders lists: an address, "@domain" for
// any address of that domain, or "*" for any configured sender.
type TrustedNetwork struct {
	CIDR    string   `toml:"cidr"`
	Senders []string `toml:"senders"`
}

// Prefix is CIDR parsed; a bare address is a single-host prefix.
func (n TrustedNetwork) Prefix() (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(n.CIDR); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(n.CIDR)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a CIDR or address")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Trusted is smtp.trusted_networks, or its default when the key is absent:
// loopback, for every configured sender.
func (s SMTP) Trusted() []TrustedNetwork {
	if s.TrustedNetworks != nil {
		return s.TrustedNetworks
	}
	return []TrustedNetwork{
		{CIDR: "127.0.0.0/8", Senders: []string{"*"}},
		{CIDR: "::1/128", Senders: []string{"*"}},
	}
}

func defaultSMTPSecurity() SMTPSecurity {
	return SMTPSecurity{
		RequireTLSForAuth:     true,
		MaxConnectionsPerIP:   50,
		MaxCommandsBeforeMail: 50,
		MaxAuthFailures:       3,
		AuthFailureDelay:      time.Second,
		MaxAuthFailuresPerIP:  10,
		AuthLockout:           15 * time.Minute,
		MaxLineLength:         2000,
		MaxHeaderBytes:        1 << 20,
		MaxHeaderFields:       1000,
		MaxMIMEDepth:          20,
		MaxMIMEParts:          1000,
		IdleTimeout:           5 * time.Minute,
		DataTimeout:           10 * time.Minute,
		SessionTimeout:        30 * time.Minute,
		SMTPLoad:              defaultSMTPLoad(),
	}
}

func (c *Config) validateSMTPSecurity(v *validator) {
	s := &c.SMTP
	hasTLS := s.TLSCert != "" && s.TLSKey != ""
	if s.ListenTLS != "" {
		if err := checkHostPort(s.ListenTLS, true); err != nil {
			v.add("smtp.listen_tls", ErrInvalid, "%q: %v", s.ListenTLS, err)
		} else if s.ListenTLS == s.Listen {
			v.add("smtp.listen_tls", ErrConflict, "%q is smtp.listen too", s.ListenTLS)
		}
		if !hasTLS {
			v.add("smtp.listen_tls", ErrMissing, "implicit TLS needs tls_cert and tls_key")
		}
	}
	if s.UsersFile != "" && s.RequireTLSForAuth && !hasTLS {
		v.add("smtp.users_file", ErrConflict, "AUTH is only offered over TLS: set tls_cert and tls_key, or require_tls_for_auth = false")
	}
	for i, n := range s.TrustedNetworks {
		k := fmt.Sprintf("smtp.trusted_networks[%d]", i)
		if _, err := n.Prefix(); err != nil {
			v.add(k+".cidr", ErrInvalid, "%q: %v", n.CIDR, err)
		}
		if len(n.Senders) == 0 {
			v.add(k+".senders", ErrMissing, "the sender addresses this network may use (an address, \"@domain\" or \"*\")")
		}
		for _, p := range n.Senders {
			if !validSenderPattern(p) {
				v.add(k+".senders", ErrInvalid, "%q is not an address, \"@domain\" or \"*\"", p)
			}
		}
	}
	intRange(v, "smtp.max_connections_per_ip", int64(s.MaxConnectionsPerIP), 1, 100000)
	intRange(v, "smtp.max_commands_before_mail", int64(s.MaxCommandsBeforeMail), 5, 100000)
	intRange(v, "smtp.max_auth_failures", int64(s.MaxAuthFailures), 1, 100)
	intRange(v, "smtp.max_auth_failures_per_ip", int64(s.MaxAuthFailuresPerIP), 1, 100000)
	// RFC 5321's 1000 is the floor: a client may always send that much.
	intRange(v, "smtp.max_line_length", int64(s.MaxLineLength), 1000, 1<<20)
	intRange(v, "smtp.max_header_bytes", int64(s.MaxHeaderBytes), 1024, 64<<20)
	intRange(v, "smtp.max_header_fields", int64(s.MaxHeaderFields), 16, 1000000)
	intRange(v, "smtp.max_mime_depth", int64(s.MaxMIMEDepth), 1, 1000)
	intRange(v, "smtp.max_mime_parts", int64(s.MaxMIMEParts), 1, 1000000)
	durRange(v, "smtp.auth_failure_delay", s.AuthFailureDelay, 0, time.Minute)
	durRange(v, "smtp.auth_lockout", s.AuthLockout, time.Second, 24*time.Hour)
	durRange(v, "smtp.idle_timeout", s.IdleTimeout, time.Second, time.Hour)
	durRange(v, "smtp.data_timeout", s.DataTimeout, time.Second, 24*time.Hour)
	durRange(v, "smtp.session_timeout", s.SessionTimeout, time.Second, 24*time.Hour)
	if s.SessionTimeout < s.DataTimeout && s.SessionTimeout >= time.Second {
		v.add("smtp.session_timeout", ErrConflict, "%v is shorter than data_timeout %v", s.SessionTimeout, s.DataTimeout)
	}
	c.validateSMTPLoad(v)
}

// durRange also catches a bare integer, which TOML hands over as
// nanoseconds: "idle_timeout = 300" is below every floor.
func durRange(v *validator, key string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		v.add(key, ErrInvalid, "%v is outside %v..%v (durations are strings, e.g. \"5m\")", d, lo, hi)
	}
}

// validSenderPattern mirrors auth.CheckPattern; config imports nothing of
// the project.
func validSenderPattern(p string) bool {
	if p == "*" {
		return true
	}
	at := strings.LastIndexByte(p, '@')
	if at < 0 || at == len(p)-1 || strings.ContainsAny(p, " \t<>*,:") || strings.IndexByte(p[:at], '@') >= 0 {
		return false
	}
	return validHostname(p[at+1:])
}
