// ResponderImpl: the Responder of http_server.h for one request. It writes
// the response through Pistache's queue, or opens a StreamImpl for a chunked
// one, and then releases the connection for its next request. A request
// kept past its handler (Keep) counts in ServerCore until it is answered; one
// whose last copy goes unanswered gets a 500.
//
// Thread-safety: may be answered from any thread, once (a second answer is
// logged and dropped). Ownership: shared by the worker that runs the handler
// and whoever kept the request.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/http/connection.h"
#include "server/http/http_server.h"
#include "server/http/log.h"
#include "server/http/on_reactor.h"
#include "server/http/peer_writes.h"
#include "server/http/response_text.h"
#include "server/http/server_core.h"
#include "server/http/stream_impl.h"

namespace quire::http {

class ResponderImpl final : public Responder, public std::enable_shared_from_this<ResponderImpl> {
 public:
  // `resume` runs once the answer is queued (or its stream closed); it
  // releases the connection for the next request.
  ResponderImpl(ServerCore* core, std::weak_ptr<Peer> peer, std::shared_ptr<ConnShared> conn,
                ReactorRef reactor, bool keep_alive, bool head_only, std::function<void()> resume,
                std::string method = "", std::string remote_address = "")
      : core_(core),
        peer_(std::move(peer)),
        conn_(std::move(conn)),
        reactor_(reactor),
        keep_alive_(keep_alive),
        head_only_(head_only),
        resume_(std::move(resume)),
        method_(std::move(method)),
        remote_address_(std::move(remote_address)),
        started_(std::chrono::steady_clock::now()) {}

  void SetRoute(std::string_view route) override {
    if (!answered_.load()) route_ = route;
  }

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
    ServerCore* core = core_;
    auto stream = std::make_shared<StreamImpl>(
        peer_, socket, &core_->watcher, core_->registry, conn_->pending,
        std::chrono::steady_clock::now() + core_->options.keepalive_timeout - margin,
        keep_alive_ ? nullptr : HalfCloseWhenWritten(conn_), resume_,
        [core](std::function<void()> job) { return core->pool.Post(std::move(job)); },
        DropConnection(conn_));
    StreamImpl::WatchDrain(stream);
    if (!conn_->AddStream(stream)) return std::make_shared<ClosedStream>();
    Answered(status, 0, true);
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
    // Counted before the client can see the answer: whoever got it and then
    // reads /metrics finds it there.
    Answered(response.status, response.body.size(), false);

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

  void Answered(int status, std::size_t body_bytes, bool stream) {
    if (!core_->options.on_answer) return;
    Exchange e;
    e.method = method_;
    e.route = route_;
    e.status = status;
    e.body_bytes = body_bytes;
    e.stream = stream;
    e.duration = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started_);
    e.remote_address = remote_address_;
    core_->options.on_answer(e);
  }

  ServerCore* const core_;
  const std::weak_ptr<Peer> peer_;
  const std::shared_ptr<ConnShared> conn_;
  const ReactorRef reactor_;
  const bool keep_alive_;
  const bool head_only_;
  const std::function<void()> resume_;
  const std::string method_;
  const std::string remote_address_;
  const std::chrono::steady_clock::time_point started_;
  std::string route_;  // set before the answer, read when answering (same happens-before)
  std::atomic<bool> answered_{false};
  std::atomic<bool> kept_{false};
};

}  // namespace quire::http
