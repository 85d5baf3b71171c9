// HttpServer: Quire's one wrapper around Pistache 0.0.5.
//
// Everything Pistache-specific lives behind this header (in server/http/), so
// the rest of the server is plain C++ and Pistache's traps are handled once:
//  - handlers never run on a reactor thread: each request is handed to a
//    worker pool, so a slow query never stalls other connections;
//  - responses are sent from any thread through the peer's write queue;
//    stream chunks are written straight to the socket by the thread that
//    produces them, and only what a full socket refuses waits (see
//    StreamImpl); Pistache's ResponseStream is never used;
//  - keep-alive is answered properly, idle streams are not cut with a 408;
//  - chunked request bodies and bodies over the hard limit are refused with a
//    JSON error before Pistache buffers them;
//  - path and query are percent-decoded; exceptions never become a 500 with
//    their text as body.
//
// Thread-safety: HttpServer's methods are called from one thread (main).
// Responder and ResponseStream may be used from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace Pistache {
struct RawBuffer;
}  // namespace Pistache

namespace quire::http {

struct Request {
  std::string method;  // "GET", "POST", "DELETE", ... (upper case)
  std::string path;    // percent-decoded, without the query
  // Percent-decoded query parameters ('+' is a space). The last one of a name wins.
  std::map<std::string, std::string> query;
  bool query_malformed = false;  // a bad percent escape somewhere in the path or query
  std::map<std::string, std::string> headers;  // names in lower case
  std::map<std::string, std::string> cookies;
  std::string body;
  std::string remote_address;  // the connection's peer, e.g. "127.0.0.1" or "::1"

  // The header's value, or nullptr when absent. `name` is lower case.
  const std::string* Header(const std::string& name) const;
};

struct Response {
  int status = 200;
  std::string body;  // empty for 204
  std::string content_type = "application/json";
  std::vector<std::string> set_cookies;  // each a full Set-Cookie value
  // Further header lines, (name, value), written as given after the above. A
  // 304 keeps them (its ETag, Cache-Control, ...) but has no body.
  std::vector<std::pair<std::string, std::string>> headers;
};

// One chunk of a streamed (chunked) body, framed once by MakeChunk. Writing
// it to any number of streams shares these bytes: a stream whose socket is
// full keeps a reference, not a copy. Immutable, so safe to share across
// threads.
class Chunk {
 public:
  ~Chunk();
  Chunk(const Chunk&) = delete;
  Chunk& operator=(const Chunk&) = delete;

  // The bytes on the wire: size line, payload, CRLF. Empty for an empty payload.
  std::string_view bytes() const;
  // For the HTTP layer, which hands it to Pistache.
  const Pistache::RawBuffer& raw() const { return *raw_; }

 private:
  friend std::shared_ptr<const Chunk> MakeChunk(std::string_view payload);
  friend std::shared_ptr<const Chunk> FinalChunk();
  friend class SocketQueue;
  explicit Chunk(std::string framed);
  std::unique_ptr<const Pistache::RawBuffer> raw_;
  // How many SocketQueues hold this chunk: its bytes count toward the
  // server's unread stream bytes while any does (SocketQueue keeps it).
  mutable std::atomic<std::size_t> queues_{0};
};
using ChunkPtr = std::shared_ptr<const Chunk>;

// Frames `payload` as one HTTP/1.1 chunk. Build it once and write the same
// chunk to every stream.
ChunkPtr MakeChunk(std::string_view payload);

// The zero-length chunk that ends a chunked body.
ChunkPtr FinalChunk();

// A chunked response being streamed. Writes never block: a chunk goes to the
// socket at once, or waits in the stream's queue until the socket drains.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;

  // Queues one chunk built by MakeChunk. Returns false, and sends nothing,
  // once the client has gone or End() was called.
  virtual bool Write(ChunkPtr chunk) = 0;

  // Bytes queued but not yet written to the socket.
  virtual std::size_t PendingBytes() const = 0;

  // Whether bytes have waited for more than `for_at_least` with none taken by
  // the socket: the client stopped reading (not merely reads slowly).
  virtual bool Stalled(std::chrono::milliseconds for_at_least) const {
    (void)for_at_least;
    return false;
  }

  // Caps the kernel's send buffer of the socket (SO_SNDBUF), so that what the
  // client has not read waits here, where PendingBytes() sees it, rather than
  // in megabytes of kernel buffers. It stays for the connection's life,
  // requests after the stream included.
  virtual void LimitSendBuffer(std::size_t bytes) { (void)bytes; }

