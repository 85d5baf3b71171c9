#include "server/fanout/event_hub.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "server/chat/event_json.h"
#include "server/fanout/resume_point.h"
#include "server/http/sse_frame.h"
#include "server/log/log.h"

namespace quire::fanout {
namespace {

using Clock = std::chrono::steady_clock;

// An event's SSE frame: its sequence as the id (what the client resumes
// from), its JSON as the data.
void AppendEventFrame(std::string& out, const storage::Event& event) {
  http::AppendSseEvent(out, event.seq,
                       [&event](std::string& data) { chat::AppendEventJson(data, event); });
}

http::ChunkPtr EventChunk(const storage::Event& event) {
  std::string frame;
  AppendEventFrame(frame, event);
  return http::MakeChunk(frame);
}

}  // namespace

EventHub::EventHub(storage::Store& store, HubOptions options)
    : store_(store),
      options_(options),
      heartbeat_chunk_(http::MakeChunk(http::SseEventWithoutId(chat::kHeartbeatJson))) {}

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
    PublishedTo(published_);
  }
  pump_ = std::thread([this] { Pump(); });
  return storage::Status::Ok();
}

void EventHub::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !pump_.joinable()) return;
    stopping_ = true;
    for (const auto& sub : subscribers_) sub->stream->End();
    subscribers_.clear();
    PublishedTo(published_);
  }
  if (pump_.joinable()) pump_.join();
}

void EventHub::Attach(std::shared_ptr<http::ResponseStream> stream, std::int64_t start,
                      const std::string& user_id, const std::string& token_hash) {
  auto replay = std::make_shared<Replay>(Replay{std::move(stream), start, user_id, token_hash});
  // The session was checked when the request began, and a logout or password
  // change ends the streams the hub knows of once its commit is done: one that
  // ran between the two would leave this stream open for good. So the stream
  // is known here before the session is read again: either that commit came
  // first and the read finds no session, or its SessionEnded finds the stream.
  {
    std::lock_guard<std::mutex> lock(mu_);
    replays_.push_back(replay);
  }
  storage::Session session;
  if (store_.FindSession(token_hash, &session).IsNotFound()) replay->stream->End();
  ContinueReplay(replay);
}

void EventHub::ContinueReplay(const std::shared_ptr<Replay>& replay) {
  http::ResponseStream& stream = *replay->stream;
  std::vector<storage::Event> events;
  // Whenever the replay ends, the stream leaves replays_ (under mu_).
  auto forget = [&] { std::erase(replays_, replay); };
  for (;;) {
    std::int64_t target;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || stream.Closed()) {
        forget();
        stream.End();
        return;
      }
      target = published_;
      if (replay->cursor >= target) {
        forget();
        if (LostToPurge(replay->cursor, purged_through_)) {
          stream.End();  // a purge overtook the replay; the reconnect gets 410
          return;
        }
        replay->stream->LimitSendBuffer(options_.live_send_buffer);
        subscribers_.push_back(std::make_shared<Subscriber>(Subscriber{
            replay->stream, replay->cursor, replay->user_id, replay->token_hash, Clock::now()}));
        return;
      }
    }
    // Replay one page of (cursor, target] outside the lock, never holding a
    // read transaction while the client reads.
    events.clear();
    storage::Status s = store_.ReadEvents(replay->cursor, target, options_.read_page, &events);
    if (!s.ok()) {
      log::Error("stream replay", s.ToString());
      stream.End();
      continue;  // closed: leaves replays_ above
    }
    bool written = true;
    for (const storage::Event& event : events) {
      if (!(written = stream.Write(EventChunk(event)))) break;
    }
    if (!written) continue;  // closed: leaves replays_ above
    replay->cursor = CursorAfterPage(replay->cursor, target, events, options_.read_page);
    if (events.empty()) continue;
    // The next page once this one drained, on a worker; no thread waits for a
    // slow client, and one that does not catch up within 30 s is dropped (it
    // reconnects from where it got). Not drained means closed: the call then
    // only takes the stream out of replays_.
    stream.WhenDrained(options_.max_pending_bytes / 2, std::chrono::seconds(30),
                       [this, replay](bool) { ContinueReplay(replay); });
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
      log::Error("event pump", "cannot read the database, retrying: " + s.ToString());
      failing = true;
    } else if (s.ok() && failing) {
      log::Info("event pump", "reads the database again");
      failing = false;
    }
    SendHeartbeats(Clock::now());
    generation = store_.WaitForCommit(generation, tick);
  }
}

