// The server process of harness.h: QuireProcess runs `quire serve` on a free
// port and waits until it listens; RunQuire runs a command to completion.
// Every child is tracked and killed when the test binary exits, and dies
// with it (PR_SET_PDEATHSIG); a ThreadSanitizer report on a child's stderr
// fails the current test.
//
// Thread-safety: a QuireProcess is used by one test's thread; the set of
// live children is guarded by its own mutex. Ownership: a QuireProcess owns
// its server and kills it when destroyed.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <stdexcept>

#include "tests/api/harness.h"
#include "tests/api/harness_helpers.h"

extern char** environ;

namespace quire::apitest {

namespace {

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
            const std::string& out_path, const std::string& err_path,
            const std::string& in_path = "/dev/null") {
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
  const char* in_c = in_path.c_str();
  pid_t parent = getpid();

  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int in = open(in_c, O_RDONLY);
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

std::string QuireBin() {
  if (const char* bin = std::getenv("QUIRE_BIN"); bin && *bin) return bin;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) return (self.parent_path() / "quire").string();
  return "quire";
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

namespace {

// Runs quire to completion, or kills it when `kill_when` (if set) holds.
RunResult RunWatched(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                     const std::vector<std::string>& env, const std::function<bool()>& kill_when,
                     const std::optional<std::string>& stdin_text = std::nullopt) {
  TempDir dir;
  std::vector<std::string> argv = {QuireBin()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out = dir.path() + "/stdout", err = dir.path() + "/stderr";
  std::string in = "/dev/null";
  if (stdin_text) {
    in = dir.path() + "/stdin";
    std::FILE* f = std::fopen(in.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write " + in);
    std::fwrite(stdin_text->data(), 1, stdin_text->size(), f);
    std::fclose(f);
  }
  pid_t pid = Spawn(argv, env, out, err, in);
  RunResult result;
  std::optional<ExitStatus> ended;
  if (kill_when) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!ended && std::chrono::steady_clock::now() < deadline) {
      if (kill_when()) {
        kill(pid, SIGKILL);
        ended = WaitFor(pid, 10s);
        break;
      }
      ended = WaitFor(pid, 0ms);  // looks once
      if (!ended) std::this_thread::sleep_for(1ms);
    }
  } else {
    ended = WaitFor(pid, timeout);
  }
  if (auto st = ended) {
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

}  // namespace

RunResult RunQuire(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                   const std::vector<std::string>& env) {
  return RunWatched(args, timeout, env, nullptr);
}

RunResult RunQuireWithInput(const std::vector<std::string>& args, const std::string& stdin_text,
                            std::chrono::milliseconds timeout,
                            const std::vector<std::string>& env) {
  return RunWatched(args, timeout, env, nullptr, stdin_text);
}

RunResult RunQuireUntil(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                        const std::function<bool()>& kill_when) {
  return RunWatched(args, timeout, {}, kill_when);
}

}  // namespace quire::apitest
