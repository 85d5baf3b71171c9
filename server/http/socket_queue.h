// SocketQueue: the bytes of one stream that its socket did not take yet.
//
// A stream's chunks are written straight to its non-blocking socket by the
// thread that produces them (one send() per chunk, no copy, no reactor hop);
// only what the socket refuses is kept here, as shared chunks, until the
// socket is writable again. A stream that never reads therefore holds
// references to chunks that every other stream shares, not copies of them.
//
// Every queue of a server adds to one counter of unread bytes (`total`): a
// chunk counts there while at least one queue holds it, once however many do.
//
// Thread-safety: none; the owning stream serializes calls under its lock.
// The counter is atomic and shared by every queue.
// Ownership: the caller owns the fd; the queue only writes to it. `total`
// must outlive the queue.
#pragma once

#include <atomic>
#include <cstddef>
#include <deque>
#include <string>

#include "server/http/http_server.h"

namespace quire::http {

class SocketQueue {
 public:
  explicit SocketQueue(std::atomic<std::size_t>* total = nullptr) : total_(total) {}
  ~SocketQueue();
  SocketQueue(const SocketQueue&) = delete;
  SocketQueue& operator=(const SocketQueue&) = delete;

  enum class Result {
    kWritten,  // nothing is left queued
    kBlocked,  // the socket is full; the rest waits here for Flush()
    kBroken,   // the connection is gone (EPIPE, ECONNRESET, ...); nothing more can be written
  };

  // Queues `chunk` behind what waits and writes as much as the socket takes.
  Result Write(int fd, ChunkPtr chunk);

  // Queues `chunk` without writing (the socket is not ours to write yet).
  void Push(ChunkPtr chunk);

  // Writes what waits, as much as the socket takes.
  Result Flush(int fd);

  // Bytes queued and not yet written.
  std::size_t bytes() const { return bytes_; }
  bool empty() const { return chunks_.empty(); }

  // Removes and returns every byte not yet written, in order.
  std::string TakeRest();

 private:
  // A chunk enters or leaves this queue: the shared counter of unread bytes
  // changes when it is the first queue to hold it or the last to let it go.
  void Hold(const Chunk& chunk);
  void Release(const Chunk& chunk);

  struct Entry {
    ChunkPtr chunk;
    std::size_t offset = 0;  // bytes of it already written
  };
  std::atomic<std::size_t>* const total_;
  std::deque<Entry> chunks_;
  std::size_t bytes_ = 0;
};

}  // namespace quire::http
