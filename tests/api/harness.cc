#include "tests/api/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <curl/curl.h>

#include "tests/support/scratch_postgres.h"

extern char** environ;

namespace quire::apitest {
namespace {

std::string ToLower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r' || s[b] == '\n')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r' || s[e - 1] == '\n'))
    --e;
  return s.substr(b, e - b);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Cuts long text for failure messages.
std::string Clip(const std::string& s, std::size_t n = 2000) {
  if (s.size() <= n) return s;
  return s.substr(0, n) + "... (" + std::to_string(s.size()) + " bytes)";
}

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

// Finds "quire listening on http://HOST:PORT" on a line of its own.
bool ParseListening(const std::string& text, std::string* url, std::string* host, int* port) {
  static const std::string kPrefix = "quire listening on ";
  std::size_t pos = 0;
  while ((pos = text.find(kPrefix, pos)) != std::string::npos) {
    bool line_start = pos == 0 || text[pos - 1] == '\n';
    std::size_t eol = text.find('\n', pos);
    if (!line_start || eol == std::string::npos) {
      if (eol == std::string::npos) return false;
      pos = eol;
      continue;
    }
    std::string u = text.substr(pos + kPrefix.size(), eol - pos - kPrefix.size());
    if (!u.empty() && u.back() == '\r') u.pop_back();
    pos = eol;
    if (u.rfind("http://", 0) != 0) continue;
    std::string hostport = u.substr(7);
    std::size_t colon = hostport.rfind(':');
    if (colon == std::string::npos || colon + 1 == hostport.size()) continue;
    std::string p = hostport.substr(colon + 1);
    if (!std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        p.size() > 5)
      continue;
    std::string h = hostport.substr(0, colon);
    if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    if (h.empty() || h.find_first_of("/ \t") != std::string::npos) continue;
    *url = u;
    *host = h;
    *port = std::stoi(p);
    return true;
  }
  return false;
}

void EnsureCurl() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Every server started and not yet reaped, so that none outlives the tests.
std::mutex& ChildrenMutex() {
  static std::mutex m;
  return m;
}
std::set<pid_t>& Children() {
  static std::set<pid_t> children;
  return children;
}
void KillAllChildren() {
  std::lock_guard<std::mutex> lock(ChildrenMutex());
  for (pid_t pid : Children()) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  Children().clear();
}
void TrackChild(pid_t pid) {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(KillAllChildren); });
  std::lock_guard<std::mutex> lock(ChildrenMutex());
  Children().insert(pid);
}
void UntrackChild(pid_t pid) {
  std::lock_guard<std::mutex> lock(ChildrenMutex());
  Children().erase(pid);
}

ExitStatus Decode(int wstatus) {
  ExitStatus s;
  if (WIFEXITED(wstatus)) {
    s.exited = true;
    s.code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    s.exited = true;
    s.signal = WTERMSIG(wstatus);
  }
  return s;
}

// Waits for `pid` up to `timeout`. Returns nullopt when it is still running.
std::optional<ExitStatus> WaitFor(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int wstatus = 0;
    pid_t r = waitpid(pid, &wstatus, WNOHANG);
    if (r == pid) {
      UntrackChild(pid);
      return Decode(wstatus);
    }
    if (r < 0 && errno != EINTR) {
      UntrackChild(pid);
      ExitStatus s;
      s.exited = true;
      return s;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

// fork + exec with stdout/stderr to files, stdin from /dev/null. The child dies
// with the test process (PR_SET_PDEATHSIG).
pid_t Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
            const std::string& out_path, const std::string& err_path) {
  // Everything the child needs is prepared before fork: only async-signal-safe
  // calls happen between fork and exec.
  std::vector<std::string> env;
  std::set<std::string> overridden;
  for (const auto& e : extra_env) overridden.insert(e.substr(0, e.find('=')));
  for (char** p = environ; p && *p; ++p) {
    std::string e(*p);
    if (!overridden.count(e.substr(0, e.find('=')))) env.push_back(e);
  }
  for (const auto& e : extra_env) env.push_back(e);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  const char* out_c = out_path.c_str();
  const char* err_c = err_path.c_str();
  pid_t parent = getpid();

  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_c, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    int err = open(err_c, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (in < 0 || out < 0 || err < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    execve(cargv[0], cargv.data(), cenv.data());
    const char msg[] = "api-test harness: execve of the quire binary failed\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
  }
  TrackChild(pid);
  return pid;
}

}  // namespace

// ---------------------------------------------------------------------------

std::string QuireBin() {
  if (const char* bin = std::getenv("QUIRE_BIN"); bin && *bin) return bin;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) return (self.parent_path() / "quire").string();
  return "quire";
}

