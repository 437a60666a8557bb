#!/usr/bin/env bash
# npm (for `npm ci` of GOV.UK Frontend and axe-core): install Debian's nodejs and npm when
# absent and we are root. Used by `make install`.
set -euo pipefail
command -v npm >/dev/null && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "==> installing nodejs and npm from Debian's packages"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
else
  echo "error: npm missing and cannot be installed here (need root and apt-get)" >&2
  exit 1
fi
