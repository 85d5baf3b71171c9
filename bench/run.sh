#!/usr/bin/env bash
# bench/run.sh — builds Quire (Release) and the benchmark clients, then runs
# every benchmark on loopback against fresh servers and prints the tables.
#
#   bench/run.sh [--quick] [--only fanout,write,boot,postgres,stall,migrate] [--no-nchan]
#                [--boot-events N] [--no-wait-quiet]
#
# Each measurement runs at most ~30 s (fan-out: 2 s warm-up, 10 s measured,
# then up to 10 s for the streams to drain; stall: ~1 s to post 20 MB of
# history, 1 s of unread boots, 20 rounds of login, send and boot, ~20 s in
# all). On a quiet machine the whole script takes about 6 minutes (--quick:
# about 2), plus the build. It waits for other processes to quiet down (up
# to a minute at the start) and measures a run again when they took over 25%
# of a core during it, but never waits past 4.5 minutes into the run, so it
# ends within 10. Everything it
# starts (quire, nginx) is stopped on exit and its scratch directory
# (databases, logs) is removed; the full log is kept in
# ${QUIRE_BENCH_LOG:-/tmp/quire-bench-last.log}.
#
# nginx + nchan (the comparison) is installed with apt-get when missing; when
# that is impossible the nchan rows are skipped. See docs/benchmarks.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build=${QUIRE_BENCH_BUILD:-$root/build-bench}
log=${QUIRE_BENCH_LOG:-/tmp/quire-bench-last.log}

quick=0
only="fanout,write,boot,postgres,stall,migrate"
with_nchan=1
boot_events=1000000
wait_quiet=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --only) only=$2; shift ;;
    --no-nchan) with_nchan=0 ;;
    --boot-events) boot_events=$2; shift ;;
    --no-wait-quiet) wait_quiet=0 ;;
    -h|--help) sed -n 2,19p "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
wants() { [[ ",$only," == *",$1,"* ]]; }

if [[ $quick == 1 ]]; then
  fan_warm=1; fan_dur=3; write_warm=1; write_dur=3
  [[ $boot_events == 1000000 ]] && boot_events=100000
else
  fan_warm=2; fan_dur=10; write_warm=1; write_dur=8
fi

work=$(mktemp -d /tmp/quire-bench.XXXXXX)
chmod 755 "$work"
: >"$log"
results="$work/results.txt"
: >"$results"
started=()  # PIDs of what this script started

stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${started[@]}"; do stop_pid "$pid"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "$@" | tee -a "$log"; }

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# measure CMD…: runs CMD (which starts a server, runs one client and stops
# the server) and, when other processes took over 25% of a core during the
# measured window, drops that result, waits for quiet and measures again (at
# most 3 tries, and no retry after 4 minutes of running).
measure() {
  local tries=0 kept other
  while :; do
    tries=$((tries + 1))
    kept=$(wc -l <"$results")
    "$@"
    other=$(field other_cpu "$(tail -1 "$results")")
    other=${other%.*}
    if [[ -z $other || $other -le 25 || $tries -ge 3 || $SECONDS -gt 240 || $wait_quiet == 0 ]]; then
      return 0
    fi
    say "(other processes took ${other}% of a core during that run: measuring it again)"
    head -n "$kept" "$results" >"$results.tmp" && mv "$results.tmp" "$results"
    wait_for_quiet 60
  done
}

# Runs a client with a hard time limit, logging everything, keeping RESULT lines.
run_client() {
  local out
  # A client that found failed requests still prints its RESULT line: keep it.
  out=$(timeout 90 "$@" 2>&1) || {
    say "FAILED ($?): $*"; say "$out"
    echo "$out" | grep '^RESULT' >>"$results" || true
    return 0
  }
  echo "$out" | tee -a "$log" | grep -v '^RESULT' || true
  echo "$out" | grep '^RESULT' >>"$results" || true
  echo | tee -a "$log"
}

