#!/usr/bin/env bash
# Install what the tests' loopback peers need, on Debian 12 as root:
#   Dovecot (imapd, lmtpd, pop3d, managesieved with the sieve plugin), Postfix,
#   curl, msmtp, fetchmail (POP3 passthrough tests), python3-sievelib (a real
#   ManageSieve client for the PLAIN passthrough test), openssl, HAProxy (in front
#   of the proxy in the PROXY protocol tests), systemd (systemd-analyze checks
#   the unit file), PostgreSQL (the app-password store's tests start their
#   own server under a temporary directory) (Debian packages),
#   cargo-deb (for the package test), and the npm packages of tests/peers/oidc
#   (oidc-provider; Node.js must be there).
# Fast when everything is present: apt is skipped if every binary is found,
# npm is skipped if node_modules exists.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(dovecot-imapd dovecot-lmtpd dovecot-pop3d dovecot-managesieved dovecot-sieve
    postfix curl msmtp fetchmail python3-sievelib openssl haproxy systemd
    chromium chromium-driver python3-selenium postgresql)
# One binary (or file) per package that proves it is installed.
needed=(
    /usr/sbin/dovecot /usr/bin/doveadm
    /usr/lib/dovecot/imap /usr/lib/dovecot/lmtp
    /usr/lib/dovecot/pop3 /usr/lib/dovecot/managesieve
    /usr/bin/sievec
    /usr/sbin/postfix /usr/sbin/postconf
    /usr/bin/curl /usr/bin/msmtp /usr/bin/fetchmail /usr/bin/openssl
    /usr/lib/python3/dist-packages/sievelib/managesieve.py
    /usr/sbin/haproxy /usr/bin/systemd-analyze
    /usr/bin/chromium /usr/bin/chromedriver
    /usr/lib/python3/dist-packages/selenium
    /usr/lib/postgresql/15/bin/initdb /usr/lib/postgresql/15/bin/pg_ctl
)

missing=()
for f in "${needed[@]}"; do
    [[ -e $f ]] || missing+=("$f")
done

if [[ ${#missing[@]} -gt 0 ]]; then
    echo "install-deps: missing ${missing[*]}; installing ${packages[*]}" >&2
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-deps: must run as root to install Debian packages" >&2
        exit 1
    fi
    # Keep the packages' maintainer scripts from starting system daemons on
    # ports 25/143: policy-rc.d exiting 101 forbids service starts. Only put
    # ours in place if there is none, and remove it afterwards.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        own_policy=1
        trap '[[ $own_policy -eq 1 ]] && rm -f "$policy"' EXIT
    fi
    # Postfix asks what kind of mail server this is: none, we run our own configs.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
else
    echo "install-deps: Debian packages present"
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install-deps: node and npm are needed for tests/peers/oidc (Node.js >= 20.19)" >&2
    exit 1
fi

# cargo-deb builds the Debian package that tests/deb_package.rs installs
# (about 2 minutes of compiling, once).
if ! cargo deb --version >/dev/null 2>&1; then
    echo "install-deps: installing cargo-deb" >&2
    cargo install cargo-deb --locked
else
    echo "install-deps: cargo-deb present"
fi

oidc=$repo/tests/peers/oidc
if [[ ! -d $oidc/node_modules/oidc-provider ]]; then
    echo "install-deps: installing npm packages in tests/peers/oidc" >&2
    if [[ -f $oidc/package-lock.json ]]; then
        (cd "$oidc" && npm ci --no-audit --no-fund)
    else
        (cd "$oidc" && npm install --no-audit --no-fund)
    fi
else
    echo "install-deps: tests/peers/oidc/node_modules present"
fi
