// WorkerPool: the threads that run the application's handler and the
// streams' drain callbacks, so that nothing of the application runs on a
// reactor thread.
//
// Thread-safety: Post may be called from any thread; Start and Drain by the
// server's owner (HttpServer::Start and Shutdown). Drain refuses new jobs,
// runs those queued and joins the threads.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace quire::http {

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

}  // namespace quire::http
