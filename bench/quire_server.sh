# quire_server.sh: sourced by the benchmark scripts that start a quire server
# of their own on a SQLite database (seed_history.sh, boot_bench.sh).
#
# Needs the variables quire (the binary), work (a directory for the server's
# output) and db (the SQLite file). start_server sets server_pid and port;
# stop_server stops it (TERM, then KILL after 10 s) and is installed as the
# EXIT trap, so no server outlives its script.

server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap stop_server EXIT INT TERM

start_server() {
  local out="$work/quire-server.out"
  : >"$out"
  "$quire" serve --database-url "sqlite:$db" --port 0 >"$out" 2>"$work/quire-server.err" &
  server_pid=$!
  for _ in $(seq 200); do
    if grep -q "quire listening on" "$out"; then break; fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/quire-server.err" >&2; exit 1; }
    sleep 0.05
  done
  port=$(sed -n 's#.*quire listening on http://[^:]*:\([0-9]*\).*#\1#p' "$out")
  [[ -n "$port" ]] || { echo "$(basename "$0"): the server did not start" >&2; exit 1; }
}
