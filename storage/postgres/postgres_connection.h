// Internal to the PostgreSQL backend: connections, their settings, a pool,
// and the mapping of libpqxx exceptions to Status.
//
// Engine exceptions (pqxx::*) are caught here and in postgres_store.cc; only
// a Status leaves storage/postgres/.
//
// Thread-safety: a pqxx::connection is used by one thread at a time. The
// ConnectionPool may be called from any thread.
#pragma once

#include <pqxx/pqxx>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "storage/status.h"

namespace quire::storage::postgres {

// The URL with Quire's connection defaults added where the URL does not set
// them: a connect timeout, TCP keepalives that notice a vanished server
// within about 20 s, and application_name=quire. Accepts postgres:// and
// postgresql:// URLs (libpq's URI syntax).
std::string ConnectionString(const std::string& url);

// Opens a connection and sets the session's timeouts (statement, lock and
// idle-in-transaction). Throws pqxx exceptions.
std::unique_ptr<pqxx::connection> Connect(const std::string& conninfo);

// The Status for the exception being handled (call inside a catch block).
// *broken is set when the connection it happened on must not be used again.
Status CurrentExceptionStatus(bool* broken);

// Runs `fn` (returning Status), mapping any exception to a Status.
template <typename Fn>
Status Guarded(Fn&& fn, bool* broken) {
  try {
    return fn();
  } catch (...) {
    return CurrentExceptionStatus(broken);
  }
}

// Connections for reads, opened on demand and kept for reuse. While the
// server is unreachable, Acquire fails fast (Unavailable) for a short while
// after each failed attempt, instead of making every caller wait out a
// connect timeout.
class ConnectionPool {
 public:
  // `prepare` runs on every new connection (it prepares statements).
  ConnectionPool(std::string conninfo, std::size_t max_idle,
                 std::function<void(pqxx::connection&)> prepare);

  // Runs `fn(pqxx::connection&)` (returning Status) on a pooled connection;
  // a connection that broke is dropped instead of returned.
  template <typename Fn>
  Status Run(Fn&& fn) {
    std::unique_ptr<pqxx::connection> conn;
    Status s = Acquire(&conn);
    if (!s.ok()) return s;
    bool broken = false;
    s = Guarded([&] { return fn(*conn); }, &broken);
    if (!broken) Release(std::move(conn));
    return s;
  }

  Status Acquire(std::unique_ptr<pqxx::connection>* out);
  void Release(std::unique_ptr<pqxx::connection> conn);

 private:
  const std::string conninfo_;
  const std::size_t max_idle_;
  const std::function<void(pqxx::connection&)> prepare_;

  std::mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;  // guarded by mu_
  std::chrono::steady_clock::time_point retry_after_{};  // guarded by mu_
  std::string last_failure_;                             // guarded by mu_
};

}  // namespace quire::storage::postgres
