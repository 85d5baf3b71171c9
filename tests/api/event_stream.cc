// The event stream of harness.h: EventStream reads GET /api/events on a
// thread of its own through libcurl and parses its server-sent events as a
// browser would (id:, data:, event:, comments), heartbeats counted apart.
//
// Thread-safety: the test's thread calls EventStream's methods while the
// transfer thread feeds it; they share State, guarded by State::mutex.
// Ownership: an EventStream owns its thread, joined by Close() or the
// destructor.
#include <curl/curl.h>

#include "tests/api/harness.h"
#include "tests/api/harness_helpers.h"

namespace quire::apitest {

bool SseEvent::IsHeartbeat() const {
  return data.is_object() && data.contains("type") && data["type"] == "heartbeat";
}

struct EventStream::State {
  mutable std::mutex mutex;
  std::condition_variable cv;
  long status = 0;
  std::multimap<std::string, std::string> headers;
  bool headers_done = false;
  bool ended = false;
  std::string error;
  std::string body;
  std::string line_buffer;
  std::vector<SseEvent> events;
  std::size_t heartbeats = 0;
  // The event being assembled.
  std::optional<std::int64_t> pending_id;
  std::vector<std::string> pending_data;
  bool pending_event_field = false;
  bool pending_any = false;
  // Control.
  bool stop = false;
  bool pause_requested = false;
  bool paused = false;
  CURLM* multi = nullptr;
  CURL* easy = nullptr;
};

namespace {

void FeedLine(EventStream::State& s, std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) {
    if (!s.pending_data.empty()) {
      SseEvent e;
      e.id = s.pending_id;
      for (std::size_t i = 0; i < s.pending_data.size(); ++i) {
        if (i) e.data_text += "\n";
        e.data_text += s.pending_data[i];
      }
      e.data = Json::parse(e.data_text, nullptr, false);
      e.had_event_field = s.pending_event_field;
      if (e.IsHeartbeat()) ++s.heartbeats;
      s.events.push_back(std::move(e));
    }
    s.pending_id.reset();
    s.pending_data.clear();
    s.pending_event_field = false;
    s.pending_any = false;
    return;
  }
  if (line[0] == ':') return;  // comment
  std::size_t colon = line.find(':');
  std::string field = line.substr(0, colon);
  std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value[0] == ' ') value.erase(0, 1);
  s.pending_any = true;
  if (field == "data") {
    s.pending_data.push_back(value);
  } else if (field == "id") {
    try {
      std::size_t used = 0;
      long long id = std::stoll(value, &used);
      if (used == value.size()) s.pending_id = id;
    } catch (...) {
      s.pending_id.reset();
    }
  } else if (field == "event") {
    s.pending_event_field = true;
  }
}

size_t StreamBody(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<EventStream::State*>(user);
  std::lock_guard<std::mutex> lock(s->mutex);
  if (s->pause_requested) {
    s->paused = true;
    return CURL_WRITEFUNC_PAUSE;
  }
  std::string chunk(data, size * n);
  s->body += chunk;
  s->line_buffer += chunk;
  std::size_t pos;
  while ((pos = s->line_buffer.find('\n')) != std::string::npos) {
    FeedLine(*s, s->line_buffer.substr(0, pos));
    s->line_buffer.erase(0, pos + 1);
  }
  s->cv.notify_all();
  return size * n;
}

size_t StreamHeader(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<EventStream::State*>(user);
  std::string line(data, size * n);
  std::lock_guard<std::mutex> lock(s->mutex);
  if (line.rfind("HTTP/", 0) == 0) {
    s->headers.clear();
  } else if (line == "\r\n" || line == "\n") {
    long code = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200) {
      s->status = code;
      s->headers_done = true;
      s->cv.notify_all();
    }
  } else {
    std::size_t colon = line.find(':');
    if (colon != std::string::npos)
      s->headers.emplace(ToLower(Trim(line.substr(0, colon))), Trim(line.substr(colon + 1)));
  }
  return size * n;
}

}  // namespace

