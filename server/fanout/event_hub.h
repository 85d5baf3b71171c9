// EventHub: delivers committed events to every open event stream.
//
// One pump thread waits for commits, reads the new events from the store once,
// renders each into an SSE chunk once, and queues the same bytes on every live
// stream. Writers never wait for it: a send is acknowledged after its commit,
// and fan-out happens afterwards. Reading from the store (rather than being
// handed events by the local writer) makes events committed by any process
// reach every stream, and keeps "delivered" equal to "committed".
//
// A stream joins in two steps: Attach() replays from the store, on the
// caller's thread, everything after the client's start point up to what the
// pump has published, then hands the stream to the pump under the hub's lock
// once nothing is left between the two. So no event is skipped or repeated.
//
// Streams are ended (and the client reconnects with Last-Event-ID) when the
// client is too slow (its queue exceeds max_pending_bytes), when its session
// ends, when a purge overtakes it, and at shutdown.
//
// Thread-safety: all public methods may be called from any thread.
// Ownership: the Store must outlive the hub; streams are shared.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/chat/chat_service.h"
#include "server/http/http_server.h"
#include "storage/store.h"

namespace quire::fanout {

struct HubOptions {
  std::chrono::milliseconds heartbeat{30000};
  std::size_t max_pending_bytes = 1 << 20;  // ~2,700 events; bounds memory per stream
  std::size_t read_page = 1024;             // events per store read
  // Runs on the pump after a commit woke it, before its events are queued on
  // the streams: the server waits there until the commit's replies are queued
  // (Committer::AwaitReplies), so no 202 waits behind stream bytes.
  std::function<void()> before_publish;
  // Pace: how long the committer waits for the streams to get the batch
  // before last, and the delivery lag past which it waits until they catch up
  // (a bound on how far senders may run ahead of their readers).
  std::chrono::milliseconds pace_wait{8};
  std::chrono::milliseconds max_lag{50};
  // And while the live streams lag, on average, more than lag_bytes behind
  // their clients, it waits up to lag_wait per commit for them to drain.
  // When the clients, not the pump, cannot keep up, senders slow down,
  // instead of delivery lag growing until the streams reach
  // max_pending_bytes and are cut. Only clients that read count: a stream
  // whose socket took nothing for stalled_after (a laptop asleep) does not,
  // and what slow readers can do is bounded by lag_wait per commit.
  std::size_t lag_bytes = 4 << 10;
  std::chrono::milliseconds stalled_after{1000};
  std::chrono::milliseconds lag_wait{50};
  // The kernel's send buffer of a live stream's socket (a replay keeps the
  // kernel's own, which grows for a fast catch-up). Loopback and LAN
  // sockets otherwise buffer megabytes: seconds of events that neither the
  // client has nor Pace sees. 16 KiB (32 KiB in the kernel's count) carries
  // ~1,000 events/s to a client 100 ms away.
  std::size_t live_send_buffer = 16 << 10;
};

class EventHub final : public chat::SessionObserver {
 public:
  EventHub(storage::Store& store, HubOptions options);
  ~EventHub() override;  // calls Stop()

  // Starts the pump from the store's current head.
  storage::Status Start();

  // Ends every stream and stops the pump. Idempotent.
  void Stop();

  // Replays events after `start` to `stream`, then keeps it live. Returns
  // once the first page is queued: later pages follow as the client reads
  // them (on HTTP workers, no thread waiting in between).
  void Attach(std::shared_ptr<http::ResponseStream> stream, std::int64_t start,
              const std::string& user_id, const std::string& token_hash);

  // SessionObserver: end the streams of sessions that ended.
  void SessionEnded(const std::string& token_hash) override;
  void UserSessionsEnded(const std::string& user_id, const std::string& kept_token_hash) override;
  std::vector<std::string> OpenSessions() override;

  std::size_t LiveStreams();

  struct Stats {
    std::size_t live_streams = 0;
    std::size_t replaying_streams = 0;
    std::int64_t published = 0;          // every live stream was sent every event up to here
    std::uint64_t events_published = 0;  // events read from the store and published, since Start
  };
  Stats GetStats();

