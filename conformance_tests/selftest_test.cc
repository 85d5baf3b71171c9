// The conformance suite's self-test: a suite that cannot fail proves nothing.
// Runs the suite against each deliberately broken backend of broken_store.h
// (in quire_conformance_broken, a separate program, since those runs are
// meant to fail) and checks, from GoogleTest's JSON report, that the property
// each fault breaks fails — and that the same wrapper without a fault passes
// everything, so the failures come from the faults.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct SuiteRun {
  int exit_code = -1;
  std::string output;
  // Test name without the backend suffix ("P02_…") → "passed", "failed" or "skipped".
  std::map<std::string, std::string> results;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs the whole suite against the backend with this fault.
SuiteRun RunSuiteAgainst(const std::string& fault) {
  const std::string base = ::testing::TempDir() + "quire-selftest-" + fault;
  const std::string json = base + ".json", log = base + ".log";
  const std::string command = std::string(QUIRE_CONFORMANCE_BROKEN) + " --gtest_filter='*/" +
                              fault + "' --gtest_output=json:" + json + " > " + log + " 2>&1";
  SuiteRun run;
  const int status = std::system(command.c_str());
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.output = ReadFile(log);
  const nlohmann::json report = nlohmann::json::parse(ReadFile(json), nullptr, false);
  if (report.is_discarded()) return run;
  const std::string suffix = "/" + fault;
  for (const auto& suite : report.value("testsuites", nlohmann::json::array())) {
    for (const auto& test : suite.value("testsuite", nlohmann::json::array())) {
      std::string name = test.value("name", "");
      if (name.size() > suffix.size() && name.ends_with(suffix)) {
        name.resize(name.size() - suffix.size());
      }
      std::string result = "passed";
      if (test.contains("failures")) {
        result = "failed";
      } else if (test.value("result", "") == "SKIPPED") {
        result = "skipped";
      }
      run.results[name] = result;
    }
  }
  return run;
}

// The result of the test whose name starts with `property` ("P02_").
std::string ResultOf(const SuiteRun& run, const std::string& property) {
  for (const auto& [name, result] : run.results) {
    if (name.starts_with(property)) return result;
  }
  return "missing";
}

std::string Listing(const SuiteRun& run) {
  std::string text = "exit " + std::to_string(run.exit_code) + "\n";
  for (const auto& [name, result] : run.results) text += "  " + name + ": " + result + "\n";
  return text + "--- output ---\n" + run.output.substr(0, 20000);
}

TEST(ConformanceSelfTest, ControlWithoutFaultPassesEveryProperty) {
  const SuiteRun run = RunSuiteAgainst("None");
  EXPECT_EQ(run.exit_code, 0) << Listing(run);
  ASSERT_GE(run.results.size(), 12u) << Listing(run);
  for (const auto& [name, result] : run.results) {
    // P04/P05 need a reopen; the control has one. Nothing may be skipped.
    EXPECT_EQ(result, "passed") << name << "\n" << Listing(run);
  }
}

// A fault and the properties that must catch it (test names start with these).
struct Catch {
  std::string fault;
  std::vector<std::string> caught_by;
};

void PrintTo(const Catch& c, std::ostream* os) {
  *os << c.fault;
}

class ConformanceSelfTestCatches : public ::testing::TestWithParam<Catch> {};

TEST_P(ConformanceSelfTestCatches, TheFault) {
  const SuiteRun run = RunSuiteAgainst(GetParam().fault);
  EXPECT_NE(run.exit_code, 0) << Listing(run);
  for (const std::string& property : GetParam().caught_by) {
    EXPECT_EQ(ResultOf(run, property), "failed") << property << "\n" << Listing(run);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Faults, ConformanceSelfTestCatches,
    ::testing::Values(Catch{"OutOfCommitOrder", {"P02_ConcurrentWritersNeverSkipEvents"}},
                      Catch{"DropAtResumeBoundary", {"P01_", "P03_"}},
                      Catch{"ReuseAfterReopen", {"P04_"}}, Catch{"NonAtomicUniqueness", {"P06_"}},
                      Catch{"ReadsBlockWriters", {"P11_"}}),
    [](const ::testing::TestParamInfo<Catch>& info) { return info.param.fault; });

}  // namespace
