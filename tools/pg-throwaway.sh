#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests, under /tmp, on 127.0.0.1.
# Usage:
#   tools/pg-throwaway.sh start   start a fresh, empty cluster; prints its URL on stdout
#   tools/pg-throwaway.sh stop    stop it and delete its files (no-op when not running)
#   tools/pg-throwaway.sh url     print the URL
# Environment:
#   QUIRE_PG_PORT  port (default 55432). `start` refuses to run when it is busy.
#   QUIRE_PG_DIR   base folder (default /tmp/quire-pg-$QUIRE_PG_PORT)
#   QUIRE_PG_DURABLE=1  keep PostgreSQL's durable defaults (fsync, synchronous
#                  commit, full-page writes), for benchmarks; tests run without
# Callers stop it on exit:  tools/pg-throwaway.sh start; trap 'tools/pg-throwaway.sh stop' EXIT
# initdb and postgres refuse to run as root: as root they run as the `postgres` user.
# The cluster trusts local connections and (unless QUIRE_PG_DURABLE=1) runs
# with fsync off: tests only.
set -euo pipefail

PGPORT=${QUIRE_PG_PORT:-55432}
BASE=${QUIRE_PG_DIR:-/tmp/quire-pg-${PGPORT}}
PGDATA=${BASE}/data
PGSOCK=${BASE}/sock
URL="postgresql://postgres@127.0.0.1:${PGPORT}/postgres"

pg_bin() {
  local d
  for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    if [[ -x ${d}/initdb && -x ${d}/pg_ctl ]]; then
      echo "${d}"
      return 0
    fi
  done
  echo "pg-throwaway: no PostgreSQL server binaries under /usr/lib/postgresql (install postgresql-15)" >&2
  return 1
}

RUN=()
if [[ $(id -u) -eq 0 ]]; then
  if ! id -u postgres >/dev/null 2>&1; then
    echo "pg-throwaway: running as root but there is no 'postgres' user" >&2
    exit 1
  fi
  RUN=(runuser -u postgres --)
fi

port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/${PGPORT}") 2>/dev/null
}

stop() {
  if [[ -f ${PGDATA}/postmaster.pid ]]; then
    local bin
    bin=$(pg_bin)
    "${RUN[@]}" "${bin}/pg_ctl" -D "${PGDATA}" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  # Delete only a folder this script made (it holds the marker).
  if [[ -f ${BASE}/.quire-pg-throwaway ]]; then
    rm -rf "${BASE}"
  elif [[ -d ${BASE} ]] && [[ -n $(ls -A "${BASE}") ]]; then
    echo "pg-throwaway: ${BASE} exists and was not made by this script; not touching it" >&2
    return 1
  fi
}

start() {
  local bin
  bin=$(pg_bin)
  # Stop our own leftover cluster before deleting its files (never rm a live data folder).
  stop
  if port_busy; then
    echo "pg-throwaway: port ${PGPORT} on 127.0.0.1 is already in use; set QUIRE_PG_PORT" >&2
    exit 1
  fi
  mkdir -p "${PGDATA}" "${PGSOCK}"
  touch "${BASE}/.quire-pg-throwaway"
  chmod 755 "${BASE}"
  if [[ ${#RUN[@]} -gt 0 ]]; then
    chown postgres:postgres "${PGDATA}" "${PGSOCK}"
  fi
  "${RUN[@]}" "${bin}/initdb" -D "${PGDATA}" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    --no-sync >"${BASE}/initdb.log" 2>&1 || {
    cat "${BASE}/initdb.log" >&2
    exit 1
  }
  local settings="-p ${PGPORT} -k ${PGSOCK} -c listen_addresses=127.0.0.1 -c max_connections=300"
  if [[ ${QUIRE_PG_DURABLE:-0} != 1 ]]; then
    settings+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  "${RUN[@]}" "${bin}/pg_ctl" -D "${PGDATA}" -l "${PGDATA}/server.log" -w -t 30 -o "${settings}" \
    start >/dev/null || {
    cat "${PGDATA}/server.log" >&2 || true
    exit 1
  }
  "${bin}/pg_isready" -q -h "${PGSOCK}" -p "${PGPORT}"
  echo "${URL}"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  url) echo "${URL}" ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
