#include "server/fanout/event_hub.h"

#include <algorithm>
#include <cstdio>

#include "server/chat/event_json.h"

namespace quire::fanout {
namespace {

using Clock = std::chrono::steady_clock;

http::ChunkPtr EventChunk(const storage::Event& event) {
  return http::MakeChunk(chat::EventFrame(event));
}

}  // namespace

EventHub::EventHub(storage::Store& store, HubOptions options)
    : store_(store), options_(options), heartbeat_chunk_(http::MakeChunk(chat::HeartbeatFrame())) {}

EventHub::~EventHub() {
  Stop();
}

storage::Status EventHub::Start() {
  storage::Head head;
  storage::Status s = store_.GetHead(&head);
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    published_ = head.last_seq;
    purged_through_ = head.purged_through;
  }
  pump_ = std::thread([this] { Pump(); });
  return storage::Status::Ok();
}

void EventHub::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !pump_.joinable()) return;
    stopping_ = true;
    for (Subscriber& sub : subscribers_) sub.stream->End();
    subscribers_.clear();
  }
  if (pump_.joinable()) pump_.join();
}

void EventHub::Attach(std::shared_ptr<http::ResponseStream> stream, std::int64_t start,
                      const std::string& user_id, const std::string& token_hash) {
  ContinueReplay(std::make_shared<Replay>(Replay{std::move(stream), start, user_id, token_hash}));
}

void EventHub::ContinueReplay(const std::shared_ptr<Replay>& replay) {
  http::ResponseStream& stream = *replay->stream;
  std::vector<storage::Event> events;
  for (;;) {
    std::int64_t target;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || stream.Closed()) {
        stream.End();
        return;
      }
      target = published_;
      if (replay->cursor >= target) {
        if (replay->cursor < purged_through_) {
          stream.End();  // a purge overtook the replay; the reconnect gets 410
          return;
        }
        subscribers_.push_back(Subscriber{replay->stream, replay->cursor, replay->user_id,
                                          replay->token_hash, Clock::now()});
        return;
      }
    }
    // Replay one page of (cursor, target] outside the lock, never holding a
    // read transaction while the client reads.
    events.clear();
    storage::Status s = store_.ReadEvents(replay->cursor, target, options_.read_page, &events);
    if (!s.ok()) {
      std::fprintf(stderr, "quire: stream replay failed: %s\n", s.ToString().c_str());
      stream.End();
      return;
    }
    for (const storage::Event& event : events) {
      if (!stream.Write(EventChunk(event))) return;
      replay->cursor = event.seq;
    }
    if (events.size() < options_.read_page) replay->cursor = target;  // the rest was purged
    if (events.empty()) continue;
    // The next page once this one drained, on a worker; no thread waits for a
    // slow client, and one that does not catch up within 30 s is dropped (it
    // reconnects from where it got).
    stream.WhenDrained(options_.max_pending_bytes / 2, std::chrono::seconds(30),
                       [this, replay](bool drained) {
                         if (drained) ContinueReplay(replay);
                       });
    return;
  }
}

void EventHub::Pump() {
  std::uint64_t generation = store_.CommitGeneration();
  const auto tick = std::min<std::chrono::milliseconds>(
      std::chrono::milliseconds(250), options_.heartbeat / 4 + std::chrono::milliseconds(1));
  bool failing = false;  // said once when reads start failing, once when they work again
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    if (options_.before_publish) options_.before_publish();
    storage::Head head;
    storage::Status s = store_.GetHead(&head);
    if (s.ok()) s = PublishNew(head);
    if (!s.ok() && !failing) {
      std::fprintf(stderr, "quire: event pump cannot read the database, retrying: %s\n",
                   s.ToString().c_str());
      failing = true;
    } else if (s.ok() && failing) {
      std::fprintf(stderr, "quire: event pump reads the database again\n");
      failing = false;
    }
    SendHeartbeats(Clock::now());
    generation = store_.WaitForCommit(generation, tick);
  }
}