std::string Backend() {
  const char* b = std::getenv("QUIRE_TEST_BACKEND");
  return b ? b : "";
}

std::string StorageBackend(const std::string& stderr_text) {
  static const std::string kPrefix = "quire: storage ";
  std::size_t at = stderr_text.rfind("\n" + kPrefix);
  if (at != std::string::npos) {
    ++at;
  } else if (stderr_text.rfind(kPrefix, 0) == 0) {
    at = 0;
  } else {
    return "";
  }
  at += kPrefix.size();
  const std::string scheme = stderr_text.substr(at, stderr_text.find_first_of(" \n", at) - at);
  return scheme == "postgresql" ? "postgres" : scheme;
}

namespace {

// No backend, no test: without a known QUIRE_TEST_BACKEND every test fails
// with one message, before its fixture runs (a fixture that skips on other
// backends would otherwise skip), rather than run on some default backend.
// ctest sets it per test (the root CMakeLists.txt). A fatal failure in
// OnTestStart keeps gtest from running the test at all.
class BackendGuard : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo&) override {
    const std::string backend = Backend();
    if (backend == "sqlite" || backend == "lmdb" || backend == "postgres") return;
    GTEST_FAIL() << "QUIRE_TEST_BACKEND is "
                 << (std::getenv("QUIRE_TEST_BACKEND") ? "'" + backend + "'" : "unset")
                 << ": set it to sqlite, lmdb or postgres (ctest sets it from the test name "
                    "api/<backend>/...); no API test runs without it";
  }
};
[[maybe_unused]] const bool backend_guard_installed = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new BackendGuard);
  return true;
}();

}  // namespace

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/quire-api-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::optional<std::string> FreshPostgresDatabaseUrl(std::string* why) {
  const std::optional<std::string> admin = quire::testing::PostgresAdminUrl(why);
  if (!admin) return std::nullopt;
  return quire::testing::CreateScratchDatabase(*admin, why);
}

TestDatabase::~TestDatabase() {
  if (Backend() != "postgres") return;
  std::string unused;
  if (const std::optional<std::string> admin = quire::testing::PostgresAdminUrl(&unused)) {
    quire::testing::DropScratchDatabase(*admin, url_);
  }
}

std::unique_ptr<TestDatabase> TestDatabase::Create(std::string* why) {
  std::unique_ptr<TestDatabase> db(new TestDatabase());
  std::string backend = Backend();
  if (backend == "sqlite") {
    db->url_ = "sqlite:" + db->dir() + "/quire.db";
  } else if (backend == "lmdb") {
    std::string dir = db->dir() + "/lmdb";
    std::filesystem::create_directory(dir);
    db->url_ = "lmdb:" + dir;
  } else if (backend == "postgres") {
    auto url = FreshPostgresDatabaseUrl(why);
    if (!url) return nullptr;
    db->url_ = *url;
  } else {
    throw std::runtime_error("unknown QUIRE_TEST_BACKEND: " + backend);
  }
  return db;
}

// ---------------------------------------------------------------------------

std::string ExitStatus::Describe() const {
  if (!exited) return "still running";
  if (signal)
    return std::string("killed by signal ") + std::to_string(signal) + " (" + strsignal(signal) +
           ")";
  return "exit code " + std::to_string(code);
}

QuireProcess::QuireProcess(std::string database_url, std::vector<std::string> args,
                           std::vector<std::string> env)
    : database_url_(std::move(database_url)), args_(std::move(args)), env_(std::move(env)) {}

QuireProcess::~QuireProcess() {
  Kill();
}

