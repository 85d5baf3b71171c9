#!/usr/bin/env bash
# thread_roles.sh PID — prints "TID ROLE" for each thread of a running quire
# server, read once from gdb backtraces (the server pauses for well under a
# second). The benchmark clients take the file (--thread-roles) to sum CPU by
# role: committer, replier, pump, reactor, worker, listener, reaper, retention, main.
# Prints nothing (and exits 0) if gdb is missing or cannot attach.
set -u
pid=${1:?usage: thread_roles.sh PID}
command -v gdb >/dev/null 2>&1 || exit 0
timeout 60 gdb -p "$pid" -batch -ex "thread apply all bt" 2>/dev/null | awk '
  function flush() { if (tid != "") print tid, role }
  /^Thread [0-9]+ \(Thread .*LWP [0-9]+/ {
    flush()
    match($0, /LWP [0-9]+/); tid = substr($0, RSTART + 4, RLENGTH - 4)
    role = "other"; rank = 99; next
  }
  function set(r, k) { if (k < rank) { role = r; rank = k } }
  /Listener::run/          { set("listener", 1) }
  /Committer::Run/         { set("committer", 2) }
  /Committer::Reply/       { set("replier", 2) }
  /EventHub::Pump/         { set("pump", 3) }
  /RetentionLoop/          { set("retention", 4) }
  /WorkerPool/             { set("worker", 5) }
  /HttpServer::Start/      { set("reaper", 6) }
  /Epoll::poll/            { set("reactor", 7) }
  / in main \(/            { set("main", 8) }
  END { flush() }'
exit 0