# ---------------------------------------------------------------------------
say "== building (Release) =="
cmake -S "$root" -B "$build" -G Ninja -DQUIRE_TESTS=OFF -DCMAKE_BUILD_TYPE=Release >>"$log" 2>&1
ninja -C "$build" -j2 quire >>"$log" 2>&1 || { tail -30 "$log"; exit 1; }
cmake -S "$here" -B "$build/bench-tools" -G Ninja -DCMAKE_BUILD_TYPE=Release >>"$log" 2>&1
ninja -C "$build/bench-tools" -j2 >>"$log" 2>&1 || { tail -30 "$log"; exit 1; }
quire="$build/quire"
tools="$build/bench-tools"

# Tools the scripts use, from Debian when missing.
missing=()
for tool in curl:curl sqlite3:sqlite3 ss:iproute2 timeout:coreutils; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
  say "== installing ${missing[*]} (apt-get) =="
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >>"$log" 2>&1 ||
    { apt-get update >>"$log" 2>&1 &&
      apt-get install -y --no-install-recommends "${missing[@]}" >>"$log" 2>&1; } ||
    { say "cannot install ${missing[*]}"; exit 1; }
fi

nchan_module=/usr/share/nginx/modules/ngx_nchan_module.so
if [[ $with_nchan == 1 ]] && wants fanout; then
  if ! command -v nginx >/dev/null 2>&1 || [[ ! -f $nchan_module ]]; then
    say "== installing nginx + libnginx-mod-nchan (apt-get) =="
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends nginx libnginx-mod-nchan >>"$log" 2>&1 ||
      { apt-get update >>"$log" 2>&1 &&
        apt-get install -y --no-install-recommends nginx libnginx-mod-nchan >>"$log" 2>&1; } ||
      true
  fi
  if ! command -v nginx >/dev/null 2>&1 || [[ ! -f $nchan_module ]]; then
    say "nginx/nchan unavailable: the nchan rows are skipped"
    with_nchan=0
  fi
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------------------
# The machine: the load client and the servers share its cores; anything else
# running skews the numbers, so wait (up to 2 minutes) for it to be quiet.
busy_percent() {  # busy CPU of the whole machine over 1 s, in % of one core
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local busy=$(( (b[1]+b[2]+b[3]+b[6]+b[7]+b[8]) - (a[1]+a[2]+a[3]+a[6]+a[7]+a[8]) ))
  echo $(( busy * 100 / $(getconf CLK_TCK) ))
}
# Waits up to $1 seconds for the machine to be quiet (< 25% of a core busy).
# Never waits past 4.5 minutes into the run, so the whole script stays within
# 10 minutes.
wait_for_quiet() {
  local b i limit=$1
  [[ $wait_quiet == 1 ]] || return 0
  ((limit > 270 - SECONDS)) && limit=$((270 - SECONDS))
  ((limit > 0)) || return 0
  for i in $(seq "$limit"); do
    b=$(busy_percent)
    [[ $b -lt 25 ]] && return 0
    [[ $i == 1 ]] && say "machine busy (${b}% of a core used by other processes); waiting for quiet…"
  done
  say "still busy after $limit s; measuring anyway"
}
wait_for_quiet 60
say "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(lscpu | sed -n 's/^Model name: *//p'), kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC') =="
say "== quire $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') (working tree), Release, sqlite WAL synchronous=FULL =="
echo

# Starts a quire server on a fresh database; sets qpid, qport, qroles.
# start_quire NAME [BACKEND]: BACKEND sqlite (default), lmdb or lmdb-nosync.
start_quire() {
  local name=$1 backend=${2:-sqlite} url
  local dir="$work/$name"
  mkdir -p "$dir"
  case $backend in
    sqlite) url="sqlite:$dir/quire.db" ;;
    lmdb) url="lmdb:$dir/lmdb" ;;
    lmdb-nosync) url="lmdb:$dir/lmdb?sync=off" ;;
    *) say "unknown backend $backend"; exit 1 ;;
  esac
  "$quire" serve --database-url "$url" --port 0 >"$dir/out" 2>"$dir/err" &
  qpid=$!
  started+=("$qpid")
  for _ in $(seq 200); do
    grep -q "quire listening on" "$dir/out" && break
    kill -0 "$qpid" 2>/dev/null || { cat "$dir/err" >&2; exit 1; }
    sleep 0.05
  done
  qport=$(sed -n 's#.*quire listening on http://[^:]*:\([0-9]*\).*#\1#p' "$dir/out")
  [[ -n "$qport" ]] || { say "quire did not start"; exit 1; }
  qroles="$dir/roles"
  "$here/thread_roles.sh" "$qpid" >"$qroles"
}
stop_quire() {
  stop_pid "$qpid"
  if [[ -s "$work/$1/err" ]]; then
    say "quire stderr ($1):"; head -20 "$work/$1/err" | tee -a "$log"
  fi
}

