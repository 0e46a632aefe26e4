package config

import (
	"errors"
	"strings"
	"testing"
)

func TestMetricsConfig(t *testing.T) {
	tests := []struct {
		name    string
		section string
		want    string // listen after parsing
		wantErr error
		errText string
	}{
		{"ok absent is off", "", "", nil, ""},
		{"ok loopback", "[metrics]\nlisten = \"127.0.0.1:9464\"\n", "127.0.0.1:9464", nil, ""},
		{"ok any interface", "[metrics]\nlisten = \":9464\"\n", ":9464", nil, ""},
		{"fail no port", "[metrics]\nlisten = \"127.0.0.1\"\n", "", ErrInvalid, "metrics.listen"},
		{"fail same as smtp", "[metrics]\nlisten = \"127.0.0.1:2525\"\n", "", ErrConflict, "metrics.listen"},
		{"fail unknown key", "[metrics]\npath = \"/m\"\n", "", ErrUnknownKey, "metrics.path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(minimalForMetrics + tt.section))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("Parse: %v, want %v naming %q", err, tt.wantErr, tt.errText)
				}
				var ce *Error
				if !errors.As(err, &ce) || ce.Line == 0 {
					t.Errorf("error %v does not name a line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Metrics.Listen != tt.want || c.Metrics.Enabled() != (tt.want != "") {
				t.Fatalf("metrics = %+v, want listen %q", c.Metrics, tt.want)
			}
		})
	}
}

const minimalForMetrics = `
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token = "appliance"
pin_env = "APPLIANCE_PIN"

[smtp]
listen = "127.0.0.1:2525"
hostname = "relay.example.test"

[relay]
next_hop = "127.0.0.1:2526"

[spool]
dir = "/var/spool/appliance"

[directory]
certs = "/etc/appliance/certs"
roots = "/etc/appliance/roots.pem"

[[sender]]
address = "alice@example.test"
key = "pkcs11:token=appliance;object=alice"
cert = "/etc/appliance/alice.pem"
`
