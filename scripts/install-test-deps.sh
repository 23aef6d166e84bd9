#!/usr/bin/env bash
# Installs what the end-to-end tests use besides cargo: a real DNS server
# (dnsmasq), real mail clients (swaks, fetchmail, Python's poplib/smtplib)
# a foreign SMTP server (aiosmtpd), and a real browser (Debian's chromium with
# Japanese fonts, driven by playwright-core from npm). Safe to run again.
set -euo pipefail

apt_pkgs=(dnsmasq-base swaks fetchmail curl chromium fonts-noto-cjk nodejs)
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

# The browser test's driver, pinned by tests/browser/package-lock.json.
if [ ! -d "$(dirname "$0")/../tests/browser/node_modules/playwright-core" ]; then
  (cd "$(dirname "$0")/../tests/browser" && npm ci --no-audit --no-fund --silent)
fi
