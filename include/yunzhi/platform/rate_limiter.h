// Per-key request rate limits: one token bucket per key, refilled continuously.
//
// A key allowed N requests per minute has a bucket of N tokens that refills at N/60 per second:
// a burst of up to N requests, then a steady N per minute. Time comes from the injected Clock, so
// tests step it instead of sleeping. Buckets idle for ten minutes are dropped.
//
// Thread safety: Acquire is safe from many threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "yunzhi/base/clock.h"

namespace yunzhi::platform {

struct RateDecision {
  bool allowed = true;
  int64_t limit = 0;          // requests per minute (0: unlimited)
  int64_t remaining = 0;      // whole tokens left after this request
  int64_t retry_after_s = 0;  // when refused: seconds until one token is back (>= 1)
};

class RateLimiter {
 public:
  explicit RateLimiter(const Clock& clock) : clock_(clock) {}
  // Takes one token from `key`'s bucket of `requests_per_minute` (<= 0: unlimited, always allowed).
  // A changed limit for the same key resizes its bucket.
  RateDecision Acquire(std::string_view key, int64_t requests_per_minute);

 private:
  struct Bucket {
    double tokens = 0;
    int64_t limit = 0;
    std::chrono::steady_clock::time_point updated;
  };
  const Clock& clock_;
  std::mutex mutex_;  // guards buckets_ and last_sweep_
  std::unordered_map<std::string, Bucket> buckets_;
  std::chrono::steady_clock::time_point last_sweep_{};
};

}  // namespace yunzhi::platform
