// What the files of the conformance suite share: the names they use, the
// OK checks, and helpers on sequences. Not installed: only the suite's own
// files include it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "conformance_tests/suite.h"

namespace quire::conformance {

using storage::Conversation;
using storage::Event;
using storage::EventKind;
using storage::Message;
using storage::Micros;
using storage::Session;
using storage::Status;
using storage::User;
using storage::Write;
namespace op = storage::op;

#define QUIRE_EXPECT_OK(expr)                          \
  do {                                                 \
    const ::quire::storage::Status quire_s_ = (expr);  \
    EXPECT_TRUE(quire_s_.ok()) << quire_s_.ToString(); \
  } while (0)
#define QUIRE_ASSERT_OK(expr)                          \
  do {                                                 \
    const ::quire::storage::Status quire_s_ = (expr);  \
    ASSERT_TRUE(quire_s_.ok()) << quire_s_.ToString(); \
  } while (0)

// The sequences of `events`, in their order.
std::vector<std::int64_t> Seqs(const std::vector<Event>& events);

bool StrictlyIncreasing(const std::vector<std::int64_t>& seqs);

// Empty when a reader saw exactly the history; else where it first went wrong.
std::string FirstDifference(const std::vector<std::int64_t>& seen,
                            const std::vector<std::int64_t>& history);

}  // namespace quire::conformance
