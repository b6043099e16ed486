#include "yunzhi/engine/stop.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

namespace yunzhi::engine {

namespace {

// Length of an incomplete UTF-8 sequence at the end of `text` (0 if it ends on a boundary or in
// bytes that can never become valid: those are released rather than held forever).
size_t IncompleteUtf8Tail(std::string_view text) {
  const size_t n = text.size();
  for (size_t back = 1; back <= std::min<size_t>(3, n); ++back) {
    const auto c = static_cast<unsigned char>(text[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = 0;
    if ((c & 0xE0) == 0xC0) {
      need = 2;
    } else if ((c & 0xF0) == 0xE0) {
      need = 3;
    } else if ((c & 0xF8) == 0xF0) {
      need = 4;
    }
    return need > back ? back : 0;
  }
  return 0;
}

}  // namespace

Result<StopMatcher> StopMatcher::Create(std::vector<std::string> stop_strings, size_t max_strings) {
  if (stop_strings.size() > max_strings) {
    return InvalidArgumentError(fmt::format("at most {} stop strings are allowed, got {}",
                                            max_strings, stop_strings.size()),
                                "stop");
  }
  for (const std::string& s : stop_strings) {
    if (s.empty()) return InvalidArgumentError("stop strings must not be empty", "stop");
  }
  return StopMatcher(std::move(stop_strings));
}

StopMatcher::Output StopMatcher::Push(std::string_view piece) {
  Output out;
  if (stopped_) return out;
  held_.append(piece);

  // The earliest complete stop string (longest on a tie).
  size_t best_pos = std::string::npos;
  int best = -1;
  for (size_t i = 0; i < stops_.size(); ++i) {
    const size_t pos = held_.find(stops_[i]);
    if (pos == std::string::npos) continue;
    if (pos < best_pos ||
        (pos == best_pos && stops_[i].size() > stops_[static_cast<size_t>(best)].size())) {
      best_pos = pos;
      best = static_cast<int>(i);
    }
  }
  if (best >= 0) {
    out.text = held_.substr(0, best_pos);
    out.stopped = true;
    out.stop_index = best;
    stopped_ = true;
    held_.clear();
    return out;
  }

  // Hold back the longest suffix that is a proper prefix of some stop string: it may complete.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, held_.size());
    for (size_t len = max_len; len > hold; --len) {
      if (std::string_view(held_).substr(held_.size() - len) ==
          std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  hold = std::max(hold, IncompleteUtf8Tail(held_));
  out.text = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopMatcher::Flush() {
  std::string rest = std::move(held_);
  held_.clear();
  return rest;
}

void StopMatcher::Reset() {
  held_.clear();
  stopped_ = false;
}

}  // namespace yunzhi::engine