std::string SanitizerReport(const std::string& stderr_text) {
  const std::size_t at = stderr_text.find("WARNING: ThreadSanitizer");
  return at == std::string::npos ? std::string() : stderr_text.substr(at);
}

void QuireProcess::CheckSanitizerReport() {
  if (generation_ == 0 || checked_generation_ == generation_) return;
  checked_generation_ = generation_;
  const std::string report = SanitizerReport(stderr_text());
  if (!report.empty()) {
    ADD_FAILURE() << "the quire server printed a ThreadSanitizer report (a data race or a "
                     "lock-order inversion in the server; see tools/tsan-suppressions.txt):\n"
                  << Clip(report, 16000);
  }
}

std::string QuireProcess::stdout_text() const {
  return ReadFile(logs_.path() + "/stdout." + std::to_string(generation_));
}
std::string QuireProcess::stderr_text() const {
  return ReadFile(logs_.path() + "/stderr." + std::to_string(generation_));
}

::testing::AssertionResult QuireProcess::Start() {
  if (pid_ > 0) return ::testing::AssertionFailure() << "server already running";
  ++generation_;
  std::vector<std::string> argv = {QuireBin(), "serve"};
  if (!database_url_.empty()) {
    argv.push_back("--database-url");
    argv.push_back(database_url_);
  }
  argv.push_back("--port");
  argv.push_back("0");
  argv.insert(argv.end(), args_.begin(), args_.end());
  std::string out = logs_.path() + "/stdout." + std::to_string(generation_);
  std::string err = logs_.path() + "/stderr." + std::to_string(generation_);
  pid_ = Spawn(argv, env_, out, err);

  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (true) {
    std::string text = ReadFile(out);
    if (ParseListening(text, &base_url_, &host_, &port_)) {
      // The server says which backend it opened (on stderr, before the
      // listening line): it must be the one this test is named for.
      const std::string served = StorageBackend(ReadFile(err));
      if (served == Backend()) return ::testing::AssertionSuccess();
      Kill();
      return ::testing::AssertionFailure()
             << "quire serves on storage '" << served << "' but this test is for '" << Backend()
             << "' (QUIRE_TEST_BACKEND); expected a stderr line 'quire: storage " << Backend()
             << " (URL)'\nstderr: " << Clip(ReadFile(err));
    }
    if (auto st = WaitFor(pid_, 0ms)) {
      pid_ = -1;
      CheckSanitizerReport();
      return ::testing::AssertionFailure()
             << "quire exited before listening (" << st->Describe() << ")\ncommand:" <<
             [&] {
               std::string s;
               for (const auto& a : argv) s += " " + a;
               return s;
             }()
             << "\nstdout: " << Clip(text) << "\nstderr: " << Clip(ReadFile(err));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      Kill();
      return ::testing::AssertionFailure()
             << "quire did not print 'quire listening on http://ADDR:PORT' within 20 s"
             << "\nstdout: " << Clip(text) << "\nstderr: " << Clip(ReadFile(err));
    }
    std::this_thread::sleep_for(5ms);
  }
}

::testing::AssertionResult QuireProcess::Stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return ::testing::AssertionFailure() << "server not running";
  kill(pid_, SIGTERM);
  auto st = WaitFor(pid_, timeout);
  if (!st) {
    Kill();
    return ::testing::AssertionFailure() << "quire did not exit within " << timeout.count()
                                         << " ms of SIGTERM\nstderr: " << Clip(stderr_text(), 4000);
  }
  pid_ = -1;
  CheckSanitizerReport();
  if (st->signal || st->code != 0) {
    return ::testing::AssertionFailure() << "quire stopped with " << st->Describe()
                                         << " after SIGTERM\nstderr: " << Clip(stderr_text(), 8000);
  }
  return ::testing::AssertionSuccess();
}

void QuireProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  WaitFor(pid_, 10s);
  pid_ = -1;
  CheckSanitizerReport();
}

::testing::AssertionResult QuireProcess::Restart() {
  if (pid_ > 0) return ::testing::AssertionFailure() << "stop or kill the server first";
  return Start();
}

