#include "server/api/api.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/api/request_checks.h"
#include "server/chat/event_json.h"
#include "server/chat/names.h"
#include "server/chat/time_format.h"
#include "server/fanout/resume_point.h"
#include "server/http/client_address.h"
#include "server/http/header_text.h"
#include "server/log/log.h"

namespace quire::api {
namespace {

using chat::Error;
using json = nlohmann::ordered_json;

constexpr char kCookieName[] = "identity";
constexpr char kCookieAttributes[] = "; HttpOnly; SameSite=Strict; Path=/";

int HttpStatus(Error::Kind kind) {
  switch (kind) {
    case Error::Kind::kBadRequest:
      return 400;
    case Error::Kind::kUnauthorized:
      return 401;
    case Error::Kind::kForbidden:
      return 403;
    case Error::Kind::kNotFound:
      return 404;
    case Error::Kind::kConflict:
      return 409;
    case Error::Kind::kGone:
      return 410;
    case Error::Kind::kTooManyRequests:
      return 429;
    case Error::Kind::kNotSetUp:
      return 503;
    case Error::Kind::kUnavailable:
      return 503;
  }
  return 503;
}

std::string ErrorBody(const std::string& message) {
  return json{{"error", message}}.dump();
}

// `body` is JSON text already.
void SendJsonText(http::Responder& responder, int status, std::string body,
                  std::vector<std::string> cookies = {}) {
  http::Response response;
  response.status = status;
  response.body = std::move(body);
  response.set_cookies = std::move(cookies);
  responder.Send(std::move(response));
}

std::string JsonText(const json& body) {
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

void SendJson(http::Responder& responder, int status, const json& body,
              std::vector<std::string> cookies = {}) {
  SendJsonText(responder, status, JsonText(body), std::move(cookies));
}

void SendError(http::Responder& responder, int status, const std::string& message) {
  http::Response response;
  response.status = status;
  response.body = ErrorBody(message);
  responder.Send(std::move(response));
}

void SendError(http::Responder& responder, const Error& error) {
  http::Response response;
  response.status = HttpStatus(error.kind);
  response.body = ErrorBody(error.message);
  if (error.kind == Error::Kind::kTooManyRequests) {
    const std::int64_t seconds = (error.retry_after + 999999) / 1000000;
    response.headers.emplace_back("Retry-After",
                                  std::to_string(std::max<std::int64_t>(1, seconds)));
  }
  responder.Send(std::move(response));
}

void SendNoContent(http::Responder& responder, std::vector<std::string> cookies) {
  http::Response response;
  response.status = 204;
  response.set_cookies = std::move(cookies);
  responder.Send(std::move(response));
}

json InvitationJson(const chat::InvitationView& v) {
  return json{
      {"id", v.id}, {"issuer", v.issuer}, {"issued_at", chat::FormatTimestamp(v.issued_at)}};
}

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

}  // namespace

struct Api::Call {
  const http::Request& request;
  http::Responder& responder;
  std::string param;  // the :id of the route, if it has one
  chat::Identity who;

  void Reply(int status, const json& body, std::vector<std::string> cookies = {}) {
    SendJson(responder, status, body, std::move(cookies));
  }
  void Fail(int status, const std::string& message) { SendError(responder, status, message); }
  void Fail(const Error& error) { SendError(responder, error); }

