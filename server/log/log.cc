#include "server/log/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

namespace quire::log {
namespace {

std::atomic<Format> format{Format::kText};

std::string Now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<long long>(micros));
  return buf;
}

void WriteLine(std::string line) {
  line += '\n';
  // One write: a line is never split between threads. stderr is unbuffered.
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

void Line(const char* level, std::string_view about, std::string_view message) {
  if (format.load() == Format::kJson) {
    nlohmann::json j{{"time", Now()},
                     {"level", level},
                     {"about", std::string(about)},
                     {"message", std::string(message)}};
    WriteLine(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } else {
    WriteLine("quire: " + std::string(about) + ": " + std::string(message));
  }
}

bool AllDigits(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

void SetFormat(Format f) {
  format.store(f);
}

void Error(std::string_view about, std::string_view message) {
  Line("error", about, message);
}
void Info(std::string_view about, std::string_view message) {
  Line("info", about, message);
}

void Access(const std::vector<std::pair<std::string_view, std::string>>& fields) {
  if (format.load() == Format::kJson) {
    nlohmann::json j{{"time", Now()}, {"log", "access"}};
    for (const auto& [key, value] : fields) {
      if (AllDigits(value)) {
        j[std::string(key)] = std::stoll(value);
      } else {
        j[std::string(key)] = value;
      }
    }
    WriteLine(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  std::string line = "quire access:";
  for (const auto& [key, value] : fields) {
    const bool quote = value.empty() || value.find_first_of(" \"") != std::string::npos;
    line += " " + std::string(key) + "=";
    if (quote) {
      line += '"';
      for (char c : value) line += c == '"' ? '\'' : c;
      line += '"';
    } else {
      line += value;
    }
  }
  WriteLine(line);
}

}  // namespace quire::log
