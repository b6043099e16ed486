// Pre-tokenizer of byte-level BPE: splits text into pieces with a sequence of regexes (PCRE2,
// UTF + UCP, so \p{L}, \p{N} and \s are Unicode-aware), before each piece is merged on its own.
//
// Thread safety: immutable after Create; Split may be called from any number of threads.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::engine::internal {

// The split patterns of a pre-tokenizer named as GGUF `tokenizer.ggml.pre` names it ("gpt-2",
// "llama-bpe", "qwen2", "deepseek-llm", ...). "default" is GPT-2's; "none" has no patterns.
// Errors: kUnimplemented for an unknown name.
Result<std::vector<std::string>> PreTokenizerPatterns(std::string_view pre);

// GPT-2's pattern: what HF ByteLevel(use_regex=true) applies.
extern const char* const kGpt2SplitPattern;

class PreTokenizer {
 public:
  // Compiles the patterns (JIT where available). Errors: kInvalidArgument naming the pattern and
  // the offset PCRE2 reports.
  static Result<std::unique_ptr<PreTokenizer>> Create(std::span<const std::string> patterns);
  ~PreTokenizer();

  // Appends the pieces of `text` to `pieces`, in order; they are non-empty views into `text`
  // and together cover it exactly. Each pattern applies to every piece the previous one left
  // (HF Split with behavior "Isolated"): matches and the gaps between them both become pieces.
  // Text that is not valid UTF-8 is accepted: an invalid byte never matches a pattern character,
  // so it ends up in a gap piece.
  void Split(std::string_view text, std::vector<std::string_view>* pieces) const;

 private:
  struct Regex;
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Regex>> regexes_;
};

}  // namespace yunzhi::engine::internal