# A port below the ephemeral range that no socket uses.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    ss -tanH "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
  done
}

# Starts nginx + nchan (fresh: no buffered messages); sets npid, nport, nworkers.
start_nchan() {
  local name=$1
  local dir="$work/$name"
  mkdir -p "$dir"
  chmod 777 "$dir"
  nport=$(free_port)
  sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$nport#g" "$here/nchan.conf.in" >"$dir/nginx.conf"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/out" 2>&1 &
  npid=$!
  started+=("$npid")
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$nport/pub" && break
    kill -0 "$npid" 2>/dev/null || { cat "$dir/error.log" >&2; exit 1; }
    sleep 0.05
  done
  nworkers=$(pgrep -P "$npid" | paste -sd, -)
}

# ---------------------------------------------------------------------------
fanout_quire() {  # streams rate senders
  start_quire "fanout-quire-$1-$2"
  run_client "$tools/fanout_bench" --target quire --port "$qport" --streams "$1" --rate "$2" \
    --senders "$3" --warmup "$fan_warm" --duration "$fan_dur" --server-pid "$qpid" \
    --thread-roles "$qroles" --label quire
  stop_quire "fanout-quire-$1-$2"
}
fanout_nchan() {  # streams rate senders; a fresh nginx each time (no buffered messages)
  start_nchan "fanout-nchan-$1-$2"
  run_client "$tools/fanout_bench" --target nchan --port "$nport" --streams "$1" --rate "$2" \
    --senders "$3" --warmup "$fan_warm" --duration "$fan_dur" --server-pid "$nworkers" \
    --label nchan
  stop_pid "$npid"
}

if wants fanout; then
  say "== fan-out: full speed with 4 and 32 publishers (each waits for its 202) at 1,000 and 5,000 streams; then a fixed rate =="
  # streams, offered sends/s (0: full speed), sender connections (more for a
  # fixed rate, so that slow answers do not cap the offered rate)
  configs=("0 0 8" "1000 0 4" "1000 0 32" "5000 0 4" "5000 0 32" "1000 100 32" "5000 20 32")
  for c in "${configs[@]}"; do
    read -r streams rate senders <<<"$c"
    measure fanout_quire "$streams" "$rate" "$senders"
    if [[ $with_nchan == 1 ]]; then
      measure fanout_nchan "$streams" "$rate" "$senders"
    fi
  done
fi

if wants write; then
  say "== durable writes: concurrent senders, each waiting for its 202 =="
  run_client "$tools/write_bench" --fsync-probe "$work"
  # Commits are counted as the server's fdatasync calls (one per commit: the
  # WAL is synced, synchronous=FULL) with perf's syscall tracepoint, over
  # about the measured window; messages/s ÷ commits/s is the mean batch size.
  # write_run SENDERS [BACKEND]
  write_run() {
    local backend=${2:-sqlite}
    local dir="$work/write-$1-$backend" perf_pid="" commits=""
    start_quire "write-$1-$backend" "$backend"
    if [[ $have_perf == 1 ]]; then
      (sleep "$write_warm"; timeout 60 perf stat -x, -e syscalls:sys_enter_fdatasync \
        -p "$qpid" -o "$dir/fsyncs" -- sleep "$write_dur" >/dev/null 2>&1) &
      perf_pid=$!
    fi
    run_client "$tools/write_bench" --port "$qport" --senders "$1" --warmup "$write_warm" \
      --duration "$write_dur" --server-pid "$qpid" --thread-roles "$qroles"
    if [[ -n $perf_pid ]]; then
      wait "$perf_pid" 2>/dev/null || true
      commits=$(awk -F, '/sys_enter_fdatasync/ {print $1}' "$dir/fsyncs" 2>/dev/null || true)
    fi
    if [[ $commits =~ ^[0-9]+$ ]]; then
      local per_s
      per_s=$(awk "BEGIN {printf \"%.0f\", $commits / $write_dur}")
      say "commits (fdatasync): ${per_s}/s"
      sed -i '$ s/$/ commits_per_s='"$per_s"'/' "$results"
    fi
    sed -i '$ s/$/ backend='"$backend"'/' "$results"
    stop_quire "write-$1-$backend"
  }
  have_perf=0
  if command -v perf >/dev/null 2>&1 &&
    perf stat -e syscalls:sys_enter_fdatasync -o /dev/null -- true >/dev/null 2>&1; then
    have_perf=1
  fi
  # The yardstick: unknown-path 404s over 64 connections, same client, same
  # session cookie: what the HTTP path answers at all (issue 10's target for
  # durable sends at 64 senders is half of it).
  notfound_run() {
    start_quire "notfound-$1"
    run_client "$tools/write_bench" --port "$qport" --senders "$1" --warmup "$write_warm" \
      --duration "$write_dur" --not-found --server-pid "$qpid" --thread-roles "$qroles"
    stop_quire "notfound-$1"
  }
  measure notfound_run 64
  for senders in 1 8 32 64; do measure write_run "$senders"; done
  for backend in lmdb lmdb-nosync; do
    for senders in 1 8 64; do measure write_run "$senders" "$backend"; done
  done
