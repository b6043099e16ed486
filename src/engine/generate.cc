#include "yunzhi/engine/generate.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "yunzhi/engine/stop.h"
#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine {
namespace {

double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// Releases the sequence's blocks however Generate returns.
class SequenceGuard {
 public:
  explicit SequenceGuard(KvCache& cache) : cache_(cache) {}
  ~SequenceGuard() { cache_.Release(&seq_); }
  Sequence* get() { return &seq_; }

 private:
  KvCache& cache_;
  Sequence seq_;
};

}  // namespace

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "unknown";
}

Result<GenerateResult> Generate(ModelRunner& runner, std::span<const int32_t> prompt,
                                const GenerateOptions& options, const TextCallback& on_text) {
  const Model& model = runner.model();
  const Tokenizer& tokenizer = model.tokenizer();
  const int64_t n_ctx = runner.n_ctx();
  if (prompt.empty()) return InvalidArgumentError("the prompt is empty", "prompt");
  if (static_cast<int64_t>(prompt.size()) >= n_ctx) {
    return InvalidArgumentError(
        fmt::format("the prompt has {} tokens; the context holds {} (prompt plus output)",
                    prompt.size(), n_ctx),
        "prompt");
  }
  YZ_ASSIGN_OR_RETURN(Sampler sampler,
                      Sampler::Create(options.sampling, static_cast<int32_t>(model.config().n_vocab)));
  YZ_ASSIGN_OR_RETURN(StopMatcher stop, StopMatcher::Create(options.stop));
  sampler.AddPromptTokens(prompt);

  GenerateResult result;
  result.n_prompt_tokens = static_cast<int64_t>(prompt.size());
  SequenceGuard seq(runner.kv_cache());
  ForwardOutput out;

  // Prefill in chunks; only the last chunk's last logits matter.
  const auto prefill_start = std::chrono::steady_clock::now();
  const int64_t chunk = std::max<int64_t>(1, options.prefill_chunk_tokens);
  for (int64_t i = 0; i < static_cast<int64_t>(prompt.size()); i += chunk) {
    const int64_t n = std::min<int64_t>(chunk, static_cast<int64_t>(prompt.size()) - i);
    BatchItem item{seq.get(), prompt.subspan(static_cast<size_t>(i), static_cast<size_t>(n)), false};
    YZ_RETURN_IF_ERROR(runner.Forward({&item, 1}, &out));
  }
  result.prefill_ms = MsSince(prefill_start);

  const int64_t room = n_ctx - static_cast<int64_t>(prompt.size());
  const int64_t max_tokens = options.max_tokens > 0 ? std::min(options.max_tokens, room) : room;
  // SentencePiece marks a word start with a space; the first generated word shows it unless the
  // text starts afresh after a control token (a BOS-only prompt): then it is dropped, as in
  // "Once upon a time" from BOS.
  DecodeOptions decode;
  decode.skip_special = true;
  decode.remove_space_prefix = tokenizer.IsSpecial(prompt.back());
  StreamingDecoder decoder(tokenizer, decode);
  auto emit = [&](std::string_view text) {
    if (text.empty()) return true;
    result.text.append(text);
    return on_text ? on_text(text) : true;
  };

  const auto generate_start = std::chrono::steady_clock::now();
  result.finish_reason = FinishReason::kLength;
  for (int64_t step = 0; step < max_tokens; ++step) {
    YZ_ASSIGN_OR_RETURN(SampledToken sampled, sampler.Sample(out.Row(0)));
    const int32_t token = sampled.token;
    result.tokens.push_back(token);
    result.sampled.push_back(std::move(sampled));
    if (!options.ignore_eos && tokenizer.IsEndOfGeneration(token)) {
      result.finish_reason = FinishReason::kStop;
      break;
    }
    StopMatcher::Output piece = stop.Push(decoder.Push(token));
    if (!emit(piece.text)) {
      result.finish_reason = FinishReason::kCancelled;
      break;
    }
    if (piece.stopped) {
      result.finish_reason = FinishReason::kStop;
      break;
    }
    if (step + 1 == max_tokens) break;  // no Forward for a token nobody will sample after
    BatchItem item{seq.get(), std::span<const int32_t>(&result.tokens.back(), 1), false};
    YZ_RETURN_IF_ERROR(runner.Forward({&item, 1}, &out));
  }
  if (result.finish_reason != FinishReason::kCancelled && !stop.stopped()) {
    emit(stop.Push(decoder.Flush()).text);
    emit(stop.Flush());
  }
  result.generate_ms = MsSince(generate_start);
  return result;
}

}  // namespace yunzhi::engine
