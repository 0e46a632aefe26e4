#!/usr/bin/env bash
# fuzz.sh: live fuzzing of every fuzz target in the repository, one after the other. The parsers
# of untrusted input (packages cms, smime, split: CMS, MIME, addresses and plans) run for
# FUZZTIME_PARSERS each, every other target for FUZZTIME. scripts/test.sh runs it briefly (3 s
# and 10 s); a campaign gives it longer, e.g.
#
#   FUZZTIME=2m FUZZTIME_PARSERS=10m bash scripts/fuzz.sh
#
# A failing input is written under the package's testdata/fuzz/ (keep it: it becomes a seed
# that every `go test` runs) and the script stops with the fuzzer's output.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
fuzztime=${FUZZTIME:-1m}
parsers=${FUZZTIME_PARSERS:-5m}
inputs() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
echo "fuzzing: $parsers each for cms, smime, split; $fuzztime for the rest"
for f in $(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do
  dir=$(dirname "${f#./}")
  t=$fuzztime
  case $dir in cms|smime|split) t=$parsers ;; esac
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
    echo "-- ./$dir $target ($t)"
    corpus="$dir/testdata/fuzz/$target"
    before=$(inputs "$corpus")
    if ! out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$t" "./$dir" 2>&1); then
      after=$(inputs "$corpus")
      # Go 1.26's fuzz coordinator can report its own -fuzztime deadline as a failure
      # (golang/go#75804, fixed in Go 1.27): that is no finding when no failing input was written.
      if [ "$after" = "$before" ] && echo "$out" | grep -q 'context deadline exceeded'; then
        echo "$out" | tail -n 3
        echo "   (the fuzzer's own deadline race, golang/go#75804; no failing input was written)"
        continue
      fi
      echo "$out"
      exit 1
    fi
    echo "$out" | tail -n 1
  done
done
