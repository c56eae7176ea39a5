#!/usr/bin/env bash
# Installs what the benchmark needs beyond the test peers, on Debian 12 as root:
#   nginx and its mail module (Debian `nginx`, `libnginx-mod-mail`),
#   python3-matplotlib for the chart (Debian's, so no PyPI access is needed),
#   and the test peers (scripts/install-deps.sh).
# Fast when everything is present. Never starts a system nginx: a policy-rc.d
# that forbids service starts is put in place for the install if there is none.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bash "$repo/scripts/install-deps.sh"

packages=(nginx libnginx-mod-mail python3-matplotlib)
missing=()
[[ -x /usr/sbin/nginx ]] || missing+=(nginx)
[[ -f /usr/lib/nginx/modules/ngx_mail_module.so ]] || missing+=(libnginx-mod-mail)
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || missing+=(python3-matplotlib)

if [[ ${#missing[@]} -gt 0 ]]; then
    echo "bench/install-deps: missing ${missing[*]}; installing ${packages[*]}" >&2
    if [[ $(id -u) -ne 0 ]]; then
        echo "bench/install-deps: must run as root to install Debian packages" >&2
        exit 1
    fi
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        own_policy=1
        trap '[[ $own_policy -eq 1 ]] && rm -f "$policy"' EXIT
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
else
    echo "bench/install-deps: nginx, its mail module and matplotlib present"
fi
