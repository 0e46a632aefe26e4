package main

// `appliance help`: the configuration's manual (config.Manual), appliance(8) from every
// command's -h, both in roff, and a bash completion script.

import (
	"fmt"
	"io"
	"strings"

	"appliance/config"
	"appliance/internal/manpage"
)

func writeConfigHelp(w io.Writer) { fmt.Fprint(w, config.Manual()) }

const helpUsage = `usage: appliance help [config | man | man config | completion bash]

  config           every configuration key (the text of appliance.toml(5))
  man              the appliance(8) manual page, in roff
  man config       the appliance.toml(5) manual page, in roff
  completion bash  a bash completion script for every command and flag`

func runHelp(args []string, stdout, stderr io.Writer) error {
	switch strings.Join(args, " ") {
	case "config":
		writeConfigHelp(stdout)
	case "man":
		var b strings.Builder
		writeCommandsHelp(&b)
		fmt.Fprint(stdout, manpage.Roff("APPLIANCE", "8", b.String()))
	case "man config":
		var b strings.Builder
		writeConfigHelp(&b)
		fmt.Fprint(stdout, manpage.Roff("APPLIANCE.TOML", "5", b.String()))
	case "completion bash":
		writeBashCompletion(stdout)
	default:
		fmt.Fprintln(stderr, helpUsage)
		return errUsage
	}
	return nil
}

// commandHelp is what `appliance NAME -h` prints.
func commandHelp(c command) string {
	var b strings.Builder
	_ = c.run([]string{"-h"}, io.Discard, &b)
	return b.String()
}

// writeCommandsHelp is the text of appliance(8): the usage and every command's -h.
func writeCommandsHelp(w io.Writer) {
	fmt.Fprint(w, `APPLIANCE(8)

NAME
    appliance - outbound S/MIME relay with keys on a PKCS#11 HSM

SYNOPSIS
    appliance COMMAND [flags]

DESCRIPTION
    The appliance signs and encrypts every outgoing message with keys that never leave a PKCS#11
    HSM, and never reveals a Bcc recipient through the encryption: the To/Cc recipients get one
    package, each Bcc recipient their own. Start with appliance init; appliance help config
    describes every configuration key.

COMMANDS
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %s\n    %s\n\n", c.name, c.summary)
		for _, l := range strings.Split(strings.TrimRight(commandHelp(c), "\n"), "\n") {
			fmt.Fprintf(w, "    %s\n", l)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, `EXIT STATUS
    0 success; 1 an error (named on stderr); 2 wrong usage; 3 (seal) the message was sealed but
    at least one recipient was refused (see its manifest.json).

ENVIRONMENT
    NO_COLOR    no escape sequences at all (none are written off a terminal anyway)
    SOFTHSM2_CONF   SoftHSM2's configuration, when SoftHSM2 is the HSM

FILES
    /etc/appliance/appliance.toml   the configuration, appliance.toml(5)
    /var/spool/appliance            the spool

SEE ALSO
    appliance.toml(5), systemctl(1)
`)
}

// writeBashCompletion completes command names, then the flags each command's -h lists.
func writeBashCompletion(w io.Writer) {
	var cmds []manpage.Command
	for _, c := range commands {
		cmds = append(cmds, manpage.Command{Name: c.name, Help: commandHelp(c)})
	}
	fmt.Fprint(w, manpage.BashCompletion("appliance", cmds, []string{"config", "man", "completion"}))
}
