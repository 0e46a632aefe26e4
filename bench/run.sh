#!/usr/bin/env bash
# bench/run.sh: the load benchmark of issue 11, in one run on one machine.
#
#   (a) Debian's Postfix relaying the load to the sink with no crypto (its own config directory,
#       loopback ports, `postfix -c DIR`),
#   (b) the appliance relaying the same load on a throwaway SoftHSM2 token and test PKI,
#   (c) the HSM floor: the per-operation rates of the same token measured in this run, summed
#       over the operations each message needs,
# for the shapes 10 KB/1 To (with an RSA-2048 sender key, and again with a P-256 one: 10k-p256),
# 50 KB/1 To+2 Cc+3 Bcc, 1 MB/1 To+20 Bcc, and a 10 MB message the client encrypted itself
# (openssl cms, for bob and u01..u20) that the appliance splits into 21 packages without
# decrypting (10m-enc), plus the appliance at 50 connections with 10 MB messages (the RSS target). The generator and the sink are
# bench/loadgen, the same for (a) and (b). Also (d), the wire floor: the packages' bytes pushed
# through one loopback SMTP hop into the same sink with nothing in between, measured in this run.
# Prints the table and the ratios b/a, b/c, b/d and d/c (how far the wire alone lets any relay on
# this machine get towards the HSM floor).
#
# Environment: DURATION (submission time per run, default 15s), CONNS (default 8), SHAPES
# (default "10k 10k-p256 50k 1m 10m-enc"), BIG_CONNS (default 50; 0 skips that run), BIG_SHAPE
# (default 10m: 10 MB to one recipient), OUT (results directory, default a new
# /tmp/appliance-bench.*), KEEP=1 keeps the work directory, PPROF=1 also saves 10 s CPU profiles
# of the appliance under every load of CONNS connections, and a goroutine dump in the middle of each.
# Needs root (or sudo) only to install packages and to run Postfix.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
DURATION=${DURATION:-15s}
CONNS=${CONNS:-8}
SHAPES=${SHAPES:-10k 10k-p256 50k 1m 10m-enc}
BIG_CONNS=${BIG_CONNS:-50}
BIG_SHAPE=${BIG_SHAPE:-10m}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

# Packages: the project's own list, then Postfix with debconf answered so the install does not
# prompt and leaves the system's own instance unconfigured (this script runs its own).
bash scripts/deps.sh
if ! [ -x /usr/sbin/postfix ]; then
  echo "bench: installing postfix"
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
fi

work=${OUT:-$(mktemp -d /tmp/appliance-bench.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
chmod 0755 "$work" # Postfix's daemons run as the postfix user and need to reach their directories
results=$work/results.jsonl
: > "$results"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$work/postfix/etc/main.cf" ]; then $sudo postfix -c "$work/postfix/etc" stop >/dev/null 2>&1 || true; fi
  if [ -z "${KEEP:-}" ] && [ -z "${OUT:-}" ]; then $sudo rm -rf "$work"; fi
}
trap cleanup EXIT

echo "bench: work directory $work; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
tags=""
[ -z "${PPROF:-}" ] || tags="-tags=benchpprof"
go build $tags -o "$work/appliance" ./cmd/appliance
go build -o "$work/loadgen" ./bench/loadgen
lg=$work/loadgen

bash softhsm-test/mkpki.sh "$work/pki" 25 >/dev/null
bash softhsm-test/mktoken.sh "$work/token" "$work/pki" >/dev/null
export SOFTHSM2_CONF=$work/token/softhsm2.conf
# frank's ECDSA P-256 key, for the 10k-p256 sender.
softhsm2-util --import "$work/pki/frank.key" --token appliance --label frank --id 03 --pin 1234 >/dev/null

# The client-encrypted message of 10m-enc: 10 MB of text, enveloped by openssl for bob and u01..u20.
head -c $((7680 << 10)) /dev/urandom | base64 -w 76 > "$work/plain.txt"
rcpt_pems=("$work/pki/bob.pem")
for i in $(seq -w 1 20); do rcpt_pems+=("$work/pki/u$i.pem"); done
openssl cms -encrypt -aes256 -text -in "$work/plain.txt" -out "$work/enc.eml" "${rcpt_pems[@]}"
msg_arg() { # shape: the -message flag its load needs
  case "$1" in *-enc) echo "-message $work/enc.eml" ;; esac
}