fi

if wants boot; then
  say "== boot of $boot_events events =="
  out=$(timeout 300 "$here/boot_bench.sh" "$quire" "$work/boot" "$boot_events" 2>&1) ||
    say "boot_bench FAILED"
  echo "$out" | tee -a "$log" | grep -v '^RESULT' || true
  echo "$out" | grep '^RESULT' >>"$results" || true
  echo
fi

if wants migrate; then
  say "== quire migrate of $boot_events events: SQLite into PostgreSQL, LMDB and SQLite =="
  out=$(timeout 600 "$here/migrate_bench.sh" "$quire" "$work/migrate" "$boot_events" 2>&1) ||
    say "migrate_bench FAILED"
  echo "$out" | tee -a "$log" | grep -v '^RESULT' || true
  echo "$out" | grep '^RESULT' >>"$results" || true
  echo
fi

if wants postgres; then
  say "== PostgreSQL: durable writes, and the price of the head row lock =="
  out=$(timeout 300 "$here/postgres_bench.sh" "$quire" "$tools" "$work/postgres" "$write_dur" 2>&1) ||
    say "postgres_bench FAILED"
  echo "$out" | tee -a "$log"
  echo
fi

if wants stall; then
  say "== clients that never read their boots (20 MB each): a login, a send and a boot of another client =="
  # stall_run STALLED: a fresh server, 20 MB of history, STALLED unread boots,
  # then 20 rounds of login, send, boot from another client.
  stall_run() {
    start_quire "stall-$1"
    run_client "$tools/stall_bench" --port "$qport" --stalled "$1" --samples 20 --history-mb 20 \
      --server-pid "$qpid" --thread-roles "$qroles"
    stop_quire "stall-$1"
  }
  for stalled in 0 32; do measure stall_run "$stalled"; done
fi

# ---------------------------------------------------------------------------
# Tables.
cat "$results" >>"$log"

say ""
say "== results =="
if grep -q 'bench=fanout' "$results"; then
  say ""
  say "| target | streams | offered sends/s | sends/s (2xx) | send→202 p99 ms | delivered events/s | send→deliver p50 ms | p99 ms | max ms | complete | server CPU % | client CPU % | other CPU % (steal) |"
  say "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
  while read -r line; do
    rate=$(field rate "$line"); [[ $rate == 0 ]] && rate="full speed"
    streams=$(field streams "$line")
    complete="-"
    if [[ $streams != 0 ]]; then
      complete="$(field min_events "$line")/$(field expected "$line"), ended $(field ended "$line"), gaps $(field gaps "$line")"
    fi
    say "| $(field target "$line") | $streams | $rate | $(field sends_per_s "$line") | $(field send_p99_ms "$line") | $(field delivered_per_s "$line") | $(field lat_p50_ms "$line") | $(field lat_p99_ms "$line") | $(field lat_max_ms "$line") | $complete | $(field server_cpu "$line") | $(field client_cpu "$line") | $(field other_cpu "$line") ($(field steal_cpu "$line")) |"
  done < <(grep 'bench=fanout' "$results")
