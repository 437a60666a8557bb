#!/usr/bin/env bash
# Make sure uv is importable by the Python we use (installs it from PyPI when missing).
set -euo pipefail
PY=${PY:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "error: $PY not found; Pathways needs Python 3.11 or newer" >&2
  exit 1
fi
"$PY" - <<'PYEOF' || { echo "error: Pathways needs Python 3.11 or newer" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PYEOF
if ! "$PY" -m uv --version >/dev/null 2>&1; then
  echo "==> installing uv (the workspace's package manager)"
  if ! "$PY" -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
    else
      echo "error: pip is missing; install python3-pip" >&2; exit 1
    fi
  fi
  "$PY" -m pip install --quiet uv 2>/dev/null || "$PY" -m pip install --quiet --user uv \
    || "$PY" -m pip install --quiet --break-system-packages uv
fi
