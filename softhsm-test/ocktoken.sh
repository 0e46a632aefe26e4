#!/usr/bin/env bash
# ocktoken.sh [PKIDIR]: a fresh opencryptoki software token, the second PKCS#11 implementation the
# hsm tests and one end-to-end test run against (APPLIANCE_TEST_TOKEN=opencryptoki).
#
# opencryptoki keeps everything at fixed system paths (/etc/opencryptoki/opencryptoki.conf,
# /var/lib/opencryptoki/swtok, /var/lock/opencryptoki, the shared memory segment
# /dev/shm/var.lib.opencryptoki.swtok and the slot daemon pkcsslotd on /var/run/pkcsslotd.socket),
# so there is one token per machine and this script needs root (CI runs the tests as root). The
# caller holds a lock so that only one test binary uses the token at a time (internal/softhsmtest).
#
# The script stops the pkcsslotd it finds (by its pid file), wipes the software token's store,
# starts pkcsslotd again and initialises the token: label "appliance", SO PIN 5678, user PIN 1234,
# as mktoken.sh makes the SoftHSM2 one. With PKIDIR (made by mkpki.sh) the private keys of alice
# and list are written as objects "alice" (id 01) and "list" (id 02) with pkcs11-tool. It prints
# the module path on its last line.
set -euo pipefail
pki=${1:-}
slot=${OCK_SLOT:-3} # the sw token's slot in Debian's default opencryptoki.conf
module=${OCK_MODULE:-}
if [ -z "$module" ]; then
  for m in /usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so /usr/lib/aarch64-linux-gnu/pkcs11/libopencryptoki.so \
    /usr/lib/pkcs11/libopencryptoki.so /usr/lib64/pkcs11/libopencryptoki.so; do
    if [ -e "$m" ]; then module=$m; break; fi
  done
fi
[ -n "$module" ] || { echo "ocktoken.sh: libopencryptoki.so not found; install the opencryptoki package" >&2; exit 2; }
command -v pkcsslotd >/dev/null || PATH=$PATH:/usr/sbin
command -v pkcsslotd >/dev/null || { echo "ocktoken.sh: pkcsslotd not found" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "ocktoken.sh: must run as root (opencryptoki's token lives in /var/lib/opencryptoki)" >&2; exit 2; }

# Stop the running slot daemon, if any; it keeps the token's state in shared memory.
pidfile=/var/run/pkcsslotd.pid
if [ -s "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; [ -d "/proc/$pid" ] && grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break; sleep 0.1; done
  fi
  rm -f "$pidfile"
fi

store=/var/lib/opencryptoki/swtok
install -d -m 0770 -g pkcs11 /var/log/opencryptoki /var/lock/opencryptoki /var/lock/opencryptoki/swtok "$store"
rm -rf "${store:?}"/* /dev/shm/var.lib.opencryptoki.swtok
install -d -m 0770 -g pkcs11 "$store/TOK_OBJ"
rm -f /var/run/pkcsslotd.socket
pkcsslotd
for _ in $(seq 50); do [ -S /var/run/pkcsslotd.socket ] && break; sleep 0.1; done

# A fresh sw token's SO PIN is 87654321. Initialising with any other SO PIN leaves a master key
# the SO cannot open (later SO logins fail with CKR_FUNCTION_FAILED), so initialise with the
# default and change it afterwards.
echo appliance | pkcsconf -c "$slot" -I -S 87654321 >/dev/null
pkcsconf -c "$slot" -P -S 87654321 -n 5678 >/dev/null
pkcsconf -c "$slot" -u -S 5678 -n 1234 >/dev/null
# A user PIN set by the SO is marked "to be changed"; setting it once clears the mark.
pkcsconf -c "$slot" -p -U 1234 -n 4321 >/dev/null
pkcsconf -c "$slot" -p -U 4321 -n 1234 >/dev/null

if [ -n "$pki" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  id=1
  for name in alice list; do
    # softhsm2-util --import makes the private and the public key object; pkcs11-tool writes one
    # object at a time, and the appliance finds a signing key as a pair.
    openssl pkey -in "$pki/$name.key" -outform DER -out "$tmp/$name.der"
    openssl pkey -in "$pki/$name.key" -pubout -outform DER -out "$tmp/$name.pub.der"
    for t in privkey pubkey; do
      f=$tmp/$name.der
      [ $t = pubkey ] && f=$tmp/$name.pub.der
      pkcs11-tool --module "$module" --token-label appliance --login --pin 1234 \
        --write-object "$f" --type $t --label "$name" --id "$(printf '%02x' $id)" >/dev/null 2>&1
    done
    id=$((id + 1))
  done
fi
echo "$module"
