#!/usr/bin/env bash
# Installs what the end-to-end tests use besides cargo: a real DNS server
# (dnsmasq), real mail clients (swaks, fetchmail, Python's poplib/smtplib)
# and a foreign SMTP server (aiosmtpd). Safe to run again.
set -euo pipefail

apt_pkgs=(dnsmasq-base swaks fetchmail)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install -q aiosmtpd
