#!/usr/bin/env bash
# The dashboard's browser tests drive Debian's Chromium through Playwright (the Python package,
# from the uv lock; never `playwright install`, whose browser download is not ours to make).
# Install it from Debian's packages when absent and we are root, as ensure-infra.sh does for
# PostgreSQL. Used by `make test`. PATHWAYS_CHROMIUM overrides the binary.
set -euo pipefail
bin=${PATHWAYS_CHROMIUM:-/usr/bin/chromium}
if [ -x "$bin" ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "==> installing chromium from Debian's packages (for the dashboard's browser tests)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
else
  echo "error: $bin missing and cannot be installed here (need root and apt-get)" >&2
  exit 1
fi
[ -x "$bin" ] || { echo "error: chromium installed but $bin is not there" >&2; exit 1; }