  // Runs `callback` on a worker thread, no thread waiting meanwhile,
  // with true once PendingBytes() <= limit, or with false once the stream
  // closed or `timeout` passed first. On a timeout the stream is dropped and
  // its connection closed, so a client that stops reading holds a bounded
  // amount of memory and nothing else. One callback at a time per stream.
  virtual void WhenDrained(std::size_t limit, std::chrono::milliseconds timeout,
                           std::function<void(bool drained)> callback) = 0;

  // Sends the final chunk: the response is complete and the connection is
  // free for the next request. Idempotent.
  virtual void End() = 0;

  // Ends the stream at once for a client that cannot keep up: what is still
  // queued is dropped (not copied anywhere) and the connection is closed.
  // The client reconnects from the last event it got. Idempotent.
  virtual void Cut() { End(); }

  // True once the client disconnected or End() was called.
  virtual bool Closed() const = 0;

  // Runs `callback` (on an arbitrary thread) once the client disconnects or
  // End() is called; at once if that already happened.
  virtual void OnClose(std::function<void()> callback) = 0;
};

// Answers one request, exactly once, from any thread.
class Responder {
 public:
  virtual ~Responder() = default;
  // Names what was asked for in logs and metrics (ServerOptions::on_answer):
  // a route pattern such as "/api/conversations/:id", never a path with ids
  // or secrets in it. Call before answering.
  virtual void SetRoute(std::string_view route) { (void)route; }
  virtual void Send(Response response) = 0;
  // Keeps the request open past the handler's return, so that it can be
  // answered later from any thread (when a commit completes, say) without a
  // thread waiting for it: answer through the returned pointer. A kept request
  // whose last copy goes unanswered gets a 500. HttpServer::Shutdown waits
  // until every kept request is answered.
  virtual std::shared_ptr<Responder> Keep() = 0;
  // Sends the status line and headers of a chunked response at once and
  // returns the stream for its body. `headers` are (name, value) pairs.
  virtual std::shared_ptr<ResponseStream> StartStream(
      int status, const std::vector<std::pair<std::string, std::string>>& headers) = 0;
};

// The application. Runs on a worker thread. If it returns without answering
// or keeping the request (Responder::Keep), the request gets a 500 JSON error;
// an exception it throws is logged and answered the same way.
using Handler = std::function<void(const Request&, Responder&)>;

// One answered request, for logs and metrics.
struct Exchange {
  std::string_view method;
  std::string_view route;  // Responder::SetRoute's, or "" when none was given
  int status = 0;
  std::size_t body_bytes = 0;  // 0 for a stream, whose body follows
  bool stream = false;
  std::chrono::microseconds duration{0};  // from the request read to the answer ready
  std::string_view remote_address;
};

struct ServerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 8080;  // 0 picks a free one
  int reactor_threads = 2;
  int worker_threads = 8;
  // A request whose body is larger, or announced larger, is answered 413 at
  // once without reading it. The application enforces its own smaller limit.
  std::size_t hard_body_limit = 1 << 20;
  std::chrono::seconds header_timeout{30};
  // Open streams are ended after this long (stream clients reconnect with
  // Last-Event-ID).
  std::chrono::seconds keepalive_timeout{600};
  // A keep-alive connection with no request in progress and no open stream
  // is closed after this long.
  std::chrono::seconds idle_timeout{60};
  // Bytes of stream chunks (stream events, boot and replay pages) written
  // and not yet taken by their clients' sockets, all streams together; a
  // chunk that several streams wait to send counts once. Beyond it the
  // streams whose sockets have taken nothing for longest are cut (their queues dropped, their
  // connections closed; a stream client resumes with Last-Event-ID) until
  // the total is below 7/8 of it. 0: no limit. Bytes still in Pistache's own
  // queue (a stream's head) are not counted.
  std::size_t stream_buffer_limit = std::size_t{256} << 20;
  // At most this many connections: beyond it the longest-idle keep-alive
  // connections are closed to make room, and when none is idle the new one
  // is. 0: no limit. Keep it well below the open-file limit (a stream holds
  // two files), so that accept() never fails for want of one.
  std::size_t max_connections = 0;
  // Runs once per answered request, on the answering thread, just before
  // the answer is queued: keep it quick (a counter, a log line).
  std::function<void(const Exchange&)> on_answer;
};

class HttpServer {
 public:
  HttpServer(ServerOptions options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving in background threads. On failure (address in
  // use, bad address) returns false and sets *error to one line.
  bool Start(std::string* error);

  // The bound port (after Start).
  std::uint16_t port() const;

  struct Stats {
    std::size_t open_streams = 0;
    std::size_t unread_stream_bytes = 0;  // queued for streams' sockets, each chunk once
  };
  Stats GetStats() const;

  // Stops accepting, ends every open stream, lets handlers in flight finish
  // and kept requests be answered, and closes the listener. Idempotent.
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace quire::http