RunResult RunQuire(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                   const std::vector<std::string>& env) {
  TempDir dir;
  std::vector<std::string> argv = {QuireBin()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out = dir.path() + "/stdout", err = dir.path() + "/stderr";
  pid_t pid = Spawn(argv, env, out, err);
  RunResult result;
  if (auto st = WaitFor(pid, timeout)) {
    result.status = *st;
  } else {
    kill(pid, SIGKILL);
    WaitFor(pid, 10s);
    result.status = ExitStatus{};  // exited=false: timed out
  }
  result.out = ReadFile(out);
  result.err = ReadFile(err);
  if (const std::string report = SanitizerReport(result.err); !report.empty()) {
    ADD_FAILURE() << "quire printed a ThreadSanitizer report (a data race or a lock-order "
                     "inversion):\n"
                  << Clip(report, 16000);
  }
  return result;
}

// ---------------------------------------------------------------------------
// Responses and cookies

std::string Response::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? "" : it->second;
}

std::vector<std::string> Response::header_values(const std::string& name) const {
  std::vector<std::string> v;
  auto [b, e] = headers.equal_range(name);
  for (auto it = b; it != e; ++it) v.push_back(it->second);
  return v;
}

Json Response::json() const {
  return Json::parse(body, nullptr, false);
}

std::string Response::Describe() const {
  std::string s = "HTTP " + std::to_string(status);
  if (!error.empty()) s += " (transport error: " + error + ")";
  s += " content-type=" + header("content-type");
  s += " body=" + Clip(body, 600);
  return s;
}

std::string SetCookie::Get(const std::string& attribute) const {
  auto it = attributes.find(attribute);
  return it == attributes.end() ? "" : it->second;
}

bool SetCookie::Clears() const {
  if (value.empty()) return true;
  if (Has("max-age")) {
    try {
      if (std::stoll(Get("max-age")) <= 0) return true;
    } catch (...) {
    }
  }
  if (Has("expires")) {
    time_t t = curl_getdate(Get("expires").c_str(), nullptr);
    if (t != -1 && t < std::time(nullptr)) return true;
  }
  return false;
}

std::optional<SetCookie> ParseSetCookie(const std::string& header) {
  SetCookie c;
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t semi = header.find(';', start);
    parts.push_back(header.substr(start, semi == std::string::npos ? semi : semi - start));
    if (semi == std::string::npos) break;
    start = semi + 1;
  }
  std::size_t eq = parts[0].find('=');
  if (eq == std::string::npos) return std::nullopt;
  c.name = Trim(parts[0].substr(0, eq));
  c.value = Trim(parts[0].substr(eq + 1));
  for (std::size_t i = 1; i < parts.size(); ++i) {
    std::string p = Trim(parts[i]);
    if (p.empty()) continue;
    std::size_t e = p.find('=');
    if (e == std::string::npos) {
      c.attributes[ToLower(p)] = "";
    } else {
      c.attributes[ToLower(Trim(p.substr(0, e)))] = Trim(p.substr(e + 1));
    }
  }
  return c;
}

std::optional<SetCookie> IdentityCookie(const Response& r) {
  std::optional<SetCookie> found;
  for (const auto& h : r.header_values("set-cookie")) {
    auto c = ParseSetCookie(h);
    if (c && c->name == "identity") found = c;
  }
  return found;
}

// ---------------------------------------------------------------------------
// Client

namespace {

size_t CollectBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t CollectHeader(char* data, size_t size, size_t n, void* user) {
  auto* headers = static_cast<std::multimap<std::string, std::string>*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    headers->clear();  // a new response (e.g. after 100 Continue)
  } else {
    std::size_t colon = line.find(':');
    if (colon != std::string::npos) {
      headers->emplace(ToLower(Trim(line.substr(0, colon))), Trim(line.substr(colon + 1)));
    }
  }
  return size * n;
}

curl_slist* BuildHeaders(const Headers& headers, const std::optional<std::string>& token,
                         bool json_body) {
  bool has_cookie = false, has_content_type = false;
  for (const auto& [name, value] : headers) {
    has_cookie |= ToLower(name) == "cookie";
    has_content_type |= ToLower(name) == "content-type";
  }
  curl_slist* list = nullptr;
  list = curl_slist_append(list, "Expect:");
  if (json_body && !has_content_type)
    list = curl_slist_append(list, "Content-Type: application/json");
  if (token && !has_cookie) list = curl_slist_append(list, ("Cookie: identity=" + *token).c_str());
  for (const auto& [name, value] : headers) {
    // "Name;" is libcurl's way to send a header with an empty value.
    std::string line = value.empty() ? name + ";" : name + ": " + value;
    list = curl_slist_append(list, line.c_str());
  }
  return list;
}

}  // namespace

