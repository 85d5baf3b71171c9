// HttpServer on Pistache 0.0.5 (Debian snapshot 2022-09-01).
//
// How the traps of that snapshot are handled (see http_server.h and
// docs/architecture.md, "Pistache"):
//
//  - Http::Handler::onInput/onConnection are private in 0.0.5, so they cannot
//    be wrapped. PistacheHandler replaces them, using the public parser API
//    (getParser / feed / parse / reset), with its own guard in front: each
//    request's header block is scanned before Pistache sees a byte, and
//    Transfer-Encoding (411), Content-Length over the hard limit (413) and
//    oversized header blocks (431) are refused with a JSON error,
//    `Connection: close`, a half-close once the answer is written, and every
//    further byte of the connection is dropped. Pistache alone reserves the
//    announced size (a chunk size of 7fffffff reserves 2 GiB of address space
//    per connection; Content-Length 1e14 answers 500 "std::bad_alloc").
//  - Responses and stream heads go through Tcp::Peer::send(RawBuffer), which
//    only pushes onto the transport's MPSC queue, so it is safe from any
//    thread. ResponseWriter and ResponseStream are never used: the first drops
//    raw headers and re-serializes cookies, the second crashes when flushed
//    off the reactor thread.
//  - Stream chunks bypass that queue: through Pistache each one cost a copy,
//    a promise, an eventfd wake-up, a send() and an epoll_ctl on the reactor,
//    and two reactors saturated at ~160,000 chunks/s. A stream writes to its
//    own dup() of the socket (Pistache may close its fd number at any moment
//    and the number be reused; the duplicate is checked by inode to be this
//    connection's socket), from the thread that produces the chunk, once its
//    head has left Pistache's queue; what a full socket refuses waits in a
//    SocketQueue until a WritableWatcher sees it drain. At the end, whatever
//    is still waiting goes back to Pistache's queue with the final chunk, so
//    the connection's next response follows it in order.
//  - Pistache's idle reaper (every 500 ms) sends a 408 into a busy peer after
//    headerTimeout, measured from the parser's last reset. Peer::setIdle is a
//    plain bool read by the reactor, so it is only written here, on the
//    reactor thread: false (and a parser reset, restarting the clock) when the
//    first byte of a request arrives, true (and a reset) when the request is
//    complete and handed to a worker. A request being handled, a stream and an
//    idle keep-alive connection are all "idle" for Pistache: closed silently
//    after keepaliveTimeout, never sent a 408. Streams are ended with a final
//    chunk by our reaper just before that deadline.
//  - Work that must happen on a connection's reactor thread but is triggered
//    elsewhere (half-closing after `Connection: close`, resuming pipelined
//    input, closing at shutdown) hops there with a 1 ms Transport::armTimer
//    whose continuation is attached before the timer is armed (OnReactor).
//  - Requests of one connection are answered in order: while one is in a
//    worker (or its stream is open), further input waits in a backlog.
//  - Per-connection state lives in the peer's data map (reactor-confined). Its
//    destructor runs when Pistache drops the peer (also after a timeout close,
//    which does not call onDisconnection), and closes the connection's streams.
//  - Pistache never closes peer sockets on shutdown; Shutdown() shuts each one
//    down on its reactor so that Pistache closes it as for a disconnect.
#include "server/http/http_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pistache/async.h>
#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <pistache/net.h>
#include <pistache/peer.h>
#include <pistache/stream.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <iostream>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "server/http/header_text.h"
#include "server/http/pistache_calls.h"
#include "server/http/socket_queue.h"
#include "server/http/writable_watcher.h"

namespace quire::http {

const std::string* Request::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? nullptr : &it->second;
}

Chunk::Chunk(std::string framed) {
  const std::size_t size = framed.size();
  raw_ = std::make_unique<const Pistache::RawBuffer>(std::move(framed), size);
}

Chunk::~Chunk() = default;

std::string_view Chunk::bytes() const {
  return raw_->data();
}

ChunkPtr FinalChunk() {
  static const ChunkPtr final_chunk(new Chunk("0\r\n\r\n"));
  return final_chunk;
}

ChunkPtr MakeChunk(std::string_view payload) {
  // A zero-length chunk would end the response; an empty payload is no chunk.
  if (payload.empty()) return ChunkPtr(new Chunk(std::string()));
  char size[32];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", payload.size());
  std::string chunk;
  chunk.reserve(static_cast<std::size_t>(n) + payload.size() + 2);
  chunk.append(size, static_cast<std::size_t>(n));
  chunk.append(payload);
  chunk.append("\r\n");
  return ChunkPtr(new Chunk(std::move(chunk)));
}

