// Internal to the SQLite backend: a thin RAII layer over the sqlite3 C API.
//
// Engine errors travel inside the backend as a thrown SqlFailure carrying the
// Status they map to; every public entry point of the backend catches it, so
// nothing but a Status ever leaves storage/sqlite/.
//
// Thread-safety: a Db (and its statements) is used by one thread at a time;
// the owner serializes access.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "storage/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace quire::storage::sqlite {

// Thrown inside the backend only.
struct SqlFailure {
  Status status;
};

// Maps an SQLite result code to a Status code (constraint violations: UNIQUE
// and PRIMARY KEY → Conflict, FOREIGN KEY → NotFound; BUSY/LOCKED/CANTOPEN →
// Unavailable; CORRUPT/NOTADB → Corrupt; everything else → IoError).
Status StatusFromSqlite(int rc, std::string_view message);

// One connection and its cache of prepared statements.
class Db {
 public:
  // Opens `path` with sqlite3_open_v2 `flags` (NOMUTEX is added). Throws.
  Db(const std::string& path, int flags);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* handle() const { return db_; }

  // Runs one or more statements without results (DDL, pragmas, BEGIN…). Throws.
  void Exec(const char* sql);
  // Runs a single-row, single-column query and returns the integer. Throws.
  std::int64_t QueryInt(const char* sql);

  // A cached prepared statement for `sql`, which must have static storage
  // duration (a string literal): it is the cache key. Throws.
  sqlite3_stmt* Prepare(const char* sql);

  // Throws the SqlFailure for `rc`, with the connection's error message.
  [[noreturn]] void Fail(int rc, std::string_view context) const;

  bool in_transaction() const;

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
  std::unordered_map<std::string_view, sqlite3_stmt*> statements_;
};

// A use of a cached statement: bind, step, read columns; reset on destruction
// (which also ends the implicit read transaction of a query).
class Stmt {
 public:
  Stmt(Db& db, const char* sql) : db_(db), stmt_(db.Prepare(sql)) {}
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Binds parameters 1..n in order.
  template <typename... Args>
  Stmt& Bind(const Args&... args) {
    int index = 0;
    (BindOne(++index, args), ...);
    return *this;
  }

  // Steps once: true for a row, false when done. Throws on errors.
  bool Next();
  // Steps to completion, expecting no rows. Throws on errors.
  void Run();
  // Rows changed by the last Run().
  int Changes() const;

  std::int64_t Int(int column) const;
  std::string Text(int column) const;
  std::optional<std::int64_t> OptInt(int column) const;

 private:
  void BindOne(int index, std::int64_t value);
  void BindOne(int index, int value) { BindOne(index, static_cast<std::int64_t>(value)); }
  void BindOne(int index, bool value) { BindOne(index, static_cast<std::int64_t>(value)); }
  void BindOne(int index, std::string_view value);
  void BindOne(int index, const std::string& value) { BindOne(index, std::string_view(value)); }
  void BindOne(int index, const char* value) { BindOne(index, std::string_view(value)); }
  void BindOne(int index, const std::optional<std::int64_t>& value);
  void Check(int rc) const;

  Db& db_;
  sqlite3_stmt* stmt_;
};

}  // namespace quire::storage::sqlite