storage::Status EventHub::PublishNew(const storage::Head& head) {
  std::int64_t cursor;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (head.purged_through > purged_through_) {
      purged_through_ = head.purged_through;
      const std::int64_t horizon = purged_through_;
      EndWhere([horizon](const Subscriber& sub) { return sub.cursor < horizon; });
    }
    cursor = published_;
  }
  std::vector<storage::Event> events;
  std::string frames;                // every frame of the page, back to back
  std::vector<std::size_t> offsets;  // where each event's frame starts in `frames`
  while (cursor < head.last_seq) {
    events.clear();
    storage::Status s = store_.ReadEvents(cursor, head.last_seq, options_.read_page, &events);
    if (!s.ok()) return s;
    // Render the page once; streams that are level with the hub (nearly all)
    // share one chunk holding every frame of it: one write per stream per page.
    frames.clear();
    offsets.clear();
    for (const storage::Event& event : events) {
      offsets.push_back(frames.size());
      chat::AppendEventFrame(frames, event);
    }
    const auto whole_page = http::MakeChunk(frames);
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return storage::Status::Ok();
    if (!events.empty()) {
      const std::int64_t first = events.front().seq;
      const std::int64_t last = events.back().seq;
      for (Subscriber& sub : subscribers_) {
        if (sub.cursor >= last) continue;
        if (sub.cursor < first) {
          if (Deliver(sub, whole_page)) sub.cursor = last;
          continue;
        }
        // A stream that joined ahead of the hub gets only what it lacks.
        const auto next =
            std::upper_bound(events.begin(), events.end(), sub.cursor,
                             [](std::int64_t seq, const storage::Event& e) { return seq < e.seq; });
        const std::size_t from = offsets[static_cast<std::size_t>(next - events.begin())];
        if (Deliver(sub, http::MakeChunk(std::string_view(frames).substr(from)))) {
          sub.cursor = last;
        }
      }
      published_ = last;
    }
    // A short page means nothing else is retained up to the head.
    if (events.size() < options_.read_page) published_ = head.last_seq;
    cursor = published_;
    std::erase_if(subscribers_, [](const Subscriber& sub) { return sub.stream->Closed(); });
  }
  return storage::Status::Ok();
}

bool EventHub::Deliver(Subscriber& sub, const http::ChunkPtr& chunk) {
  if (sub.stream->PendingBytes() > options_.max_pending_bytes) {
    sub.stream->End();  // too slow: it reconnects with Last-Event-ID and loses nothing
    return false;
  }
  if (!sub.stream->Write(chunk)) return false;
  sub.last_write = Clock::now();
  return true;
}

void EventHub::SendHeartbeats(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  for (Subscriber& sub : subscribers_) {
    if (now - sub.last_write >= options_.heartbeat) Deliver(sub, heartbeat_chunk_);
  }
  std::erase_if(subscribers_, [](const Subscriber& sub) { return sub.stream->Closed(); });
}

void EventHub::EndWhere(const std::function<bool(const Subscriber&)>& predicate) {
  // Called with mu_ held.
  for (Subscriber& sub : subscribers_) {
    if (predicate(sub)) sub.stream->End();
  }
  std::erase_if(subscribers_, [](const Subscriber& sub) { return sub.stream->Closed(); });
}

void EventHub::SessionEnded(const std::string& token_hash) {
  std::lock_guard<std::mutex> lock(mu_);
  EndWhere([&](const Subscriber& sub) { return sub.token_hash == token_hash; });
}

void EventHub::UserSessionsEnded(const std::string& user_id, const std::string& kept_token_hash) {
  std::lock_guard<std::mutex> lock(mu_);
  EndWhere([&](const Subscriber& sub) {
    return sub.user_id == user_id && sub.token_hash != kept_token_hash;
  });
}

std::size_t EventHub::LiveStreams() {
  std::lock_guard<std::mutex> lock(mu_);
  return subscribers_.size();
}

}  // namespace quire::fanout
