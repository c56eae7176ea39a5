#!/usr/bin/env bash
# Make a throw-away CA and a server certificate for local trials and tests.
#
#   certs/make-test-certs.sh DIR
#
# Writes into DIR:
#   ca.pem, ca.key     the test CA (CA:TRUE, self-signed)
#   cert.pem           leaf certificate followed by the CA certificate (chain)
#   key.pem            the leaf's private key, PKCS#8, unencrypted
# The leaf is RSA-2048, CA:FALSE, EKU serverAuth, SAN DNS:localhost + IP:127.0.0.1,
# valid 30 days, so clients can verify it fully with --cacert DIR/ca.pem.
# If all four files exist and the leaf is valid for at least another day,
# nothing is regenerated. These keys are for tests only: never commit them.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
mkdir -p "$dir"
cd "$dir"

if [[ -s ca.pem && -s ca.key && -s cert.pem && -s key.pem ]] \
    && openssl x509 -in cert.pem -noout -checkend 86400 >/dev/null 2>&1; then
    exit 0
fi

umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# CA
openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 30 \
    -subj "/CN=oauthbearer-proxy test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null

# Leaf key (genpkey writes PKCS#8) and certificate signed by the CA.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/key.pem" 2>/dev/null
openssl req -new -key "$tmp/key.pem" -subj "/CN=localhost" -out "$tmp/leaf.csr"
cat > "$tmp/leaf.ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
openssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days 30 -sha256 -extfile "$tmp/leaf.ext" \
    -out "$tmp/leaf.pem" 2>/dev/null
cat "$tmp/leaf.pem" "$tmp/ca.pem" > "$tmp/cert.pem"

# Certificates are public; keys stay 0600.
chmod 0644 "$tmp/ca.pem" "$tmp/cert.pem"
mv -f "$tmp/ca.pem" "$tmp/ca.key" "$tmp/cert.pem" "$tmp/key.pem" .
