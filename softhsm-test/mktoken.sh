#!/usr/bin/env bash
# mktoken.sh OUTDIR [PKIDIR]: a throwaway SoftHSM2 token with its own configuration.
#
# Writes OUTDIR/softhsm2.conf (export SOFTHSM2_CONF to use it), OUTDIR/tokens/, and OUTDIR/pin
# (mode 0600). The token is labelled "appliance", user PIN 1234, SO PIN 5678. With PKIDIR (made by
# mkpki.sh), the keys of alice and list are imported as objects "alice" and "list", the way an
# operator loads existing keys; `appliance keys generate` makes new ones on the token instead.
set -euo pipefail
out=${1:?usage: mktoken.sh OUTDIR [PKIDIR]}
pki=${2:-}
mkdir -p "$out/tokens"
out=$(cd "$out" && pwd)
cat > "$out/softhsm2.conf" <<CONF
directories.tokendir = $out/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF=$out/softhsm2.conf
softhsm2-util --init-token --free --label appliance --so-pin 5678 --pin 1234 >/dev/null
umask 077
printf '1234' > "$out/pin"
if [ -n "$pki" ]; then
  id=1
  for name in alice list; do
    softhsm2-util --import "$pki/$name.key" --token appliance --label "$name" \
      --id "$(printf '%02x' $id)" --pin 1234 >/dev/null
    id=$((id + 1))
  done
fi
