// ComputePool: fork-join over a fixed set of threads.
//
// A decode step runs a few hundred small parallel loops (one per matmul), each only tens of
// microseconds long, so waking threads through the kernel every time would cost as much as the
// work. Workers therefore spin on a generation counter for a short while after each job and only
// then sleep on a condition variable. The spin is bounded so that an idle engine does not burn the
// cores it shares with the rest of the server.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/kernels/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace yunzhi::engine {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Waiting goes through three stages: pause-spin (a few microseconds: the gap between two matmuls
// of one forward pass), then sched_yield (lets a preempted peer run when the cores are
// oversubscribed, which pure spinning would starve), then, for workers, sleeping on the condition
// variable so an idle engine costs nothing.
constexpr int kPauseSpins = 2000;
constexpr int kYieldSpins = 200;

}  // namespace

struct ComputePool::State {
  int n_threads = 1;
  std::vector<std::thread> workers;
  // Job id: a counter in the high bits, bit 0 set for a shared job (RunShared). Separate cache
  // lines: workers poll `generation` while finishing ones decrement `pending` / `active`.
  alignas(64) std::atomic<uint64_t> generation{0};
  alignas(64) std::atomic<int> pending{0};  // Run: workers yet to finish
  alignas(64) std::atomic<int> active{0};   // RunShared: workers inside the job
  std::atomic<uint64_t> closed{0};          // RunShared: the last job closed to late workers
  alignas(64) const std::function<void(int, int)>* job = nullptr;  // written before generation
  uint64_t count = 0;  // jobs published (caller only)
  std::atomic<bool> stop{false};
  std::mutex mu;  // guards the sleep/wake handshake on `cv` (not the job itself)
  std::condition_variable cv;

  void WorkerLoop(int ith) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g;
      int spins = 0;
      while ((g = generation.load(std::memory_order_acquire)) == seen) {
        if (stop.load(std::memory_order_acquire)) return;
        ++spins;
        if (spins < kPauseSpins) {
          CpuRelax();
        } else if (spins < kPauseSpins + kYieldSpins) {
          std::this_thread::yield();
        } else {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [&] {
            return generation.load(std::memory_order_acquire) != seen ||
                   stop.load(std::memory_order_acquire);
          });
          spins = 0;
        }
      }
      seen = g;
      if ((g & 1) == 0) {
        // Run: the caller waits for every worker, so `job` is still this job's.
        (*job)(ith, n_threads);
        pending.fetch_sub(1, std::memory_order_acq_rel);
        continue;
      }
      // RunShared: join unless the caller has closed the job already. Sequentially consistent
      // on both sides (Dekker): either the caller sees this worker in `active` and waits for
      // it, or this worker sees the job closed and leaves `job` alone (it may already belong
      // to a later job).
      active.fetch_add(1, std::memory_order_seq_cst);
      if (closed.load(std::memory_order_seq_cst) < g) (*job)(ith, n_threads);
      active.fetch_sub(1, std::memory_order_release);
    }
  }

  void Publish(const std::function<void(int, int)>& fn, bool shared) {
    job = &fn;
    ++count;
    {
      // Under the lock so that a worker between its predicate check and its wait cannot miss it.
      std::lock_guard<std::mutex> lock(mu);
      generation.store(count << 1 | (shared ? 1 : 0), std::memory_order_release);
    }
    cv.notify_all();
  }

  template <typename Done>
  static void WaitUntil(const Done& done) {
    int spins = 0;
    while (!done()) {
      if (++spins < kPauseSpins) {
        CpuRelax();
      } else {
        std::this_thread::yield();
      }
    }
  }
};

ComputePool::ComputePool(int n_threads) : state_(std::make_unique<State>()) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (n_threads <= 0) n_threads = 1;
  state_->n_threads = n_threads;
  state_->workers.reserve(static_cast<size_t>(n_threads - 1));
  for (int i = 1; i < n_threads; ++i) {
    state_->workers.emplace_back([s = state_.get(), i] { s->WorkerLoop(i); });
  }
}

ComputePool::~ComputePool() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop.store(true, std::memory_order_release);
  }
  state_->cv.notify_all();
  for (std::thread& t : state_->workers) t.join();
}

int ComputePool::n_threads() const { return state_->n_threads; }

void ComputePool::Run(const std::function<void(int ith, int nth)>& fn) {
  State& s = *state_;
  if (s.n_threads == 1) {
    fn(0, 1);
    return;
  }
  s.pending.store(s.n_threads - 1, std::memory_order_relaxed);
  s.Publish(fn, /*shared=*/false);
  fn(0, s.n_threads);
  State::WaitUntil([&] { return s.pending.load(std::memory_order_acquire) == 0; });
}

void ComputePool::RunShared(const std::function<void(int ith, int nth)>& fn) {
  State& s = *state_;
  if (s.n_threads == 1) {
    fn(0, 1);
    return;
  }
  s.Publish(fn, /*shared=*/true);
  fn(0, s.n_threads);
  s.closed.store(s.generation.load(std::memory_order_relaxed), std::memory_order_seq_cst);
  State::WaitUntil([&] { return s.active.load(std::memory_order_seq_cst) == 0; });
}

}  // namespace yunzhi::engine
