#!/usr/bin/env bash
# test.sh: the whole test suite, as CI runs it. Installs its Debian packages when missing, proves
# every outside program the tests drive can do its job (scripts/prereqs.sh), and, as root, that
# deps.sh alone brings them to a fresh Debian root (scripts/cleanroot.sh, in the background; set
# CLEANROOT=0 to leave it out), then: formatting and vet, every Go test with the race detector
# against a real SoftHSM2 token, a short run of every fuzz target, and one pass of every benchmark
# (so none rots; numbers are in README).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
bash scripts/deps.sh
export CI=${CI:-true}   # a missing HSM or decoder fails the run instead of skipping tests
# Each step's heading says how long the run has taken so far: CI allows 15 minutes in all.
step() { echo "== $* (${SECONDS}s)"; }

step "prerequisites"
bash scripts/prereqs.sh

cleanroot_log=$(mktemp)
cleanroot_pid=
if [ "${CLEANROOT:-1}" != 0 ] && [ "$(id -u)" -eq 0 ]; then
  bash scripts/cleanroot.sh > "$cleanroot_log" 2>&1 &
  cleanroot_pid=$!
elif [ "${CLEANROOT:-1}" != 0 ]; then
  echo "(clean-root check left out: it needs root; CLEANROOT=0 says so on purpose)"
fi

step "gofmt, go vet"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "gofmt would change: $bad" >&2; exit 1; fi
go vet ./...

step "go build"
go build ./...

step "go test -race"
# -json so that internal/skipreport can list every skipped test and fail the run when a test that
# scripts/ci-required.txt names skipped or did not run; it prints go test's closing line of each
# package and the output of every failure.
json=$(mktemp)
status=0
# A package whose tests wait for ever fails at 10 minutes with every goroutine's stack (the
# slowest package, e2e, takes about 4), instead of at CI's own limit with nothing said.
# The go-smtp carried in third_party is a module of its own, which ./... does not name; its
# test file checks the appliance's patches (third_party/README.md).
go test -race -count=1 -timeout 10m -json ./... github.com/emersion/go-smtp > "$json" || status=$?
go run ./internal/skipreport -summary -failures -required scripts/ci-required.txt "$json" || status=1
rm -f "$json"
if [ "$status" != 0 ]; then echo "go test failed" >&2; exit 1; fi

step "go test -race ./hsm/ against opencryptoki (the second PKCS#11 implementation; needs root)"
json=$(mktemp)
required=$(mktemp)
echo "appliance/hsm TestSecondImplementation" > "$required"
APPLIANCE_TEST_TOKEN=opencryptoki go test -race -count=1 -json ./hsm/ > "$json" || status=$?
go run ./internal/skipreport -summary -failures -required "$required" "$json" || status=1
rm -f "$json" "$required"
if [ "$status" != 0 ]; then echo "go test against opencryptoki failed" >&2; exit 1; fi

# Live fuzzing, briefly (their seed corpora already ran above): a smoke run that keeps each
# target's harness alive within CI's time. A campaign runs scripts/fuzz.sh with longer times.
step "fuzz targets"
FUZZTIME=${FUZZTIME:-3s} FUZZTIME_PARSERS=${FUZZTIME_PARSERS:-10s} JOBS=${FUZZ_JOBS:-2} bash scripts/fuzz.sh

step "benchmarks, one pass each"
log=$(mktemp)
trap 'rm -f "$log" "$cleanroot_log"' EXIT
if ! go test -short -run '^$' -bench . -benchtime 1x -timeout 20m ./... > "$log" 2>&1; then
  cat "$log"
  exit 1
fi
grep -E '^(Benchmark|ok|FAIL)' "$log" || true

if [ -n "$cleanroot_pid" ]; then
  step "deps.sh in a fresh Debian root"
  if ! wait "$cleanroot_pid"; then
    cat "$cleanroot_log"
    echo "the fresh root lacks something the tests need: add its package to scripts/deps.sh" >&2
    exit 1
  fi
  cat "$cleanroot_log"
fi
step "all tests passed"
