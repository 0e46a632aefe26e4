#!/usr/bin/env bash
# prereqs.sh: prove, before any test runs, that every outside program the tests and scripts drive
# is here and can do what they ask of it. One line per problem, naming the Debian package that
# fixes it; exit 1 if there was any. scripts/test.sh runs it after deps.sh, and
# scripts/cleanroot.sh runs it in a fresh Debian root after deps.sh alone, so a package missing
# from deps.sh's list fails there.
#
# The table is also read by internal/prereq's test, which fails when the code runs a program
# (exec.Command, exec.LookPath, the interop helpers) that has no line here. Format, one a line:
#   tool|package|check
# tool: the program's name as the code runs it; package: the Debian package that brings it (and
# that deps.sh installs); check: a shell command that succeeds only when the tool can do its job.
set -uo pipefail
export PATH=$PATH:/usr/sbin:/sbin

table=$(cat <<'TABLE'
softhsm2-util|softhsm2|softhsm2-util --version >/dev/null && ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so 2>/dev/null | grep -q .
pkcs11-tool|opensc|pkcs11-tool --help 2>&1 | grep -q -- --module
pkcs11-spy.so|opensc-pkcs11|ls /usr/lib/*/pkcs11/pkcs11-spy.so /usr/lib/pkcs11/pkcs11-spy.so 2>/dev/null | grep -q .
p11-kit|p11-kit|p11-kit server --help 2>&1 | grep -q -- --provider
p11-kit-client.so|p11-kit-modules|ls /usr/lib/*/pkcs11/p11-kit-client.so /usr/lib/pkcs11/p11-kit-client.so 2>/dev/null | grep -q .
openssl|openssl|openssl cms -help 2>&1 | grep -q -- -decrypt
gpgsm|gpgsm|gpgsm --version >/dev/null
gpgconf|gpgconf|gpgconf --version >/dev/null
gpg-agent|gpg-agent|gpg-agent --version >/dev/null
cmsutil|libnss3-tools|command -v cmsutil >/dev/null
certutil|libnss3-tools|command -v certutil >/dev/null
pk12util|libnss3-tools|command -v pk12util >/dev/null
swaks|swaks|swaks --support 2>&1 | grep -q '^=== Basic AUTH supported'
swaks-tls|libnet-ssleay-perl|swaks --support 2>&1 | grep -q '^=== TLS supported'
perl-io-socket-ssl|libio-socket-ssl-perl|perl -MIO::Socket::SSL -e 1 2>/dev/null
ca-certificates|ca-certificates|test -s /etc/ssl/certs/ca-certificates.crt
slapd|slapd|test -x /usr/sbin/slapd && command -v slaptest >/dev/null
ldapadd|ldap-utils|command -v ldapadd >/dev/null
postfix|postfix|test -x /usr/sbin/postfix && command -v postconf >/dev/null
p11-kit|p11-kit|p11-kit server --help 2>&1 | grep -q -- --foreground
p11-kit-client|p11-kit-modules|ls /usr/lib/*/pkcs11/p11-kit-client.so >/dev/null 2>&1
debootstrap|debootstrap|command -v debootstrap >/dev/null
python3|python3-dkim|/usr/bin/python3 -c "import dkim"
python3-nacl|python3-nacl|/usr/bin/python3 -c "import nacl.signing"
pkcsconf|opencryptoki|test -x /usr/sbin/pkcsslotd && ls /usr/lib/*/pkcs11/libopencryptoki.so /usr/lib/pkcs11/libopencryptoki.so 2>/dev/null | grep -q .
pkcsslotd|opencryptoki|test -x /usr/sbin/pkcsslotd
TABLE
)

bad=0
while IFS='|' read -r tool pkg check; do
  [ -z "$tool" ] && continue
  if ! bash -c "$check" >/dev/null 2>&1; then
    echo "prereqs: $tool cannot do what the tests ask of it: install Debian package $pkg (scripts/deps.sh)" >&2
    bad=1
  fi
done <<< "$table"
if [ "${PREREQS_NO_GO:-0}" != 1 ]; then
  if ! go version 2>/dev/null | grep -qE 'go1\.(2[6-9]|[3-9][0-9])'; then
    echo "prereqs: Go 1.26 or newer is required (/usr/local/go/bin on PATH)" >&2
    bad=1
  fi
fi
[ $bad = 0 ] && echo "prereqs: every tool the tests drive is here and able"
exit $bad
