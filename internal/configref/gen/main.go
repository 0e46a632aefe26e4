// Command gen regenerates config/reference.txt and deploy/appliance.toml from package config's
// types and doc comments; `go generate ./config/` runs it from the config directory.
package main

import (
	"fmt"
	"os"

	"appliance/internal/configref"
)

func main() {
	if err := configref.WriteFiles(".", "../deploy/appliance.toml"); err != nil {
		fmt.Fprintf(os.Stderr, "configref: %v\n", err)
		os.Exit(1)
	}
}
