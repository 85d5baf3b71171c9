#!/usr/bin/env bash
# boot_bench.sh QUIRE_BIN WORKDIR [EVENTS]
#
# Boot of a large history: time to first byte, total time and size of
# GET /api/boot, and the server's peak RSS (VmHWM), on a database holding
# EVENTS (default 1,000,000) message events.
#
# The history is seeded by seed_history.sh (directly with sqlite3).
#
# Then a new server process starts on the seeded database and boot is timed
# twice with curl (the first right after the start, the second warm); VmHWM is
# read from /proc after each. Prints `RESULT bench=boot …` lines.
set -euo pipefail

quire=${1:?usage: boot_bench.sh QUIRE_BIN WORKDIR [EVENTS]}
work=${2:?usage: boot_bench.sh QUIRE_BIN WORKDIR [EVENTS]}
events=${3:-1000000}
mkdir -p "$work"
db="$work/boot.db"

# start_server, stop_server (the EXIT trap): quire on $db.
source "$(dirname "$0")/quire_server.sh"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status"; }

# --- the history: a user, a conversation, EVENTS messages ---
"$(dirname "$0")/seed_history.sh" "$quire" "$work" "$db" "$events" | tee "$work/seed.out"
jar="$work/boot-cookies"
last_seq=$(sqlite3 "$db" "SELECT value FROM meta WHERE key = 'last_seq'")
seed_s=$(sed -n 's/^seeded .* in \([0-9.]*\) s.*/\1/p' "$work/seed.out")

# --- boot, timed ---
start_server
sleep 0.5
idle_rss=$(rss_kb)
echo "server started on the seeded database: RSS ${idle_rss} kB before any boot"
for run in cold warm; do
  ticks_before=$(cpu_ticks)
  timing=$(curl -s -o /dev/null -b "$jar" --max-time 120 \
    -w '%{http_code} %{time_starttransfer} %{time_total} %{size_download}' \
    "http://127.0.0.1:$port/api/boot")
  read -r code ttfb total size <<<"$timing"
  hwm=$(hwm_kb)
  cpu_s=$(awk "BEGIN {printf \"%.2f\", ($(cpu_ticks) - $ticks_before) / $(getconf CLK_TCK)}")
  printf 'boot (%s): HTTP %s, first byte %.3f s, total %.2f s, %.1f MB, %.0f events/s; server CPU %.2f s; server VmHWM %s kB\n' \
    "$run" "$code" "$ttfb" "$total" "$(awk "BEGIN {print $size / 1000000}")" \
    "$(awk "BEGIN {print $events / $total}")" "$cpu_s" "$hwm"
  echo "RESULT bench=boot run=$run events=$events code=$code ttfb_s=$ttfb total_s=$total bytes=$size hwm_kb=$hwm idle_rss_kb=$idle_rss seed_s=$seed_s server_cpu_s=$cpu_s"
done

# --- check what came back: the resume point and the number of events ---
count=$(curl -s -b "$jar" --max-time 120 "http://127.0.0.1:$port/api/boot" |
  grep -o '"type":"message","event":"sent"' | wc -l || true)
resume=$(curl -s -b "$jar" --max-time 120 "http://127.0.0.1:$port/api/boot" | head -c 200 |
  grep -o '"resume_point":[0-9]*' | cut -d: -f2 || true)
echo "check: resume_point $resume (last_seq $last_seq), $count message events in the body"
echo "RESULT bench=boot_check resume_point=$resume message_events=$count"
stop_server
