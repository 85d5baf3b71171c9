// The storage conformance suite: the properties of docs/backend-authors.md
// ("The properties"), as GoogleTest tests that any Store backend — in this
// repository or out of it — runs against itself.
//
// A backend instantiates the suite once per configuration it wants checked:
//
//   #include "conformance_tests/suite.h"
//
//   quire::conformance::BackendUnderTest MyBackend() {
//     return {.name = "mydb",
//             .make_fresh_store = [](std::unique_ptr<quire::storage::Store>* out) {
//               return OpenMyStoreOnAnEmptyDatabase(out);
//             },
//             .reopen_same_store = [](std::unique_ptr<quire::storage::Store>* out) {
//               return OpenMyStoreOnTheLastDatabaseMadeAbove(out);
//             }};
//   }
//   QUIRE_INSTANTIATE_STORE_CONFORMANCE(MyDb, MyBackend());
//
// and links Quire::conformance (an OBJECT library: every test file comes
// along) and Quire::conformance_main (or GTest::gtest_main). Each test calls
// make_fresh_store once, at its start, and destroys the store at its end.
// Tests are named after the numbered properties (P01_…, P02_…); a test of a
// property the backend declares unsupported in Store::capabilities() is
// skipped with the reason.
//
// Times: the suite passes explicit Micros to every operation (an injected
// clock); a backend must not read the wall clock for anything it stores.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "storage/status.h"
#include "storage/store.h"
#include "storage/types.h"
#include "storage/write_ops.h"

namespace quire::conformance {

using StoreFactory = std::function<storage::Status(std::unique_ptr<storage::Store>* out)>;

struct BackendUnderTest {
  // Names the instantiation in test names: letters, digits and '_' only.
  std::string name;
  // Opens a store on a new, empty database.
  StoreFactory make_fresh_store;
  // Opens again the database most recently made by make_fresh_store (the
  // suite has destroyed its previous Store first). Empty: tests of reopening
  // are skipped.
  StoreFactory reopen_same_store;
};

// The fixture of every conformance test, with helpers for writing them.
class StoreConformance : public ::testing::TestWithParam<BackendUnderTest> {
 protected:
  void SetUp() override;
  void TearDown() override;

  storage::Store& store() { return *store_; }

  // Destroys the store and opens the same database again (fails the test
  // when that does not work; callers check HasFatalFailure()).
  void Reopen();

  // Applies `op` alone; the batch must succeed. Returns the write with its
  // own status and last_seq.
  storage::Write Apply(storage::op::Operation op);
  // Applies `ops` as one batch; the batch must succeed.
  std::vector<storage::Write> ApplyBatch(std::vector<storage::op::Operation> ops);

  // Every retained event with after < seq <= upto, read in pages of `page`.
  std::vector<storage::Event> History(std::int64_t after = 0, std::int64_t upto = INT64_MAX,
                                      std::size_t page = 1000);
  storage::Head Head();

  // Ids of the shape the server makes: a type letter and 15 characters.
  static std::string Id(char kind, std::int64_t n);

  // Records with consistent fields, for operations.
  static storage::User MakeUser(std::int64_t n, const std::string& name, storage::Micros at);
  static storage::Session MakeSession(std::int64_t n, const std::string& user_id,
                                      storage::Micros at);
  static storage::Conversation MakeConversation(std::int64_t n, const std::string& name,
                                                storage::Micros at);
  static storage::Message MakeMessage(std::int64_t n, const std::string& conversation,
                                      const std::string& sender, const std::string& body,
                                      storage::Micros at);

  // Runs Setup with user 1 (and session 1); returns the user's id.
  std::string SetUpFirstUser(storage::Micros at = 1000);
  // Creates conversation 1, "room", at time 1000; returns it.
  storage::Conversation CreateRoom();

  std::unique_ptr<storage::Store> store_;
};

// Prints a backend under test as its name (in test listings and failures).
void PrintTo(const BackendUnderTest& backend, std::ostream* os);

// Names instantiations after BackendUnderTest::name. Defined in suite.cc, so
// that a program instantiating the suite without linking it fails to link
// instead of running no test.
std::string BackendName(const ::testing::TestParamInfo<BackendUnderTest>& info);

}  // namespace quire::conformance

// Instantiates every conformance test for each BackendUnderTest given. Use it
// at global namespace scope.
#define QUIRE_INSTANTIATE_STORE_CONFORMANCE(instantiation, ...)                             \
  namespace quire::conformance {                                                            \
  INSTANTIATE_TEST_SUITE_P(instantiation, StoreConformance, ::testing::Values(__VA_ARGS__), \
                           BackendName);                                                    \
  }                                                                                         \
  static_assert(true, "")
