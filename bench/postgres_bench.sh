#!/usr/bin/env bash
# postgres_bench.sh QUIRE_BIN TOOLS_DIR WORKDIR [SECONDS]
#
# Durable writes on PostgreSQL, and what serializing sequence allocation with
# the commit costs (docs/architecture.md). On a throwaway cluster with
# PostgreSQL's durable defaults (fsync, synchronous_commit, full-page writes),
# on port ${QUIRE_PG_BENCH_PORT:-55440}:
#
#  1. The engine alone, with pgbench, 8 and 64 clients, SECONDS (default 8) each:
#     "insert" is one INSERT per transaction; "insert behind the head lock"
#     first locks and bumps one counter row, as every Quire write
#     transaction does. The ratio is the price of the lock at the engine.
#  2. Quire on one database: write_bench with 1, 8 and 64 senders, each
#     waiting for its 202 (group commit folds waiting sends together).
#  3. Two Quire instances on one database, 32 senders on each.
#
# Prints a markdown table; everything it started is stopped on exit.
set -euo pipefail

quire=${1:?usage: postgres_bench.sh QUIRE_BIN TOOLS_DIR WORKDIR [SECONDS]}
tools=${2:?usage: postgres_bench.sh QUIRE_BIN TOOLS_DIR WORKDIR [SECONDS]}
work=${3:?usage: postgres_bench.sh QUIRE_BIN TOOLS_DIR WORKDIR [SECONDS]}
seconds=${4:-8}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pgbin=/usr/lib/postgresql/15/bin
mkdir -p "$work"

export QUIRE_PG_PORT=${QUIRE_PG_BENCH_PORT:-55440} QUIRE_PG_DURABLE=1
servers=()
cleanup() {
  local pid
  for pid in "${servers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null || true; done
  "$root/tools/pg-throwaway.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
admin=$("$root/tools/pg-throwaway.sh" start)
psql_admin() { "$pgbin/psql" -q -X -v ON_ERROR_STOP=1 "$admin" "$@"; }

rows=()
row() { rows+=("$1"); }

# --- 1. The engine alone -------------------------------------------------------
psql_admin -c "CREATE DATABASE lockcost"
lockcost=${admin%/*}/lockcost
"$pgbin/psql" -q -X -v ON_ERROR_STOP=1 "$lockcost" <<'SQL'
CREATE TABLE head (id integer PRIMARY KEY, last_seq bigint NOT NULL);
INSERT INTO head VALUES (1, 0);
CREATE TABLE events (seq bigserial PRIMARY KEY, body text NOT NULL);
SQL
cat >"$work/insert.sql" <<'SQL'
BEGIN;
INSERT INTO events (body) VALUES (repeat('x', 200));
COMMIT;
SQL
cat >"$work/insert_locked.sql" <<'SQL'
BEGIN;
SELECT last_seq FROM head WHERE id = 1 FOR UPDATE;
UPDATE head SET last_seq = last_seq + 1 WHERE id = 1;
INSERT INTO events (body) VALUES (repeat('x', 200));
COMMIT;
SQL
# pgbench_row SCRIPT CLIENTS: tps and latency of SCRIPT with CLIENTS clients.
pgbench_row() {
  local script=$1 clients=$2 tps latency label
  tps=$("$pgbin/pgbench" -n -c "$clients" -j 2 -T "$seconds" -f "$work/$script.sql" "$lockcost" 2>&1 |
    sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
  latency=$("$pgbin/pgbench" -n -c "$clients" -j 2 -T 2 -f "$work/$script.sql" "$lockcost" 2>&1 |
    sed -n 's/^latency average = \([0-9.]*\).*/\1/p' | head -1)
  label="pgbench: one insert per transaction"
  [[ $script == insert_locked ]] && label="pgbench: the same behind the head row lock"
  row "| $label | $clients clients | ${tps%.*} transactions/s | avg ${latency} ms | - |"
  last_tps=${tps%.*}
}
pgbench_row insert 8
pgbench_row insert 64
pgbench_tps_64=$last_tps  # issue 10's yardstick: Quire at 64 senders reaches 80% of it
pgbench_row insert_locked 8

# --- 2 and 3. Quire ---------------------------------------------------------------
# start_instance DB LOG: starts quire on database DB; sets $port and $pid.
start_instance() {
  local out=$work/$2.out
  "$quire" serve --database-url "${admin%/*}/$1" --port 0 >"$out" 2>"$work/$2.err" &
  pid=$!
  servers+=("$pid")
  port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/^quire listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$out")
    [[ -n $port ]] && return 0
    sleep 0.05
  done
  echo "quire did not start: $(cat "$work/$2.err")" >&2
  exit 1
}
stop_instance() {
  kill -TERM "$1"
  wait "$1" 2>/dev/null || true
}
result_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

for senders in 1 8 64; do
  psql_admin -c "CREATE DATABASE one_$senders"
  start_instance "one_$senders" "one-$senders"
  out=$(timeout 120 "$tools/write_bench" --port "$port" --senders "$senders" --warmup 1 \
    --duration "$seconds" --server-pid "$pid" | grep '^RESULT')
  stop_instance "$pid"
  row "| Quire, 1 instance | $senders senders | $(result_field per_s "$out") messages/s | p50 $(result_field p50_ms "$out") ms, p99 $(result_field p99_ms "$out") ms | $(result_field errors "$out") |"
  [[ $senders == 64 ]] && quire_64=$(result_field per_s "$out")
done

psql_admin -c "CREATE DATABASE two"
start_instance two two-a
pid_a=$pid port_a=$port
start_instance two two-b
pid_b=$pid port_b=$port
# Each write_bench sets up the owner or, when the other was first, logs in.
timeout 120 "$tools/write_bench" --port "$port_a" --senders 32 --warmup 1 --duration "$seconds" \
  --server-pid "$pid_a" | grep '^RESULT' >"$work/two-a.result" &
bench_a=$!
timeout 120 "$tools/write_bench" --port "$port_b" --senders 32 --warmup 1 --duration "$seconds" \
  --server-pid "$pid_b" | grep '^RESULT' >"$work/two-b.result" &
bench_b=$!
wait "$bench_a" "$bench_b" || true
a=$(cat "$work/two-a.result")
b=$(cat "$work/two-b.result")
sum=$(awk "BEGIN {printf \"%.0f\", $(result_field per_s "$a") + $(result_field per_s "$b")}")
row "| Quire, 2 instances on one database | 32 + 32 senders | $sum messages/s ($(result_field per_s "$a") + $(result_field per_s "$b")) | p99 $(result_field p99_ms "$a") / $(result_field p99_ms "$b") ms | $(result_field errors "$a") + $(result_field errors "$b") |"
stop_instance "$pid_a"
stop_instance "$pid_b"

echo
echo "| what | load | throughput | latency | errors |"
echo "|---|---|---:|---|---:|"
for r in "${rows[@]}"; do echo "$r"; done
if [[ -n ${quire_64:-} && -n ${pgbench_tps_64:-} && ${pgbench_tps_64} != 0 ]]; then
  echo
  echo "Quire at 64 senders / pgbench at 64 clients: $(awk "BEGIN {printf \"%.2f\", ${quire_64} / ${pgbench_tps_64}}") (target: 0.80)"
fi