  // A reply for when `result` is known: the request stays open meanwhile
  // without a thread (answered from the committer after the commit).
  // `body` renders the result as JSON text.
  template <class T>
  chat::Reply<T> LaterText(std::function<std::string(const T&)> body, int status = 202) {
    return [responder = responder.Keep(), body = std::move(body), status](chat::Result<T> result) {
      if (!result.ok()) return SendError(*responder, result.error());
      SendJsonText(*responder, status, body(result.value()));
    };
  }
  // The same with `body` making a JSON value.
  template <class T>
  chat::Reply<T> Later(std::function<json(const T&)> body, int status = 202) {
    return LaterText<T>([body = std::move(body)](const T& v) { return JsonText(body(v)); }, status);
  }
  // The same for a 204 with `cookies`.
  chat::Reply<chat::Done> LaterNoContent(std::vector<std::string> cookies) {
    return
        [responder = responder.Keep(), cookies = std::move(cookies)](chat::Result<chat::Done> r) {
          if (!r.ok()) return SendError(*responder, r.error());
          SendNoContent(*responder, cookies);
        };
  }
  void NoContent(std::vector<std::string> cookies) { SendNoContent(responder, std::move(cookies)); }

  // The body as a JSON object, or nullopt after answering 400. An empty body
  // counts as {} where `empty_ok`.
  std::optional<json> Object(bool empty_ok = false) {
    const std::string& body = request.body;
    if (empty_ok && body.find_first_not_of(" \t\r\n") == std::string::npos) return json::object();
    if (!chat::IsValidUtf8(body)) {
      Fail(400, "request body is not valid UTF-8");
      return std::nullopt;
    }
    json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      Fail(400, "request body is not valid JSON");
      return std::nullopt;
    }
    if (!parsed.is_object()) {
      Fail(400, "request body must be a JSON object");
      return std::nullopt;
    }
    return parsed;
  }

