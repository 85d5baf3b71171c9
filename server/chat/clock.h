// Clock: where the chat domain reads the time, so tests can inject it.
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>

#include "storage/types.h"

namespace quire::chat {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual storage::Micros Now() = 0;
};

class SystemClock final : public Clock {
 public:
  storage::Micros Now() override {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

// A clock that only moves when told to. For tests.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(storage::Micros start) : now_(start) {}
  storage::Micros Now() override { return now_.load(); }
  void Advance(storage::Micros by) { now_ += by; }
  void Set(storage::Micros to) { now_ = to; }

 private:
  std::atomic<storage::Micros> now_;
};

}  // namespace quire::chat
