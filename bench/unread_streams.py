#!/usr/bin/env python3
"""Memory of streams that never read: the server's RSS while 300 event
streams do not read (4 KiB receive buffers) and 1,500 messages of 4 KB are
sent, and after the streams are closed.

    bench/unread_streams.py PORT      # against `quire serve` on PORT, fresh database

Prints the server's VmRSS at each step (docs/benchmarks.md, section 10).
"""
import http.client
import json
import os
import socket
import sys
import time

PORT = int(sys.argv[1])
STREAMS, MESSAGES, SIZE = 300, 1500, 4000


def server_pid():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmd and f"{PORT}".encode() in cmd:
            return int(pid)
    sys.exit(f"no quire serve --port {PORT} found")


PID = server_pid()


def rss_kb():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def call(method, path, body=None, cookie=None):
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = cookie
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data, response.getheader("Set-Cookie")


_, _, set_cookie = call("POST", "/api/setup", {"name": "alice", "password": "bench password"})
cookie = set_cookie.split(";")[0]
_, data, _ = call("POST", "/api/conversations", {"name": "room"}, cookie)
conv = json.loads(data)["id"]
_, data, _ = call("GET", "/api/boot", None, cookie)
resume = json.loads(data)["resume_point"]
print(f"start: {rss_kb()} kB")
streams = []
for _ in range(STREAMS):
    s = socket.create_connection(("127.0.0.1", PORT))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(f"GET /api/events?resume_point={resume} HTTP/1.1\r\nHost: x\r\n"
              f"Cookie: {cookie}\r\n\r\n".encode())
    streams.append(s)
time.sleep(1)
print(f"{STREAMS} streams open, not reading: {rss_kb()} kB")
sender = http.client.HTTPConnection("127.0.0.1", PORT)
peak = 0
for i in range(MESSAGES):
    sender.request("POST", f"/api/conversations/{conv}", json.dumps({"body": "x" * SIZE}),
                   {"Content-Type": "application/json", "Cookie": cookie})
    sender.getresponse().read()
    if i % 50 == 0:
        peak = max(peak, rss_kb())
print(f"after {MESSAGES} messages of {SIZE} bytes: {rss_kb()} kB (peak seen {peak} kB)")
for s in streams:
    s.close()
time.sleep(2)
print(f"2 s after the streams closed: {rss_kb()} kB")
