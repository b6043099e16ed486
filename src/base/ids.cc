#include "yunzhi/base/ids.h"

#include <algorithm>
#include <mutex>
#include <string>

#include "yunzhi/base/crypto.h"
#include "yunzhi/base/status.h"

namespace yunzhi {
namespace {

using U128 = unsigned __int128;

constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr int kRandomBits = 80;
constexpr int64_t kMaxTimestampMs = (int64_t{1} << 48) - 1;
constexpr U128 kRandomMask = (U128{1} << kRandomBits) - 1;

// Value of a canonical Crockford character, or -1.
int DecodeChar(char c) {
  for (int i = 0; i < 32; ++i) {
    if (kCrockford[i] == c) return i;
  }
  return -1;
}

// The 128-bit value of a canonical ULID, or false when `s` is not one. The first character
// carries only 3 bits (26 * 5 = 130), so it is at most '7'.
bool DecodeUlid(std::string_view s, U128* out) {
  if (s.size() != kUlidChars) return false;
  U128 v = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const int d = DecodeChar(s[i]);
    if (d < 0 || (i == 0 && d > 7)) return false;
    v = (v << 5) | static_cast<unsigned>(d);
  }
  *out = v;
  return true;
}

void EncodeUlid(U128 v, std::string& out) {
  char buf[kUlidChars];
  for (int i = kUlidChars - 1; i >= 0; --i) {
    buf[i] = kCrockford[static_cast<unsigned>(v & 31)];
    v >>= 5;
  }
  out.append(buf, kUlidChars);
}

bool ValidPrefix(std::string_view prefix) {
  if (prefix.empty()) return false;
  for (char c : prefix) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

// The last id's timestamp and random part, shared by all prefixes.
struct Generator {
  std::mutex mu;
  int64_t last_ms = -1;  // guarded by mu
  U128 last_random = 0;  // guarded by mu
};

Generator& TheGenerator() {
  static Generator* const g = new Generator();  // leaked: ids may be made during exit
  return *g;
}

}  // namespace

std::string NewId(std::string_view prefix, const Clock& clock) {
  YZ_CHECK(ValidPrefix(prefix));
  int64_t ms = clock.NowUnixMs();
  YZ_CHECK(ms >= 0 && ms <= kMaxTimestampMs);

  // Drawn outside the lock; wasted when the millisecond repeats, which costs less than holding
  // the lock across a syscall.
  const std::string bytes = crypto::RandomBytes(kRandomBits / 8);
  U128 fresh = 0;
  for (unsigned char b : bytes) fresh = (fresh << 8) | b;

  U128 random;
  {
    Generator& g = TheGenerator();
    std::lock_guard lock(g.mu);
    if (ms == g.last_ms) {
      random = (g.last_random + 1) & kRandomMask;
      if (random == 0) {
        // 2^80 ids in one millisecond cannot happen in practice; if the random start was that
        // close to the top, borrow the next millisecond so that the order still holds.
        ms = std::min(ms + 1, kMaxTimestampMs);
        random = fresh;
      }
    } else {
      random = fresh;
    }
    g.last_ms = ms;
    g.last_random = random;
  }

  std::string id;
  id.reserve(prefix.size() + 1 + kUlidChars);
  id.append(prefix);
  id.push_back('_');
  EncodeUlid((static_cast<U128>(ms) << kRandomBits) | random, id);
  return id;
}

bool IsValidId(std::string_view id, std::string_view prefix) {
  if (id.size() != prefix.size() + 1 + kUlidChars) return false;
  if (id.substr(0, prefix.size()) != prefix || id[prefix.size()] != '_') return false;
  U128 v;
  return DecodeUlid(id.substr(prefix.size() + 1), &v);
}

int64_t IdTimestampMs(std::string_view id) {
  const size_t underscore = id.rfind('_');
  const std::string_view ulid =
      underscore == std::string_view::npos ? id : id.substr(underscore + 1);
  U128 v;
  if (!DecodeUlid(ulid, &v)) return -1;
  return static_cast<int64_t>(v >> kRandomBits);
}

}  // namespace yunzhi