struct EventHub::Page {
  std::vector<storage::Event> events;
  std::string frames;                // every frame of the page, back to back
  std::vector<std::size_t> offsets;  // where each event's frame starts in `frames`
  http::ChunkPtr whole;              // all of `frames`, for streams level with the hub
};

storage::Status EventHub::PublishNew(const storage::Head& head) {
  std::int64_t cursor;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (head.purged_through > purged_through_) {
      purged_through_ = head.purged_through;
      const std::int64_t horizon = purged_through_;
      EndWhere([horizon](const Subscriber& sub) { return LostToPurge(sub.cursor, horizon); });
    }
    cursor = published_;
  }
  Page page;
  while (cursor < head.last_seq) {
    page.events.clear();
    storage::Status s = store_.ReadEvents(cursor, head.last_seq, options_.read_page, &page.events);
    if (!s.ok()) return s;
    // Counted before any stream can have the events.
    events_published_.fetch_add(page.events.size());
    // Render the page once; streams that are level with the hub (nearly all)
    // share one chunk holding every frame of it: one write per stream per page.
    page.frames.clear();
    page.offsets.clear();
    for (const storage::Event& event : page.events) {
      page.offsets.push_back(page.frames.size());
      AppendEventFrame(page.frames, event);
    }
    page.whole = http::MakeChunk(page.frames);
    // Write to the streams without the lock: joining streams, session ends
    // and Pace never wait for a fan-out in progress.
    // How far the streams lag is summed for Pace while each is at hand.
    std::size_t lag_bytes = 0;
    if (!page.events.empty()) {
      for (const auto& sub : Snapshot()) {
        DeliverPage(*sub, page);
        lag_bytes += LagBytes(*sub);
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return storage::Status::Ok();
    // Streams that joined while the page went out get what they lack
    // before published_ moves past it (they joined at published_ or later).
    if (!page.events.empty()) {
      for (const auto& sub : subscribers_) DeliverPage(*sub, page);
    }
    published_ = CursorAfterPage(cursor, head.last_seq, page.events, options_.read_page);
    cursor = published_;
    std::erase_if(subscribers_, [](const auto& sub) { return sub->stream->Closed(); });
    PublishedTo(published_, lag_bytes);
  }
  return storage::Status::Ok();
}

void EventHub::DeliverPage(Subscriber& sub, const Page& page) {
  const std::int64_t first = page.events.front().seq;
  const std::int64_t last = page.events.back().seq;
  if (sub.cursor >= last) return;
  if (sub.cursor < first) {
    if (Deliver(sub, page.whole)) sub.cursor = last;
    return;
  }
  // A stream that joined ahead of the hub gets only what it lacks.
  const auto next =
      std::upper_bound(page.events.begin(), page.events.end(), sub.cursor,
                       [](std::int64_t seq, const storage::Event& e) { return seq < e.seq; });
  const std::size_t from = page.offsets[static_cast<std::size_t>(next - page.events.begin())];
  if (Deliver(sub, http::MakeChunk(std::string_view(page.frames).substr(from)))) {
    sub.cursor = last;
  }
}

std::vector<std::shared_ptr<EventHub::Subscriber>> EventHub::Snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  return subscribers_;
}

void EventHub::PublishedTo(std::int64_t seq, std::size_t lag_bytes) {
  {
    std::lock_guard<std::mutex> lock(pace_mu_);
    pace_published_ = seq;
    pace_idle_ = stopping_ || subscribers_.empty();
    pace_live_ = subscribers_.size();
    pace_lag_bytes_ = lag_bytes;
    while (!unpublished_.empty() && (pace_idle_ || unpublished_.front().seq <= seq)) {
      unpublished_.pop_front();
    }
  }
  pace_cv_.notify_all();
}

bool EventHub::Deliver(Subscriber& sub, const http::ChunkPtr& chunk) {
  if (sub.stream->PendingBytes() > options_.max_pending_bytes) {
    // Too slow: it reconnects with Last-Event-ID and loses nothing. Cut, not
    // End: the megabyte it has not read is dropped, not handed over.
    sub.stream->Cut();
    return false;
  }
  if (!sub.stream->Write(chunk)) return false;
  sub.last_write = Clock::now();
  return true;
}

