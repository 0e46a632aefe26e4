#!/usr/bin/env bash
# mkpki.sh OUTDIR [NBULK]: a throwaway S/MIME test PKI made with openssl.
#
# OUTDIR/root.pem, inter.pem      root and intermediate CA (roots.pem holds both)
# OUTDIR/NAME.{key,pem,p12}       end entities: PKCS#8 key, leaf, PKCS#12 (password "test",
#                                 SHA1-3DES PBE so gpgsm 2.2 can import it)
# OUTDIR/NAME.chain.pem           leaf + intermediate
# OUTDIR/certs/                   every recipient certificate, the directory's folder
# OUTDIR/users.tsv                name, address, kind, what the certificate is for
#
# Users: alice (sender, RSA-2048), bob (RSA-2048), carol (RSA-3072), dave and erin (RSA-2048),
# frank (EC P-256), peggy (EC P-384), grace (expired), heidi-a and heidi-b (two valid certificates for one address),
# ivan (no keyEncipherment), olivia@example.org, list@example.test, and u01..uNN bulk users.
set -euo pipefail
out=${1:?usage: mkpki.sh OUTDIR [NBULK]}
nbulk=${2:-25}
mkdir -p "$out/certs" "$out/ca"
cd "$out"
: > ca/index.txt
echo 1000 > ca/serial
: > users.tsv

cat > ca/openssl.cnf <<'CNF'
[ca]
default_ca = inter
[inter]
dir = ca
database = ca/index.txt
serial = ca/serial
new_certs_dir = ca
certificate = inter.pem
private_key = inter.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
[anything]
commonName = supplied
emailAddress = optional
organizationName = optional
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:${ENV::EMAIL}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf_ec]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = emailProtection
subjectAltName = email:${ENV::EMAIL}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf_nokeyenc]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = emailProtection
subjectAltName = email:${ENV::EMAIL}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
export EMAIL=unused@example.test
cnf=ca/openssl.cnf

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out root.key 2>/dev/null
openssl req -config $cnf -new -x509 -key root.key -subj "/O=Appliance Test/CN=Appliance Test Root CA" \
  -days 3650 -extensions v3_root -out root.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out inter.key 2>/dev/null
openssl req -config $cnf -new -key inter.key -subj "/O=Appliance Test/CN=Appliance Test Intermediate CA" -out ca/inter.csr
openssl x509 -req -in ca/inter.csr -CA root.pem -CAkey root.key -set_serial 2 -days 3650 \
  -extfile $cnf -extensions v3_inter -out inter.pem 2>/dev/null
cat root.pem inter.pem > roots.pem

# leaf NAME EMAIL KIND EXT [START END]
leaf() {
  local name=$1 email=$2 kind=$3 ext=$4 start=${5:-} end=${6:-}
  case $kind in
    rsa2048) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key" 2>/dev/null ;;
    rsa3072) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$name.key" 2>/dev/null ;;
    p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key" 2>/dev/null ;;
    p384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$name.key" 2>/dev/null ;;
  esac
  openssl req -config $cnf -new -key "$name.key" -subj "/O=Appliance Test/CN=$name/emailAddress=$email" -out "ca/$name.csr"
  local dates=(-days 825)
  if [ -n "$start" ]; then dates=(-startdate "$start" -enddate "$end"); fi
  EMAIL=$email openssl ca -config $cnf -batch -notext -extensions "$ext" "${dates[@]}" \
    -in "ca/$name.csr" -out "$name.pem" 2>/dev/null
  cat "$name.pem" inter.pem > "$name.chain.pem"
  openssl pkcs12 -export -inkey "$name.key" -in "$name.pem" -certfile inter.pem -name "$name" \
    -passout pass:test -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1 -out "$name.p12"
  cp "$name.pem" "certs/$name.pem"
  printf '%s\t%s\t%s\t%s\n' "$name" "$email" "$kind" "$ext" >> users.tsv
}

leaf alice alice@example.test rsa2048 leaf
leaf bob bob@example.test rsa2048 leaf
leaf carol carol@example.test rsa3072 leaf
leaf dave dave@example.test rsa2048 leaf
leaf erin erin@example.test rsa2048 leaf
leaf frank frank@example.test p256 leaf_ec
leaf peggy peggy@example.test p384 leaf_ec
leaf grace grace@example.test rsa2048 leaf 20200101000000Z 20210101000000Z
leaf heidi-a heidi@example.test rsa2048 leaf 20250101000000Z 20300101000000Z
leaf heidi-b heidi@example.test rsa2048 leaf
leaf ivan ivan@example.test rsa2048 leaf_nokeyenc
leaf olivia olivia@example.org rsa2048 leaf
leaf list list@example.test rsa2048 leaf
for i in $(seq -w 1 "$nbulk"); do
  leaf "u$i" "u$i@example.test" rsa2048 leaf
done
