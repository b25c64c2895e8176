#!/bin/sh
# Entry point of mlops/postgres:17.
# First start (no $PGDATA/PG_VERSION): initdb with the superuser POSTGRES_USER (default
# mlflow) whose password is the first line of the file POSTGRES_PASSWORD_FILE, creates
# the database POSTGRES_DB (default mlflow), and writes pg_hba.conf:
#   local   peer, OS users root and postgres map to POSTGRES_USER (docker exec pg_dump)
#   host    scram-sha-256 from loopback and from any host of the container's networks
#           (samenet), or from POSTGRES_HOST_ALLOW (an address range) when given.
# Every start: $PGDATA is handed to postgres (a bind mount the host made empty belongs
# to root), then `postgres -c listen_addresses=*` runs as postgres via gosu.
set -eu

die() { echo "postgres-entrypoint: $*" >&2; exit 1; }

PGDATA=${PGDATA:-/var/lib/postgresql/data}
POSTGRES_USER=${POSTGRES_USER:-mlflow}
POSTGRES_DB=${POSTGRES_DB:-mlflow}
export PGDATA

# Options alone are for postgres; any other command runs as given (pg_dump, psql, sh).
case "${1:-}" in
  '' | -*) set -- postgres "$@" ;;
esac
[ "$1" = postgres ] || exec "$@"
shift

as_postgres() {
  if [ "$(id -u)" = 0 ]; then gosu postgres "$@"; else "$@"; fi
}

valid_name() {
  case "$1" in
    '' | [0-9]* | *[!A-Za-z0-9_]*) die "$2 must be a plain SQL name ([A-Za-z_][A-Za-z0-9_]*), not '$1'" ;;
  esac
}

init_cluster() {
  valid_name "$POSTGRES_USER" POSTGRES_USER
  valid_name "$POSTGRES_DB" POSTGRES_DB
  [ -n "${POSTGRES_PASSWORD_FILE:-}" ] || die "POSTGRES_PASSWORD_FILE is not set; the first start needs the superuser's password in a file"
  [ -r "$POSTGRES_PASSWORD_FILE" ] || die "cannot read POSTGRES_PASSWORD_FILE ($POSTGRES_PASSWORD_FILE)"
  # initdb runs as postgres, which may not read a root-only secret: give it a private copy.
  pwcopy=$(mktemp /tmp/pgpass.XXXXXX)
  head -n 1 "$POSTGRES_PASSWORD_FILE" | tr -d '\r' >"$pwcopy"
  [ "$(wc -c <"$pwcopy")" -gt 1 ] || { rm -f "$pwcopy"; die "$POSTGRES_PASSWORD_FILE is empty"; }
  [ "$(id -u)" != 0 ] || chown postgres:postgres "$pwcopy"
  echo "postgres-entrypoint: initializing $PGDATA (superuser $POSTGRES_USER, database $POSTGRES_DB)"
  if ! as_postgres initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwcopy" \
      --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null; then
    rm -f "$pwcopy"
    die "initdb failed"
  fi
  rm -f "$pwcopy"
  cat >"$PGDATA/pg_hba.conf" <<HBA
# Written by postgres-entrypoint on the first start.
# TYPE  DATABASE  USER  ADDRESS  METHOD
local   all       all            peer map=container
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
host    all       all   ${POSTGRES_HOST_ALLOW:-samenet}  scram-sha-256
HBA
  cat >"$PGDATA/pg_ident.conf" <<IDENT
# MAPNAME    SYSTEM-USERNAME  PG-USERNAME
container    root             $POSTGRES_USER
container    postgres         $POSTGRES_USER
IDENT
  [ "$(id -u)" != 0 ] || chown postgres:postgres "$PGDATA/pg_hba.conf" "$PGDATA/pg_ident.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    # Single-user mode: no server, no port, nothing to wait for.
    echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\"" \
      | as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
  fi
}

[ -z "${POSTGRES_PASSWORD:-}" ] \
  || die "POSTGRES_PASSWORD is refused (it would show in docker inspect); put the password in a file and give POSTGRES_PASSWORD_FILE"

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  find "$PGDATA" ! -user postgres -exec chown postgres:postgres {} +
  chown postgres:postgres /var/run/postgresql
  chmod 2775 /var/run/postgresql
fi
chmod 0700 "$PGDATA"
[ -s "$PGDATA/PG_VERSION" ] || init_cluster

# Given first, so a later -c from the command overrides it.
set -- -c listen_addresses='*' "$@"
if [ "$(id -u)" = 0 ]; then
  exec gosu postgres postgres "$@"
fi
exec postgres "$@"
