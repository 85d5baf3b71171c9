// StreamImpl: the ResponseStream of http_server.h. Its chunks are written
// straight to the connection's socket (the stream's own dup() of it) by the
// thread that produces them, once the head has left Pistache's queue; what a
// full socket refuses waits in a SocketQueue until the WritableWatcher sees
// the socket drain. At its end what is still waiting goes back to Pistache's
// queue with the final chunk, so the connection's next response follows it.
// StreamRegistry knows every open stream; ClosedStream stands in for one
// that could not be opened.
//
// Thread-safety: every method of StreamImpl, ClosedStream and StreamRegistry
// may be called from any thread (a stream's state is guarded by its mutex,
// the registry's by its own). Ownership: a StreamImpl owns its duplicate
// socket and closes it; streams are shared by the application, and known
// weakly to their connection and the registry.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/http/http_server.h"
#include "server/http/log.h"
#include "server/http/peer_writes.h"
#include "server/http/socket_queue.h"
#include "server/http/writable_watcher.h"

namespace quire::http {

class StreamImpl;

// Every open stream of the server: Shutdown() ends them, the reaper ends those
// that reached the keep-alive deadline, and Shed() cuts those stalled longest
// when the bytes they wait to send, together, pass the limit.
struct StreamRegistry {
  std::mutex mu;
  bool stopping = false;
  std::unordered_map<const StreamImpl*, std::weak_ptr<StreamImpl>> streams;
  // Bytes queued for streams' sockets, each shared chunk once (SocketQueue).
  std::atomic<std::size_t> unread{0};
  std::size_t limit = 0;  // ServerOptions::stream_buffer_limit; set before Start
  std::mutex shed_mu;     // one Shed at a time
  std::uint64_t cut = 0;  // streams cut by Shed (guarded by shed_mu)
  std::chrono::steady_clock::time_point reported;  // last log line (guarded by shed_mu)

  bool Add(const std::shared_ptr<StreamImpl>& s) {
    std::lock_guard<std::mutex> lock(mu);
    if (stopping) return false;
    streams.emplace(s.get(), s);
    return true;
  }
  void Remove(const StreamImpl* s) {
    std::lock_guard<std::mutex> lock(mu);
    streams.erase(s);
  }
  std::vector<std::shared_ptr<StreamImpl>> Snapshot() {
    std::vector<std::shared_ptr<StreamImpl>> out;
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [key, weak] : streams) {
      if (auto s = weak.lock()) out.push_back(std::move(s));
    }
    return out;
  }
  bool OverLimit() const { return limit != 0 && unread.load() > limit; }
  // Cuts the streams whose sockets have taken nothing for longest until the
  // total is below 7/8 of the limit. Called by a writer that left bytes queued while OverLimit();
  // without the caller's stream lock.
  void Shed();
};

class StreamImpl final : public ResponseStream {
 public:
  // `socket` is the stream's own duplicate of the connection's fd (closed by
  // the stream), or -1 to leave every write to Pistache. `after_final` runs
  // once the final chunk is written (a half-close for `Connection: close`);
  // `on_closed` runs once when the stream closes, after the final chunk is
  // queued (it resumes the connection's input). `post` runs a job on a worker
  // (false once the pool stopped); `drop` closes the connection (a stream that
  // timed out waiting for its client).
  StreamImpl(std::weak_ptr<Peer> peer, int socket, WritableWatcher* watcher,
             std::shared_ptr<StreamRegistry> registry, std::shared_ptr<Pending> conn_pending,
             std::chrono::steady_clock::time_point deadline, std::function<void()> after_final,
             std::function<void()> on_closed, std::function<bool(std::function<void()>)> post,
             std::function<void()> drop)
      : peer_(std::move(peer)),
        watcher_(watcher),
        registry_(std::move(registry)),
        conn_pending_(std::move(conn_pending)),
        pending_(std::make_shared<Pending>()),
        deadline_(deadline),
        after_final_(std::move(after_final)),
        on_closed_(std::move(on_closed)),
        post_(std::move(post)),
        drop_(std::move(drop)),
        socket_(socket) {}

  ~StreamImpl() override {
    if (socket_ >= 0) ::close(socket_);  // never opened, so never watched
  }

  // Hooks the drain check to the byte counter; once, before Open.
  static void WatchDrain(const std::shared_ptr<StreamImpl>& stream) {
    std::weak_ptr<StreamImpl> weak = stream;
    stream->pending_->on_sub = [weak] {
      if (auto s = weak.lock()) s->CheckDrain(std::nullopt);
    };
  }