  // Reads the named string fields, or answers 400 and returns false.
  bool Strings(const json& object,
               std::initializer_list<std::pair<const char*, std::string*>> fields) {
    for (const auto& [name, out] : fields) {
      auto it = object.find(name);
      if (it == object.end()) {
        Fail(400, std::string("missing field \"") + name + "\"");
        return false;
      }
      if (!it->is_string()) {
        Fail(400, std::string("field \"") + name + "\" must be a string");
        return false;
      }
      *out = it->get<std::string>();
    }
    return true;
  }
};

namespace {

// `secure`: the client reached the server over TLS, so the browser must
// never send the cookie over plain HTTP.
std::string LoginCookie(const std::string& token, bool secure) {
  return std::string(kCookieName) + "=" + token + kCookieAttributes + (secure ? "; Secure" : "");
}

std::string ClearedCookie(bool secure) {
  return std::string(kCookieName) + "=" + kCookieAttributes + "; Max-Age=0" +
         (secure ? "; Secure" : "");
}

json LoginJson(const chat::Login& login) {
  return json{{"id", login.user_id}, {"name", login.name}};
}

}  // namespace

Api::Api(chat::ChatService& service, fanout::EventHub& hub, ApiOptions options)
    : service_(service), hub_(hub), options_(options) {}

void Api::Handle(const http::Request& request, http::Responder& responder) {
  Call call{request, responder, {}, {}};
  Dispatch(call);
}

namespace {

enum class Auth { kNone, kRequired };

}  // namespace

struct Api::Route {
  const char* method;
  const char* pattern;  // matched segment by segment; ":id" is any one segment
  Auth auth;
  void (Api::*run)(Call&);
};

// The routes of the contract.
const Api::Route Api::kRoutes[] = {
    {"POST", "/api/setup", Auth::kNone, &Api::Setup},
    {"POST", "/api/auth/login", Auth::kNone, &Api::LogIn},
    {"POST", "/api/auth/logout", Auth::kRequired, &Api::LogOut},
    {"POST", "/api/password", Auth::kRequired, &Api::ChangePassword},
    {"POST", "/api/invite", Auth::kRequired, &Api::Invite},
    {"GET", "/api/invite/:id", Auth::kNone, &Api::GetInvitation},
    {"POST", "/api/invite/:id", Auth::kNone, &Api::AcceptInvitation},
    {"GET", "/api/boot", Auth::kRequired, &Api::Boot},
    {"GET", "/api/events", Auth::kRequired, &Api::Events},
    {"POST", "/api/conversations", Auth::kRequired, &Api::CreateConversation},
    {"POST", "/api/conversations/:id", Auth::kRequired, &Api::SendMessage},
    {"DELETE", "/api/conversations/:id", Auth::kRequired, &Api::DeleteConversation},
    {"DELETE", "/api/messages/:id", Auth::kRequired, &Api::DeleteMessage},
};

void Api::Dispatch(Call& call) {
  // Find the route: path first, then method.
  const std::vector<std::string_view> path = Segments(call.request.path);
  const Route* found = nullptr;
  bool path_known = false;
  // The routes' patterns, split once.
  static const std::vector<std::vector<std::string_view>> patterns = [] {
    std::vector<std::vector<std::string_view>> all;
    for (const Route& entry : kRoutes) all.push_back(Segments(entry.pattern));
    return all;
  }();
  for (std::size_t r = 0; r < std::size(kRoutes); ++r) {
    const Route& entry = kRoutes[r];
    const std::vector<std::string_view>& pattern = patterns[r];
    if (pattern.size() != path.size()) continue;
    bool match = true;
    std::string param;
    for (std::size_t i = 0; i < pattern.size() && match; ++i) {
      if (pattern[i] == ":id") {
        match = !path[i].empty();
        param = std::string(path[i]);
      } else {
        match = pattern[i] == path[i];
      }
    }
    if (!match) continue;
    path_known = true;
    if (call.request.method == entry.method) {
      found = &entry;
      call.param = std::move(param);
      break;
    }
  }

  call.responder.SetRoute(found ? std::string_view(found->pattern) : "/api (unknown)");
  const bool is_setup = found && found->run == &Api::Setup;  // the one route before setup
  if (!is_setup) {
    chat::Result<bool> set_up = service_.IsSetUp();
    if (!set_up.ok()) return call.Fail(set_up.error());
    if (!set_up.value()) return call.Fail(503, "Quire is not set up yet: POST /api/setup first");
  }
  if (!found) {
    if (path_known) return call.Fail(405, "method not allowed");
    return call.Fail(404, "no such endpoint");
  }
  if (call.request.body.size() > options_.max_body_bytes) {
    return call.Fail(413, "request body is larger than 64 KiB");
  }
  if (!call.request.body.empty()) {
    const std::string* type = call.request.Header("content-type");
    if (!type || !IsJsonMediaType(*type)) {
      return call.Fail(415, "a request body must be sent as Content-Type: application/json");
    }
  }
  const bool changes_state = call.request.method == "POST" || call.request.method == "DELETE";
  if (changes_state && IsForeignOrigin(call.request)) {
    return call.Fail(403, "requests from other sites are refused (Origin)");
  }
  if (found->auth == Auth::kRequired) {
    auto cookie = call.request.cookies.find(kCookieName);
    if (cookie == call.request.cookies.end()) return call.Fail(401, "not logged in");
    auto who = service_.Authenticate(cookie->second);
    if (!who.ok()) return call.Fail(who.error());
    call.who = std::move(who.value());
  }
  (this->*found->run)(call);
}

void Api::ReplyLogin(Call& call, const chat::Result<chat::Login>& result) {
  if (!result.ok()) return call.Fail(result.error());
  call.Reply(200, LoginJson(result.value()),
             {LoginCookie(result.value().token, OverTls(call.request))});
}

void Api::Setup(Call& c) {
  std::string name, password;
  auto body = c.Object();
  if (!body || !c.Strings(*body, {{"name", &name}, {"password", &password}})) return;
  ReplyLogin(c, service_.Setup(name, password));
}

void Api::LogIn(Call& c) {
  std::string name, password;
  auto body = c.Object();
  if (!body || !c.Strings(*body, {{"name", &name}, {"password", &password}})) return;
  // Answered once the password is checked on the hashing pool and the
  // session committed; no thread waits for either.
  service_.LogIn(name, password, ClientAddress(c.request),
                 [responder = c.responder.Keep(),
                  secure = OverTls(c.request)](chat::Result<chat::Login> result) {
                   if (!result.ok()) return SendError(*responder, result.error());
                   SendJson(*responder, 200, LoginJson(result.value()),
                            {LoginCookie(result.value().token, secure)});
                 });
}

bool Api::OverTls(const http::Request& request) const {
  if (options_.public_url_is_https) return true;
  const auto& trusted = options_.trusted_proxies;
  if (std::find(trusted.begin(), trusted.end(), request.remote_address) == trusted.end()) {
    return false;
  }
  const std::string* proto = request.Header("x-forwarded-proto");
  return proto && http::AsciiLower(http::TrimSpace(*proto)) == "https";
}

std::string Api::ClientAddress(const http::Request& request) const {
  return http::ClientAddress(request, options_.trusted_proxies);
}

void Api::LogOut(Call& c) {
  if (!c.Object(/*empty_ok=*/true)) return;
  service_.LogOut(c.who, c.LaterNoContent({ClearedCookie(OverTls(c.request))}));
}

void Api::ChangePassword(Call& c) {
  std::string current, to;
  auto body = c.Object();
  if (!body || !c.Strings(*body, {{"password", &current}, {"to", &to}})) return;
  ReplyLogin(c, service_.ChangePassword(c.who, current, to));
}

void Api::Invite(Call& c) {
  if (!c.Object(/*empty_ok=*/true)) return;
  service_.Invite(c.who, c.Later<chat::InvitationView>(InvitationJson, 200));
}

void Api::GetInvitation(Call& c) {
  ReplyInvitation(c, service_.GetInvitation(c.param));
}

void Api::ReplyInvitation(Call& c, const chat::Result<chat::InvitationView>& r) {
  if (!r.ok()) return c.Fail(r.error());
  c.Reply(200, InvitationJson(r.value()));
}

void Api::AcceptInvitation(Call& c) {
  std::string name, password;
  auto body = c.Object();
  if (!body || !c.Strings(*body, {{"name", &name}, {"password", &password}})) return;
  ReplyLogin(c, service_.AcceptInvitation(c.param, name, password));
}

void Api::CreateConversation(Call& c) {
  std::string name;
  auto body = c.Object();
  if (!body || !c.Strings(*body, {{"name", &name}})) return;
  service_.CreateConversation(c.who, name,
                              c.Later<storage::Conversation>([](const storage::Conversation& v) {
                                return json{{"id", v.id}, {"name", v.name}};
                              }));
}

void Api::SendMessage(Call& c) {
  std::string text;
  auto body = c.Object();
  if (!body || !c.Strings(*body, {{"body", &text}})) return;
  const std::string* key = c.request.Header("idempotency-key");
  service_.SendMessage(c.who, c.param, text, key ? *key : std::string(),
                       c.LaterText<storage::Message>(&chat::MessageJson));
}

void Api::DeleteConversation(Call& c) {
  service_.DeleteConversation(c.who, c.param,
                              c.Later<chat::Done>([id = c.param](const chat::Done&) {
                                return json{{"id", id}};
                              }));
}

void Api::DeleteMessage(Call& c) {
  service_.DeleteMessage(c.who, c.param, c.Later<chat::Done>([id = c.param](const chat::Done&) {
    return json{{"id", id}};
  }));
}

namespace {

// A boot written as the client reads it: each page is read (one short read
// transaction) and queued only once the previous ones drained below a limit,
// on a worker, and no thread waits in between. A client that stops reading
// holds at most about the limit plus one page, and is dropped after a minute.
class BootWriter : public std::enable_shared_from_this<BootWriter> {
 public:
  BootWriter(storage::Store& store, std::shared_ptr<http::ResponseStream> stream,
             std::int64_t resume_point, std::size_t page_events, std::string head)
      : store_(store),
        stream_(std::move(stream)),
        resume_point_(resume_point),
        page_events_(page_events),
        page_(std::move(head)) {}