  // Paces the committer (Committer::Pace), given the highest sequence of the
  // batch just committed. Senders that only wait for their commit would
  // otherwise outrun the fan-out, and delivery lag would grow without bound.
  // Waits up to options.pace_wait until the streams were sent the batch
  // before last (so the next commit overlaps the fan-out of the previous
  // one); and while an event committed more than options.max_lag ago is still
  // not sent, waits for that (at most a second: a stuck pump does not stop
  // the writes); then, while the streams lag behind clients that read
  // (options.lag_bytes on average), up to options.lag_wait for them to read.
  // No wait while no stream is open.
  void Pace(std::int64_t committed_seq);

 private:
  // A live stream. `cursor` and `last_write` are only touched by the pump
  // thread, which writes to the streams without holding mu_.
  struct Subscriber {
    std::shared_ptr<http::ResponseStream> stream;
    std::int64_t cursor = 0;  // highest sequence queued on this stream
    std::string user_id;
    std::string token_hash;
    std::chrono::steady_clock::time_point last_write;
  };

  // A stream catching up from its start point.
  struct Replay {
    std::shared_ptr<http::ResponseStream> stream;
    std::int64_t cursor = 0;  // highest sequence queued on the stream
    std::string user_id;
    std::string token_hash;
  };
  // Queues the next page of the replay, or makes the stream live.
  void ContinueReplay(const std::shared_ptr<Replay>& replay);
  // Ends the live and the replaying streams whose session `ended` picks
  // (user_id, token_hash).
  void EndSessions(const std::function<bool(const std::string&, const std::string&)>& ended);

  void Pump();
  // Publishes the events up to head.last_seq; a read failure is returned.
  storage::Status PublishNew(const storage::Head& head);
  void SendHeartbeats(std::chrono::steady_clock::time_point now);
  // A page of events read and rendered once for every stream.
  struct Page;
  // Queues on the subscriber what it lacks of `page`.
  void DeliverPage(Subscriber& sub, const Page& page);
  // Queues `chunk` on the subscriber; ends it when it is gone or too slow.
  bool Deliver(Subscriber& sub, const http::ChunkPtr& chunk);
  // The live streams, to write to without holding mu_.
  std::vector<std::shared_ptr<Subscriber>> Snapshot();
  // Tells Pace how far the streams got, and their LagBytes (with mu_ held).
  void PublishedTo(std::int64_t seq, std::size_t lag_bytes = 0);
  // The bytes waiting for the stream's client, or 0 if it stopped reading.
  std::size_t LagBytes(const Subscriber& sub) const;
  // Whether the live streams lag more than options.lag_bytes on average
  // (with pace_mu_ held).
  bool Lagging() const;
  void EndWhere(const std::function<bool(const Subscriber&)>& predicate);

  storage::Store& store_;
  const HubOptions options_;
  const http::ChunkPtr heartbeat_chunk_;

  std::mutex mu_;
  std::vector<std::shared_ptr<Subscriber>> subscribers_;
  // Streams from Attach until they are live (or end): a session that ends
  // meanwhile ends them too.
  std::vector<std::shared_ptr<Replay>> replays_;
  std::int64_t published_ = 0;       // every event up to here went to the live streams
  std::int64_t purged_through_ = 0;  // streams behind this have lost events
  std::atomic<std::uint64_t> events_published_{0};
  bool stopping_ = false;
  // Pace waits on its own lock, never behind a fan-out in progress.
  std::mutex pace_mu_;
  std::condition_variable pace_cv_;
  std::int64_t pace_published_ = 0;  // published_, guarded by pace_mu_
  bool pace_idle_ = true;            // no stream open, or stopping; guarded by pace_mu_
  std::int64_t pace_behind_ = 0;     // the previous batch's sequence; guarded by pace_mu_
  std::size_t pace_live_ = 0;        // live streams; guarded by pace_mu_
  std::size_t pace_lag_bytes_ = 0;   // their LagBytes; guarded by pace_mu_
  struct Committed {
    std::int64_t seq;
    std::chrono::steady_clock::time_point at;
  };
  std::deque<Committed> unpublished_;  // batches not yet sent; guarded by pace_mu_
  std::thread pump_;
};

}  // namespace quire::fanout