void EventHub::SendHeartbeats(Clock::time_point now) {
  for (const auto& sub : Snapshot()) {
    if (now - sub->last_write >= options_.heartbeat) Deliver(*sub, heartbeat_chunk_);
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(subscribers_, [](const auto& sub) { return sub->stream->Closed(); });
}

void EventHub::EndWhere(const std::function<bool(const Subscriber&)>& predicate) {
  // Called with mu_ held.
  for (const auto& sub : subscribers_) {
    if (predicate(*sub)) sub->stream->End();
  }
  std::erase_if(subscribers_, [](const auto& sub) { return sub->stream->Closed(); });
}

void EventHub::EndSessions(
    const std::function<bool(const std::string&, const std::string&)>& ended) {
  std::vector<std::shared_ptr<http::ResponseStream>> replaying;
  {
    std::lock_guard<std::mutex> lock(mu_);
    EndWhere([&](const Subscriber& sub) { return ended(sub.user_id, sub.token_hash); });
    for (const auto& replay : replays_) {
      if (ended(replay->user_id, replay->token_hash)) replaying.push_back(replay->stream);
    }
  }
  // Without mu_: ending a replaying stream runs its drain callback, which may
  // continue the replay (taking mu_) on this thread.
  for (const auto& stream : replaying) stream->End();
}

void EventHub::SessionEnded(const std::string& token_hash) {
  EndSessions([&](const std::string&, const std::string& hash) { return hash == token_hash; });
}

void EventHub::UserSessionsEnded(const std::string& user_id, const std::string& kept_token_hash) {
  EndSessions([&](const std::string& user, const std::string& hash) {
    return user == user_id && hash != kept_token_hash;
  });
}

void EventHub::Pace(std::int64_t committed_seq) {
  const auto now = Clock::now();
  std::unique_lock<std::mutex> lock(pace_mu_);
  const std::int64_t previous = pace_behind_;
  if (committed_seq > pace_behind_) {
    pace_behind_ = committed_seq;
    if (!pace_idle_ && committed_seq > pace_published_) {
      unpublished_.push_back(Committed{committed_seq, now});
    }
  }
  pace_cv_.wait_for(lock, options_.pace_wait,
                    [&] { return pace_idle_ || pace_published_ >= previous; });
  pace_cv_.wait_until(lock, now + std::chrono::seconds(1), [&] {
    return pace_idle_ || unpublished_.empty() ||
           Clock::now() - unpublished_.front().at < options_.max_lag;
  });
  // Nothing tells when a socket drains, so while the streams lag they are
  // looked at again every millisecond (and only then).
  const auto drain_deadline = Clock::now() + options_.lag_wait;
  while (Lagging() && Clock::now() < drain_deadline) {
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const std::vector<std::shared_ptr<Subscriber>> live = Snapshot();
    std::size_t lag_bytes = 0;
    for (const auto& sub : live) lag_bytes += LagBytes(*sub);
    lock.lock();
    pace_live_ = live.size();
    pace_lag_bytes_ = lag_bytes;
  }
}

std::size_t EventHub::LagBytes(const Subscriber& sub) const {
  const std::size_t pending = sub.stream->PendingBytes();
  return pending == 0 || sub.stream->Stalled(options_.stalled_after) ? 0 : pending;
}

bool EventHub::Lagging() const {
  return !pace_idle_ && pace_lag_bytes_ > pace_live_ * options_.lag_bytes;
}

std::vector<std::string> EventHub::OpenSessions() {
  std::vector<std::string> hashes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& sub : subscribers_) hashes.push_back(sub->token_hash);
    for (const auto& replay : replays_) hashes.push_back(replay->token_hash);
  }
  std::sort(hashes.begin(), hashes.end());
  hashes.erase(std::unique(hashes.begin(), hashes.end()), hashes.end());
  return hashes;
}

std::size_t EventHub::LiveStreams() {
  std::lock_guard<std::mutex> lock(mu_);
  return subscribers_.size();
}

EventHub::Stats EventHub::GetStats() {
  std::lock_guard<std::mutex> lock(mu_);
  return Stats{subscribers_.size(), replays_.size(), published_, events_published_.load()};
}

}  // namespace quire::fanout