  // Writes the next page, then waits (without a thread) for it to drain.
  void Next() {
    events_.clear();
    storage::Status s = store_.ReadEvents(cursor_, resume_point_, count_, &events_);
    if (!s.ok()) {
      // Headers are out; cutting the body short is the only honest signal.
      log::Error("boot", "read failed: " + s.ToString());
      return;  // the stream is dropped without its final chunk
    }
    for (const storage::Event& event : events_) {
      if (!first_) page_ += ',';
      first_ = false;
      chat::AppendEventJson(page_, event);
    }
    const bool last = fanout::IsLastPage(events_.size(), count_);
    cursor_ = fanout::CursorAfterPage(cursor_, resume_point_, events_, count_);
    if (last) page_ += "]}";
    // The next page aims at kChunkBytes, whatever the size of events: a
    // client that stops reading then holds about that much.
    const std::size_t per_event =
        std::max<std::size_t>(1, page_.size() / std::max<std::size_t>(1, events_.size()));
    count_ = std::clamp<std::size_t>(kChunkBytes / per_event, 16, page_events_);
    if (!stream_->Write(http::MakeChunk(page_))) return;
    page_.clear();
    if (last) {
      stream_->End();
      return;
    }
    stream_->WhenDrained(kQueuedLimit, kClientTimeout, [self = shared_from_this()](bool drained) {
      if (drained) self->Next();
    });
  }