  // Sends the status line and headers through Pistache, behind whatever the
  // connection still has queued there. Once they are written, Pistache's
  // queue for the connection is empty and stays so while the stream is open:
  // from then on chunks go straight to the socket. Called once, before the
  // stream is shared.
  static bool Open(const std::shared_ptr<StreamImpl>& stream, std::string head) {
    Sent sent;
    {
      std::lock_guard<std::mutex> lock(stream->mu_);
      auto peer = stream->peer_.lock();
      if (!peer || stream->closed_) return false;
      sent = Enqueue(peer, std::move(head), {stream->pending_.get(), stream->conn_pending_.get()});
    }
    if (!sent.promise) return false;
    std::weak_ptr<StreamImpl> weak = stream;
    Attach(sent, {stream->pending_, stream->conn_pending_}, [weak] {
      if (auto s = weak.lock()) s->GoDirect(weak);
    });
    return true;
  }

  bool Write(ChunkPtr chunk) override {
    if (!chunk || chunk->bytes().empty()) return !Closed();
    SocketQueue::Result result;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return false;
      if (!direct_) {
        // The head is still in Pistache's queue: wait behind it.
        queue_.Push(std::move(chunk));
        NoteQueued(queue_.bytes());
        result = SocketQueue::Result::kBlocked;
      } else {
        const std::size_t before = queue_.bytes() + chunk->bytes().size();
        result = queue_.Write(socket_, std::move(chunk));
        NoteQueued(before);
        if (result == SocketQueue::Result::kBlocked) WatchSocket();
      }
    }
    if (result == SocketQueue::Result::kBroken) {
      Close(false);
      return false;
    }
    if (result == SocketQueue::Result::kBlocked && registry_->OverLimit()) {
      registry_->Shed();
      return !Closed();
    }
    return true;
  }

  // Bytes this stream's socket has not taken yet (shared chunks included).
  std::size_t QueuedBytes() const { return queued_.load(); }
  // Since when bytes have waited with none taken by the socket (steady clock,
  // ns); 0 while nothing waits.
  std::int64_t StalledSince() const { return stalled_since_ns_.load(); }

  std::size_t PendingBytes() const override { return pending_->bytes.load() + queued_.load(); }

  bool Stalled(std::chrono::milliseconds for_at_least) const override {
    const std::int64_t since = StalledSince();
    if (since == 0) return false;  // nothing waits: no clock read (the pump asks every page)
    return NowNs() - since >
           std::chrono::duration_cast<std::chrono::nanoseconds>(for_at_least).count();
  }

  void LimitSendBuffer(std::size_t bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || socket_ < 0) return;
    const int size = static_cast<int>(std::min<std::size_t>(bytes, 1 << 30));
    if (::setsockopt(socket_, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) != 0) {
      Log("cannot limit a stream's send buffer");
    }
  }

  void WhenDrained(std::size_t limit, std::chrono::milliseconds timeout,
                   std::function<void(bool)> callback) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (drain_callback_) {
        Log("WhenDrained while another callback waits; the new one is refused");
      } else {
        drain_callback_ = std::move(callback);
        drain_limit_ = limit;
        drain_deadline_ = std::chrono::steady_clock::now() + timeout;
      }
    }
    CheckDrain(std::nullopt);  // it may be drained (or closed) already
  }

  // Runs the waiting drain callback when its time has come: drained, closed,
  // or (with `now`) past its deadline, which drops the stream and its
  // connection.
  void CheckDrain(std::optional<std::chrono::steady_clock::time_point> now) {
    std::function<void(bool)> callback;
    bool drained = false;
    bool expired = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!drain_callback_) return;
      drained = !closed_ && PendingBytes() <= drain_limit_;
      expired = !drained && !closed_ && now && *now >= drain_deadline_;
      if (!drained && !closed_ && !expired) return;
      callback.swap(drain_callback_);
    }
    if (expired) {
      Close(false);
      if (drop_) drop_();
    }
    auto job = [callback, drained] { callback(drained); };
    if (!post_ || !post_(job)) job();
  }

  void End() override { Close(true); }

  void Cut() override {
    if (Closed()) return;
    Close(false);
    if (drop_) drop_();
  }

  bool Closed() const override {
    if (closed_flag_.load()) return true;
    return peer_.expired();
  }

  void OnClose(std::function<void()> callback) override {
    if (!callback) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!closed_) {
        callbacks_.push_back(std::move(callback));
        return;
      }
    }
    Run(callback);
  }

  // The client went (or the connection was dropped): no final chunk.
  void MarkGone() { Close(false); }

  std::chrono::steady_clock::time_point deadline() const { return deadline_; }

 private:
  static void Run(const std::function<void()>& callback) {
    try {
      callback();
    } catch (const std::exception& e) {
      Log(std::string("stream close callback threw: ") + e.what());
    } catch (...) {
      Log("stream close callback threw");
    }
  }

  // The head is written: write what waited behind it, and every later chunk,
  // straight to the socket.
  void GoDirect(const std::weak_ptr<StreamImpl>& self) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_ || direct_ || socket_ < 0) return;
      direct_ = true;
      self_ = self;
    }
    Flush();
  }

  // Writes what waits; on the watcher's thread once the socket drained.
  void Flush() {
    SocketQueue::Result result;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_ || !direct_) return;
      const std::size_t before = queue_.bytes();
      result = queue_.Flush(socket_);
      NoteQueued(before);
      if (result == SocketQueue::Result::kBlocked) WatchSocket();
    }
    if (result == SocketQueue::Result::kBroken) {
      Close(false);
      return;
    }
    CheckDrain(std::nullopt);
  }

  // After a write or flush that found `before` bytes queued: publishes the
  // queue's size, and restarts the stall clock when the socket took some
  // (or starts it when bytes begin to wait). Called with mu_ held.
  void NoteQueued(std::size_t before) {
    const std::size_t after = queue_.bytes();
    queued_.store(after);
    if (after == 0) {
      stalled_since_ns_.store(0);
    } else if (after < before || stalled_since_ns_.load() == 0) {
      stalled_since_ns_.store(NowNs());
    }
  }

  // The steady clock in ns, as StalledSince() counts it.
  static std::int64_t NowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  // Asks to be called back when the full socket drains. Called with mu_ held.
  void WatchSocket() {
    if (watch_id_ != 0 || !watcher_) return;
    std::weak_ptr<StreamImpl> weak = self_;
    watch_id_ = watcher_->Watch(socket_, [weak] {
      if (auto s = weak.lock()) s->Flush();
    });
    if (watch_id_ == 0) Log("cannot watch a stream's socket; it waits for the next write");
  }

  void Close(bool send_final) {
    std::vector<std::function<void()>> callbacks;
    Sent sent;
    bool final_written = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      closed_ = true;
      closed_flag_.store(true);
      if (send_final) {
        if (direct_) queue_.Write(socket_, FinalChunk());
        final_written = direct_ && queue_.empty();
        if (!final_written) {
          // What the socket did not take goes to Pistache's queue (empty while
          // the stream was direct, or holding only the head), in order, so the
          // connection's next response is written after it.
          std::string rest = queue_.TakeRest();
          if (!direct_) rest += FinalChunk()->bytes();
          if (auto peer = peer_.lock()) {
            sent = Enqueue(peer, std::move(rest), {pending_.get(), conn_pending_.get()});
          }
        }
      }
      queue_.TakeRest();
      queued_.store(0);
      if (socket_ >= 0) {
        if (watch_id_ != 0) watcher_->Forget(watch_id_, socket_);
        watch_id_ = 0;
        ::close(socket_);
        socket_ = -1;
      }
      callbacks.swap(callbacks_);
    }
    if (final_written) {
      if (after_final_) after_final_();
    } else {
      Attach(sent, {pending_, conn_pending_}, after_final_);
    }
    pending_->Notify();
    registry_->Remove(this);
    if (on_closed_) on_closed_();
    for (const auto& cb : callbacks) Run(cb);
    CheckDrain(std::nullopt);  // a waiting drain callback learns of the close
  }

  const std::weak_ptr<Peer> peer_;
  WritableWatcher* const watcher_;
  const std::shared_ptr<StreamRegistry> registry_;
  const std::shared_ptr<Pending> conn_pending_;
  const std::shared_ptr<Pending>
      pending_;  // bytes in Pistache's queue (the head, the rest at close)
  const std::chrono::steady_clock::time_point deadline_;
  const std::function<void()> after_final_;
  const std::function<void()> on_closed_;
  const std::function<bool(std::function<void()>)> post_;
  const std::function<void()> drop_;

  mutable std::mutex mu_;
  bool closed_ = false;  // guarded by mu_; no write is made once it is set
  std::atomic<bool> closed_flag_{false};
  // Guarded by mu_: the stream's socket (-1 once closed), whether chunks go
  // to it directly, what it has not taken yet, and its watch.
  int socket_ = -1;
  bool direct_ = false;
  SocketQueue queue_{&registry_->unread};
  std::uint64_t watch_id_ = 0;
  std::weak_ptr<StreamImpl> self_;
  std::atomic<std::size_t> queued_{0};             // queue_.bytes(), readable without mu_
  std::atomic<std::int64_t> stalled_since_ns_{0};  // StalledSince(); written under mu_
  std::vector<std::function<void()>> callbacks_;
  // The one waiting WhenDrained callback (guarded by mu_).
  std::function<void(bool)> drain_callback_;
  std::size_t drain_limit_ = 0;
  std::chrono::steady_clock::time_point drain_deadline_;
};

// A stream that was never opened (the client left, the request was already
// answered): every call reports it closed.
class ClosedStream final : public ResponseStream {
 public:
  bool Write(ChunkPtr) override { return false; }
  std::size_t PendingBytes() const override { return 0; }
  void WhenDrained(std::size_t, std::chrono::milliseconds,
                   std::function<void(bool)> callback) override {
    if (callback) callback(false);
  }
  void End() override {}
  bool Closed() const override { return true; }
  void OnClose(std::function<void()> callback) override {
    if (callback) callback();
  }
};

}  // namespace quire::http