namespace {

using Pistache::Async::Promise;
using Pistache::Tcp::Peer;

constexpr std::size_t kMaxHeadBytes = 64 * 1024;  // request line + headers
constexpr const char* kConnStateKey = "quire.conn";
constexpr const char* kFinalChunk = "0\r\n\r\n";

void Log(const std::string& line) {
  std::ostringstream os;
  os << "quire http: " << line << '\n';
  std::cerr << os.str() << std::flush;
}

std::string ErrorJson(std::string_view message) {
  std::string out = "{\"error\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  out += "\"}";
  return out;
}

const char* Reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

bool HasCrLf(std::string_view s) {
  return s.find_first_of("\r\n") != std::string_view::npos;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in`; '+' becomes a space when `plus_is_space`. A malformed
// escape is kept as is and sets *malformed.
std::string PercentDecode(std::string_view in, bool plus_is_space, bool* malformed) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      int hi = i + 2 < in.size() ? HexValue(in[i + 1]) : -1;
      int lo = i + 2 < in.size() ? HexValue(in[i + 2]) : -1;
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
      *malformed = true;
      out += c;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

void SplitTarget(std::string_view target, Request* req) {
  std::size_t hash = target.find('#');
  if (hash != std::string_view::npos) target = target.substr(0, hash);
  std::size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  req->path = PercentDecode(path, false, &req->query_malformed);
  if (q == std::string_view::npos) return;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    std::size_t eq = pair.find('=');
    std::string name = PercentDecode(pair.substr(0, eq), true, &req->query_malformed);
    std::string value;
    if (eq != std::string_view::npos) {
      value = PercentDecode(pair.substr(eq + 1), true, &req->query_malformed);
    }
    req->query[std::move(name)] = std::move(value);  // the last one wins
  }
}

void ParseCookies(std::string_view header, std::map<std::string, std::string>* cookies) {
  while (!header.empty()) {
    std::size_t semi = header.find(';');
    std::string_view pair = TrimSpace(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    std::string_view value = TrimSpace(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    // The first one wins: browsers send the most specific cookie first.
    cookies->emplace(std::string(TrimSpace(pair.substr(0, eq))), std::string(value));
  }
}

// ---------------------------------------------------------------------------
// Byte accounting for the write queue.

struct Pending {
  std::atomic<std::size_t> bytes{0};
  std::mutex mu;
  std::condition_variable cv;
  // Runs after every decrease (a stream's drain check); set before the
  // counter is shared, never changed after.
  std::function<void()> on_sub;

  void Add(std::size_t n) { bytes.fetch_add(n); }
  void Sub(std::size_t n) {
    bytes.fetch_sub(n);
    Notify();
    if (on_sub) on_sub();
  }
  void Notify() {
    { std::lock_guard<std::mutex> lock(mu); }
    cv.notify_all();
  }
};

// One enqueued write. The continuation is attached by Attach(), which must be
// called without holding any lock that the continuation takes: it may run at
// once on this thread (if the reactor already wrote the bytes) while
// Pistache holds the promise's own mutex.
struct Sent {
  std::optional<Promise<ssize_t>> promise;
  std::size_t size = 0;
};

// Enqueues `bytes` on the peer's transport queue (Pistache copies them
// into it); counts them in `counters`.
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

// Decrements the counters once the reactor wrote the bytes, then runs
// `after` (on the reactor, or at once on this thread if the bytes are already
// written). If the connection breaks first, Pistache drops the write without
// settling it and nothing runs.
void Attach(Sent& sent, std::vector<std::shared_ptr<Pending>> counters,
            std::function<void()> after = nullptr) {
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

// The reactor thread that owns a connection, and its transport.
struct ReactorRef {
  Pistache::Tcp::Transport* transport = nullptr;
  std::thread::id thread;
};

// Runs `fn` on the reactor thread of `r`: at once if called there (unless
// `defer`), else through a 1 ms timer armed on that transport
// (Transport::armTimer queues the timer to the reactor; the continuation is
// attached before the timer is armed, so it always runs there). It does not
// run if the reactor stops first.
void OnReactor(const ReactorRef& r, std::function<void()> fn, bool defer = false) {
  if (!defer && std::this_thread::get_id() == r.thread) {
    fn();
    return;
  }
  if (!r.transport) return;
  int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tfd < 0) return;
  // Closes the timer fd once the continuation is gone (run or dropped).
  std::shared_ptr<void> closer(nullptr, [tfd](void*) { ::close(tfd); });
  std::optional<Pistache::Async::Deferred<uint64_t>> deferred;
  Promise<uint64_t> timer(
      [&](Pistache::Async::Deferred<uint64_t> d) { deferred.emplace(std::move(d)); });
  timer.then([fn, closer](uint64_t) { fn(); }, [closer](std::exception_ptr) {});
  try {
    pistache_calls::ArmTimer(*r.transport, tfd, std::chrono::milliseconds(1), std::move(*deferred));
  } catch (const std::exception& e) {
    Log(std::string("cannot arm a reactor timer: ") + e.what());
  }
}

// ---------------------------------------------------------------------------
// Streams.

class StreamImpl;

// Every open stream of the server: Shutdown() ends them, the reaper ends those
// that reached the keep-alive deadline, and Shed() cuts those stalled longest
// when the bytes they wait to send, together, pass the limit.
struct Registry {
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
             std::shared_ptr<Registry> registry, std::shared_ptr<Pending> conn_pending,
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
      stalled_since_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::steady_clock::now().time_since_epoch())
                                  .count());
    }
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
          if (!direct_) rest += kFinalChunk;
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
  const std::shared_ptr<Registry> registry_;
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

void Registry::Shed() {
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

// ---------------------------------------------------------------------------
// Per-connection state.

// Shared between the reactor (disconnect) and the workers (answers, streams).
struct ConnShared;

// Every live connection, so that Shutdown() can wait for their queued bytes.
struct ConnRegistry {
  std::mutex mu;
  std::unordered_map<const ConnShared*, std::weak_ptr<ConnShared>> conns;

  void Add(const std::shared_ptr<ConnShared>& c) {
    std::lock_guard<std::mutex> lock(mu);
    conns.emplace(c.get(), c);
  }
  void Remove(const ConnShared* c) {
    std::lock_guard<std::mutex> lock(mu);
    conns.erase(c);
  }
  std::size_t Count() {
    std::lock_guard<std::mutex> lock(mu);
    return conns.size();
  }
  std::vector<std::shared_ptr<ConnShared>> Snapshot() {
    std::vector<std::shared_ptr<ConnShared>> out;
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [key, weak] : conns) {
      if (auto c = weak.lock()) out.push_back(std::move(c));
    }
    return out;
  }
};

struct ConnShared {
  ConnShared(std::shared_ptr<ConnRegistry> r, std::weak_ptr<Peer> p, ReactorRef reactor_ref,
             ino_t inode)
      : registry(std::move(r)), peer(std::move(p)), reactor(reactor_ref), socket_inode(inode) {}

  const std::shared_ptr<ConnRegistry> registry;
  const std::weak_ptr<Peer> peer;
  const ReactorRef reactor;
  // Tells this connection's socket from a later one given the same fd number.
  const ino_t socket_inode;
  // Bytes queued on this connection and not yet written. Pistache drops the
  // writes of a connection that broke without settling them, so this only
  // means something while the connection is not gone.
  const std::shared_ptr<Pending> pending = std::make_shared<Pending>();
  std::mutex mu;
  bool gone = false;
  std::vector<std::weak_ptr<StreamImpl>> streams;
  // Requests are answered in order (HTTP/1.1 pipelining): while one is being
  // answered (`busy`), input waits in ConnState::backlog and `wake` asks the
  // answer to resume the connection on its reactor.
  bool busy = false;
  bool wake = false;
  std::chrono::steady_clock::time_point last_active = std::chrono::steady_clock::now();

  bool IsGone() {
    std::lock_guard<std::mutex> lock(mu);
    return gone;
  }
  void SetBusy() {
    std::lock_guard<std::mutex> lock(mu);
    busy = true;
    last_active = std::chrono::steady_clock::now();
  }
  // Since when the connection has been an idle keep-alive connection: no
  // request in progress, no open stream. Nullopt while it is not.
  std::optional<std::chrono::steady_clock::time_point> IdleSince() {
    std::lock_guard<std::mutex> lock(mu);
    if (busy || gone) return std::nullopt;
    for (const auto& w : streams) {
      auto stream = w.lock();
      if (stream && !stream->Closed()) return std::nullopt;
    }
    return last_active;
  }
  // Reactor: true if input must wait.
  bool WaitIfBusy() {
    std::lock_guard<std::mutex> lock(mu);
    if (busy) wake = true;
    return busy;
  }
  // Answer: true if waiting input must be resumed.
  bool Release() {
    std::lock_guard<std::mutex> lock(mu);
    busy = false;
    last_active = std::chrono::steady_clock::now();
    bool w = wake && !gone;
    wake = false;
    return w;
  }

  bool AddStream(const std::shared_ptr<StreamImpl>& s) {
    std::lock_guard<std::mutex> lock(mu);
    if (gone) return false;
    std::erase_if(streams, [](const std::weak_ptr<StreamImpl>& w) {
      auto p = w.lock();
      return !p || p->Closed();
    });
    streams.push_back(s);
    return true;
  }

  void CloseAll() {
    std::vector<std::weak_ptr<StreamImpl>> list;
    {
      std::lock_guard<std::mutex> lock(mu);
      gone = true;
      list.swap(streams);
    }
    registry->Remove(this);
    for (auto& w : list) {
      if (auto s = w.lock()) s->MarkGone();
    }
  }
};

// Shuts the connection's socket down (`how`: SHUT_WR or SHUT_RDWR) on the
// reactor thread and only while the connection is still ours: Pistache closes
// the fd on a disconnect (after onDisconnection marked it gone) or on a
// timeout (after which the peer is destroyed and the weak pointer expired),
// and a closed fd number may already be someone else's.
std::function<void()> ShutdownSocket(std::shared_ptr<ConnShared> conn, int how) {
  return [conn, how] {
    OnReactor(conn->reactor, [conn, how] {
      std::lock_guard<std::mutex> lock(conn->mu);
      if (conn->gone) return;
      if (auto peer = conn->peer.lock()) ::shutdown(peer->fd(), how);
    });
  };
}

// The connection's socket under a new fd owned by the caller, or -1. Pistache
// closes its own fd on its reactor at any moment (a disconnect, a timeout)
// and the number can be reused at once, so the duplicate is checked to be
// this connection's socket: sockets have unique inode numbers.
int DuplicateSocket(const ConnShared& conn) {
  auto peer = conn.peer.lock();
  if (!peer || conn.socket_inode == 0) return -1;
  int fd = ::fcntl(peer->fd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_ino != conn.socket_inode) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Half-closes the connection (FIN after what was written); run once the
// answer is written.
std::function<void()> HalfCloseWhenWritten(std::shared_ptr<ConnShared> conn) {
  return ShutdownSocket(std::move(conn), SHUT_WR);
}

// Closes the connection at once, both directions.
std::function<void()> DropConnection(std::shared_ptr<ConnShared> conn) {
  return ShutdownSocket(std::move(conn), SHUT_RDWR);
}

// What the guard learned from a request's header block.
struct Head {
  std::string method;
  std::string target;
  bool http10 = false;
  bool keep_alive = true;
  bool expect_continue = false;
  std::size_t content_length = 0;
  std::map<std::string, std::string> headers;
};

// Reactor-confined; stored in the peer's data map, so it dies with the peer.
struct ConnState {
  ConnState(ReactorRef reactor_ref, const std::shared_ptr<ConnRegistry>& conns,
            std::weak_ptr<Peer> peer, ino_t socket_inode)
      : shared(std::make_shared<ConnShared>(conns, std::move(peer), reactor_ref, socket_inode)),
        reactor(reactor_ref) {
    conns->Add(shared);
  }
  ~ConnState() { shared->CloseAll(); }
  ConnState(const ConnState&) = delete;
  ConnState& operator=(const ConnState&) = delete;

  const std::shared_ptr<ConnShared> shared;
  const ReactorRef reactor;
  bool rejected = false;    // an error was answered; all further input is dropped
  bool in_request = false;  // bytes of a request have arrived
  bool in_body = false;     // its header block is complete
  // Input that arrived while a request was being answered; see ConnShared.
  std::string backlog;
  std::string head_bytes;
  std::size_t body_left = 0;
  Head head;
};

struct GuardError {
  int status;
  std::string message;
};

// A header name: RFC 9110 token characters only.
bool IsToken(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// Parses the header block (request line to the empty line, inclusive).
std::optional<GuardError> ScanHead(std::string_view block, std::size_t hard_body_limit,
                                   Head* head) {
  const GuardError bad{400, "malformed request"};
  std::size_t eol = block.find("\r\n");
  std::string_view line = block.substr(0, eol);
  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1 || sp1 == 0) return bad;
  head->method = std::string(line.substr(0, sp1));
  head->target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  std::string_view version = line.substr(sp2 + 1);
  if (head->target.empty() || head->target.find(' ') != std::string::npos) return bad;
  for (char c : head->target) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) return bad;
  }
  if (version == "HTTP/1.1") {
    head->http10 = false;
  } else if (version == "HTTP/1.0") {
    head->http10 = true;
  } else {
    return GuardError{400, "unsupported HTTP version"};
  }

  bool has_length = false;
  bool has_encoding = false;
  std::size_t pos = eol + 2;
  while (pos < block.size()) {
    std::size_t end = block.find("\r\n", pos);
    if (end == std::string_view::npos) return bad;
    line = block.substr(pos, end - pos);
    pos = end + 2;
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t') return bad;  // obsolete line folding
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return bad;
    std::string name = AsciiLower(line.substr(0, colon));
    if (!IsToken(name)) return bad;
    std::string_view value = TrimSpace(line.substr(colon + 1));
    // No control characters in a value (a bare CR, a NUL...) but the tab.
    for (char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f) {
        return GuardError{400, "invalid character in a header value"};
      }
    }
    if (name == "host" && head->headers.count("host") > 0) {
      return GuardError{400, "more than one Host header"};
    }
    if (name == "transfer-encoding") {
      has_encoding = true;
    } else if (name == "content-length") {
      if (value.empty() || value.size() > 19 ||
          value.find_first_not_of("0123456789") != std::string_view::npos) {
        return GuardError{400, "invalid Content-Length"};
      }
      std::size_t n = std::stoull(std::string(value));
      if (has_length && n != head->content_length) {
        return GuardError{400, "conflicting Content-Length headers"};
      }
      has_length = true;
      head->content_length = n;
    }
    auto [it, inserted] = head->headers.emplace(name, std::string(value));
    if (!inserted && name != "content-length") {
      it->second += name == "cookie" ? "; " : ", ";
      it->second += value;
    }
  }
  if (!head->http10 && head->headers.count("host") == 0) {
    return GuardError{400, "an HTTP/1.1 request needs a Host header"};
  }
  if (has_encoding) {
    return GuardError{411, "Transfer-Encoding is not supported: send the body with Content-Length"};
  }
  if (has_length && head->content_length > hard_body_limit) {
    return GuardError{413, "request body too large"};
  }

  std::string connection;
  if (auto it = head->headers.find("connection"); it != head->headers.end()) {
    connection = AsciiLower(it->second);
  }
  auto has_token = [&](std::string_view token) {
    std::string_view rest = connection;
    while (!rest.empty()) {
      std::size_t comma = rest.find(',');
      if (TrimSpace(rest.substr(0, comma)) == token) return true;
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    return false;
  };
  head->keep_alive = head->http10 ? has_token("keep-alive") : !has_token("close");
  if (auto it = head->headers.find("expect"); it != head->headers.end()) {
    head->expect_continue = !head->http10 && AsciiLower(it->second) == "100-continue";
  }
  return std::nullopt;
}

std::string ErrorResponse(int status, std::string_view message, bool close) {
  std::string body = ErrorJson(message);
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + Reason(status) + "\r\n";
  out += "Content-Type: application/json\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n";
  out += body;
  return out;
}

// ---------------------------------------------------------------------------
// Worker pool.

class WorkerPool {
 public:
  using Job = std::function<void()>;

  void Start(int threads) {
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < std::max(1, threads); ++i) {
      threads_.emplace_back([this] { Run(); });
    }
  }

  // False once Drain() began: the caller answers 503.
  bool Post(Job job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || threads_.empty()) return false;
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
    return true;
  }

  // Refuses new jobs, runs those queued, joins the threads.
  void Drain() {
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      threads.swap(threads_);
    }
    cv_.notify_all();
    for (auto& t : threads) t.join();
  }

 private:
  void Run() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
};

// What the handler class needs of the server; shared with every handler clone.
struct Core {
  ServerOptions options;
  Handler handler;
  WorkerPool pool;
  std::shared_ptr<Registry> registry = std::make_shared<Registry>();
  std::shared_ptr<ConnRegistry> conns = std::make_shared<ConnRegistry>();
  // Streams wait here for their full sockets to drain; outlives every open
  // stream (Shutdown ends them all before the Core goes).
  WritableWatcher watcher;
  std::atomic<bool> accepting{true};

  // Requests kept past their handler (Responder::Keep) and not answered yet.
  std::mutex kept_mu;
  std::condition_variable kept_cv;
  std::size_t kept = 0;

  void AddKept() {
    std::lock_guard<std::mutex> lock(kept_mu);
    ++kept;
  }
  void ReleaseKept() {
    std::lock_guard<std::mutex> lock(kept_mu);
    if (--kept == 0) kept_cv.notify_all();
  }
  void WaitKept() {
    std::unique_lock<std::mutex> lock(kept_mu);
    while (!kept_cv.wait_for(lock, std::chrono::seconds(5), [&] { return kept == 0; })) {
      Log("shutdown waits for " + std::to_string(kept) + " kept requests to be answered");
    }
  }
};

// Closes idle keep-alive connections, longest idle first: every one idle for
// longer than the idle timeout, and as many more as it takes to bring the
// count down to `keep`. Returns how many it closed.
std::size_t CloseIdle(Core& core, std::size_t keep) {
  const auto now = std::chrono::steady_clock::now();
  const auto conns = core.conns->Snapshot();
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::shared_ptr<ConnShared>>> idle;
  for (const auto& c : conns) {
    if (auto since = c->IdleSince()) idle.emplace_back(*since, c);
  }
  std::sort(idle.begin(), idle.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  const std::size_t excess = conns.size() > keep ? conns.size() - keep : 0;
  std::size_t closed = 0;
  for (const auto& [since, conn] : idle) {
    if (now - since < core.options.idle_timeout && closed >= excess) break;
    // The close runs on the connection's reactor, later than this decision
    // (unless this is that reactor): a request that arrived meanwhile must not
    // be handled and lose its answer (the client would send it again: a
    // second POST). So the reactor closes only if the connection is still
    // idle since `since` (it alone marks a connection busy, so nothing comes
    // between check and close), and stops parsing its input first: bytes of a
    // request already in the socket can still be read after the shutdown.
    OnReactor(conn->reactor, [conn = conn, since = since] {
      if (conn->IdleSince() != since) return;
      if (auto peer = conn->peer.lock()) {
        auto* st = static_cast<ConnState*>(peer->tryGetData(kConnStateKey).get());
        if (st) st->rejected = true;
      }
      DropConnection(conn)();  // at once: this is the reactor
    });
    ++closed;
  }
  return closed;
}

// ---------------------------------------------------------------------------
// Responder.

class ResponderImpl final : public Responder, public std::enable_shared_from_this<ResponderImpl> {
 public:
  // `resume` runs once the answer is queued (or its stream closed); it
  // releases the connection for the next request.
  ResponderImpl(Core* core, std::weak_ptr<Peer> peer, std::shared_ptr<ConnShared> conn,
                ReactorRef reactor, bool keep_alive, bool head_only, std::function<void()> resume)
      : core_(core),
        peer_(std::move(peer)),
        conn_(std::move(conn)),
        reactor_(reactor),
        keep_alive_(keep_alive),
        head_only_(head_only),
        resume_(std::move(resume)) {}

  ~ResponderImpl() override {
    if (kept_.load()) SendError(500, "internal error");  // kept, then forgotten
  }

  bool answered() const { return answered_.load(); }
  bool kept() const { return kept_.load(); }

  // Only for a ResponderImpl owned by a shared_ptr (the worker path).
  std::shared_ptr<Responder> Keep() override {
    if (!answered_.load() && !kept_.exchange(true)) core_->AddKept();
    return shared_from_this();
  }

  void Send(Response response) override {
    if (!FirstAnswer()) {
      Log("a request was answered twice; the second answer is dropped");
      return;
    }
    Transmit(std::move(response));
  }

  // The fallback answer; does nothing if the request was answered.
  void SendError(int status, std::string_view message) {
    if (!FirstAnswer()) return;
    Response r;
    r.status = status;
    r.body = ErrorJson(message);
    Transmit(std::move(r));
  }

  std::shared_ptr<ResponseStream> StartStream(
      int status, const std::vector<std::pair<std::string, std::string>>& headers) override {
    if (answered_.load()) {
      Log("StartStream on an answered request");
      return std::make_shared<ClosedStream>();
    }
    // The stream writes to its own duplicate of the socket (see StreamImpl).
    const int socket = DuplicateSocket(*conn_);
    if (socket < 0) {
      SendError(503, conn_->IsGone() ? "client gone" : "cannot open a stream now");
      return std::make_shared<ClosedStream>();
    }
    if (!FirstAnswer()) {
      ::close(socket);
      Log("StartStream on an answered request");
      return std::make_shared<ClosedStream>();
    }
    std::string head = StatusLine(status);
    for (const auto& [name, value] : headers) {
      if (HasCrLf(name) || HasCrLf(value) || name.empty()) {
        Log("dropped a stream header with CR/LF");
        continue;
      }
      head += name + ": " + value + "\r\n";
    }
    head += "Transfer-Encoding: chunked\r\n";
    head += keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";

    auto margin = std::min<std::chrono::steady_clock::duration>(
        std::chrono::seconds(1), core_->options.keepalive_timeout / 4);
    Core* core = core_;
    auto stream = std::make_shared<StreamImpl>(
        peer_, socket, &core_->watcher, core_->registry, conn_->pending,
        std::chrono::steady_clock::now() + core_->options.keepalive_timeout - margin,
        keep_alive_ ? nullptr : HalfCloseWhenWritten(conn_), resume_,
        [core](std::function<void()> job) { return core->pool.Post(std::move(job)); },
        DropConnection(conn_));
    StreamImpl::WatchDrain(stream);
    if (!conn_->AddStream(stream)) return std::make_shared<ClosedStream>();
    if (!StreamImpl::Open(stream, std::move(head))) {
      stream->MarkGone();
      return std::make_shared<ClosedStream>();
    }
    // During Shutdown() the stream is born ended: the client sees an empty
    // stream and reconnects.
    if (!core_->registry->Add(stream)) stream->End();
    return stream;
  }

 private:
  // True for the first answer only; a kept request stops counting as open.
  bool FirstAnswer() {
    if (answered_.exchange(true)) return false;
    if (kept_.load()) core_->ReleaseKept();
    return true;
  }

  std::string StatusLine(int status) const {
    return "HTTP/1.1 " + std::to_string(status) + " " + Reason(status) + "\r\n";
  }

  void Transmit(Response response) {
    const bool no_body = response.status == 204 || response.status == 304 ||
                         (response.status >= 100 && response.status < 200);
    std::string out = StatusLine(response.status);
    if (!no_body) {
      if (!response.content_type.empty() && !HasCrLf(response.content_type)) {
        out += "Content-Type: " + response.content_type + "\r\n";
      }
      out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
    }
    for (const auto& cookie : response.set_cookies) {
      if (HasCrLf(cookie)) {
        Log("dropped a Set-Cookie value with CR/LF");
        continue;
      }
      out += "Set-Cookie: " + cookie + "\r\n";
    }
    for (const auto& [name, value] : response.headers) {
      if (name.empty() || HasCrLf(name) || HasCrLf(value)) {
        Log("dropped a response header with CR/LF or no name");
        continue;
      }
      out += name + ": " + value + "\r\n";
    }
    out += keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    if (!no_body && !head_only_) out += response.body;

    Sent sent;
    std::function<void()> after;
    {
      // Under the connection's lock: once the reactor saw the disconnect,
      // nothing more is queued for this fd.
      std::lock_guard<std::mutex> lock(conn_->mu);
      if (conn_->gone) return;
      auto peer = peer_.lock();
      if (!peer) return;
      sent = Enqueue(peer, std::move(out), {conn_->pending.get()});
      if (!keep_alive_) after = HalfCloseWhenWritten(conn_);
    }
    Attach(sent, {conn_->pending}, std::move(after));
    if (resume_) resume_();
  }

  Core* const core_;
  const std::weak_ptr<Peer> peer_;
  const std::shared_ptr<ConnShared> conn_;
  const ReactorRef reactor_;
  const bool keep_alive_;
  const bool head_only_;
  const std::function<void()> resume_;
  std::atomic<bool> answered_{false};
  std::atomic<bool> kept_{false};
};

// ---------------------------------------------------------------------------
// Input handling, on the connection's reactor thread.

void Input(Core* core, const char* buffer, std::size_t len, const std::shared_ptr<Peer>& peer,
           ConnState& st);

ConnState* FindState(const std::shared_ptr<Peer>& peer) {
  return static_cast<ConnState*>(peer->tryGetData(kConnStateKey).get());
}

// Answers an error, half-closes once it is written and drops all further
// input of the connection.
void Reject(const std::shared_ptr<Peer>& peer, ConnState& st, int status,
            std::string_view message) {
  st.rejected = true;
  st.in_request = false;
  st.backlog.clear();
  Pistache::Http::Handler::getParser(peer)->reset();
  peer->setIdle(true);  // closed silently at the keep-alive timeout if the client stays
  Sent sent = Enqueue(peer, ErrorResponse(status, message, true), {st.shared->pending.get()});
  Attach(sent, {st.shared->pending}, HalfCloseWhenWritten(st.shared));
}

// Parses what waited while the previous request was being answered.
void Resume(Core* core, const std::weak_ptr<Peer>& weak) {
  auto peer = weak.lock();
  if (!peer) return;
  ConnState* st = FindState(peer);
  if (!st || st->shared->IsGone()) return;
  std::string backlog;
  backlog.swap(st->backlog);
  if (backlog.empty() || st->rejected) return;
  try {
    Input(core, backlog.data(), backlog.size(), peer, *st);
  } catch (const std::exception& e) {
    Log(std::string("input handling failed: ") + e.what());
    Reject(peer, *st, 400, "malformed request");
  }
}

// The request in the parser is complete: hand it to a worker.
void Complete(Core* core, const std::shared_ptr<Peer>& peer, ConnState& st,
              Pistache::Http::RequestParser& parser) {
  Pistache::Http::Private::State state;
  try {
    state = parser.parse();
  } catch (const std::exception& e) {
    Reject(peer, st, 400, "malformed request");
    return;
  }
  if (state != Pistache::Http::Private::State::Done) {
    Reject(peer, st, 400, "malformed request");
    return;
  }

  Request req;
  req.method = st.head.method;  // Pistache accepted it: a known, upper-case method
  SplitTarget(st.head.target, &req);
  req.headers = std::move(st.head.headers);
  if (auto it = req.headers.find("cookie"); it != req.headers.end()) {
    ParseCookies(it->second, &req.cookies);
  }
  req.body = parser.request.body();
  req.remote_address = peer->address().host();
  const bool keep_alive = st.head.keep_alive;
  const bool head_only = req.method == "HEAD";

  st.in_request = false;
  st.in_body = false;
  st.head_bytes.clear();
  parser.reset();       // the keep-alive timeout counts from here
  peer->setIdle(true);  // never a 408 while handled, streamed or idle

  if (!core->accepting.load()) {
    ResponderImpl(core, peer, st.shared, st.reactor, keep_alive, head_only, nullptr)
        .SendError(503, "server is shutting down");
    return;
  }
  ReactorRef reactor = st.reactor;
  std::weak_ptr<Peer> weak = peer;
  std::weak_ptr<ConnShared> conn = st.shared;
  auto release = [core, reactor, weak, conn] {
    auto shared = conn.lock();
    if (shared && shared->Release()) {
      OnReactor(
          reactor, [core, weak] { Resume(core, weak); }, /*defer=*/true);
    }
  };
  auto responder = std::make_shared<ResponderImpl>(core, peer, st.shared, st.reactor, keep_alive,
                                                   head_only, std::move(release));
  auto request = std::make_shared<Request>(std::move(req));
  st.shared->SetBusy();
  bool posted = core->pool.Post([core, request, responder] {
    try {
      core->handler(*request, *responder);
    } catch (const std::exception& e) {
      Log("handler threw on " + request->method + " " + request->path + ": " + e.what());
    } catch (...) {
      Log("handler threw on " + request->method + " " + request->path);
    }
    if (!responder->answered() && !responder->kept()) {
      Log("no answer for " + request->method + " " + request->path);
      responder->SendError(500, "internal error");
    }
  });
  if (!posted) {
    st.shared->Release();
    ResponderImpl(core, peer, st.shared, st.reactor, keep_alive, head_only, nullptr)
        .SendError(503, "server is shutting down");
  }
}

void Input(Core* core, const char* buffer, std::size_t len, const std::shared_ptr<Peer>& peer,
           ConnState& st) {
  auto parser = Pistache::Http::Handler::getParser(peer);
  std::size_t off = 0;
  while (off < len && !st.rejected) {
    if (!st.backlog.empty() || st.shared->WaitIfBusy()) {
      if (st.backlog.size() + (len - off) > kMaxHeadBytes + core->options.hard_body_limit) {
        Reject(peer, st, 413, "too much pipelined input");
        return;
      }
      st.backlog.append(buffer + off, len - off);
      return;
    }
    if (!st.in_request) {
      if (buffer[off] == '\r' || buffer[off] == '\n') {  // stray CRLF between requests
        ++off;
        continue;
      }
      st.in_request = true;
      st.in_body = false;
      st.head_bytes.clear();
      st.head = Head();
      parser->reset();  // the header timeout counts from here
      peer->setIdle(false);
    }
    if (!st.in_body) {
      std::size_t old = st.head_bytes.size();
      std::size_t take = std::min(len - off, kMaxHeadBytes + 4 - old);
      st.head_bytes.append(buffer + off, take);
      // Lines end with CRLF. A bare LF would leave the head unfinished until
      // the header timeout; answer at once instead.
      bool bare_lf = false;
      for (std::size_t i = old; i < st.head_bytes.size() && !bare_lf; ++i) {
        bare_lf = st.head_bytes[i] == '\n' && (i == 0 || st.head_bytes[i - 1] != '\r');
      }
      if (bare_lf) {
        Reject(peer, st, 400, "malformed request: a line ended without CR");
        continue;
      }
      std::size_t end = st.head_bytes.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
      if (end == std::string::npos) {
        off += take;
        if (st.head_bytes.size() >= kMaxHeadBytes) {
          Reject(peer, st, 431, "request header too large");
        }
        continue;
      }
      std::size_t head_size = end + 4;
      if (head_size > kMaxHeadBytes) {
        Reject(peer, st, 431, "request header too large");
        continue;
      }
      off += take - (st.head_bytes.size() - head_size);
      st.head_bytes.resize(head_size);
      if (auto error = ScanHead(st.head_bytes, core->options.hard_body_limit, &st.head)) {
        Reject(peer, st, error->status, error->message);
        continue;
      }
      // Pistache sees only the request line and the body's length: the
      // headers are ours (ScanHead), and Pistache's own header parsing
      // answers 400 to values it does not know how to parse (a Content-Type
      // such as "application/jsonp", a garbled Cookie) before the
      // application could give the answer the contract asks for (503, 415,
      // 401).
      const std::string minimal = st.head_bytes.substr(0, st.head_bytes.find("\r\n") + 2) +
                                  "Content-Length: " + std::to_string(st.head.content_length) +
                                  "\r\n\r\n";
      if (!parser->feed(minimal.data(), minimal.size())) {
        Reject(peer, st, 431, "request header too large");
        continue;
      }
      st.in_body = true;
      st.body_left = st.head.content_length;
      if (st.head.expect_continue && st.body_left > 0) {
        Sent sent = Enqueue(peer, "HTTP/1.1 100 Continue\r\n\r\n", {st.shared->pending.get()});
        Attach(sent, {st.shared->pending});
      }
    }
    std::size_t take = std::min(st.body_left, len - off);
    if (take > 0) {
      if (!parser->feed(buffer + off, take)) {
        Reject(peer, st, 413, "request body too large");
        continue;
      }
      off += take;
      st.body_left -= take;
    }
    if (st.body_left == 0) Complete(core, peer, st, *parser);
  }
}

// ---------------------------------------------------------------------------
// The Pistache handler: one clone per reactor thread; all per-connection state
// is in the peer's data map.

class PistacheHandler final : public Pistache::Http::Handler {
 public:
  HTTP_PROTOTYPE(PistacheHandler)

  explicit PistacheHandler(Core* core) : core_(core) {}

  // Unused: onInput below parses and dispatches itself (Http::Handler::onInput
  // is private in 0.0.5, so it cannot be wrapped).
  void onRequest(const Pistache::Http::Request&, Pistache::Http::ResponseWriter writer) override {
    writer.send(Pistache::Http::Code::Internal_Server_Error);
  }

  // Replaces Http::Handler::onConnection (private in 0.0.5, so it cannot be
  // called), which only does the first line (checked in the disassembly).
  void onConnection(const std::shared_ptr<Peer>& peer) override {
    // No Nagle: a response written in pieces (a streamed boot, head then
    // chunks) must not wait for the client's delayed ACK of the first piece
    // (40 ms on Linux), on kept-alive connections especially.
    const int one = 1;
    if (setsockopt(peer->fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
      Log("cannot set TCP_NODELAY on a connection");
    }
    const std::size_t max = core_->options.max_connections;
    if (max > 0 && core_->conns->Count() >= max && CloseIdle(*core_, max - 1) == 0) {
      // Full, and every connection is busy or streaming: this one goes.
      ::shutdown(peer->fd(), SHUT_RDWR);
    }
    struct stat st {};
    if (::fstat(peer->fd(), &st) != 0) Log("cannot fstat a connection's socket");
    peer->putData(ParserData, std::make_shared<Pistache::Http::RequestParser>(getMaxRequestSize()));
    peer->putData(kConnStateKey,
                  std::make_shared<ConnState>(ReactorRef{transport(), std::this_thread::get_id()},
                                              core_->conns, peer, st.st_ino));
  }

  void onInput(const char* buffer, std::size_t len, const std::shared_ptr<Peer>& peer) override {
    ConnState* st = FindState(peer);
    try {
      if (!st || st->rejected) return;
      Input(core_, buffer, len, peer, *st);
    } catch (const std::exception& e) {
      // Never let an exception into Pistache's reactor loop.
      Log(std::string("input handling failed: ") + e.what());
      if (st && !st->rejected) Reject(peer, *st, 400, "malformed request");
    }
  }

  void onDisconnection(const std::shared_ptr<Peer>& peer) override {
    if (ConnState* st = FindState(peer)) st->shared->CloseAll();
  }

 private:
  Core* core_;
};

}  // namespace

// ---------------------------------------------------------------------------

struct HttpServer::Impl {
  Core core;
  std::unique_ptr<Pistache::Http::Endpoint> endpoint;
  std::shared_ptr<PistacheHandler> handler;
  std::uint16_t port = 0;
  bool started = false;
  bool stopped = false;

  std::thread reaper;
  std::mutex reaper_mu;
  std::condition_variable reaper_cv;
  bool reaper_stop = false;

  // Ends streams that reached keepalive_timeout (minus a margin), so they
  // finish with a final chunk before Pistache drops the idle connection.
  void Reap() {
    std::unique_lock<std::mutex> lock(reaper_mu);
    while (!reaper_stop) {
      reaper_cv.wait_for(lock, std::chrono::milliseconds(200));
      if (reaper_stop) break;
      lock.unlock();
      auto now = std::chrono::steady_clock::now();
      for (auto& s : core.registry->Snapshot()) {
        if (s->deadline() <= now) s->End();
        s->CheckDrain(now);  // drops a stream whose client stopped reading
      }
      CloseIdle(core, core.options.max_connections > 0 ? core.options.max_connections
                                                       : std::numeric_limits<std::size_t>::max());
      lock.lock();
    }
  }

  void StopReaper() {
    {
      std::lock_guard<std::mutex> lock(reaper_mu);
      reaper_stop = true;
    }
    reaper_cv.notify_all();
    if (reaper.joinable()) reaper.join();
  }
};

HttpServer::HttpServer(ServerOptions options, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->core.options = std::move(options);
  impl_->core.registry->limit = impl_->core.options.stream_buffer_limit;
  impl_->core.handler = std::move(handler);
}

HttpServer::~HttpServer() {
  Shutdown();
}

bool HttpServer::Start(std::string* error) {
  auto fail = [&](const std::string& message) {
    if (error) *error = message;
    return false;
  };
  if (impl_->started) return fail("the server was already started");
  const ServerOptions& o = impl_->core.options;
  const std::string where = o.address + ":" + std::to_string(o.port);
  try {
    Pistache::Address address(o.address, Pistache::Port(o.port));
    auto endpoint = std::make_unique<Pistache::Http::Endpoint>(address);
    auto opts = Pistache::Http::Endpoint::options()
                    .threads(std::max(1, o.reactor_threads))
                    // SO_REUSEADDR only skips TIME_WAIT; a port in use still
                    // fails (verified), unlike ReusePort.
                    .flags(Pistache::Tcp::Options::ReuseAddr)
                    .maxRequestSize(o.hard_body_limit + kMaxHeadBytes)
                    .headerTimeout(o.header_timeout)
                    .bodyTimeout(o.header_timeout)
                    .keepaliveTimeout(o.keepalive_timeout);
    endpoint->init(opts);
    auto handler = std::make_shared<PistacheHandler>(&impl_->core);
    endpoint->setHandler(handler);
    endpoint->serveThreaded();
    impl_->port = endpoint->getPort();
    impl_->endpoint = std::move(endpoint);
    impl_->handler = std::move(handler);
  } catch (const std::exception& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    return fail("cannot listen on " + where + ": " + what);
  }
  impl_->started = true;
  impl_->core.pool.Start(impl_->core.options.worker_threads);
  impl_->reaper = std::thread([impl = impl_.get()] { impl->Reap(); });
  return true;
}

std::uint16_t HttpServer::port() const {
  return impl_->port;
}

void HttpServer::Shutdown() {
  Impl& impl = *impl_;
  if (!impl.started || impl.stopped) return;
  impl.stopped = true;
  Core& core = impl.core;

  // 1. New requests get 503 from now on.
  core.accepting.store(false);
  // 2. End every open stream; streams started from now on are born ended.
  {
    std::lock_guard<std::mutex> lock(core.registry->mu);
    core.registry->stopping = true;
  }
  for (auto& s : core.registry->Snapshot()) s->End();
  impl.StopReaper();
  // 3. Let handlers in flight (and queued) finish; new jobs are refused.
  //    Then let the requests they kept be answered (their commits complete).
  core.pool.Drain();
  core.WaitKept();
  // 4. Give the reactors a moment to write what is queued to the clients
  //    still there (one that does not read must not hold us up).
  const auto flush_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  for (auto& conn : core.conns->Snapshot()) {
    std::unique_lock<std::mutex> lock(conn->pending->mu);
    conn->pending->cv.wait_until(
        lock, flush_deadline, [&] { return conn->pending->bytes.load() == 0 || conn->IsGone(); });
  }
  // 5. Stop the listener and the reactors; dropping the endpoint closes every
  //    connection.
  // 5. Close every connection. Pistache 0.0.5 never closes a peer's socket
  //    on shutdown (the fds stay open until the process exits and clients
  //    hang), and Endpoint::shutdown() only signals the reactor threads, so
  //    the sockets cannot be closed from here either. Instead each one is
  //    shut down on its own reactor; Pistache then reads EOF and closes and
  //    forgets it as for any disconnect. Connections accepted meanwhile are
  //    caught by the next round.
  const auto close_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  std::unordered_map<const ConnShared*, std::weak_ptr<ConnShared>> asked;
  for (;;) {
    auto live = core.conns->Snapshot();
    if (live.empty() || std::chrono::steady_clock::now() >= close_deadline) break;
    for (auto& conn : live) {
      if (!asked.emplace(conn.get(), conn).second) continue;
      DropConnection(conn)();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // 6. Stop the acceptor and the reactors (joined when the endpoint is
  //    destroyed).
  try {
    impl.endpoint->shutdown();
  } catch (const std::exception& e) {
    Log(std::string("endpoint shutdown failed: ") + e.what());
  }
  impl.endpoint.reset();
  impl.handler.reset();
}

}  // namespace quire::http
