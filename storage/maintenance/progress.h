// Progress of a long copy (migrate, restore) on stderr: on a terminal one
// line rewritten in place (rows copied, rate, time left), otherwise a plain
// line every few seconds, so logs and CI output stay readable.
//
// Thread-safety: one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace quire::storage::maintenance {

class Progress {
 public:
  // `what` names the command ("migrate"); `total` is the number of rows
  // expected (0 if unknown).
  Progress(std::string what, std::uint64_t total, std::FILE* out);

  // `done` rows are copied now, the latest of table `table`.
  void Update(std::uint64_t done, const std::string& table);
  // Ends the in-place line: the totals, and that verification follows.
  void Finish(std::uint64_t done);

  double seconds() const;

 private:
  void Print(std::uint64_t done, const std::string& table, bool final);

  const std::string what_;
  const std::uint64_t total_;
  std::FILE* const out_;
  const bool terminal_;
  const std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_print_;
};

// 1234567 -> "1,234,567".
std::string Thousands(std::uint64_t n);

}  // namespace quire::storage::maintenance
