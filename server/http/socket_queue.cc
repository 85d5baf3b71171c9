#include "server/http/socket_queue.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>

namespace quire::http {
namespace {

// At most this many chunks per sendmsg: a stream that fell behind catches up
// in few system calls.
constexpr std::size_t kMaxIov = 64;

}  // namespace

SocketQueue::~SocketQueue() {
  for (const Entry& e : chunks_) Release(*e.chunk);
}

void SocketQueue::Hold(const Chunk& chunk) {
  if (chunk.queues_.fetch_add(1) == 0 && total_) *total_ += chunk.bytes().size();
}

void SocketQueue::Release(const Chunk& chunk) {
  if (chunk.queues_.fetch_sub(1) == 1 && total_) *total_ -= chunk.bytes().size();
}

SocketQueue::Result SocketQueue::Write(int fd, ChunkPtr chunk) {
  Push(std::move(chunk));
  return Flush(fd);
}

void SocketQueue::Push(ChunkPtr chunk) {
  if (!chunk || chunk->bytes().empty()) return;
  bytes_ += chunk->bytes().size();
  Hold(*chunk);
  chunks_.push_back(Entry{std::move(chunk), 0});
}

SocketQueue::Result SocketQueue::Flush(int fd) {
  while (!chunks_.empty()) {
    iovec iov[kMaxIov];
    std::size_t n = 0;
    for (auto it = chunks_.begin(); it != chunks_.end() && n < kMaxIov; ++it, ++n) {
      std::string_view rest = it->chunk->bytes().substr(it->offset);
      iov[n].iov_base = const_cast<char*>(rest.data());
      iov[n].iov_len = rest.size();
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    ssize_t written = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (written < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Result::kBlocked;
      return Result::kBroken;
    }
    auto left = static_cast<std::size_t>(written);
    bytes_ -= left;
    while (left > 0) {
      Entry& front = chunks_.front();
      const std::size_t rest = front.chunk->bytes().size() - front.offset;
      if (left < rest) {
        front.offset += left;
        break;
      }
      left -= rest;
      Release(*front.chunk);
      chunks_.pop_front();
    }
    if (!chunks_.empty() && static_cast<std::size_t>(written) == 0) return Result::kBlocked;
  }
  return Result::kWritten;
}

std::string SocketQueue::TakeRest() {
  std::string out;
  out.reserve(bytes_);
  for (const Entry& e : chunks_) {
    out.append(e.chunk->bytes().substr(e.offset));
    Release(*e.chunk);
  }
  chunks_.clear();
  bytes_ = 0;
  return out;
}

}  // namespace quire::http
