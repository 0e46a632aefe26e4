#!/usr/bin/env bash
# fuzz.sh: live fuzzing of every fuzz target in the repository. The parsers
# of untrusted input (packages cms, smime, split: CMS, MIME, addresses and plans) run for
# FUZZTIME_PARSERS each, every other target for FUZZTIME. scripts/test.sh runs it briefly (3 s
# and 10 s); a campaign gives it longer, e.g.
#
#   FUZZTIME=2m FUZZTIME_PARSERS=10m bash scripts/fuzz.sh
#
# A failing input is written under the package's testdata/fuzz/ (keep it: it becomes a seed
# that every `go test` runs) and the script fails with the fuzzer's output.
#
# JOBS (default 1) targets run at once, each with its share of the cores as fuzzing workers
# (-parallel); outputs are printed in order. test.sh runs 2: most of a brief run is each target's
# start (the instrumented build, the seed corpus's baseline), which then overlaps.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
fuzztime=${FUZZTIME:-1m}
parsers=${FUZZTIME_PARSERS:-5m}
jobs=${JOBS:-1}
workers=$(( $(nproc) / jobs )); [ "$workers" -ge 1 ] || workers=1
inputs() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }

# fuzz_one DIR TARGET TIME OUT: one target's run, its report in OUT and its verdict in OUT.rc.
fuzz_one() {
  local dir=$1 target=$2 t=$3 out=$4 corpus before after rc=0
  corpus="$dir/testdata/fuzz/$target"
  before=$(inputs "$corpus")
  echo "-- ./$dir $target ($t)" > "$out"
  if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$t" -parallel "$workers" "./$dir" > "$out.log" 2>&1; then
    after=$(inputs "$corpus")
    # Go 1.26's fuzz coordinator can report its own -fuzztime deadline as a failure
    # (golang/go#75804, fixed in Go 1.27): that is no finding when no failing input was written.
    if [ "$after" = "$before" ] && grep -q 'context deadline exceeded' "$out.log"; then
      tail -n 3 "$out.log" >> "$out"
      echo "   (the fuzzer's own deadline race, golang/go#75804; no failing input was written)" >> "$out"
    else
      cat "$out.log" >> "$out"
      rc=1
    fi
  else
    tail -n 1 "$out.log" >> "$out"
  fi
  echo "$rc" > "$out.rc"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fuzzing: $parsers each for cms, smime, split; $fuzztime for the rest; $jobs at once"
n=0
for f in $(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do
  dir=$(dirname "${f#./}")
  t=$fuzztime
  case $dir in cms|smime|split) t=$parsers ;; esac
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    n=$((n + 1))
    fuzz_one "$dir" "$target" "$t" "$work/$(printf %03d "$n")" &
  done
done
wait
failed=0
for out in "$work"/[0-9][0-9][0-9]; do
  cat "$out"
  [ "$(cat "$out.rc" 2>/dev/null || echo 1)" = 0 ] || failed=1
done
exit "$failed"
