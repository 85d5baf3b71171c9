#include "storage/sqlite/sqlite_db.h"

#include <sqlite3.h>

#include <cstring>

namespace quire::storage::sqlite {

Status StatusFromSqlite(int rc, std::string_view message) {
  std::string msg(message);
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return Status::Conflict(std::move(msg));
      }
      if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return Status::NotFound(std::move(msg));
      return Status::IoError(std::move(msg));
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
      return Status::Unavailable(std::move(msg));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::Corrupt(std::move(msg));
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
    case SQLITE_TOOBIG:
      return Status::Invalid(std::move(msg));
    default:
      return Status::IoError(std::move(msg));
  }
}

Db::Db(const std::string& path, int flags) : path_(path) {
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string why = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    if (db_ != nullptr && sqlite3_system_errno(db_) != 0) {
      why += std::string(" (") + std::strerror(sqlite3_system_errno(db_)) + ")";
    }
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw SqlFailure{StatusFromSqlite(rc, "cannot open SQLite database '" + path + "': " + why)};
  }
  sqlite3_extended_result_codes(db_, 1);
}

Db::~Db() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

namespace {

// The context of an error message on one short line: whitespace runs
// collapsed, long SQL cut.
std::string OneLine(std::string_view text) {
  constexpr std::size_t kMax = 80;
  std::string line;
  bool space = false;
  for (char c : text) {
    const bool is_space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (is_space) {
      space = !line.empty();
      continue;
    }
    if (space) line += ' ';
    space = false;
    line += c;
    if (line.size() >= kMax) return line + "...";
  }
  return line;
}

}  // namespace

void Db::Fail(int rc, std::string_view context) const {
  std::string msg = "SQLite database '" + path_ + "': ";
  msg += OneLine(context);
  msg += ": ";
  msg += sqlite3_errmsg(db_);
  if ((rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_CANTOPEN) {
    if (const int e = sqlite3_system_errno(db_); e != 0) {
      msg += std::string(" (") + std::strerror(e) + ")";
    }
  }
  throw SqlFailure{StatusFromSqlite(rc, msg)};
}

void Db::Exec(const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) Fail(rc, sql);
}

std::int64_t Db::QueryInt(const char* sql) {
  Stmt q(*this, sql);
  if (!q.Next()) Fail(SQLITE_ERROR, std::string(sql) + " returned no row");
  return q.Int(0);
}

sqlite3_stmt* Db::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return it->second;
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) Fail(rc, sql);
  statements_.emplace(sql, stmt);
  return stmt;
}

bool Db::in_transaction() const {
  return sqlite3_get_autocommit(db_) == 0;
}

Stmt::~Stmt() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

void Stmt::Check(int rc) const {
  if (rc != SQLITE_OK) db_.Fail(rc, sqlite3_sql(stmt_));
}

void Stmt::BindOne(int index, std::int64_t value) {
  Check(sqlite3_bind_int64(stmt_, index, value));
}

void Stmt::BindOne(int index, std::string_view value) {
  Check(
      sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
}

void Stmt::BindOne(int index, const std::optional<std::int64_t>& value) {
  if (value) {
    BindOne(index, *value);
  } else {
    Check(sqlite3_bind_null(stmt_, index));
  }
}

bool Stmt::Next() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_.Fail(rc, sqlite3_sql(stmt_));
}

void Stmt::Run() {
  while (Next()) {
  }
}

int Stmt::Changes() const {
  return sqlite3_changes(db_.handle());
}

std::int64_t Stmt::Int(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

std::string Stmt::Text(int column) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  if (text == nullptr) return std::string();
  return std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
}

std::optional<std::int64_t> Stmt::OptInt(int column) const {
  if (sqlite3_column_type(stmt_, column) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_int64(stmt_, column);
}

}  // namespace quire::storage::sqlite
