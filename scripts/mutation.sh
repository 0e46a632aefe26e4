#!/usr/bin/env bash
# mutation.sh: mutation testing with gremlins (github.com/go-gremlins/gremlins). It changes one
# operator at a time in the code (a condition negated, < made <=, + made -), runs the package's
# tests against each change, and counts the changes no test noticed ("lived"): each is a line the
# tests do not really check. Slow, every mutant runs its package's tests: not part of
# scripts/test.sh. docs/testing.md keeps the results.
#
#   scripts/mutation.sh                 every target below, one package after the other
#   scripts/mutation.sh --smoke         the smoke set: a few small files, minutes; for CI
#   scripts/mutation.sh queue seal      the named targets only
#
# Environment: MUTATION_TIMEOUT, the time limit per target (default 60m); MUTATION_WORKERS,
# mutants tested at once (default 1: the tests themselves are parallel); MUTATION_OUT, the report
# directory (default $TMPDIR/mutation-report: a log and a JSON file per target, summary.txt).
# MUTATION_MIN_EFFICACY (smoke only, default 75) fails the run below that killed share;
# MUTATION_SKIP, when set, replaces every target's list of skipped tests ("" skips none).
#
# Skipped tests: a target may name tests that do not run during its mutation run (go test -skip,
# through GOFLAGS, for the coverage run that sets the per-mutant timeout and for every mutant):
# the slow interop decoders, which take most of a run and check the same bytes faster tests
# check. A mutant only they would kill counts as lived, so a skip can only lower the killed
# share; re-run a survivor against the whole suite (go test -overlay) before calling it real.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
export GOFLAGS="${GOFLAGS:-} -count=1" # no cached coverage run: its time sets the per-mutant timeout
export CI=${CI:-true} # a test that would skip for a missing tool fails instead of killing nothing

version=v0.6.0
gobin=$(go env GOPATH)/bin
gremlins=$gobin/gremlins
if [ ! -x "$gremlins" ] || [ "$(cat "$gobin/.gremlins-version" 2>/dev/null)" != "$version" ]; then
  echo "== installing gremlins $version"
  GOBIN=$gobin go install "github.com/go-gremlins/gremlins/cmd/gremlins@$version"
  echo "$version" > "$gobin/.gremlins-version"
fi

# A target is a package and the regexp of the files to mutate in it ("" every non-test file; a
# leading ! mutates every file the rest does not match).
declare -A pkg files
pkg[split]=./split;       files[split]=''
pkg[seal]=./seal;         files[seal]=''
pkg[smime]=./smime;       files[smime]=''
pkg[cms]=./cms;           files[cms]=''
pkg[queue]=./queue;       files[queue]=''
pkg[pipeline]=./pipeline; files[pipeline]='^pipeline\.go$' # the dispatcher, not lists or pass-through
all=(split seal smime cms queue pipeline)
# Targets of a few files each, to run a package in pieces.
pkg[queue-spool]=./queue; files[queue-spool]='^(queue|spool|fs|spoolbytes)\.go$'
pkg[queue-worker]=./queue; files[queue-worker]='^worker\.go$'
pkg[smime-normalize]=./smime; files[smime-normalize]='^(normalize|sevenbit)\.go$'
pkg[smime-rest]=./smime;  files[smime-rest]='!^(normalize|sevenbit)\.go$' # ! : every file but these
pkg[cms-rest]=./cms;      files[cms-rest]='^(recipient|ridkey|sign|signedcerts|sniff|verify|keyagree_read)\.go$'
pkg[cms-sign]=./cms;      files[cms-sign]='^(ridkey|sign|signedcerts|sniff|verify)\.go$' # cms-rest's part not yet run
pkg[smime-head]=./smime;  files[smime-head]='!^(classify|normalize|sevenbit)\.go$' # smime-rest but classify.go
pkg[smime-tail]=./smime;  files[smime-tail]='^(parse|post|protected|report|reportprotected|reporttext|senders|signed)\.go$' # what smime-head did not reach
pkg[smime-classify]=./smime; files[smime-classify]='^(classify|classify_head|sevenbit)\.go$' # the classifier and the 7bit check, after their text-part and head-buffer changes
pkg[smime-classify-head]=./smime; files[smime-classify-head]='^(classify_head|sevenbit)\.go$' # smime-classify's files past classify.go, run alongside it
pkg[queue-rest]=./queue;  files[queue-rest]='^(envelope|prefixed|wire)\.go$' # queue's files no other target names
pkg[queue-stage]=./queue; files[queue-stage]='^(queue|spool)\.go$' # with since: what queue-spool's run (at 3cd4a2a) did not see
# A target may mutate only the lines changed since a commit (gremlins --diff, against the working
# tree): the staged spool write and the group commit came to spool.go and queue.go after the
# queue-spool run. gremlins 0.6.0 matches the diff's file names (from the module root) with
# names relative to the package, so its git diff runs with --relative=<package dir>/ (a shim),
# and -U0: gremlins takes a hunk's changed lines as one run from its first, which context lines
# in the middle of a hunk would shift.
declare -A since
since[queue-stage]=3cd4a2a
pkg[queue-worker-new]=./queue; files[queue-worker-new]='^worker\.go$'; since[queue-worker-new]=e2fc2bc # since queue-worker's run
# Tests not run per mutant (see "Skipped tests" above): in cms, TestKeyAgreeDecoders (openssl,
# gpgsm and NSS decrypting every key-agreement variant: 10 s) and TestGPGSM (3 s) are 13 of a
# run's 20 s; TestOpenSSLDecryptsOurs, TestKeyAgreeOpenSSL and TestNSS still decode what cms
# writes.
declare -A skip
skip[cms]='^(TestKeyAgreeDecoders|TestGPGSM)$'
skip[cms-rest]=${skip[cms]}
skip[cms-sign]=${skip[cms]}
# smime-rest skips none: smime's tests take 3.7 s, no interop test dominates (the slowest,
# TestListPackageBytes 0.8 s and TestClassifyOpenSSL 0.6 s).
# The smoke set: small files whose tests are quick.
pkg[queue-retry]=./queue; files[queue-retry]='^(retry|dsn)\.go$'
smoke=(queue-retry)

