package config

import (
	"testing"
	"time"
)

func TestHSMHealth(t *testing.T) {
	hsmKeys := func(lines string) func(string) string {
		return repl("max_sessions = 8\n", "max_sessions = 8\n"+lines+"\n")
	}
	tests := []struct {
		name      string
		edit      func(string) string
		requireUp bool
		wait      time.Duration
		wantErr   error
		wantKey   string
	}{
		{name: "ok defaults", edit: func(s string) string { return s }, wait: DefaultReconnectMax},
		{name: "ok require_up and reconnect_max", edit: hsmKeys("require_up = true\nreconnect_max = \"5s\""), requireUp: true, wait: 5 * time.Second},
		{name: "fail reconnect_max too short", edit: hsmKeys(`reconnect_max = "10ms"`), wantErr: ErrInvalid, wantKey: "hsm.reconnect_max"},
		{name: "fail reconnect_max too long", edit: hsmKeys(`reconnect_max = "1h"`), wantErr: ErrInvalid, wantKey: "hsm.reconnect_max"},
		{name: "fail reconnect_max integer", edit: hsmKeys(`reconnect_max = 5`), wantErr: ErrInvalid, wantKey: "hsm.reconnect_max"},
		{name: "fail require_up not a bool", edit: hsmKeys(`require_up = "yes"`), wantErr: ErrSyntax, wantKey: "hsm.require_up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.edit(base)))
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Parse succeeded, want %v", tt.wantErr)
				}
				if e := findError(err, tt.wantErr, tt.wantKey); e == nil {
					t.Fatalf("no %v error for key %q in %q", tt.wantErr, tt.wantKey, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.HSM.RequireUp != tt.requireUp || c.HSM.ReconnectWait() != tt.wait {
				t.Errorf("require_up %v, reconnect wait %v; want %v, %v", c.HSM.RequireUp, c.HSM.ReconnectWait(), tt.requireUp, tt.wait)
			}
		})
	}
}