Client::Client(std::string base_url) : base_url_(std::move(base_url)) {
  EnsureCurl();
  curl_ = curl_easy_init();
}

Client::~Client() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Client::Client(Client&& other) noexcept
    : base_url_(std::move(other.base_url_)),
      token_(std::move(other.token_)),
      timeout_(other.timeout_),
      curl_(other.curl_) {
  other.curl_ = nullptr;
}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
    base_url_ = std::move(other.base_url_);
    token_ = std::move(other.token_);
    timeout_ = other.timeout_;
    curl_ = other.curl_;
    other.curl_ = nullptr;
  }
  return *this;
}

Response Client::get(const std::string& path, const Headers& headers) {
  return request("GET", path, std::nullopt, headers);
}

Response Client::post(const std::string& path, const Json& body, const Headers& headers) {
  return request("POST", path, body.dump(), headers);
}

Response Client::post_raw(const std::string& path, const std::string& body,
                          const Headers& headers) {
  return request("POST", path, body, headers);
}

Response Client::del(const std::string& path, const Headers& headers) {
  return request("DELETE", path, std::nullopt, headers);
}

Response Client::request(const std::string& method, const std::string& path,
                         const std::optional<std::string>& body, const Headers& headers) {
  Response r;
  if (!curl_) curl_ = curl_easy_init();
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);  // keeps the live connection
  std::string url = base_url_ + path;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, CollectBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, CollectHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
    if (method != "POST") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  } else if (method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  curl_slist* list = BuildHeaders(headers, token_, body.has_value());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(list);
  if (rc != CURLE_OK) {
    r.error = std::string(curl_easy_strerror(rc)) + (errbuf[0] ? std::string(": ") + errbuf : "");
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  if (auto cookie = IdentityCookie(r)) {
    if (cookie->Clears()) {
      token_.reset();
    } else {
      token_ = cookie->value;
    }
  }
  return r;
}

// ---------------------------------------------------------------------------
// Raw sockets

Json RawResponse::json() const {
  return Json::parse(body, nullptr, false);
}

std::string RawResponse::Describe() const {
  std::string s = "raw HTTP " + std::to_string(status);
  if (closed) s += " (closed)";
  if (timed_out) s += " (timed out)";
  s += " received=" + Clip(raw, 600);
  return s;
}

namespace {

// Tries to parse one complete response out of `raw`. Returns true when complete.
bool ParseRaw(RawResponse& r) {
  std::size_t end = r.raw.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  std::istringstream head(r.raw.substr(0, end));
  std::string line;
  std::getline(head, line);
  {
    std::istringstream sl(line);
    std::string version;
    sl >> version >> r.status;
  }
  r.headers.clear();
  while (std::getline(head, line)) {
    std::size_t colon = line.find(':');
    if (colon != std::string::npos)
      r.headers.emplace(ToLower(Trim(line.substr(0, colon))), Trim(line.substr(colon + 1)));
  }
  std::size_t pos = end + 4;
  auto it = r.headers.find("transfer-encoding");
  if (it != r.headers.end() && ToLower(it->second).find("chunked") != std::string::npos) {
    std::string body;
    while (true) {
      std::size_t eol = r.raw.find("\r\n", pos);
      if (eol == std::string::npos) return false;
      std::size_t len = std::stoul(r.raw.substr(pos, eol - pos), nullptr, 16);
      if (r.raw.size() < eol + 2 + len + 2) return false;
      if (len == 0) {
        r.body = body;
        return true;
      }
      body += r.raw.substr(eol + 2, len);
      pos = eol + 2 + len + 2;
    }
  }
  it = r.headers.find("content-length");
  if (it != r.headers.end()) {
    std::size_t len = std::stoul(it->second);
    if (r.raw.size() < pos + len) return false;
    r.body = r.raw.substr(pos, len);
    return true;
  }
  if (r.status == 204 || r.status == 304 || (r.status >= 100 && r.status < 200)) return true;
  r.body = r.raw.substr(pos);
  return false;  // framed by close
}

}  // namespace

std::size_t MaxSendBuffer() {
  std::ifstream in("/proc/sys/net/ipv4/tcp_wmem");
  std::size_t min = 0, def = 0, max = 0;
  if (in >> min >> def >> max) return max;
  return 4 << 20;
}

RawResponse SendRaw(const std::string& host, int port, const std::string& bytes,
                    std::chrono::milliseconds timeout, const std::vector<std::size_t>& split_at) {
  RawResponse r;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) {
    r.timed_out = true;
    return r;
  }
  int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    freeaddrinfo(res);
    if (fd >= 0) close(fd);
    r.closed = true;
    return r;
  }
  freeaddrinfo(res);

  std::size_t sent = 0;
  std::vector<std::size_t> cuts = split_at;
  cuts.push_back(bytes.size());
  for (std::size_t cut : cuts) {
    cut = std::min(cut, bytes.size());
    while (sent < cut) {
      ssize_t n = send(fd, bytes.data() + sent, cut - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        sent = bytes.size();  // the server stopped reading; read what it answered
        break;
      }
      sent += static_cast<std::size_t>(n);
    }
    if (sent < bytes.size()) std::this_thread::sleep_for(50ms);
  }

  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (true) {
    if (ParseRaw(r)) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      break;
    }
    pollfd p{fd, POLLIN, 0};
    int pr = poll(&p, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) {
      r.timed_out = true;
      break;
    }
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      r.closed = true;
      ParseRaw(r);
      break;
    }
    r.raw.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return r;
}

