#!/usr/bin/env bash
# cleanroot.sh: prove that scripts/deps.sh alone brings everything the tests drive. It makes a
# minimal Debian root of this machine's release with debootstrap, runs deps.sh in it, then
# prereqs.sh, which fails naming the package when a tool is missing or cannot do its job (swaks
# without TLS, say). A machine that happened to have a package installed by hand cannot hide a
# missing install step from this. Needs root and the Debian mirror; about a minute and a half.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "cleanroot: needs root (debootstrap and chroot)" >&2
  exit 1
fi
. /etc/os-release
suite=${VERSION_CODENAME:?cleanroot: no VERSION_CODENAME in /etc/os-release}
mirror=${CLEANROOT_MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d -t appliance-cleanroot-XXXXXX)
cleanup() {
  umount "$root/proc" 2>/dev/null || umount -l "$root/proc" 2>/dev/null || true
  # Only remove the root once nothing is mounted inside it.
  if ! grep -q " $root/" /proc/mounts; then rm -rf "$root"; fi
}
trap cleanup EXIT

log=$root.log
try() { "$@" >>"$log" 2>&1 || { sleep 5; "$@" >>"$log" 2>&1; }; }
if ! try debootstrap --variant=minbase "$suite" "$root" "$mirror"; then
  tail -n 20 "$log" >&2
  echo "cleanroot: debootstrap $suite from $mirror failed (log above)" >&2
  exit 1
fi
# No service may start inside the root (slapd and postfix are installed, not run).
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
mkdir -p "$root/src/scripts"
cp scripts/deps.sh scripts/prereqs.sh "$root/src/scripts/"
if ! chroot "$root" /bin/bash -c 'cd /src && bash scripts/deps.sh --packages-only' >>"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "cleanroot: deps.sh failed in a fresh $suite root (log above)" >&2
  exit 1
fi
chroot "$root" env PREREQS_NO_GO=1 bash /src/scripts/prereqs.sh
rm -f "$log"
