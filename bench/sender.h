// SenderPool: K keep-alive connections driven by one epoll loop, each sending
// a POST and waiting for its answer before sending the next (closed loop), or
// all of them together holding a fixed total rate (open loop: a request is due
// every 1/rate seconds and goes out on the first idle connection; when none is
// idle it is counted as late and sent as soon as one is).
//
// Each request is built at the moment it is written, so a stamp taken inside
// the builder is the send time.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <functional>
#include <memory>

#include "bench_common.h"

namespace bench {

struct SenderOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 1;
  double rate = 0;                     // requests/s in total; 0 = closed loop
  std::int64_t measure_start_ns = 0;   // responses to requests sent from here on are measured
  std::int64_t stop_ns = 0;            // no request is sent from here on
  std::int64_t drain_ns = 5000000000;  // then wait at most this long for answers
  // Builds the whole request (head and body) for a send at `now_ns`.
  std::function<std::string(std::int64_t now_ns)> build;
  // The status that counts as an answer (ok); 0 = any 2xx.
  int expected_status = 0;
};

struct SenderResult {
  std::uint64_t sent = 0;         // requests written
  std::uint64_t ok = 0;           // 2xx answers (or SenderOptions::expected_status)
  std::uint64_t errors = 0;       // other answers
  std::uint64_t broken = 0;       // connections lost (reopened)
  std::uint64_t late = 0;         // fixed rate: sends due while no connection was idle
  std::uint64_t ok_measured = 0;  // 2xx answers to requests sent in [measure_start, stop)
  std::map<int, std::uint64_t> statuses;
  std::string first_error;
  Histogram latency;  // send → answer, for the measured requests
  double measured_seconds = 0;
};

class SenderPool {
 public:
  explicit SenderPool(SenderOptions options) : o_(std::move(options)) {}

  // Runs until stop_ns (+ drain). Call from the thread that should do the work.
  SenderResult Run() {
    SenderResult res;
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    conns_.resize(static_cast<std::size_t>(o_.connections));
    for (std::size_t i = 0; i < conns_.size(); ++i) Open(i);
    const std::int64_t start = NowNs();
    std::uint64_t issued = 0;  // fixed rate: requests issued so far
    std::vector<epoll_event> events(static_cast<std::size_t>(o_.connections) + 1);
    const bool fixed = o_.rate > 0;

    auto send_on = [&](std::size_t i) {
      Conn& c = conns_[i];
      const std::int64_t now = NowNs();
      if (!WriteAll(c.fd, o_.build(now))) {
        Reopen(i, res);
        return;
      }
      c.busy = true;
      c.sent_ns = now;
      ++res.sent;
    };

    if (!fixed) {
      for (std::size_t i = 0; i < conns_.size(); ++i) send_on(i);
    }
    char buf[65536];
    for (;;) {
      const std::int64_t now = NowNs();
      const bool sending = now < o_.stop_ns;
      std::size_t busy = 0;
      for (const Conn& c : conns_) busy += c.busy ? 1 : 0;
      if (!sending && (busy == 0 || now >= o_.stop_ns + o_.drain_ns)) break;
      if (fixed && sending) {
        const auto due =
            static_cast<std::uint64_t>(static_cast<double>(now - start) * 1e-9 * o_.rate) + 1;
        for (std::size_t i = 0; i < conns_.size() && issued < due; ++i) {
          if (!conns_[i].busy) {
            send_on(i);
            ++issued;
          }
        }
        if (issued < due && busy == conns_.size()) {
          res.late += due - issued;
          issued = due;  // counted as late; not sent in a burst later
        }
      }
      int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), fixed ? 1 : 50);
      if (n < 0 && errno == EINTR) continue;
      for (int e = 0; e < n; ++e) {
        const auto i = static_cast<std::size_t>(events[e].data.u64);
        Conn& c = conns_[i];
        ssize_t got = ::recv(c.fd, buf, sizeof buf, 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (got <= 0) {
          const bool was_busy = c.busy;
          Reopen(i, res);
          if (was_busy && !fixed && NowNs() < o_.stop_ns) send_on(i);
          continue;
        }
        c.parser.Feed(buf, static_cast<std::size_t>(got));
        Response r;
        for (;;) {
          try {
            if (!c.parser.Next(&r)) break;
          } catch (const std::exception& ex) {
            if (res.first_error.empty()) res.first_error = ex.what();
            Reopen(i, res);
            break;
          }
          const std::int64_t done = NowNs();
          ++res.statuses[r.status];
          const bool good = o_.expected_status != 0 ? r.status == o_.expected_status
                                                    : r.status >= 200 && r.status < 300;
          if (good) {
            ++res.ok;
            if (c.sent_ns >= o_.measure_start_ns && c.sent_ns < o_.stop_ns) {
              ++res.ok_measured;
              res.latency.Record(done - c.sent_ns);
            }
          } else {
            ++res.errors;
            if (res.first_error.empty()) {
              res.first_error = std::to_string(r.status) + " " + r.body.substr(0, 200);
            }
          }
          c.busy = false;
          auto conn_hdr = r.headers.find("connection");
          if (conn_hdr != r.headers.end() && IEquals(conn_hdr->second, "close")) {
            Reopen(i, res);
            --res.broken;  // an announced close is no breakage
            break;
          }
        }
        if (!fixed && !c.busy && NowNs() < o_.stop_ns) send_on(i);
      }
    }
    res.measured_seconds = static_cast<double>(o_.stop_ns - o_.measure_start_ns) / 1e9;
    for (Conn& c : conns_) {
      if (c.fd >= 0) close(c.fd);
    }
    close(epfd_);
    return res;
  }

 private:
  struct Conn {
    int fd = -1;
    bool busy = false;
    std::int64_t sent_ns = 0;
    ResponseParser parser;
  };

  void Open(std::size_t i) {
    Conn& c = conns_[i];
    c.fd = ConnectTcp(o_.host, o_.port);
    if (c.fd < 0) Die("sender cannot connect to " + o_.host + ":" + std::to_string(o_.port));
    SetNonBlocking(c.fd);
    c.busy = false;
    c.parser = ResponseParser();
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev);
  }

  void Reopen(std::size_t i, SenderResult& res) {
    Conn& c = conns_[i];
    epoll_ctl(epfd_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    ++res.broken;
    Open(i);
  }

  SenderOptions o_;
  int epfd_ = -1;
  std::vector<Conn> conns_;
};

}  // namespace bench
