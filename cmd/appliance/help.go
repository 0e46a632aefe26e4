package main

// `appliance help config`: every configuration key, man-page style. The keys' text is
// config.Reference, generated with deploy/appliance.toml from the config types and their doc
// comments by `go generate ./config/`.

import (
	"fmt"
	"io"
	"regexp"
	"strings"

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
		fmt.Fprint(stdout, roff("APPLIANCE", "8", b.String()))
	case "man config":
		var b strings.Builder
		writeConfigHelp(&b)
		fmt.Fprint(stdout, roff("APPLIANCE.TOML", "5", b.String()))
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

// roff turns help text into a manual page: lines in capitals at the margin are sections, the
// rest is kept as laid out (no filling), with roff's special characters escaped.
func roff(title, section, text string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s %s \"\" \"appliance\" \"appliance manual\"\n", title, section)
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > 0 && strings.HasSuffix(lines[0], ")") {
		lines = lines[1:] // the title line, which .TH says
	}
	open := false
	for _, l := range lines {
		if l != "" && l == strings.ToUpper(l) && l[0] != ' ' && l[0] != '[' {
			if open {
				b.WriteString(".fi\n")
			}
			fmt.Fprintf(&b, ".SH %s\n.nf\n", l)
			open = true
			continue
		}
		if !open {
			if l == "" {
				continue
			}
			b.WriteString(".nf\n")
			open = true
		}
		l = strings.ReplaceAll(l, `\`, `\e`)
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		b.WriteString(l + "\n")
	}
	if open {
		b.WriteString(".fi\n")
	}
	return b.String()
}

var helpFlag = regexp.MustCompile(`(?m)^  (-[a-z][a-z0-9-]*)`)

// writeBashCompletion completes command names, then the flags each command's -h lists.
func writeBashCompletion(w io.Writer) {
	fmt.Fprint(w, "# bash completion for appliance, generated by `appliance help completion bash`\n")
	fmt.Fprint(w, "_appliance() {\n  local cur=${COMP_WORDS[COMP_CWORD]}\n  if [ \"$COMP_CWORD\" -eq 1 ]; then\n")
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	fmt.Fprintf(w, "    COMPREPLY=($(compgen -W %q -- \"$cur\"))\n    return\n  fi\n  case ${COMP_WORDS[1]} in\n", strings.Join(append(names, "help"), " "))
	for _, c := range commands {
		var flags []string
		for _, m := range helpFlag.FindAllStringSubmatch(commandHelp(c), -1) {
			flags = append(flags, m[1])
		}
		if len(flags) > 0 {
			fmt.Fprintf(w, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", c.name, strings.Join(flags, " "))
		}
	}
	fmt.Fprint(w, "    help) COMPREPLY=($(compgen -W \"config man completion\" -- \"$cur\")) ;;\n")
	fmt.Fprint(w, "  esac\n}\ncomplete -o default -F _appliance appliance\n")
}
