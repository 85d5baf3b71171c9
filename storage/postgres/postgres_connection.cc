#include "storage/postgres/postgres_connection.h"

#include <utility>

namespace quire::storage::postgres {
namespace {

// After a failed connection attempt, callers get Unavailable at once for
// this long before the next attempt.
constexpr auto kRetryPause = std::chrono::milliseconds(250);

// Quire's defaults for keys the URL does not set. gssencmode=disable: by
// default libpq first probes for Kerberos credentials on every TCP connect,
// which is slow and takes a process-wide GSSAPI lock (a forked child can
// inherit it held and hang); set gssencmode in the URL to use Kerberos.
constexpr std::pair<const char*, const char*> kDefaults[] = {
    {"gssencmode", "disable"}, {"connect_timeout", "5"},      {"application_name", "quire"},
    {"keepalives", "1"},       {"keepalives_idle", "10"},     {"keepalives_interval", "3"},
    {"keepalives_count", "3"}, {"tcp_user_timeout", "20000"},
};

bool HasKey(const std::string& url, const std::string& key) {
  const std::size_t q = url.find('?');
  if (q == std::string::npos) return false;
  for (std::size_t pos = q + 1; pos < url.size();) {
    const std::size_t end = std::min(url.find('&', pos), url.size());
    if (url.compare(pos, key.size() + 1, key + "=") == 0) return true;
    pos = end + 1;
  }
  return false;
}

// libpq's messages span lines ("could not connect…\n\tIs the server
// running…"); a Status message is one line.
std::string OneLine(const char* what) {
  std::string out;
  for (const char* p = what; *p != '\0'; ++p) {
    const bool space = *p == '\n' || *p == '\t' || *p == '\r' || *p == ' ';
    if (space) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += *p;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

std::string ConnectionString(const std::string& url) {
  std::string out = url;
  for (const auto& [key, value] : kDefaults) {
    if (HasKey(out, key)) continue;
    out += out.find('?') == std::string::npos ? '?' : '&';
    out += std::string(key) + "=" + value;
  }
  return out;
}

std::unique_ptr<pqxx::connection> Connect(const std::string& conninfo) {
  // A connection that broke is dropped by its user and never used again, so
  // libpqxx never reconnects it behind our back (losing these settings).
  auto conn = std::make_unique<pqxx::connection>(conninfo);
  pqxx::nontransaction settings(*conn);
  // statement_timeout bounds every query; lock_timeout bounds the wait for
  // the head row (another instance's commit); idle_in_transaction bounds a
  // transaction left open by a stuck or killed client.
  settings.exec(
      "SET statement_timeout = '30s'; SET lock_timeout = '20s'; "
      "SET idle_in_transaction_session_timeout = '60s'; SET client_min_messages = 'warning'");
  return conn;
}

Status CurrentExceptionStatus(bool* broken) {
  try {
    throw;
  } catch (const pqxx::broken_connection& e) {
    *broken = true;
    return Status::Unavailable("PostgreSQL connection lost: " + OneLine(e.what()));
  } catch (const pqxx::in_doubt_error& e) {
    *broken = true;
    return Status::Unavailable("PostgreSQL commit outcome unknown: " + OneLine(e.what()));
  } catch (const pqxx::sql_error& e) {
    const std::string state = e.sqlstate();
    const std::string what = OneLine(e.what());
    if (state == "23505") return Status::Conflict("already exists: " + what);
    if (state == "23503") return Status::NotFound("refers to a missing row: " + what);
    if (state.starts_with("08") || state.starts_with("57P")) {
      *broken = true;
      return Status::Unavailable("PostgreSQL is unavailable: " + what);
    }
    // Serialization failures, deadlocks, lock and statement timeouts, too
    // many connections, disk full: the call may be retried later.
    if (state.starts_with("40") || state.starts_with("53") || state == "55P03" ||
        state == "57014") {
      return Status::Unavailable("PostgreSQL is busy: " + what);
    }
    if (state.starts_with("XX")) return Status::Corrupt("PostgreSQL: " + what);
    if (state.starts_with("22")) return Status::Invalid("PostgreSQL rejected a value: " + what);
    return Status::IoError("PostgreSQL error " + state + ": " + what);
  } catch (const pqxx::usage_error& e) {
    *broken = true;
    return Status::IoError("PostgreSQL backend misuse: " + OneLine(e.what()));
  } catch (const pqxx::failure& e) {
    *broken = true;
    return Status::Unavailable("PostgreSQL failure: " + OneLine(e.what()));
  } catch (const std::exception& e) {
    *broken = true;
    return Status::IoError("PostgreSQL backend: " + OneLine(e.what()));
  } catch (...) {
    *broken = true;
    return Status::IoError("PostgreSQL backend: unknown exception");
  }
}

ConnectionPool::ConnectionPool(std::string conninfo, std::size_t max_idle,
                               std::function<void(pqxx::connection&)> prepare)
    : conninfo_(std::move(conninfo)), max_idle_(max_idle), prepare_(std::move(prepare)) {}

Status ConnectionPool::Acquire(std::unique_ptr<pqxx::connection>* out) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!idle_.empty()) {
      std::unique_ptr<pqxx::connection> conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->is_open()) {
        *out = std::move(conn);
        return Status::Ok();
      }
    }
    if (std::chrono::steady_clock::now() < retry_after_) {
      return Status::Unavailable("cannot connect to PostgreSQL (retrying): " + last_failure_);
    }
  }
  std::string failure;
  try {
    std::unique_ptr<pqxx::connection> conn = Connect(conninfo_);
    prepare_(*conn);
    *out = std::move(conn);
    return Status::Ok();
  } catch (const std::exception& e) {
    failure = OneLine(e.what());
  } catch (...) {
    failure = "unknown error";
  }
  std::lock_guard<std::mutex> lock(mu_);
  retry_after_ = std::chrono::steady_clock::now() + kRetryPause;
  last_failure_ = failure;
  return Status::Unavailable("cannot connect to PostgreSQL: " + failure);
}

void ConnectionPool::Release(std::unique_ptr<pqxx::connection> conn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < max_idle_ && conn->is_open()) idle_.push_back(std::move(conn));
}

}  // namespace quire::storage::postgres
