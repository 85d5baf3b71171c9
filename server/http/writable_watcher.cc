#include "server/http/writable_watcher.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "server/http/log.h"

namespace quire::http {

WritableWatcher::WritableWatcher() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    Log("cannot create the writable watcher");
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // id 0: the wake-up
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  thread_ = std::thread([this] { Run(); });
}

WritableWatcher::~WritableWatcher() {
  if (thread_.joinable()) {
    std::uint64_t one = 1;
    if (::write(wake_fd_, &one, sizeof one) < 0) {
      Log("cannot wake the writable watcher");
    }
    thread_.join();
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

std::uint64_t WritableWatcher::Watch(int fd, std::function<void()> on_writable) {
  if (epoll_fd_ < 0 || !thread_.joinable()) return 0;
  std::uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_id_++;
    callbacks_.emplace(id, std::move(on_writable));
  }
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLET;  // EPOLLERR and EPOLLHUP are always reported
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    std::lock_guard<std::mutex> lock(mu_);
    callbacks_.erase(id);
    return 0;
  }
  return id;
}

void WritableWatcher::Forget(std::uint64_t id, int fd) {
  if (id == 0) return;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  std::lock_guard<std::mutex> lock(mu_);
  callbacks_.erase(id);
}

void WritableWatcher::Run() {
  std::vector<epoll_event> events(256);
  std::vector<std::function<void()>> due;
  for (;;) {
    int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      Log("the writable watcher stopped (epoll_wait failed)");
      return;
    }
    due.clear();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == 0) return;  // woken to stop
        auto it = callbacks_.find(events[i].data.u64);
        if (it != callbacks_.end()) due.push_back(it->second);
      }
    }
    for (const auto& callback : due) callback();
  }
}

}  // namespace quire::http
