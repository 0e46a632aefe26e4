#!/usr/bin/env bash
# deps.sh: install the Debian packages the appliance's demo and tests use, when any is missing.
# `deps.sh demo` installs only what scripts/demo.sh uses.
# Go itself comes with the machine (/usr/local/go); Debian's golang is too old for this module.
#   --packages-only   install the packages and skip the Go check (scripts/cleanroot.sh runs it so in
#                     a fresh Debian root that has no Go)
# Every program a test or script runs is listed with its package in scripts/prereqs.sh, which
# checks that each can do what the tests ask of it; internal/prereq's test keeps the two lists in
# step with the code.
set -euo pipefail
pkgs=(softhsm2 p11-kit p11-kit-modules opensc opensc-pkcs11 openssl gpgsm gpgconf gpg-agent libnss3-tools swaks libnet-ssleay-perl libio-socket-ssl-perl ca-certificates slapd ldap-utils postfix debootstrap python3-dkim python3-nacl opencryptoki)
packages_only=0
case "${1:-}" in
  "") ;;
  --packages-only) packages_only=1 ;;
  demo) pkgs=(softhsm2 openssl swaks) ;;
  *) echo "usage: deps.sh [--packages-only | demo]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  # postfix: install only, no system instance (the Postfix tests run their own).
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  $sudo apt-get update -qq
  # --no-install-recommends: the list above, not apt's defaults, must bring everything the tests
  # use (swaks cannot STARTTLS without libnet-ssleay-perl, a mere recommendation), so that the
  # clean-root check (scripts/cleanroot.sh) proves the list complete.
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ $packages_only = 1 ] && exit 0
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    echo "deps: Go is at /usr/local/go/bin; add it to PATH" >&2
  else
    echo "deps: Go 1.26 or newer is required (go.dev/dl); Debian's golang package is too old" >&2
    exit 1
  fi
fi