# ---- (a) Postfix ----------------------------------------------------------------------------
pf=$work/postfix
mkdir -p "$pf/etc" "$pf/queue" "$pf/data"
$sudo chown postfix "$pf/data"
pf_port=$($lg freeport)
sink_port=$($lg freeport)
cat > "$pf/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$sink_port
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
message_size_limit = 52428800
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
maillog_file = $pf/maillog
maillog_file_prefixes = $pf
CF
# Debian's master.cf chroots services into the queue directory, which needs copies of system
# files there; this instance runs unchrooted.
cat > "$pf/etc/master.cf" <<CF
127.0.0.1:$pf_port inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CF
$sudo postfix -c "$pf/etc" start >/dev/null 2>&1 || { $sudo postfix -c "$pf/etc" start; exit 1; }
for _ in $(seq 50); do [ -s "$pf/queue/pid/master.pid" ] && break; sleep 0.1; done
pf_pid=$(tr -d ' ' < "$pf/queue/pid/master.pid")
for sh in $SHAPES; do
  # Postfix does not sign: the sender's key type makes no difference to it.
  case "$sh" in *-p256) continue ;; esac
  echo "bench: postfix $sh, $CONNS connections, $DURATION"
  # shellcheck disable=SC2046
  $lg run -label postfix -target "127.0.0.1:$pf_port" -sink "127.0.0.1:$sink_port" -shape "$sh" \
    -conns "$CONNS" -duration "$DURATION" -watch "$pf_pid" -out "$results" $(msg_arg "$sh") >/dev/null
done
$sudo postfix -c "$pf/etc" stop >/dev/null 2>&1

# ---- (c) the HSM floor, on the idle token ---------------------------------------------------
ap_port=$($lg freeport)
sink_port=$($lg freeport)
cat > "$work/appliance.toml" <<CF
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token = "appliance"
pin_file = "$work/token/pin"
max_sessions = 8

[smtp]
listen = "127.0.0.1:$ap_port"
hostname = "relay.bench.test"

[relay]
next_hop = "127.0.0.1:$sink_port"

[spool]
dir = "$work/spool"

[directory]
certs = "$work/pki/certs"
roots = "$work/pki/roots.pem"

[policy]
bcc = "individual"
missing_cert = "reject"
profile = "compat"
self_copy = true

[queue]
# Workers wait on fsync and on the next hop more than on the HSM: with 4 the
# backlog (and the latency) grows at the same throughput; 2 x max_sessions keeps it short.
workers = 16

[log]
level = "warn"

[[sender]]
address = "alice@example.test"
key = "pkcs11:token=appliance;object=alice"
cert = "$work/pki/alice.chain.pem"

[[sender]]
address = "frank@example.test"
key = "pkcs11:token=appliance;object=frank"
cert = "$work/pki/frank.chain.pem"
CF
echo "bench: HSM floor and wire floor"
$lg floor -config "$work/appliance.toml" -rcpt-cert "$work/pki/bob.pem" \
  -p256-key "pkcs11:token=appliance;object=frank" -out "$results" >/dev/null

# ---- (b) the appliance ----------------------------------------------------------------------
pprof_env=()
if [ -n "${PPROF:-}" ]; then
  pprof_port=$($lg freeport)
  pprof_env=(APPLIANCE_PPROF="127.0.0.1:$pprof_port")
fi
env "${pprof_env[@]}" "$work/appliance" serve -config "$work/appliance.toml" 2> "$work/appliance.log" &
ap_pid=$!
pids+=("$ap_pid")
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$ap_port") 2>/dev/null && break
  sleep 0.1
done
run_appliance() { # label shape conns
  local prof="" fetch=""
  if [ -n "${PPROF:-}" ] && [ "$3" = "$CONNS" ]; then
    prof=$work/cpu-$2.pprof
    # What the goroutines wait on mid-run (off-CPU time does not show in a CPU profile).
    (sleep 8; curl -s -o "$work/goroutines-$2.txt" "http://127.0.0.1:$pprof_port/debug/pprof/goroutine?debug=1") &
    (sleep 3; curl -s -o "$prof" "http://127.0.0.1:$pprof_port/debug/pprof/profile?seconds=10") &
    fetch=$!
  fi
  echo "bench: $1 $2, $3 connections, $DURATION"
  # shellcheck disable=SC2046
  $lg run -label "$1" -target "127.0.0.1:$ap_port" -sink "127.0.0.1:$sink_port" -shape "$2" \
    -conns "$3" -duration "$DURATION" -watch "$ap_pid" -out "$results" $(msg_arg "$2") >/dev/null
  [ -z "$fetch" ] || wait "$fetch"
}
for sh in $SHAPES; do run_appliance appliance "$sh" "$CONNS"; done
if [ "$BIG_CONNS" -gt 0 ]; then
  # A fresh process, so its peak RSS is this load's alone.
  kill "$ap_pid"; wait "$ap_pid" 2>/dev/null || true
  "$work/appliance" serve -config "$work/appliance.toml" 2>> "$work/appliance.log" &
  ap_pid=$!
  pids+=("$ap_pid")
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$ap_port") 2>/dev/null && break
    sleep 0.1
  done
  run_appliance "appliance-${BIG_CONNS}conns" "$BIG_SHAPE" "$BIG_CONNS"
fi
kill "$ap_pid"; wait "$ap_pid" 2>/dev/null || true

echo
echo "bench: $(nproc) cores, $(uname -r), $(postconf -d mail_version 2>/dev/null), SoftHSM2 $(dpkg-query -W -f='${Version}' softhsm2)"
$lg report "$results"
echo
echo "bench: raw results in $results"
