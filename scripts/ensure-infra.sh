#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, user postgres, trust) and NATS with JetStream
# (127.0.0.1:4222) answer: start them if installed but stopped, install them from Debian's
# packages when absent and we are root. Used by `make test`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGPORT=${PGPORT:-5432}
NATS_PORT=${NATS_PORT:-4222}

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

ensure_nats() {
  if port_open "$NATS_PORT"; then return 0; fi
  local bin
  bin=$(command -v nats-server || true)
  [ -n "$bin" ] || [ ! -x /usr/sbin/nats-server ] || bin=/usr/sbin/nats-server
  if [ -z "$bin" ]; then apt_install nats-server; bin=$(command -v nats-server || echo /usr/sbin/nats-server); fi
  local store=/var/lib/nats-server
  is_root && mkdir -p "$store" || { store="$ROOT/.data/nats-test"; mkdir -p "$store"; }
  echo "==> starting nats-server with JetStream on $NATS_PORT (storage $store)"
  nohup "$bin" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$store" >"${TMPDIR:-/tmp}/pathways-nats.log" 2>&1 &
  wait_port "$NATS_PORT" || { echo "error: NATS did not start on $NATS_PORT" >&2; return 1; }
}

ensure_postgres
ensure_nats
