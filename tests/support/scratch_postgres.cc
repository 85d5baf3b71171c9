#include "tests/support/scratch_postgres.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <pqxx/pqxx>

namespace quire::testing {

std::optional<std::string> PostgresAdminUrl(std::string* why) {
  const char* url = std::getenv("QUIRE_TEST_POSTGRES_URL");
  if (url == nullptr || *url == '\0') {
    *why =
        "QUIRE_TEST_POSTGRES_URL is not set: run the tests with tools/test.sh, or start a server "
        "with tools/pg-throwaway.sh start and export the URL it prints";
    return std::nullopt;
  }
  return std::string(url);
}

std::string WithDatabase(const std::string& url, const std::string& database) {
  const std::size_t scheme = url.find("://");
  const std::size_t host = scheme == std::string::npos ? 0 : scheme + 3;
  const std::size_t query = url.find('?', host);
  const std::size_t path = url.find('/', host);
  const std::string tail = query == std::string::npos ? "" : url.substr(query);
  const std::size_t host_end = std::min(path, query == std::string::npos ? url.size() : query);
  return url.substr(0, host_end) + "/" + database + tail;
}

namespace {

std::string DatabaseOf(const std::string& url) {
  const std::size_t scheme = url.find("://");
  const std::size_t path = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (path == std::string::npos) return "";
  const std::size_t query = url.find('?', path);
  return url.substr(path + 1, query == std::string::npos ? std::string::npos : query - path - 1);
}

}  // namespace

std::optional<std::string> CreateScratchDatabase(const std::string& admin_url, std::string* why) {
  static std::atomic<int> counter{0};
  const std::string name =
      "quire_test_" + std::to_string(getpid()) + "_" + std::to_string(counter.fetch_add(1));
  try {
    pqxx::connection admin(admin_url);
    pqxx::nontransaction tx(admin);
    tx.exec("CREATE DATABASE " + tx.quote_name(name));
  } catch (const std::exception& e) {
    *why = "cannot create a scratch database on " + admin_url + ": " + e.what();
    return std::nullopt;
  }
  return WithDatabase(admin_url, name);
}

void DropScratchDatabase(const std::string& admin_url, const std::string& url) {
  const std::string name = DatabaseOf(url);
  if (!name.starts_with("quire_test_")) return;
  try {
    pqxx::connection admin(admin_url);
    pqxx::nontransaction tx(admin);
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name) + " WITH (FORCE)");
  } catch (const std::exception&) {
    // A throwaway server: what is left is deleted with it.
  }
}

bool SetConnectionsAllowed(const std::string& admin_url, const std::string& url, bool allowed,
                           std::string* why) {
  const std::string name = DatabaseOf(url);
  try {
    pqxx::connection admin(admin_url);
    pqxx::nontransaction tx(admin);
    tx.exec("ALTER DATABASE " + tx.quote_name(name) + " WITH ALLOW_CONNECTIONS " +
            (allowed ? "true" : "false"));
    if (!allowed) {
      tx.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = " +
              tx.quote(name) + " AND pid <> pg_backend_pid()");
    }
  } catch (const std::exception& e) {
    *why = e.what();
    return false;
  }
  return true;
}

}  // namespace quire::testing
