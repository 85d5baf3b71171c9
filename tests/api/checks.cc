// The checks and event helpers of harness.h: assertions on statuses, JSON
// errors, ids, timestamps and the identity cookie, each naming the response
// on failure; keys that name events, for comparing histories.
//
// Thread-safe: plain functions.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <ctime>

#include "tests/api/harness.h"
#include "tests/api/harness_helpers.h"

namespace quire::apitest {

namespace {

// Parses "YYYY-MM-DDTHH:MM:SS.ffffffZ" into microseconds since the epoch.
// (Hand-written: std::regex trips a false -Wmaybe-uninitialized under GCC 12 + ASan.)
std::optional<std::int64_t> ParseTimestamp(const std::string& s) {
  static const char kPattern[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
  if (s.size() != sizeof kPattern - 1) return std::nullopt;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool digit = std::isdigit(static_cast<unsigned char>(s[i])) != 0;
    if (kPattern[i] == 'd' ? !digit : s[i] != kPattern[i]) return std::nullopt;
  }
  auto num = [&](std::size_t pos, std::size_t len) { return std::stoi(s.substr(pos, len)); };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(5, 2) - 1;
  tm.tm_mday = num(8, 2);
  tm.tm_hour = num(11, 2);
  tm.tm_min = num(14, 2);
  tm.tm_sec = num(17, 2);
  return static_cast<std::int64_t>(timegm(&tm)) * 1000000 + num(20, 6);
}

}  // namespace

::testing::AssertionResult HasStatus(const Response& r, long status) {
  if (r.status == status) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected HTTP " << status << ", got " << r.Describe();
}

namespace {

::testing::AssertionResult CheckJsonError(long got, long want, const std::string& content_type,
                                          const std::string& body, const std::string& described) {
  if (got != want)
    return ::testing::AssertionFailure() << "expected HTTP " << want << ", got " << described;
  if (ToLower(content_type).rfind("application/json", 0) != 0)
    return ::testing::AssertionFailure()
           << "expected a JSON content type for the error, got " << described;
  Json j = Json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("error") || !j["error"].is_string() ||
      j["error"].get<std::string>().empty())
    return ::testing::AssertionFailure()
           << "expected a body {\"error\": \"...\"}, got " << described;
  return ::testing::AssertionSuccess();
}

}  // namespace

::testing::AssertionResult IsJsonError(const Response& r, long status) {
  return CheckJsonError(r.status, status, r.header("content-type"), r.body, r.Describe());
}

::testing::AssertionResult IsJsonError(const RawResponse& r, int status) {
  auto it = r.headers.find("content-type");
  return CheckJsonError(r.status, status, it == r.headers.end() ? "" : it->second, r.body,
                        r.Describe());
}

::testing::AssertionResult IsId(const Json& value, char type) {
  if (!value.is_string()) return ::testing::AssertionFailure() << "not a string id: " << value;
  std::string s = value.get<std::string>();
  bool ok = s.size() == 16 && s[0] == type && std::all_of(s.begin() + 1, s.end(), [](char c) {
              return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z');
            });
  if (!ok)
    return ::testing::AssertionFailure()
           << "'" << s << "' is not an id of type " << type << " (^" << type << "[0-9a-z]{15}$)";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult IsTimestamp(const Json& value) {
  if (!value.is_string())
    return ::testing::AssertionFailure() << "not a string timestamp: " << value;
  std::string s = value.get<std::string>();
  auto micros = ParseTimestamp(s);
  if (!micros)
    return ::testing::AssertionFailure() << "'" << s << "' is not YYYY-MM-DDTHH:MM:SS.ffffffZ";
  long long now = static_cast<long long>(std::time(nullptr));
  if (std::llabs(*micros / 1000000 - now) > 86400)
    return ::testing::AssertionFailure() << "'" << s << "' is not within a day of now";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult SetsIdentityCookie(const Response& r) {
  auto c = IdentityCookie(r);
  if (!c) return ::testing::AssertionFailure() << "no Set-Cookie: identity=... in " << r.Describe();
  if (c->value.empty() || c->Clears())
    return ::testing::AssertionFailure() << "the identity cookie is empty or clears itself";
  if (!c->Has("httponly")) return ::testing::AssertionFailure() << "identity cookie not HttpOnly";
  if (ToLower(c->Get("samesite")) != "strict")
    return ::testing::AssertionFailure() << "identity cookie not SameSite=Strict";
  if (c->Get("path") != "/") return ::testing::AssertionFailure() << "identity cookie not Path=/";
  return ::testing::AssertionSuccess();
}

std::string EventKey(const Json& event) {
  auto str = [&](const char* k) -> std::string {
    return event.is_object() && event.contains(k) && event[k].is_string()
               ? event[k].get<std::string>()
               : "?";
  };
  if (str("type") == "heartbeat") return "heartbeat";
  return str("type") + " " + str("event") + " " + str("id");
}

std::vector<std::string> EventKeys(const Json& events) {
  std::vector<std::string> keys;
  if (events.is_array())
    for (const auto& e : events) keys.push_back(EventKey(e));
  return keys;
}

std::vector<std::string> EventKeys(const std::vector<SseEvent>& events) {
  std::vector<std::string> keys;
  for (const auto& e : events) keys.push_back(EventKey(e.data));
  return keys;
}

std::string Str(const Json& j, const std::string& key) {
  if (j.is_object() && j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return "";
}

std::set<std::string> Keys(const Json& j) {
  std::set<std::string> keys;
  if (j.is_object())
    for (auto it = j.begin(); it != j.end(); ++it) keys.insert(it.key());
  return keys;
}

std::int64_t TimestampMicros(const Json& value) {
  if (!value.is_string()) return 0;
  return ParseTimestamp(value.get<std::string>()).value_or(0);
}

std::vector<Json> FindEvents(const Json& events, const std::string& type, const std::string& event,
                             const std::string& id) {
  std::vector<Json> found;
  if (!events.is_array()) return found;
  for (const auto& e : events) {
    if (Str(e, "type") == type && Str(e, "event") == event && (id.empty() || Str(e, "id") == id))
      found.push_back(e);
  }
  return found;
}

int IndexOf(const std::vector<std::string>& keys, const std::string& key) {
  auto it = std::find(keys.begin(), keys.end(), key);
  return it == keys.end() ? -1 : static_cast<int>(it - keys.begin());
}

std::string Repeat(const std::string& unit, std::size_t n) {
  std::string s;
  s.reserve(unit.size() * n);
  for (std::size_t i = 0; i < n; ++i) s += unit;
  return s;
}

}  // namespace quire::apitest
