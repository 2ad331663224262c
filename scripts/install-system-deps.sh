#!/usr/bin/env bash
# Installs the Debian packages the platform and its tests need; does nothing when all are present.
set -euo pipefail
need=()
command -v mosquitto >/dev/null || need+=(mosquitto)
command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
# qemu-user-static: cross-building (and testing) the Raspberry Pis' arm64 runner image on x86
[ "$(uname -m)" != x86_64 ] || [ -e /usr/lib/binfmt.d/qemu-aarch64.conf ] || need+=(qemu-user-static)
command -v chromium >/dev/null || need+=(chromium)
command -v git >/dev/null || need+=(git)
command -v curl >/dev/null || need+=(curl)
command -v pgrep >/dev/null || need+=(procps)
# PostgreSQL: the job database's second backend, tested in every run (a throwaway cluster)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || need+=(postgresql)
# nginx: the dashboard's HTTPS reverse proxy (dashboard/proxy/), started by the TLS tests
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
  [ "$(id -u)" = 0 ] || { echo "need root to install: ${need[*]}" >&2; exit 1; }
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Installed here only for the tests: the distribution's nginx service need not serve port 80.
if [[ " ${need[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null \
    && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl disable --now nginx || true
fi
# The distribution's mosquitto service must not hold port 1883 or our config dirs.
if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
  systemctl stop mosquitto || true
fi