// ---------------------------------------------------------------------------
// Event stream

bool SseEvent::IsHeartbeat() const {
  return data.is_object() && data.contains("type") && data["type"] == "heartbeat";
}

struct EventStream::State {
  mutable std::mutex mutex;
  std::condition_variable cv;
  long status = 0;
  std::multimap<std::string, std::string> headers;
  bool headers_done = false;
  bool ended = false;
  std::string error;
  std::string body;
  std::string line_buffer;
  std::vector<SseEvent> events;
  std::size_t heartbeats = 0;
  // The event being assembled.
  std::optional<std::int64_t> pending_id;
  std::vector<std::string> pending_data;
  bool pending_event_field = false;
  bool pending_any = false;
  // Control.
  bool stop = false;
  bool pause_requested = false;
  bool paused = false;
  CURLM* multi = nullptr;
  CURL* easy = nullptr;
};

namespace {

void FeedLine(EventStream::State& s, std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) {
    if (!s.pending_data.empty()) {
      SseEvent e;
      e.id = s.pending_id;
      for (std::size_t i = 0; i < s.pending_data.size(); ++i) {
        if (i) e.data_text += "\n";
        e.data_text += s.pending_data[i];
      }
      e.data = Json::parse(e.data_text, nullptr, false);
      e.had_event_field = s.pending_event_field;
      if (e.IsHeartbeat()) ++s.heartbeats;
      s.events.push_back(std::move(e));
    }
    s.pending_id.reset();
    s.pending_data.clear();
    s.pending_event_field = false;
    s.pending_any = false;
    return;
  }
  if (line[0] == ':') return;  // comment
  std::size_t colon = line.find(':');
  std::string field = line.substr(0, colon);
  std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value[0] == ' ') value.erase(0, 1);
  s.pending_any = true;
  if (field == "data") {
    s.pending_data.push_back(value);
  } else if (field == "id") {
    try {
      std::size_t used = 0;
      long long id = std::stoll(value, &used);
      if (used == value.size()) s.pending_id = id;
    } catch (...) {
      s.pending_id.reset();
    }
  } else if (field == "event") {
    s.pending_event_field = true;
  }
}

