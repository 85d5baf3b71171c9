#!/usr/bin/env bash
# seed_history.sh QUIRE_BIN WORKDIR DB EVENTS
#
# A SQLite database DB holding a user "bench" (password "bench password
# 0123"), a conversation and EVENTS messages with their `message sent`
# events, for the benchmarks of large histories (boot_bench.sh,
# migrate_bench.sh). Leaves the user's cookie jar in WORKDIR/boot-cookies.
#
# Seeding: a fresh server makes the user, its session and a conversation
# through the API; the server is stopped; then EVENTS messages and their
# events are inserted directly with the sqlite3 CLI in one transaction,
# exactly as the SQLite engine would store them (messages row, events row
# with kind 4, meta.last_seq advanced, conversation last_activity). Through
# the API this would take EVENTS / (messages/s at 64 senders) — see
# docs/benchmarks.md — which is too long for a 10-minute run. The direct
# insert depends on the schema of storage/sqlite/sqlite_schema.cc.
set -euo pipefail

quire=${1:?usage: seed_history.sh QUIRE_BIN WORKDIR DB EVENTS}
work=${2:?usage: seed_history.sh QUIRE_BIN WORKDIR DB EVENTS}
db=${3:?usage: seed_history.sh QUIRE_BIN WORKDIR DB EVENTS}
events=${4:?usage: seed_history.sh QUIRE_BIN WORKDIR DB EVENTS}
mkdir -p "$work"
rm -f "$db" "$db-wal" "$db-shm" "$db-lock"

# start_server, stop_server (the EXIT trap): quire on $db.
source "$(dirname "$0")/quire_server.sh"

# --- a user, a session and a conversation, through the API ---
start_server
jar="$work/boot-cookies"
curl -sf -c "$jar" -H 'Content-Type: application/json' \
  -d '{"name":"bench","password":"bench password 0123"}' \
  "http://127.0.0.1:$port/api/setup" >"$work/setup.json"
curl -sf -b "$jar" -H 'Content-Type: application/json' -d '{"name":"boot bench"}' \
  "http://127.0.0.1:$port/api/conversations" >"$work/conversation.json"
user=$(grep -o '"id":"U[^"]*"' "$work/setup.json" | head -1 | cut -d'"' -f4)
conv=$(grep -o '"id":"C[^"]*"' "$work/conversation.json" | head -1 | cut -d'"' -f4)
[[ -n "$user" && -n "$conv" ]] || { echo "seed_history: setup failed" >&2; exit 1; }
stop_server

# --- EVENTS messages, inserted directly ---
at=$(date +%s%6N)  # microseconds since the epoch: recent, so no TTL expires them
filler="the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy"
seed_start=$(date +%s.%N)
sqlite3 "$db" >/dev/null <<SQL
PRAGMA foreign_keys = ON;
BEGIN IMMEDIATE;
CREATE TEMP TABLE n (i INTEGER PRIMARY KEY);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $events)
INSERT INTO n SELECT i FROM c;
INSERT INTO messages (id, conversation, sender, body, at)
  SELECT printf('M%015d', i), '$conv', '$user', printf('%08d %s', i, '$filler'), $at + i FROM n;
INSERT INTO events (seq, kind, at, entity, conversation, sender, text)
  SELECT (SELECT value FROM meta WHERE key = 'last_seq') + i, 4, $at + i, printf('M%015d', i),
         '$conv', '$user', printf('%08d %s', i, '$filler') FROM n;
UPDATE meta SET value = value + $events WHERE key = 'last_seq';
UPDATE conversations SET last_activity = $at + $events WHERE id = '$conv';
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
seed_end=$(date +%s.%N)
seed_s=$(awk "BEGIN {printf \"%.2f\", $seed_end - $seed_start}")
db_mb=$(du -m "$db" | cut -f1)
last_seq=$(sqlite3 "$db" "SELECT value FROM meta WHERE key = 'last_seq'")
printf 'seeded %d message events directly with sqlite3 in %.1f s (database %s MiB, last_seq %s)\n' \
  "$events" "$seed_s" "$db_mb" "$last_seq"

