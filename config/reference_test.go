package config_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"appliance/config"
	"appliance/internal/configref"
)

// TestReferenceUpToDate fails when config/reference.txt (`appliance help config`) or
// deploy/appliance.toml differ from what the config types and their doc comments make now.
func TestReferenceUpToDate(t *testing.T) {
	ref, example, undocumented, err := configref.Generate(".")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ref, []byte(config.Reference)) {
		t.Errorf("config/reference.txt is out of date with the config types: run `%s`", configref.Command)
	}
	committed, err := os.ReadFile("../deploy/appliance.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(example, committed) {
		t.Errorf("deploy/appliance.toml is out of date with the config types: run `%s`", configref.Command)
	}
	if len(undocumented) > 0 {
		t.Logf("keys without a description: %s", strings.Join(undocumented, ", "))
	}
}

func TestExampleParses(t *testing.T) {
	_, example, _, err := configref.Generate(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse(example); err != nil {
		t.Fatalf("the generated example does not parse: %v", err)
	}
}
