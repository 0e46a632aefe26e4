package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func smtpKeys(lines string) func(string) string {
	return repl("max_recipients = 1000\n", "max_recipients = 1000\n"+lines+"\n")
}

func TestSMTPSecurity(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		check   func(*testing.T, *Config)
		wantErr error
		wantKey string
	}{
		{name: "ok defaults trust loopback for every sender", edit: smtpKeys(""), check: func(t *testing.T, c *Config) {
			s := c.SMTP
			if !s.RequireTLSForAuth || s.MaxMIMEDepth != 20 || s.MaxCommandsBeforeMail != 50 || s.SessionTimeout != 30*time.Minute {
				t.Errorf("defaults = %+v", s.SMTPSecurity)
			}
			tr := s.Trusted()
			if len(tr) != 2 || tr[0].CIDR != "127.0.0.0/8" || tr[0].Senders[0] != "*" {
				t.Errorf("trusted = %+v", tr)
			}
		}},
		{name: "ok empty trusted_networks trusts nobody", edit: smtpKeys("trusted_networks = []"), check: func(t *testing.T, c *Config) {
			if tr := c.SMTP.Trusted(); len(tr) != 0 {
				t.Errorf("trusted = %+v", tr)
			}
		}},
		{name: "ok trusted networks and limits", edit: smtpKeys(`trusted_networks = [{cidr = "10.1.0.0/16", senders = ["app@example.test", "@apps.example.test"]}, {cidr = "192.0.2.7", senders = ["*"]}]
max_mime_depth = 8
auth_failure_delay = "250ms"
idle_timeout = "2m"`), check: func(t *testing.T, c *Config) {
			tr := c.SMTP.Trusted()
			if len(tr) != 2 {
				t.Fatalf("trusted = %+v", tr)
			}
			if p, err := tr[1].Prefix(); err != nil || p != netip.MustParsePrefix("192.0.2.7/32") {
				t.Errorf("bare address prefix = %v, %v", p, err)
			}
			if c.SMTP.MaxMIMEDepth != 8 || c.SMTP.AuthFailureDelay != 250*time.Millisecond || c.SMTP.IdleTimeout != 2*time.Minute {
				t.Errorf("limits = %+v", c.SMTP.SMTPSecurity)
			}
		}},
		{name: "ok tls listener and users", edit: smtpKeys(`tls_cert = "c.pem"
tls_key = "k.pem"
listen_tls = "127.0.0.1:4650"
users_file = "users"
require_auth = true`), check: func(t *testing.T, c *Config) {
			if c.SMTP.ListenTLS != "127.0.0.1:4650" || !c.SMTP.RequireAuth {
				t.Errorf("smtp = %+v", c.SMTP)
			}
		}},
		{name: "ok users without tls when allowed", edit: smtpKeys("users_file = \"users\"\nrequire_tls_for_auth = false")},
		{name: "fail listen_tls without certificate", edit: smtpKeys(`listen_tls = "127.0.0.1:4650"`), wantErr: ErrMissing, wantKey: "smtp.listen_tls"},
		{name: "fail listen_tls same as listen", edit: smtpKeys("tls_cert = \"c\"\ntls_key = \"k\"\nlisten_tls = \"127.0.0.1:2525\""), wantErr: ErrConflict, wantKey: "smtp.listen_tls"},
		{name: "fail users_file without tls", edit: smtpKeys(`users_file = "users"`), wantErr: ErrConflict, wantKey: "smtp.users_file"},
		{name: "fail bad cidr", edit: smtpKeys(`trusted_networks = [{cidr = "10.0.0.0/33", senders = ["*"]}]`), wantErr: ErrInvalid, wantKey: "smtp.trusted_networks[0].cidr"},
		{name: "fail network without senders", edit: smtpKeys(`trusted_networks = [{cidr = "10.0.0.0/8"}]`), wantErr: ErrMissing, wantKey: "smtp.trusted_networks[0].senders"},
		{name: "fail bad sender pattern", edit: smtpKeys(`trusted_networks = [{cidr = "10.0.0.0/8", senders = ["*@example.test"]}]`), wantErr: ErrInvalid, wantKey: "smtp.trusted_networks[0].senders"},
		{name: "fail integer duration", edit: smtpKeys(`idle_timeout = 300`), wantErr: ErrInvalid, wantKey: "smtp.idle_timeout"},
		{name: "ok load defaults", edit: smtpKeys(""), check: func(t *testing.T, c *Config) {
			l := c.SMTP.SMTPLoad
			if l.MaxConnections != 500 || l.ReservedTrustedConnections != 50 || l.StressIdleTimeout != 10*time.Second ||
				l.MinTransferBytes != 5000 || l.MinTransferInterval != 10*time.Second || l.ShedHSMBacklog != 1000 ||
				l.ShedSpoolMessages != 20000 || l.ShedMemoryBytes != 1<<30 || l.ShedSpoolBytes != 0 {
				t.Errorf("load defaults = %+v", l)
			}
		}},
		{name: "ok load keys", edit: smtpKeys(`max_connections = 100
max_connections_per_trusted_ip = 80
reserved_trusted_connections = 20
stress_connections = 60
stress_idle_timeout = "5s"
min_transfer_bytes = 100
min_transfer_interval = "2s"
shed_spool_bytes = 1000000
shed_hsm_backlog = 0`), check: func(t *testing.T, c *Config) {
			l := c.SMTP.SMTPLoad
			if l.MaxConnections != 100 || l.MaxConnectionsPerTrustedIP != 80 || l.ReservedTrustedConnections != 20 || l.StressConnections != 60 ||
				l.StressIdleTimeout != 5*time.Second || l.MinTransferBytes != 100 || l.MinTransferInterval != 2*time.Second ||
				l.ShedSpoolBytes != 1000000 || l.ShedHSMBacklog != 0 {
				t.Errorf("load = %+v", l)
			}
		}},
		{name: "fail reserve takes every slot", edit: smtpKeys("max_connections = 10\nreserved_trusted_connections = 10"), wantErr: ErrConflict, wantKey: "smtp.reserved_trusted_connections"},
		{name: "fail stress above the limit", edit: smtpKeys("max_connections = 10\nstress_connections = 11"), wantErr: ErrConflict, wantKey: "smtp.stress_connections"},
		{name: "fail stress idle below a second", edit: smtpKeys("stress_idle_timeout = \"500ms\""), wantErr: ErrInvalid, wantKey: "smtp.stress_idle_timeout"},
		{name: "fail zero max connections", edit: smtpKeys("max_connections = 0"), wantErr: ErrInvalid, wantKey: "smtp.max_connections"},
		{name: "fail line length below rfc 5321", edit: smtpKeys(`max_line_length = 512`), wantErr: ErrInvalid, wantKey: "smtp.max_line_length"},
		{name: "fail mime depth zero", edit: smtpKeys(`max_mime_depth = 0`), wantErr: ErrInvalid, wantKey: "smtp.max_mime_depth"},
		{name: "fail session shorter than data", edit: smtpKeys("session_timeout = \"1m\"\ndata_timeout = \"5m\""), wantErr: ErrConflict, wantKey: "smtp.session_timeout"},
		{name: "fail unknown key", edit: smtpKeys(`max_mime_dept = 3`), wantErr: ErrUnknownKey, wantKey: "smtp.max_mime_dept"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.edit(base)
			if !strings.Contains(data, "max_recipients = 1000\n") {
				t.Fatal("edit anchor missing")
			}
			c, err := Parse([]byte(data))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want %v", tt.wantErr)
			}
			if e := findError(err, tt.wantErr, tt.wantKey); e == nil {
				t.Fatalf("no %v error for key %q in %q", tt.wantErr, tt.wantKey, err)
			} else if e.Line == 0 {
				t.Errorf("error %q has no line", e)
			}
		})
	}
}
