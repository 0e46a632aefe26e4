#!/usr/bin/env bash
# demo.sh: the appliance in two minutes, on a fresh machine. It
#   1. installs the Debian packages it needs (scripts/deps.sh) and builds the binaries,
#   2. makes a throwaway demo PKI and a SoftHSM2 token holding alice's signing key,
#   3. writes a config, starts a local next-hop sink and `appliance serve`,
#   4. sends one message with swaks: From alice, To bob, Cc carol, and Bcc dave and erin given only
#      as envelope recipients (RCPT TO), the way mail clients submit Bcc,
#   5. shows `appliance inspect` of every package the next hop received, so you can see that nobody
#      learns of dave or erin except dave and erin themselves, and decrypts one package with openssl.
# Everything lives in one temporary directory, removed at the end; KEEP=1 keeps it, and the end
# of the run says how to use its token and config again.
# Ports: DEMO_SMTP_PORT (default 2525) for the appliance, DEMO_SINK_PORT (2526) for the next hop.
# Headings are bold only on a terminal, and never with NO_COLOR set (no-color.org).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

smtp_port=${DEMO_SMTP_PORT:-2525}
sink_port=${DEMO_SINK_PORT:-2526}

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  say() { printf '\n== %s\n' "$*"; }
fi

say "Debian packages the demo uses (softhsm2, openssl, swaks)"
bash scripts/deps.sh demo

