#!/bin/sh
# Runs once, when the PostgreSQL data directory is first created (docker-entrypoint-initdb.d):
# one database per service, each owned by its own role, so a service can reach only its own.
# Passwords come from the environment of the postgres container (deploy/compose.yaml).
set -eu

for service in referrals providers cohorts notifications insights; do
  var=$(echo "${service}_DB_PASSWORD" | tr '[:lower:]' '[:upper:]')
  eval "password=\${$var:?$var is not set}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v role="$service" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
done
