package config

// The text of appliance.toml(5), which `appliance help config` prints. Its keys' part is
// Reference, generated with deploy/appliance.toml from the types of this package and their doc
// comments by `go generate ./config/`.

const manualHeader = `APPLIANCE.TOML(5)

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

const manualFooter = `
SIGNALS
    SIGHUP rereads the certificate directory, the users file, the TLS certificate and key, and list
    members (a file that fails to load leaves the previous one in force); SIGTERM stops accepting
    mail, lets work in flight finish for up to 20s and leaves the rest in the spool.

SEE ALSO
    appliance(8), deploy/postfix/ (Postfix as content filter or relayhost), docs/
`

// Manual is every configuration key, man-page style: appliance.toml(5).
func Manual() string { return manualHeader + Reference + manualFooter }