 private:
  static constexpr std::size_t kChunkBytes = 256 << 10;
  static constexpr std::size_t kQueuedLimit = 1 << 20;
  static constexpr std::chrono::seconds kClientTimeout{60};

  storage::Store& store_;
  const std::shared_ptr<http::ResponseStream> stream_;
  const std::int64_t resume_point_;
  const std::size_t page_events_;  // at most this many events per page
  std::size_t count_ = 256;        // events to read for the next page
  std::string page_;
  std::vector<storage::Event> events_;
  std::int64_t cursor_ = 0;
  bool first_ = true;
};

}  // namespace

void Api::Boot(Call& call) {
  storage::Store& store = service_.store();
  storage::Head head;
  storage::Status s = store.GetHead(&head);
  if (!s.ok()) return call.Fail(chat::StorageError(s));
  const std::int64_t resume_point = fanout::BootResumePoint(head);

  auto stream = call.responder.StartStream(
      200, {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}});
  std::string page = json{{"login", {{"id", call.who.user_id}, {"name", call.who.name}}},
                          {"resume_point", resume_point},
                          {"heartbeat", options_.heartbeat_seconds}}
                         .dump();
  page.pop_back();  // reopen the object to append the events
  page += ",\"events\":[";
  std::make_shared<BootWriter>(store, std::move(stream), resume_point, options_.boot_page,
                               std::move(page))
      ->Next();
}

void Api::Events(Call& call) {
  const http::Request& request = call.request;
  auto query = request.query.find("resume_point");
  const bool has_query = !request.query_malformed && query != request.query.end();
  chat::Result<std::int64_t> start = fanout::ParseResumePoint(has_query ? &query->second : nullptr,
                                                              request.Header("last-event-id"));
  if (!start.ok()) return call.Fail(start.error());
  storage::Head head;
  storage::Status s = service_.store().GetHead(&head);
  if (!s.ok()) return call.Fail(chat::StorageError(s));
  if (auto refused = fanout::CheckResumePoint(start.value(), head)) return call.Fail(*refused);
  auto stream = call.responder.StartStream(200, {{"Content-Type", "text/event-stream"},
                                                 {"Cache-Control", "no-cache"},
                                                 {"X-Accel-Buffering", "no"}});
  hub_.Attach(std::move(stream), start.value(), call.who.user_id, call.who.token_hash);
}

}  // namespace quire::api
