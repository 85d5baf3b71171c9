#include "server/http/stream_impl.h"

#include <algorithm>
#include <utility>

namespace quire::http {

void StreamRegistry::Shed() {
  std::unique_lock<std::mutex> shedding(shed_mu, std::try_to_lock);
  if (!shedding.owns_lock() || !OverLimit()) return;  // another writer is at it
  // The streams whose sockets have taken nothing for longest go first: a
  // client that reads, however slowly, keeps its stream over one that
  // stopped reading.
  std::vector<std::shared_ptr<StreamImpl>> all = Snapshot();
  std::vector<std::pair<std::int64_t, StreamImpl*>> by_stall;
  by_stall.reserve(all.size());
  for (const auto& s : all) {
    const std::int64_t since = s->StalledSince();
    if (since != 0 && s->QueuedBytes() != 0) by_stall.emplace_back(since, s.get());
  }
  std::sort(by_stall.begin(), by_stall.end());
  const std::size_t before = unread.load();
  std::size_t cut_now = 0;
  for (const auto& [since, stream] : by_stall) {
    if (unread.load() <= limit - limit / 8) break;
    stream->Cut();
    ++cut_now;
  }
  cut += cut_now;
  // One line at most every 10 s: a flood of slow clients must not flood the log.
  const auto now = std::chrono::steady_clock::now();
  if (cut_now > 0 && now - reported >= std::chrono::seconds(10)) {
    reported = now;
    Log("streams held " + std::to_string(before >> 10) + " KiB their clients had not read (limit " +
        std::to_string(limit >> 10) + " KiB): cut the " + std::to_string(cut_now) +
        " stalled longest (" + std::to_string(cut) + " since start)");
  }
}

}  // namespace quire::http