fi
if grep -q 'bench=write' "$results"; then
  say ""
  fs=$(grep 'bench=fsync' "$results" || true)
  [[ -n $fs ]] && say "disk: 4 KiB write + fdatasync $(field per_s "$fs")/s, p50 $(field p50_ms "$fs") ms, p99 $(field p99_ms "$fs") ms"
  say ""
  say "| backend | concurrent senders | messages/s | fdatasync/s | messages per fdatasync | p50 ms | p99 ms | max ms | errors | server CPU % | client CPU % | other CPU % (steal) |"
  say "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  while read -r line; do
    commits=$(field commits_per_s "$line")
    batch="-"
    [[ -n $commits && $commits != 0 ]] && batch=$(awk "BEGIN {printf \"%.1f\", $(field per_s "$line") / $commits}")
    say "| $(field backend "$line") | $(field senders "$line") | $(field per_s "$line") | ${commits:--} | $batch | $(field p50_ms "$line") | $(field p99_ms "$line") | $(field max_ms "$line") | $(field errors "$line") | $(field server_cpu "$line") | $(field client_cpu "$line") | $(field other_cpu "$line") ($(field steal_cpu "$line")) |"
  done < <(grep 'bench=write' "$results")
  nf=$(grep 'bench=notfound' "$results" | tail -1 || true)
  if [[ -n $nf ]]; then
    say ""
    say "unknown-path 404s, $(field senders "$nf") connections: $(field per_s "$nf")/s (p50 $(field p50_ms "$nf") ms, p99 $(field p99_ms "$nf") ms; server CPU $(field server_cpu "$nf")%, client CPU $(field client_cpu "$nf")%)"
    while read -r line; do
      [[ $(field senders "$line") == 64 ]] || continue
      say "durable sends at 64 senders / 404s: $(field backend "$line") $(awk "BEGIN {printf \"%.2f\", $(field per_s "$line") / $(field per_s "$nf")}")"
    done < <(grep 'bench=write' "$results")
  fi
fi
if grep -q 'bench=boot ' "$results"; then
  say ""
  say "| boot | events | first byte s | total s | MB | server CPU s | server VmHWM MiB | RSS before boot MiB |"
  say "|---|---:|---:|---:|---:|---:|---:|---:|"
  while read -r line; do
    say "| $(field run "$line") | $(field events "$line") | $(field ttfb_s "$line") | $(field total_s "$line") | $(awk "BEGIN {printf \"%.1f\", $(field bytes "$line")/1e6}") | $(awk "BEGIN {printf \"%.2f\", $(field server_cpu_s "$line")}") | $(awk "BEGIN {printf \"%.0f\", $(field hwm_kb "$line")/1024}") | $(awk "BEGIN {printf \"%.0f\", $(field idle_rss_kb "$line")/1024}") |"
  done < <(grep 'bench=boot ' "$results")
fi
if grep -q 'bench=stall' "$results"; then
  say ""
  say "| stalled boots | boot MB | send p50 / p99 / max ms | login p50 / p99 / max ms | boot first byte p50 / p99 / max ms | whole boot p50 / p99 / max ms | failures | unread in stalled sockets MB (closed) | server CPU % | client CPU % | other CPU % (steal) |"
  say "|---:|---:|---|---|---|---|---:|---|---:|---:|---:|"
  while read -r line; do
    ms() { echo "$(field "$1_p50_ms" "$line") / $(field "$1_p99_ms" "$line") / $(field "$1_max_ms" "$line")"; }
    say "| $(field stalled "$line") | $(field boot_mb "$line") | $(ms send) | $(ms login) | $(ms boot_first) | $(ms boot) | $(field failures "$line") | $(field stalled_unread_mb "$line") ($(field stalled_closed "$line")) | $(field server_cpu "$line") | $(field client_cpu "$line") | $(field other_cpu "$line") ($(field steal_cpu "$line")) |"
  done < <(grep 'bench=stall' "$results")
fi
say ""
say "full log: $log"