size_t StreamBody(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<EventStream::State*>(user);
  std::lock_guard<std::mutex> lock(s->mutex);
  if (s->pause_requested) {
    s->paused = true;
    return CURL_WRITEFUNC_PAUSE;
  }
  std::string chunk(data, size * n);
  s->body += chunk;
  s->line_buffer += chunk;
  std::size_t pos;
  while ((pos = s->line_buffer.find('\n')) != std::string::npos) {
    FeedLine(*s, s->line_buffer.substr(0, pos));
    s->line_buffer.erase(0, pos + 1);
  }
  s->cv.notify_all();
  return size * n;
}

size_t StreamHeader(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<EventStream::State*>(user);
  std::string line(data, size * n);
  std::lock_guard<std::mutex> lock(s->mutex);
  if (line.rfind("HTTP/", 0) == 0) {
    s->headers.clear();
  } else if (line == "\r\n" || line == "\n") {
    long code = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200) {
      s->status = code;
      s->headers_done = true;
      s->cv.notify_all();
    }
  } else {
    std::size_t colon = line.find(':');
    if (colon != std::string::npos)
      s->headers.emplace(ToLower(Trim(line.substr(0, colon))), Trim(line.substr(colon + 1)));
  }
  return size * n;
}

}  // namespace

EventStream::EventStream(const std::string& base_url, StreamOptions options)
    : state_(std::make_shared<State>()) {
  EnsureCurl();
  std::vector<std::string> headers = {"Accept: text/event-stream"};
  if (options.token) headers.push_back("Cookie: identity=" + *options.token);
  if (options.last_event_id) {
    headers.push_back(options.last_event_id->empty() ? std::string("Last-Event-ID;")
                                                     : "Last-Event-ID: " + *options.last_event_id);
  }
  state_->pause_requested = options.start_paused;
  std::string url = base_url + "/api/events" + (options.query.empty() ? "" : "?" + options.query);
  thread_ = std::thread([this, url, headers] { Run(url, headers); });
}

EventStream::~EventStream() {
  Close();
}

void EventStream::Run(std::string url, std::vector<std::string> header_lines) {
  State& s = *state_;
  CURL* easy = curl_easy_init();
  CURLM* multi = curl_multi_init();
  curl_slist* list = nullptr;
  for (const auto& h : header_lines) list = curl_slist_append(list, h.c_str());
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, StreamBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &s);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, StreamHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &s);
  // A small receive buffer so that a paused reader really leaves data in the kernel.
  curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 16384L);
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.easy = easy;
    s.multi = multi;
  }
  curl_multi_add_handle(multi, easy);
  std::string error;
  while (true) {
    int running = 0;
    curl_multi_perform(multi, &running);
    int queued = 0;
    bool done = false;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg == CURLMSG_DONE) {
        done = true;
        if (msg->data.result != CURLE_OK) {
          error = std::string(curl_easy_strerror(msg->data.result)) +
                  (errbuf[0] ? std::string(": ") + errbuf : "");
        }
      }
    }
    if (done || running == 0) break;
    {
      std::unique_lock<std::mutex> lock(s.mutex);
      if (s.stop) break;
      if (s.paused && !s.pause_requested) {
        s.paused = false;
        lock.unlock();
        curl_easy_pause(easy, CURLPAUSE_CONT);
        continue;
      }
    }
    curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.multi = nullptr;
    s.easy = nullptr;
    if (!s.stop) s.error = error;
    if (!s.headers_done) {
      long code = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
      s.status = code;
    }
    s.ended = true;
    s.cv.notify_all();
  }
  curl_multi_remove_handle(multi, easy);
  curl_easy_cleanup(easy);
  curl_multi_cleanup(multi);
  curl_slist_free_all(list);
}

bool EventStream::WaitForHeaders(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(state_->mutex);
  return state_->cv.wait_for(lock, timeout, [&] {
    return state_->headers_done || state_->ended;
  }) && state_->headers_done;
}

bool EventStream::WaitForEvents(std::size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(state_->mutex);
  auto count = [&] { return state_->events.size() - state_->heartbeats; };
  state_->cv.wait_for(lock, timeout, [&] { return count() >= n || state_->ended; });
  return count() >= n;
}

bool EventStream::WaitForHeartbeats(std::size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->cv.wait_for(lock, timeout, [&] { return state_->heartbeats >= n || state_->ended; });
  return state_->heartbeats >= n;
}