work=$(mktemp -d -t appliance-demo-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# listening PORT: true once something accepts connections on 127.0.0.1:PORT.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for port in "$smtp_port" "$sink_port"; do
  if listening "$port"; then
    echo "port $port is in use; set DEMO_SMTP_PORT / DEMO_SINK_PORT to free ones" >&2
    exit 1
  fi
done

say "Building appliance and sink into $work"
go build -o "$work/appliance" ./cmd/appliance
go build -o "$work/sink" ./cmd/sink

say "Demo PKI (openssl) and SoftHSM2 token"
bash softhsm-test/mkpki.sh "$work/pki" 0 >/dev/null
bash softhsm-test/mktoken.sh "$work/token" "$work/pki"
export SOFTHSM2_CONF=$work/token/softhsm2.conf
module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
  if [ -f "$m" ]; then module=$m; break; fi
done
if [ -z "$module" ]; then echo "libsofthsm2.so not found" >&2; exit 1; fi
echo "token 'appliance' (PIN in $work/token/pin) holds alice's private key as object 'alice';"
echo "recipient certificates for bob, carol, dave, erin and others are in $work/pki/certs"

say "Configuration ($work/appliance.toml)"
cat > "$work/appliance.toml" <<EOF
[hsm]
module = "$module"
token = "appliance"
pin_file = "$work/token/pin"

[smtp]
listen = "127.0.0.1:$smtp_port"
hostname = "relay.example.test"

[relay]
next_hop = "127.0.0.1:$sink_port"

[spool]
dir = "$work/spool"

[directory]
certs = "$work/pki/certs"
roots = "$work/pki/roots.pem"

[policy]
bcc = "individual"      # every hidden recipient gets a package of their own
missing_cert = "reject"
profile = "compat"
self_copy = true        # alice can read what she sent

[queue]
workers = 2
retry = ["1s", "2s"]

[log]
format = "json"

[[sender]]
address = "alice@example.test"
key = "pkcs11:token=appliance;object=alice"
cert = "$work/pki/alice.chain.pem"
EOF
cat "$work/appliance.toml"
"$work/appliance" check-config -config "$work/appliance.toml"

say "Starting the next hop (sink on :$sink_port) and the appliance (:$smtp_port)"
"$work/sink" -listen "127.0.0.1:$sink_port" -dir "$work/received" 2>"$work/sink.log" &
pids+=($!)
"$work/appliance" serve -config "$work/appliance.toml" 2>"$work/appliance.log" &
pids+=($!)
for _ in $(seq 100); do
  if listening "$smtp_port" && listening "$sink_port"; then break; fi
  sleep 0.1
done
if ! listening "$smtp_port"; then
  echo "the appliance did not start:" >&2
  cat "$work/appliance.log" >&2
  exit 1
fi
echo "both listening; logs in $work/appliance.log and $work/sink.log"

say "Sending one message with swaks"
cat > "$work/message.eml" <<'EOF'
From: Alice <alice@example.test>
To: Bob <bob@example.test>
Cc: Carol <carol@example.test>
Subject: Board meeting notes
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Bob, Carol: the notes from today are below.
(Dave and Erin get this too, as Bcc: neither of you can tell.)
EOF
echo "headers name bob (To) and carol (Cc); dave and erin are only in the envelope (RCPT TO)"
swaks --server 127.0.0.1 --port "$smtp_port" --from alice@example.test \
  --to bob@example.test,carol@example.test,dave@example.test,erin@example.test \
  --data @"$work/message.eml" --silent 2
echo "accepted: the message is spooled; now it is signed with alice's key on the token, encrypted"
echo "once, and wrapped per recipient into one package per privacy group"

say "Waiting for the packages at the next hop"
# bcc = individual: one package for bob and carol, one for dave, one for erin.
want=3
for _ in $(seq 600); do
  n=$(find "$work/received" -name '*.json' 2>/dev/null | wc -l)
  [ "$n" -ge "$want" ] && break
  sleep 0.1
done
if [ "$n" -lt "$want" ]; then
  echo "only $n of $want packages arrived; the appliance log says:" >&2
  tail -n 20 "$work/appliance.log" >&2
  exit 1
fi
sleep 0.5 # a fourth package would be a bug; give it a moment to show up
ls "$work/received"

# rcpt FILE.json: the envelope recipients of one transaction, comma-separated.
rcpt() { tr -d ' \n' < "$1" | sed 's/.*"rcpt_to":\[\([^]]*\)\].*/\1/; s/"//g'; }

say "What each package reveals (appliance inspect)"
cat <<'EOF'
For each package: the envelope it travelled in, then the people its outer headers name and the
owner of every RecipientInfo (the per-recipient wrapped key: it names the certificate, and so the
person). Whoever receives a package can read all of that. Look for dave and erin: each appears only
in their own package (its Received "for" clause and their own RecipientInfo), never in bob and
carol's; alice appears everywhere as the sender (self_copy: she can read her sent mail).
EOF
for json in "$work"/received/*.json; do
  eml=${json%.json}.eml
  echo
  echo "--- $(basename "$eml"): RCPT TO $(rcpt "$json")"
  "$work/appliance" inspect -config "$work/appliance.toml" "$eml"
  if [ "$(rcpt "$json")" = "bob@example.test,carol@example.test" ]; then
    if "$work/appliance" inspect -config "$work/appliance.toml" "$eml" | grep -Eq 'dave|erin'; then
      echo ">>> bob and carol's package mentions dave or erin: that would be a privacy bug"
    else
      echo ">>> bob and carol's package mentions neither dave nor erin"
    fi
  fi
done

say "Dave decrypts his package with openssl (no appliance code involved)"
dave_json=$(grep -l '"dave@example.test"' "$work"/received/*.json | head -n 1)
dave_eml=${dave_json%.json}.eml
openssl cms -decrypt -recip "$work/pki/dave.pem" -inkey "$work/pki/dave.key" -in "$dave_eml" -out "$work/dave.decrypted"
echo "decrypted $(basename "$dave_eml"); inside is alice's signed message:"
openssl cms -verify -CAfile "$work/pki/roots.pem" -in "$work/dave.decrypted" -out "$work/dave.content" 2>&1
sed 's/^/    /' "$work/dave.content"

say "Done"
if [ "${KEEP:-0}" = 1 ]; then
  cat <<EOF
The token, PKI and config stay in $work. To use them again:
  export SOFTHSM2_CONF=$work/token/softhsm2.conf
  $work/appliance keys list -config $work/appliance.toml
  $work/appliance serve -config $work/appliance.toml
The token's user PIN is in $work/token/pin; \`appliance init\` starts a real setup.
EOF
else
  echo "the temporary directory is removed now; run with KEEP=1 to keep its token and config for"
  echo "another look (the end of that run says how to use them)"
fi
