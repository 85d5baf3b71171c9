#!/usr/bin/env bash
# Usage: tools/run-server.sh [quire serve options...]
# Installs missing dependencies, builds the server into <repo>/build and runs
# `quire serve` with the given options. Without --database-url (and without
# QUIRE_DATABASE_URL in the environment) the database is sqlite:quire.db in the
# current directory. Build output goes to stderr; the server's own stdout
# ("quire listening on http://ADDR:PORT") stays on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

QUIRE_BUILD_TARGETS=quire "${ROOT}/tools/build.sh" "${ROOT}/build" >&2

args=("$@")
have_url=0
for a in "${args[@]}"; do
  case ${a} in
    --database-url | --database-url=*) have_url=1 ;;
  esac
done
if [[ ${have_url} -eq 0 && -z ${QUIRE_DATABASE_URL:-} ]]; then
  args=(--database-url sqlite:quire.db "${args[@]}")
fi

exec "${ROOT}/build/quire" serve "${args[@]}"
