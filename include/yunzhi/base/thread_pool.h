// A fixed set of worker threads running queued tasks in FIFO order.
//
// For blocking work that must not run on the network threads: document parsing, OCR, hashing
// large files, SQLite calls. Inference has its own scheduler in engine/ and does not use this.
//
//   ThreadPool pool(4);
//   std::future<int> n = pool.Submit([] { return CountPages(path); });
//   pool.Post([] { CleanUpTempFiles(); });  // fire and forget
//
// Failure rules: a task that throws never takes a worker down. Submit hands the exception to the
// caller through the future; Post logs it (log::Error "thread_pool_task_failed") and drops it.
// After Shutdown has begun, new work is refused: Submit returns a future whose get() throws
// ThreadPoolShutDown, and Post drops the task and logs "thread_pool_post_after_shutdown" at error
// level (it is a lifetime bug in the caller). Refused tasks are destroyed without running.
//
// Thread safety: every member function may be called from any thread, including from tasks on
// this pool (except Shutdown and the destructor, see there).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace yunzhi {

// The exception a Submit future carries when the pool was already shutting down.
class ThreadPoolShutDown : public std::runtime_error {
 public:
  ThreadPoolShutDown() : std::runtime_error("thread pool is shut down; task not run") {}
};

class ThreadPool {
 public:
  // Starts `n_threads` workers; 0 means std::thread::hardware_concurrency() (at least 1).
  // `name` identifies the pool in log lines.
  explicit ThreadPool(size_t n_threads = 0, std::string name = "pool");
  // Calls Shutdown().
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues `task` to run once on some worker. See the header comment for exceptions and for
  // posting after shutdown. Precondition: task is non-empty.
  void Post(std::function<void()> task);

  // Queues `f()` and returns a future for its result (or the exception it threw, or
  // ThreadPoolShutDown when refused). F may be move-only; its result may be void or move-only.
  template <class F>
  auto Submit(F f) -> std::future<std::invoke_result_t<F&>> {
    using R = std::invoke_result_t<F&>;
    // packaged_task is move-only and std::function needs a copyable target, hence shared_ptr.
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(f));
    std::future<R> result = task->get_future();
    if (!Enqueue([task] { (*task)(); })) {
      std::promise<R> refused;
      refused.set_exception(std::make_exception_ptr(ThreadPoolShutDown()));
      return refused.get_future();
    }
    return result;
  }

  // Stops accepting work, lets the workers finish every task queued so far (including ones
  // already running), and joins them. Idempotent; concurrent callers all return once the
  // workers have exited. Precondition (checked): not called from a task of this pool, which
  // would wait for itself.
  void Shutdown();

  // Number of worker threads; fixed at construction.
  size_t size() const { return workers_.size(); }
  // Number of tasks waiting for a worker (not counting running ones). A snapshot.
  size_t queued() const;

 private:
  // Adds a task; false when shutting down (the task is then destroyed here).
  bool Enqueue(std::function<void()> task);
  void WorkerLoop();

  const std::string name_;
  std::vector<std::thread> workers_;  // written only by the constructor

  mutable std::mutex mu_;
  std::condition_variable work_available_;   // signalled on enqueue and on shutdown
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool shutting_down_ = false;               // guarded by mu_

  std::mutex join_mu_;  // serialises concurrent Shutdown calls while they join
};

}  // namespace yunzhi
