// Stop strings for streaming output (OpenAI `stop`).
//
// Generated text arrives in pieces (one per token, from a StreamingDecoder). A StopMatcher tells
// the caller how much of it can be sent to the client now: text that might be the beginning of a
// stop string is held back until the next piece shows whether the stop string completes. When a
// stop string completes, the text before it is released and the stop string itself is not; the
// caller then ends the generation (finish_reason "stop").
//
//   YZ_ASSIGN_OR_RETURN(StopMatcher stop, StopMatcher::Create({"\n\n", "User:"}));
//   for (each token) {
//     StopMatcher::Output out = stop.Push(decoder.Push(token));
//     Send(out.text);
//     if (out.stopped) break;
//   }
//   Send(stop.Flush());  // at EOS / max tokens: the held-back text was not a stop after all
//
// Matching is on bytes, so it is exact for UTF-8: a valid stop string can only match at a
// character boundary of valid text. Independently of stop strings, an incomplete UTF-8 sequence
// at the end of the text (1-3 bytes of a character whose other bytes have not arrived yet) is
// also held back, so released text never ends in the middle of a character even when pieces are
// raw token bytes.
//
// When several stop strings occur, the one that STARTS first wins (the text before it is the
// same whichever is reported); among stop strings starting at the same byte the longest wins.
// Held-back text is at most (longest stop string - 1) bytes plus 3.
//
// Thread safety: one matcher per sequence, used from one thread at a time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::engine {

// OpenAI's limit on the number of stop strings.
inline constexpr size_t kMaxStopStrings = 4;

class StopMatcher {
 public:
  struct Output {
    std::string text;      // safe to emit now (possibly empty)
    bool stopped = false;  // a stop string completed; `text` is everything before it
    int stop_index = -1;   // index into stop_strings() of the stop string that matched
  };

  // `stop_strings` may be empty (the matcher then only holds back incomplete UTF-8).
  // Errors: kInvalidArgument (param "stop") for more than `max_strings` strings or an empty one.
  static Result<StopMatcher> Create(std::vector<std::string> stop_strings,
                                    size_t max_strings = kMaxStopStrings);

  // Feeds the next piece of generated text. After a stop, further pushes return nothing.
  Output Push(std::string_view piece);

  // Generation ended without a stop: returns all held-back text (an incomplete UTF-8 tail is
  // returned as is). After a stop, returns "". The matcher can then be Reset.
  std::string Flush();

  // Forgets all state for a new sequence (keeps the stop strings).
  void Reset();

  bool stopped() const { return stopped_; }
  size_t n_held_bytes() const { return held_.size(); }
  const std::vector<std::string>& stop_strings() const { return stops_; }

 private:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  std::vector<std::string> stops_;
  std::string held_;  // text not yet released
  bool stopped_ = false;
};

}  // namespace yunzhi::engine
