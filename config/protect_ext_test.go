package config

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestHeaderProtectionConfig(t *testing.T) {
	c, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.HeaderProtection || len(c.Policy.HeaderProtectionDomains()) != 0 {
		t.Fatal("header protection is on by default")
	}
	data := strings.Replace(base, "self_copy = true\n", "self_copy = true\nheader_protection = true\n", 1) +
		"[[policy.domain]]\ndomain = \"Old.Example\"\nheader_protection = \"off\"\n" +
		"[[policy.domain]]\ndomain = \"new.example\"\nheader_protection = \"on\"\n" +
		"[[policy.domain]]\ndomain = \"other.example\"\nprofile = \"modern\"\n"
	if c, err = Parse([]byte(data)); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"old.example": false, "new.example": true}
	if got := c.Policy.HeaderProtectionDomains(); !c.Policy.HeaderProtection || !maps.Equal(got, want) {
		t.Fatalf("on %v, domains %v; want true, %v", c.Policy.HeaderProtection, got, want)
	}
	_, err = Parse([]byte(base + "[[policy.domain]]\ndomain = \"a.example\"\nheader_protection = \"yes\"\n"))
	if !errors.Is(err, ErrInvalid) || findError(err, ErrInvalid, "policy.domain[0].header_protection") == nil {
		t.Fatalf("header_protection = \"yes\" accepted: %v", err)
	}
}
