#!/usr/bin/env bash
# package.sh [OUTDIR]: build the Debian package (default into dist/) with nfpm, then check it:
# dpkg-deb --info and --contents, and the binary extracted from it runs `version`, `help config`
# and `check-config` on the configuration the package ships.
#
# The package holds /usr/bin/appliance, the systemd unit, sysusers.d and tmpfiles.d entries,
# /etc/appliance/appliance.toml as a conffile, the man pages appliance(8) and appliance.toml(5)
# (made from the help text) and bash completion. PKG_VERSION sets the version (default
# 0.1.0~gitDATE.REV from the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
nfpm=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0

out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d -t appliance-package-XXXXXX)
trap 'rm -rf "$stage"' EXIT

if [ -z "${PKG_VERSION:-}" ]; then
  rev=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  when=$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date -u +%Y%m%d)
  PKG_VERSION=0.1.0~git$when.$rev
fi
PKG_ARCH=$(go env GOARCH)
export PKG_VERSION PKG_ARCH PKG_STAGE=$stage

echo "package: building appliance $PKG_VERSION ($PKG_ARCH)"
go build -ldflags "-X main.packageVersion=$PKG_VERSION" -o "$stage/appliance" ./cmd/appliance
"$stage/appliance" help man | gzip -9n > "$stage/appliance.8.gz"
"$stage/appliance" help man config | gzip -9n > "$stage/appliance.toml.5.gz"
"$stage/appliance" help completion bash > "$stage/appliance.bash"
bash -n "$stage/appliance.bash"

rm -f "$out"/appliance_*.deb
# nfpm expands variables in version and arch, not in paths: the stage goes in by sed.
sed "s|\${PKG_STAGE}|$stage|g" deploy/nfpm.yaml > "$stage/nfpm.yaml"
go run "$nfpm" package --config "$stage/nfpm.yaml" --packager deb --target "$out/"
deb=$(ls "$out"/appliance_*.deb)
echo "package: built $deb"

# The checks.
fail() { echo "package: FAIL: $*" >&2; exit 1; }
info=$(dpkg-deb --info "$deb")
grep -q "^ Package: appliance$" <<<"$info" || fail "dpkg-deb --info: no Package: appliance"
grep -q "^ Version: $PKG_VERSION$" <<<"$info" || fail "dpkg-deb --info: version is not $PKG_VERSION"
[ "$(dpkg-deb --info "$deb" conffiles)" = /etc/appliance/appliance.toml ] || fail "/etc/appliance/appliance.toml is not the one conffile"
contents=$(dpkg-deb --contents "$deb")
for path in ./usr/bin/appliance ./usr/lib/systemd/system/appliance.service ./usr/lib/tmpfiles.d/appliance.conf \
  ./usr/lib/sysusers.d/appliance.conf ./etc/appliance/appliance.toml ./usr/share/man/man8/appliance.8.gz \
  ./usr/share/man/man5/appliance.toml.5.gz ./usr/share/bash-completion/completions/appliance \
  ./usr/share/doc/appliance/README.md; do
  grep -q " $path\$" <<<"$contents" || fail "dpkg-deb --contents: $path missing"
done
root="$stage/root"
dpkg-deb -x "$deb" "$root"
"$root/usr/bin/appliance" version | tee "$stage/version"
grep -q "^appliance $PKG_VERSION$" "$stage/version" || fail "appliance version does not say $PKG_VERSION"
"$root/usr/bin/appliance" help config > "$stage/help"
[ "$(head -n 1 "$stage/help")" = 'APPLIANCE.TOML(5)' ] || fail "help config"
zcat "$root/usr/share/man/man5/appliance.toml.5.gz" > "$stage/man5"
grep -q '^\.TH APPLIANCE.TOML 5' "$stage/man5" || fail "man page appliance.toml(5)"
# The shipped config names files an operator makes (PIN, certificates): check-config may only
# find those missing; anything else (a key it does not know, a bad value) is a broken package.
if "$root/usr/bin/appliance" check-config -config "$root/etc/appliance/appliance.toml" >"$stage/check" 2>&1; then
  fail "check-config accepted a configuration whose files do not exist"
fi
if grep -v -e 'unusable file' -e '^appliance check-config: ' "$stage/check" | grep -q .; then
  cat "$stage/check" >&2
  fail "check-config finds more than missing files in the shipped configuration"
fi
grep -q 'unusable file' "$stage/check" || { cat "$stage/check" >&2; fail "check-config output"; }
echo "package: ok: $deb"
