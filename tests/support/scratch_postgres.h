// Scratch databases on a PostgreSQL server, for tests: each test gets a new,
// empty database, dropped again when the test is done.
//
// The server is the one of $QUIRE_TEST_POSTGRES_URL (tools/test.sh starts a
// throwaway cluster and sets it): a URL whose database may be connected to
// and whose user may CREATE DATABASE.
//
// Thread-safety: the functions may be called from any thread.
#pragma once

#include <optional>
#include <string>

namespace quire::testing {

// $QUIRE_TEST_POSTGRES_URL, or nullopt with *why when it is not set.
std::optional<std::string> PostgresAdminUrl(std::string* why);

// `url` with its database name replaced by `database`.
std::string WithDatabase(const std::string& url, const std::string& database);

// Creates a new, empty database (quire_test_<pid>_<n>) on the server of
// `admin_url`; returns its URL, or nullopt with *why.
std::optional<std::string> CreateScratchDatabase(const std::string& admin_url, std::string* why);

// Drops the database of `url`, also when sessions are still connected to it
// (a killed server's). Quiet when it fails.
void DropScratchDatabase(const std::string& admin_url, const std::string& url);

// An outage of the database of `url`, for tests of what a server does
// meanwhile: with `allowed` false, new connections to it are refused and
// every session connected to it is ended; with true, it is reachable again.
// False with *why when the server would not do it.
bool SetConnectionsAllowed(const std::string& admin_url, const std::string& url, bool allowed,
                           std::string* why);

}  // namespace quire::testing
