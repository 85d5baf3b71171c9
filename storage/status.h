// Status: the result of a storage call, an error carried as a value.
//
// Errors cross the storage seam only as a Status with one of a closed set of
// codes; engine exceptions (sqlite3 return codes, pqxx::*, lmdb::error) never
// leave a backend. Callers above the seam map codes to HTTP statuses.
//
// Thread-safety: a Status is a plain value; copies are independent.
#pragma once

#include <string>
#include <utility>

namespace quire::storage {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,     // the addressed thing does not exist (or is deleted, used, expired)
    kConflict,     // a uniqueness or state precondition failed (name taken, live messages)
    kUnavailable,  // the engine cannot be reached or is busy; the call may be retried
    kCorrupt,      // the stored data is unreadable or of an unknown schema version
    kInvalid,      // the caller broke a precondition of the interface
    kIoError,      // anything else the engine reported
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Conflict(std::string msg) { return Status(Code::kConflict, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status Corrupt(std::string msg) { return Status(Code::kCorrupt, std::move(msg)); }
  static Status Invalid(std::string msg) { return Status(Code::kInvalid, std::move(msg)); }
  static Status IoError(std::string msg) { return Status(Code::kIoError, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsConflict() const { return code_ == Code::kConflict; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

const char* CodeName(Status::Code code);

inline std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(CodeName(code_)) + ": " + message_;
}

inline const char* CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk: return "OK";
    case Status::Code::kNotFound: return "NotFound";
    case Status::Code::kConflict: return "Conflict";
    case Status::Code::kUnavailable: return "Unavailable";
    case Status::Code::kCorrupt: return "Corrupt";
    case Status::Code::kInvalid: return "Invalid";
    case Status::Code::kIoError: return "IoError";
  }
  return "Unknown";
}

}  // namespace quire::storage
