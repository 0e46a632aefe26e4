package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestInitFile: what init writes is a valid configuration with every answer in it.
func TestInitFile(t *testing.T) {
	a := InitAnswers{Path: "/etc/appliance/appliance.toml", Module: "/usr/lib/softhsm/libsofthsm2.so", Token: "appliance",
		PINFile: "/etc/appliance/pin", Listen: "127.0.0.1:10025", Hostname: "relay.example.org", NextHop: "127.0.0.1:10026",
		Spool: "/var/spool/appliance", Certs: "/etc/appliance/certs", Roots: "/etc/appliance/roots.pem",
		Senders: []InitSender{{Address: "alice@example.org", Key: "pkcs11:token=appliance;object=alice", Cert: "/etc/appliance/senders/alice@example.org.pem"}},
		Date:    time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)}
	file := InitFile(a)
	cfg, err := Parse(file)
	if err != nil {
		t.Fatalf("Parse:\n%s\n%v", file, err)
	}
	if cfg.HSM.Module != a.Module || cfg.Relay.NextHop != a.NextHop || cfg.SMTP.Hostname != a.Hostname || len(cfg.Senders) != 1 ||
		cfg.Senders[0].Key != a.Senders[0].Key || cfg.Directory.Roots != a.Roots {
		t.Fatalf("parsed back: %+v", cfg)
	}
	if !strings.Contains(string(file), "# Written by appliance init on 2026-12-03.") {
		t.Fatalf("no date line:\n%s", file)
	}
}

func TestPickToken(t *testing.T) {
	cfg, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	only := cfg.TokenList()[0]
	if tok, err := cfg.PickToken(""); err != nil || tok.Name != only.Name {
		t.Fatalf("PickToken(\"\") = %v, %v", tok.Name, err)
	}
	if _, err := cfg.PickToken("nosuch"); err == nil || !strings.Contains(err.Error(), `no token named "nosuch"`) {
		t.Fatalf("PickToken(nosuch) = %v", err)
	}
}

func TestErrorKeys(t *testing.T) {
	err := errors.Join(&Error{Key: "smtp.tls_cert", Err: errors.New("missing")},
		errors.Join(&Error{Key: "hsm.pin_file", Err: errors.New("mode")}), errors.New("other"))
	keys := ErrorKeys(err)
	if len(keys) != 2 || !keys["smtp.tls_cert"] || !keys["hsm.pin_file"] {
		t.Fatalf("ErrorKeys = %v", keys)
	}
	if !strings.HasSuffix(Manual(), "appliance(8), deploy/postfix/ (Postfix as content filter or relayhost), docs/\n") ||
		!strings.Contains(Manual(), Reference) {
		t.Fatal("Manual is not header, Reference and footer")
	}
}
