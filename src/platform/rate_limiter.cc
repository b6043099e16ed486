#include "yunzhi/platform/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace yunzhi::platform {

RateDecision RateLimiter::Acquire(std::string_view key, int64_t requests_per_minute) {
  if (requests_per_minute <= 0) return {true, 0, 0, 0};
  const auto now = clock_.SteadyNow();
  const double limit = static_cast<double>(requests_per_minute);
  const double per_second = limit / 60.0;

  std::lock_guard lock(mutex_);
  // Drop buckets idle long enough to be full again, so the map does not grow without bound.
  if (now - last_sweep_ > std::chrono::minutes(10)) {
    std::erase_if(buckets_, [&](const auto& kv) {
      return now - kv.second.updated > std::chrono::minutes(10);
    });
    last_sweep_ = now;
  }
  auto [it, created] = buckets_.try_emplace(std::string(key));
  Bucket& b = it->second;
  if (created) {
    b.tokens = limit;
    b.limit = requests_per_minute;
    b.updated = now;
  } else {
    const double elapsed_s = std::chrono::duration<double>(now - b.updated).count();
    b.tokens = std::min(limit, b.tokens + std::max(0.0, elapsed_s) * per_second);
    b.updated = now;
    if (b.limit != requests_per_minute) {
      b.tokens = std::min(b.tokens, limit);
      b.limit = requests_per_minute;
    }
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return {true, requests_per_minute, static_cast<int64_t>(std::floor(b.tokens)), 0};
  }
  const double wait_s = (1.0 - b.tokens) / per_second;
  return {false, requests_per_minute, 0,
          std::max<int64_t>(1, static_cast<int64_t>(std::ceil(wait_s)))};
}

}  // namespace yunzhi::platform
