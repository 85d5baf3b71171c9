#include "server/http/pistache_handler.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <exception>
#include <string>
#include <string_view>
#include <thread>

#include "server/http/connection.h"
#include "server/http/log.h"
#include "server/http/on_reactor.h"
#include "server/http/peer_writes.h"
#include "server/http/request_decoding.h"
#include "server/http/request_head.h"
#include "server/http/responder_impl.h"
#include "server/http/response_text.h"

namespace quire::http {

namespace {

// Input handling, on the connection's reactor thread.

void Input(ServerCore* core, const char* buffer, std::size_t len, const std::shared_ptr<Peer>& peer,
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
void Resume(ServerCore* core, const std::weak_ptr<Peer>& weak) {
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
void Complete(ServerCore* core, const std::shared_ptr<Peer>& peer, ConnState& st,
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
  auto responder =
      std::make_shared<ResponderImpl>(core, peer, st.shared, st.reactor, keep_alive, head_only,
                                      std::move(release), req.method, req.remote_address);
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

void Input(ServerCore* core, const char* buffer, std::size_t len, const std::shared_ptr<Peer>& peer,
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
      st.head = RequestHead();
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

}  // namespace

void PistacheHandler::onConnection(const std::shared_ptr<Peer>& peer) {
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

void PistacheHandler::onInput(const char* buffer, std::size_t len,
                              const std::shared_ptr<Peer>& peer) {
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

void PistacheHandler::onDisconnection(const std::shared_ptr<Peer>& peer) {
  if (ConnState* st = FindState(peer)) st->shared->CloseAll();
}

}  // namespace quire::http
