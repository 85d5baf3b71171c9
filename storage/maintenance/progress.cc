#include "storage/maintenance/progress.h"

#include <unistd.h>

namespace quire::storage::maintenance {
namespace {

using Clock = std::chrono::steady_clock;

std::string Duration(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

}  // namespace

std::string Thousands(std::uint64_t n) {
  std::string digits = std::to_string(n);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(i, ",");
  return digits;
}

Progress::Progress(std::string what, std::uint64_t total, std::FILE* out)
    : what_(std::move(what)),
      total_(total),
      out_(out),
      terminal_(isatty(fileno(out)) == 1),
      start_(Clock::now()),
      last_print_(start_) {}

double Progress::seconds() const {
  return std::chrono::duration<double>(Clock::now() - start_).count();
}

void Progress::Update(std::uint64_t done, const std::string& table) {
  const auto now = Clock::now();
  // A terminal line four times a second; a log line every five seconds.
  const auto every = terminal_ ? std::chrono::milliseconds(250) : std::chrono::milliseconds(5000);
  if (now - last_print_ < every) return;
  last_print_ = now;
  Print(done, table, false);
}

void Progress::Finish(std::uint64_t done) {
  Print(done, "", true);
}

void Progress::Print(std::uint64_t done, const std::string& table, bool final) {
  const double elapsed = seconds();
  const double rate = elapsed > 0 ? done / elapsed : 0;
  std::string line;
  if (final) {
    line = "quire " + what_ + ": " + Thousands(done) + " rows copied in " + Duration(elapsed) +
           " (" + Thousands(static_cast<std::uint64_t>(rate)) + " rows/s); verifying";
  } else {
    line = "quire " + what_ + ": " + Thousands(done) +
           (total_ > 0 ? " of " + Thousands(total_) : std::string()) + " rows copied (" + table +
           "), " + Thousands(static_cast<std::uint64_t>(rate)) + " rows/s";
    if (total_ > done && rate > 0) line += ", " + Duration((total_ - done) / rate) + " left";
  }
  if (terminal_) {
    // \r and "erase to end of line": the line is rewritten in place.
    std::fprintf(out_, "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

}  // namespace quire::storage::maintenance
