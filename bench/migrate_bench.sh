#!/usr/bin/env bash
# migrate_bench.sh QUIRE_BIN WORKDIR [EVENTS]
#
# quire migrate of a large history (default 1,000,000 message events, seeded
# by seed_history.sh) from SQLite into PostgreSQL (a throwaway cluster with
# PostgreSQL's durable defaults, port ${QUIRE_PG_BENCH_PORT:-55441}), into
# LMDB and into SQLite: wall time, rows/s of the copy, time of the
# verification, and the peak RSS of the quire process (/usr/bin/time -v).
# Prints `RESULT bench=migrate …` lines; stops what it started.
set -euo pipefail

quire=${1:?usage: migrate_bench.sh QUIRE_BIN WORKDIR [EVENTS]}
work=${2:?usage: migrate_bench.sh QUIRE_BIN WORKDIR [EVENTS]}
events=${3:-1000000}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$work"

export QUIRE_PG_PORT=${QUIRE_PG_BENCH_PORT:-55441} QUIRE_PG_DURABLE=1
trap '"$root/tools/pg-throwaway.sh" stop >/dev/null 2>&1 || true' EXIT
admin=$("$root/tools/pg-throwaway.sh" start)

db="$work/source.db"
"$root/bench/seed_history.sh" "$quire" "$work" "$db" "$events"

pg_url=$(echo "$admin" | sed 's#/[^/]*$#/quire_migrate_bench#')
/usr/lib/postgresql/15/bin/psql -q -X "$admin" -c "DROP DATABASE IF EXISTS quire_migrate_bench" \
  -c "CREATE DATABASE quire_migrate_bench"
rm -rf "$work/target-lmdb" "$work/target.db"*
mkdir -p "$work/target-lmdb"

for target in "$pg_url" "lmdb:$work/target-lmdb" "sqlite:$work/target.db"; do
  kind=${target%%:*}
  /usr/bin/time -v "$quire" migrate --from "sqlite:$db" --to "$target" \
    >"$work/migrate.out" 2>"$work/migrate.err" || { cat "$work/migrate.err" >&2; exit 1; }
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/migrate.err")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/migrate.err")
  read -r rows copy_s verify_s < <(sed -n \
    's/.*copied \([0-9,]*\) rows in \([0-9.]*\) s and verified them in \([0-9.]*\) s.*/\1 \2 \3/p' \
    "$work/migrate.out" | tr -d ,)
  rate=$(awk "BEGIN {printf \"%.0f\", $rows / $copy_s}")
  echo "sqlite -> $kind: $rows rows copied in $copy_s s ($rate rows/s), verified in $verify_s s, wall $wall, peak RSS $rss kB"
  echo "RESULT bench=migrate to=$kind events=$events rows=$rows copy_s=$copy_s verify_s=$verify_s wall=$wall peak_rss_kb=$rss"
done