mode=full
targets=()
for a in "$@"; do
  case $a in
    --smoke) mode=smoke ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d'; exit 0 ;;
    *) [ -n "${pkg[$a]:-}" ] || { echo "unknown target $a (known: ${!pkg[*]})" >&2; exit 2; }; targets+=("$a") ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  if [ $mode = smoke ]; then targets=("${smoke[@]}"); else targets=("${all[@]}"); fi
fi

out=${MUTATION_OUT:-${TMPDIR:-/tmp}/mutation-report}
mkdir -p "$out"
limit=${MUTATION_TIMEOUT:-60m}
workers=${MUTATION_WORKERS:-1}
summary=$out/summary.txt
echo "# gremlins $version, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo none)" > "$summary"
status=0
for t in "${targets[@]}"; do
  dir=${pkg[$t]#./}
  excludes=()
  if [ -n "${files[$t]}" ]; then
    re=${files[$t]#!}
    for f in "$dir"/*.go; do
      b=$(basename "$f")
      case $b in *_test.go) continue ;; esac
      m=0
      echo "$b" | grep -Eq "$re" && m=1
      [ "$re" = "${files[$t]}" ] || m=$((1 - m))
      if [ $m = 0 ]; then
        excludes+=(-E "(^|/)${b//./\\.}\$")
      fi
    done
  fi
  sk=${MUTATION_SKIP-${skip[$t]:-}}
  ds=${since[$t]:-}
  echo "== $t (${pkg[$t]} ${files[$t]:-all files}${ds:+, lines changed since $ds}${sk:+, skipping $sk}), limit $limit"
  log=$out/$t.log
  rc=0
  run=("$gremlins" unleash --workers "$workers" --timeout-coefficient 5 -o "$out/$t.json" "${excludes[@]}")
  if [ -n "$ds" ]; then
    shim=$(mktemp -d)
    git=$(command -v git)
    printf '#!/bin/sh\nif [ "$1" = diff ]; then shift; exec %s diff -U0 --relative=%s/ "$@"; fi\nexec %s "$@"\n' \
      "$git" "$dir" "$git" > "$shim/git"
    chmod +x "$shim/git"
    PATH=$shim:$PATH GOFLAGS="$GOFLAGS${sk:+ -skip=$sk}" timeout "$limit" "${run[@]}" --diff "$ds" "${pkg[$t]}" > "$log" 2>&1 || rc=$?
    rm -r "$shim"
  else
    GOFLAGS="$GOFLAGS${sk:+ -skip=$sk}" timeout "$limit" "${run[@]}" "${pkg[$t]}" > "$log" 2>&1 || rc=$?
  fi
  # The totals gremlins prints at the end; a run cut off by the limit has none.
  killed=$(grep -o 'Killed: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  lived=$(grep -o 'Lived: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  if [ -z "$killed" ] || [ -z "$lived" ]; then
    # Cut off: gremlins stops the mutants in flight and reports them as lived (a test killed by
    # a signal); count only what finished before it began shutting down.
    k=$(sed '/Shutting down/q' "$log" | grep -c '^ *KILLED' || true)
    l=$(sed '/Shutting down/q' "$log" | grep -c '^ *LIVED' || true)
    line="$t: cut off after $limit (exit $rc): $k killed, $l lived so far"
    status=1
  else
    total=$((killed + lived))
    eff=$(( total > 0 ? 100 * killed / total : 100 ))
    line="$t: $killed killed, $lived lived: $eff% killed ($(grep -Eo '(Timed out|Not covered): [0-9]*' "$log" | tr '\n' ' '))"
    if [ $mode = smoke ] && [ "$eff" -lt "${MUTATION_MIN_EFFICACY:-75}" ]; then
      status=1
    fi
  fi
  echo "$line" | tee -a "$summary"
  sed '/Shutting down/q' "$log" | grep -E '^ *LIVED' | sed "s|^ *|  $t |" | tee -a "$summary" || true
done
echo "== report in $out/ (summary.txt, and per target a log and JSON)"
exit $status
