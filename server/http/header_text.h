// Small text helpers for HTTP header values, shared by everything that reads
// headers (the HTTP layer, the API's request checks, the asset server), so
// that "case-insensitive" and "optional whitespace" mean one thing.
#pragma once

#include <string>
#include <string_view>

namespace quire::http {

// ASCII lower case (header names, tokens and media types are ASCII).
inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Without the spaces and tabs around it (HTTP's optional whitespace).
inline std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace quire::http