EventStream::EventStream(const std::string& base_url, StreamOptions options)
    : state_(std::make_shared<State>()) {
  EnsureCurl();
  std::vector<std::string> headers = {"Accept: text/event-stream"};
  if (options.token) headers.push_back("Cookie: identity=" + *options.token);
  if (options.last_event_id) {
    headers.push_back(options.last_event_id->empty() ? std::string("Last-Event-ID;")
                                                     : "Last-Event-ID: " + *options.last_event_id);
  }
  state_->pause_requested = options.start_paused;
  std::string url = base_url + "/api/events" + (options.query.empty() ? "" : "?" + options.query);
  thread_ = std::thread([this, url, headers] { Run(url, headers); });
}

EventStream::~EventStream() {
  Close();
}

void EventStream::Run(std::string url, std::vector<std::string> header_lines) {
  State& s = *state_;
  CURL* easy = curl_easy_init();
  CURLM* multi = curl_multi_init();
  curl_slist* list = nullptr;
  for (const auto& h : header_lines) list = curl_slist_append(list, h.c_str());
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, StreamBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &s);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, StreamHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &s);
  // A small receive buffer so that a paused reader really leaves data in the kernel.
  curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 16384L);
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.easy = easy;
    s.multi = multi;
  }
  curl_multi_add_handle(multi, easy);
  std::string error;
  while (true) {
    int running = 0;
    curl_multi_perform(multi, &running);
    int queued = 0;
    bool done = false;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg == CURLMSG_DONE) {
        done = true;
        if (msg->data.result != CURLE_OK) {
          error = std::string(curl_easy_strerror(msg->data.result)) +
                  (errbuf[0] ? std::string(": ") + errbuf : "");
        }
      }
    }
    if (done || running == 0) break;
    {
      std::unique_lock<std::mutex> lock(s.mutex);
      if (s.stop) break;
      if (s.paused && !s.pause_requested) {
        s.paused = false;
        lock.unlock();
        curl_easy_pause(easy, CURLPAUSE_CONT);
        continue;
      }
    }
    curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.multi = nullptr;
    s.easy = nullptr;
    if (!s.stop) s.error = error;
    if (!s.headers_done) {
      long code = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
      s.status = code;
    }
    s.ended = true;
    s.cv.notify_all();
  }
  curl_multi_remove_handle(multi, easy);
  curl_easy_cleanup(easy);
  curl_multi_cleanup(multi);
  curl_slist_free_all(list);
}

bool EventStream::WaitForHeaders(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(state_->mutex);
  return state_->cv.wait_for(lock, timeout, [&] {
    return state_->headers_done || state_->ended;
  }) && state_->headers_done;
}

bool EventStream::WaitForEvents(std::size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(state_->mutex);
  auto count = [&] { return state_->events.size() - state_->heartbeats; };
  state_->cv.wait_for(lock, timeout, [&] { return count() >= n || state_->ended; });
  return count() >= n;
}

bool EventStream::WaitForHeartbeats(std::size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->cv.wait_for(lock, timeout, [&] { return state_->heartbeats >= n || state_->ended; });
  return state_->heartbeats >= n;
}

bool EventStream::WaitForEnd(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(state_->mutex);
  return state_->cv.wait_for(lock, timeout, [&] { return state_->ended; });
}

long EventStream::status() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->status;
}

std::string EventStream::header(const std::string& name) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  auto it = state_->headers.find(name);
  return it == state_->headers.end() ? "" : it->second;
}

bool EventStream::headers_received() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->headers_done;
}

bool EventStream::ended() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->ended;
}

std::string EventStream::body() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->body;
}

std::string EventStream::error() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->error;
}

std::vector<SseEvent> EventStream::all_events() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->events;
}

std::vector<SseEvent> EventStream::events() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  std::vector<SseEvent> v;
  for (const auto& e : state_->events)
    if (!e.IsHeartbeat()) v.push_back(e);
  return v;
}

std::size_t EventStream::heartbeat_count() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->heartbeats;
}

std::size_t EventStream::event_count() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->events.size() - state_->heartbeats;
}

void EventStream::Pause() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->pause_requested = true;
}

void EventStream::Resume() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->pause_requested = false;
  if (state_->multi) curl_multi_wakeup(state_->multi);
}

void EventStream::Close() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
    if (state_->multi) curl_multi_wakeup(state_->multi);
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace quire::apitest
