#include "yunzhi/base/thread_pool.h"

#include <algorithm>
#include <exception>

#include "yunzhi/base/log.h"
#include "yunzhi/base/status.h"

namespace yunzhi {
namespace {
// The pool whose worker is running on this thread, to catch Shutdown from inside a task.
thread_local const ThreadPool* t_current_pool = nullptr;
}  // namespace

ThreadPool::ThreadPool(size_t n_threads, std::string name) : name_(std::move(name)) {
  if (n_threads == 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
  workers_.reserve(n_threads);
  for (size_t i = 0; i < n_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() { Shutdown(); }

void ThreadPool::Post(std::function<void()> task) {
  YZ_CHECK(task != nullptr);
  if (!Enqueue(std::move(task))) {
    log::Error("thread_pool_post_after_shutdown", {{"pool", name_}});
  }
}

bool ThreadPool::Enqueue(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) return false;
    queue_.push_back(std::move(task));
  }
  work_available_.notify_one();
  return true;
}

size_t ThreadPool::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void ThreadPool::Shutdown() {
  YZ_CHECK(t_current_pool != this);
  {
    std::lock_guard lock(mu_);
    shutting_down_ = true;
  }
  work_available_.notify_all();
  std::lock_guard join_lock(join_mu_);
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

void ThreadPool::WorkerLoop() {
  t_current_pool = this;
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      work_available_.wait(lock, [this] { return shutting_down_ || !queue_.empty(); });
      // Shutting down with an empty queue: everything queued before Shutdown has been taken.
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    // Submit's tasks never throw here (packaged_task stores the exception); only Post's can.
    try {
      task();
    } catch (const std::exception& e) {
      log::Error("thread_pool_task_failed", {{"pool", name_}, {"error", e.what()}});
    } catch (...) {
      log::Error("thread_pool_task_failed", {{"pool", name_}, {"error", "non-standard exception"}});
    }
  }
}

}  // namespace yunzhi
