// Generating text for one sequence: prefill the prompt in chunks, then sample token by token
// until EOS, a stop string or the token limit, streaming valid UTF-8 as it goes.
//
// This is the single-sequence driver used by `yunzhi run`, `yunzhi bench` and tests; the serving
// scheduler batches many sequences itself on the same ModelRunner primitives.
//
// Thread safety: Generate uses the runner exclusively for its duration.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/model.h"
#include "yunzhi/engine/sampler.h"

namespace yunzhi::engine {

struct GenerateOptions {
  // Most tokens to generate; 0 = until the context is full.
  int64_t max_tokens = 256;
  // Stop strings (OpenAI `stop`): generation ends before the first one that appears.
  std::vector<std::string> stop;
  SamplingParams sampling;
  // Keep going past end-of-generation tokens (benchmarks).
  bool ignore_eos = false;
  // Prompt tokens per Forward call while prefilling.
  int64_t prefill_chunk_tokens = 512;
};

enum class FinishReason { kStop, kLength, kCancelled };
std::string_view FinishReasonName(FinishReason reason);  // "stop", "length", "cancelled"

struct GenerateResult {
  std::string text;                  // generated text, stop string excluded
  std::vector<int32_t> tokens;       // generated tokens (incl. a final EOS if one was sampled)
  std::vector<SampledToken> sampled; // per generated token, with logprobs when asked for
  FinishReason finish_reason = FinishReason::kLength;
  int64_t n_prompt_tokens = 0;
  double prefill_ms = 0;             // prompt processing, wall time
  double generate_ms = 0;            // from the first sampled token to the last
};

// Called with each piece of text that is safe to show; return false to cancel generation.
using TextCallback = std::function<bool(std::string_view piece)>;

// Generates a continuation of `prompt` (token ids; the caller adds BOS / renders the chat
// template). The sequence's KV blocks are released before returning.
// Errors: kInvalidArgument for an empty prompt, a prompt that fills the context, bad sampling
// parameters or stop strings; errors of ModelRunner::Forward.
Result<GenerateResult> Generate(ModelRunner& runner, std::span<const int32_t> prompt,
                                const GenerateOptions& options,
                                const TextCallback& on_text = {});

}  // namespace yunzhi::engine
