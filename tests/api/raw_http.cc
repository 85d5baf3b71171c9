// HTTP over a raw socket, for harness.h: SendRaw sends bytes libcurl would
// not (malformed requests, pipelining, a body in pieces) and reads one
// response, framed by Content-Length, chunks or the server's close.
//
// Thread-safe: each call has its own socket; RawResponse is a value.
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "tests/api/harness.h"
#include "tests/api/harness_helpers.h"

namespace quire::apitest {

Json RawResponse::json() const {
  return Json::parse(body, nullptr, false);
}

std::string RawResponse::Describe() const {
  std::string s = "raw HTTP " + std::to_string(status);
  if (closed) s += " (closed)";
  if (timed_out) s += " (timed out)";
  s += " received=" + Clip(raw, 600);
  return s;
}

namespace {

// Tries to parse one complete response out of `raw`. Returns true when complete.
bool ParseRaw(RawResponse& r) {
  std::size_t end = r.raw.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  std::istringstream head(r.raw.substr(0, end));
  std::string line;
  std::getline(head, line);
  {
    std::istringstream sl(line);
    std::string version;
    sl >> version >> r.status;
  }
  r.headers.clear();
  while (std::getline(head, line)) {
    std::size_t colon = line.find(':');
    if (colon != std::string::npos)
      r.headers.emplace(ToLower(Trim(line.substr(0, colon))), Trim(line.substr(colon + 1)));
  }
  std::size_t pos = end + 4;
  auto it = r.headers.find("transfer-encoding");
  if (it != r.headers.end() && ToLower(it->second).find("chunked") != std::string::npos) {
    std::string body;
    while (true) {
      std::size_t eol = r.raw.find("\r\n", pos);
      if (eol == std::string::npos) return false;
      std::size_t len = std::stoul(r.raw.substr(pos, eol - pos), nullptr, 16);
      if (r.raw.size() < eol + 2 + len + 2) return false;
      if (len == 0) {
        r.body = body;
        return true;
      }
      body += r.raw.substr(eol + 2, len);
      pos = eol + 2 + len + 2;
    }
  }
  it = r.headers.find("content-length");
  if (it != r.headers.end()) {
    std::size_t len = std::stoul(it->second);
    if (r.raw.size() < pos + len) return false;
    r.body = r.raw.substr(pos, len);
    return true;
  }
  if (r.status == 204 || r.status == 304 || (r.status >= 100 && r.status < 200)) return true;
  r.body = r.raw.substr(pos);
  return false;  // framed by close
}

}  // namespace

std::size_t MaxSendBuffer() {
  std::ifstream in("/proc/sys/net/ipv4/tcp_wmem");
  std::size_t min = 0, def = 0, max = 0;
  if (in >> min >> def >> max) return max;
  return 4 << 20;
}

RawResponse SendRaw(const std::string& host, int port, const std::string& bytes,
                    std::chrono::milliseconds timeout, const std::vector<std::size_t>& split_at) {
  RawResponse r;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) {
    r.timed_out = true;
    return r;
  }
  int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    freeaddrinfo(res);
    if (fd >= 0) close(fd);
    r.closed = true;
    return r;
  }
  freeaddrinfo(res);

  std::size_t sent = 0;
  std::vector<std::size_t> cuts = split_at;
  cuts.push_back(bytes.size());
  for (std::size_t cut : cuts) {
    cut = std::min(cut, bytes.size());
    while (sent < cut) {
      ssize_t n = send(fd, bytes.data() + sent, cut - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        sent = bytes.size();  // the server stopped reading; read what it answered
        break;
      }
      sent += static_cast<std::size_t>(n);
    }
    if (sent < bytes.size()) std::this_thread::sleep_for(50ms);
  }

  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (true) {
    if (ParseRaw(r)) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      break;
    }
    pollfd p{fd, POLLIN, 0};
    int pr = poll(&p, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) {
      r.timed_out = true;
      break;
    }
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      r.closed = true;
      ParseRaw(r);
      break;
    }
    r.raw.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return r;
}

}  // namespace quire::apitest
