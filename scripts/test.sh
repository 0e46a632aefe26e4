#!/usr/bin/env bash
# test.sh: the whole test suite, as CI runs it. Installs its Debian packages when missing, then:
# formatting and vet, every Go test with the race detector against a real SoftHSM2 token, a short
# run of every fuzz target, and one pass of every benchmark (so none rots; numbers are in README).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
bash scripts/deps.sh
export CI=${CI:-true}   # a missing HSM or decoder fails the run instead of skipping tests

echo "== gofmt, go vet"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "gofmt would change: $bad" >&2; exit 1; fi
go vet ./...

echo "== go build"
go build -o bin/appliance ./cmd/appliance 2>/dev/null || go build ./...

echo "== go test -race"
go test -race -count=1 -timeout 25m ./...

fuzztime=${FUZZTIME:-20s}
echo "== fuzz targets, $fuzztime each"
for f in $(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do
  pkg=./$(dirname "${f#./}")
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
    echo "-- $pkg $target"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" | tail -n 2
  done
done

echo "== benchmarks, one pass each"
go test -run '^$' -bench . -benchtime 1x -timeout 15m ./... | grep -E '^(Benchmark|ok|FAIL|---)' || true
echo "== all tests passed"
