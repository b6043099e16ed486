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
  // Separate cache lines: workers poll `generation` while finishing ones decrement `pending`.
  alignas(64) std::atomic<uint64_t> generation{0};
  alignas(64) std::atomic<int> pending{0};
  alignas(64) const std::function<void(int, int)>* job = nullptr;  // written before generation++
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
      (*job)(ith, n_threads);
      pending.fetch_sub(1, std::memory_order_acq_rel);
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
  s.job = &fn;
  s.pending.store(s.n_threads - 1, std::memory_order_relaxed);
  {
    // Under the lock so that a worker between its predicate check and its wait cannot miss it.
    std::lock_guard<std::mutex> lock(s.mu);
    s.generation.fetch_add(1, std::memory_order_release);
  }
  s.cv.notify_all();
  fn(0, s.n_threads);
  int spins = 0;
  while (s.pending.load(std::memory_order_acquire) != 0) {
    if (++spins < kPauseSpins) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace yunzhi::engine