bool EventStream::WaitForEnd(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(state_->mutex);
  return state_->cv.wait_for(lock, timeout, [&] { return state_->ended; });
}

long EventStream::status() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->status;
}

std::string EventStream::header(const std::string& name) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  auto it = state_->headers.find(name);
  return it == state_->headers.end() ? "" : it->second;
}

bool EventStream::headers_received() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->headers_done;
}

bool EventStream::ended() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->ended;
}

std::string EventStream::body() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->body;
}

std::string EventStream::error() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->error;
}

std::vector<SseEvent> EventStream::all_events() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->events;
}

std::vector<SseEvent> EventStream::events() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  std::vector<SseEvent> v;
  for (const auto& e : state_->events)
    if (!e.IsHeartbeat()) v.push_back(e);
  return v;
}

std::size_t EventStream::heartbeat_count() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->heartbeats;
}

std::size_t EventStream::event_count() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->events.size() - state_->heartbeats;
}

void EventStream::Pause() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->pause_requested = true;
}

void EventStream::Resume() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->pause_requested = false;
  if (state_->multi) curl_multi_wakeup(state_->multi);
}

void EventStream::Close() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
    if (state_->multi) curl_multi_wakeup(state_->multi);
  }
  if (thread_.joinable()) thread_.join();
}

// ---------------------------------------------------------------------------
// Checks

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

// ---------------------------------------------------------------------------
// Fixture

void ApiTest::SetUp() {
  std::string reason;
  database_ = TestDatabase::Create(&reason);
  if (!database_) GTEST_FAIL() << "no test database: " << reason;
  server_ = std::make_unique<QuireProcess>(database_->url(), ServerArgs());
  ASSERT_TRUE(server_->Start());
}

void ApiTest::TearDown() {
  if (server_ && server_->running()) {
    EXPECT_TRUE(server_->Stop()) << "the server must stop cleanly after every test";
  }
  server_.reset();
}

Client ApiTest::Setup(const std::string& name, const std::string& password) {
  Client c = NewClient();
  Response r = c.post("/api/setup", {{"name", name}, {"password", password}});
  EXPECT_TRUE(HasStatus(r, 200));
  EXPECT_TRUE(c.token().has_value()) << "setup set no identity cookie";
  return c;
}

Client ApiTest::Invite(Client& inviter, const std::string& name, const std::string& password) {
  Response r = inviter.post("/api/invite", Json::object());
  EXPECT_TRUE(HasStatus(r, 200));
  Json j = r.json();
  std::string id = j.is_object() && j.contains("id") && j["id"].is_string()
                       ? j["id"].get<std::string>()
                       : "Imissing";
  Client c = NewClient();
  Response a = c.post("/api/invite/" + id, {{"name", name}, {"password", password}});
  EXPECT_TRUE(HasStatus(a, 200));
  return c;
}

std::string ApiTest::CreateConversation(Client& client, const std::string& name) {
  Response r = client.post("/api/conversations", {{"name", name}});
  EXPECT_TRUE(HasStatus(r, 202));
  Json j = r.json();
  return j.is_object() && j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>()
                                                                  : "Cmissing";
}

Json ApiTest::SendMessage(Client& client, const std::string& conversation, const std::string& body,
                          const Headers& headers) {
  Response r = client.post("/api/conversations/" + conversation, {{"body", body}}, headers);
  EXPECT_TRUE(HasStatus(r, 202));
  Json j = r.json();
  return j.is_object() ? j : Json::object();
}

Json ApiTest::Boot(Client& client) {
  Response r = client.get("/api/boot");
  EXPECT_TRUE(HasStatus(r, 200));
  Json j = r.json();
  if (!j.is_object()) return Json{{"events", Json::array()}, {"resume_point", -1}};
  return j;
}

std::unique_ptr<EventStream> ApiTest::OpenStream(const Client& client, std::int64_t resume_point) {
  StreamOptions o;
  o.token = client.token();
  o.query = "resume_point=" + std::to_string(resume_point);
  return std::make_unique<EventStream>(server_->base_url(), o);
}

}  // namespace quire::apitest
