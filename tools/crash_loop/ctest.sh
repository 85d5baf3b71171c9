#!/usr/bin/env bash
# Usage: tools/crash_loop/ctest.sh BACKEND CRASH_LOOP QUIRE [crash_loop options...]
# The ctest entry crash/<BACKEND> (CMakeLists.txt): a short crash loop (5
# SIGKILLs under load, about 10 s) on a fresh, empty database of BACKEND
# (sqlite, lmdb or postgres), deleted afterwards; kept, and named, when the
# run fails.
# Environment:
#   QUIRE_TEST_POSTGRES_URL  for postgres: a server this may create a database on
#                            (tools/test.sh starts one; so does tools/pg-throwaway.sh start)
#   QUIRE_CRASH_KILLS        kills (default 5)
#   QUIRE_CRASH_SEED         seed (default: a new one each run, printed first)
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 BACKEND CRASH_LOOP QUIRE [crash_loop options...]" >&2
  exit 2
fi
backend=$1 crash_loop=$2 quire=$3
shift 3

dir=$(mktemp -d "${TMPDIR:-/tmp}/quire-crash-${backend}.XXXXXX")
admin=""
db=""
rc=1
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [[ -n ${db} ]]; then
    psql "${admin}" -qX -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS ${db} WITH (FORCE)" \
      >/dev/null 2>&1 || true
  fi
  if [[ ${rc} -eq 0 ]]; then
    rm -rf "${dir}"
  else
    echo "crash/${backend}: kept ${dir} (database and server log)" >&2
  fi
}
trap cleanup EXIT

case ${backend} in
  sqlite) url="sqlite:${dir}/quire.db" ;;
  lmdb)
    mkdir "${dir}/lmdb"
    url="lmdb:${dir}/lmdb"
    ;;
  postgres)
    admin=${QUIRE_TEST_POSTGRES_URL:-}
    if [[ -z ${admin} ]]; then
      echo "crash/postgres: QUIRE_TEST_POSTGRES_URL is not set: run tools/test.sh, or start a" \
        "server with tools/pg-throwaway.sh start and export the URL it prints" >&2
      exit 1
    fi
    db="quire_crash_$$_${RANDOM}"
    psql "${admin}" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE ${db}" >/dev/null
    # The admin URL with its database replaced (any ?query kept).
    base=${admin%%\?*}
    query=${admin:${#base}}
    if [[ ${base} =~ ^[a-z]+://[^/]*$ ]]; then
      url="${base}/${db}${query}"
    else
      url="${base%/*}/${db}${query}"
    fi
    ;;
  *)
    echo "crash/${backend}: unknown backend (sqlite, lmdb or postgres)" >&2
    exit 2
    ;;
esac

seed=()
if [[ -n ${QUIRE_CRASH_SEED:-} ]]; then
  seed=(--seed "${QUIRE_CRASH_SEED}")
fi
set +e
"${crash_loop}" --quire "${quire}" --database-url "${url}" --kills "${QUIRE_CRASH_KILLS:-5}" \
  --server-log "${dir}/server.log" "${seed[@]}" "$@"
rc=$?
set -e
exit "${rc}"
