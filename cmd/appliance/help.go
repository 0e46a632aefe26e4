package main

// `appliance help config`: every configuration key, man-page style. The keys' text is
// config.Reference, generated with deploy/appliance.toml from the config types and their doc
// comments by `go generate ./config/`.

import (
	"fmt"
	"io"

	"appliance/config"
)

const helpHeader = `APPLIANCE.TOML(5)

NAME
    appliance.toml - configuration of the appliance, an outbound S/MIME relay

SYNOPSIS
    appliance serve -config /etc/appliance/appliance.toml
    appliance check-config -config /etc/appliance/appliance.toml [-connect]

DESCRIPTION
    One TOML file. Unknown keys are errors, with a suggestion when a known key is close; every
    error names the file, the line and the key, and all errors are reported at once. Durations are
    strings ("30s", "5m", "2h"). Relative paths resolve against the file's directory. An annotated
    example with every key is deploy/appliance.toml.
`

const helpFooter = `
SIGNALS
    SIGHUP rereads the certificate directory, the users file, the TLS certificate and key, and list
    members (a file that fails to load leaves the previous one in force); SIGTERM stops accepting
    mail, lets work in flight finish for up to 20s and leaves the rest in the spool.

SEE ALSO
    appliance(8), deploy/postfix/ (Postfix as content filter or relayhost), docs/
`

func writeConfigHelp(w io.Writer) {
	fmt.Fprint(w, helpHeader)
	fmt.Fprint(w, config.Reference)
	fmt.Fprint(w, helpFooter)
}

func runHelp(args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && args[0] == "config" {
		writeConfigHelp(stdout)
		return nil
	}
	fmt.Fprintln(stderr, "usage: appliance help [config]")
	return errUsage
}
