#include "server/http/peer_writes.h"

#include <exception>

#include "server/http/log.h"
#include "server/http/pistache_calls.h"

namespace quire::http {

Sent Enqueue(const std::shared_ptr<Peer>& peer, const Pistache::RawBuffer& bytes,
             std::initializer_list<Pending*> counters) {
  Sent sent;
  sent.size = bytes.size();
  for (Pending* c : counters) {
    if (c) c->Add(sent.size);
  }
  try {
    sent.promise.emplace(pistache_calls::Send(*peer, bytes));
  } catch (const std::exception& e) {
    Log(std::string("send failed: ") + e.what());
    for (Pending* c : counters) {
      if (c) c->Sub(sent.size);
    }
  }
  return sent;
}

Sent Enqueue(const std::shared_ptr<Peer>& peer, std::string bytes,
             std::initializer_list<Pending*> counters) {
  const std::size_t n = bytes.size();
  return Enqueue(peer, Pistache::RawBuffer(std::move(bytes), n), counters);
}

void Attach(Sent& sent, std::vector<std::shared_ptr<Pending>> counters,
            std::function<void()> after) {
  if (!sent.promise) return;
  std::size_t n = sent.size;
  auto done = [counters, n, after](ssize_t) {
    for (const auto& c : counters) {
      if (c) c->Sub(n);
    }
    if (after) after();
  };
  auto failed = [counters, n](std::exception_ptr) {
    for (const auto& c : counters) {
      if (c) c->Sub(n);
    }
  };
  sent.promise->then(std::move(done), std::move(failed));
}

}  // namespace quire::http
