// Sampling: choosing the next token of one sequence from the logits of its last position.
//
// Parameters follow the OpenAI API with the llama.cpp / vLLM extensions (top_k, min_p,
// repetition_penalty). One step of `Sampler::Sample` runs this pipeline over a private copy of
// the logits (the caller's array is never modified):
//
//   1. logit_bias        logit[t] += bias; a bias <= -100 bans t (logit = -inf), as OpenAI says
//                        "-100 should result in a ban"; +100 does not force a token.
//   2. allowed mask      tokens the TokenConstraint / per-call mask does not allow get -inf.
//   3. repetition        every distinct token among the last `repetition_window_tokens` tokens of
//                        prompt + output: logit / penalty if logit > 0, logit * penalty otherwise
//                        (llama.cpp / Hugging Face CTRL-style).
//   4. presence /        over OUTPUT tokens only (OpenAI definition):
//      frequency           logit -= frequency_penalty * count + presence_penalty * (count > 0).
//   ---- the "processed" logits. Logprobs are log_softmax of these (see below).
//   5. temperature 0     greedy: the argmax of the processed logits, ties -> the lowest id. Steps
//                        6-9 are skipped (top_k/top_p/min_p cannot change an argmax).
//   6. temperature       logit / temperature.
//   7. min_p             drop tokens whose probability < min_p * (the largest probability).
//   8. top_k             keep the k most likely tokens (ties broken by the lower id).
//   9. top_p             keep the smallest prefix, in order of decreasing probability (ties by
//                        lower id), whose renormalised probability mass reaches top_p.
//  10. draw              one uniform number from the sequence's PRNG picks among the survivors.
//
// The truncation order (temperature, then min_p, top_k, top_p, each on the distribution the
// previous step left) is vLLM's; llama.cpp's default chain applies temperature last, which changes
// which tokens top_p keeps. Truncations never remove the most likely token, so one always remains.
//
// LOGPROBS are computed from the processed logits (after steps 1-4, BEFORE temperature and
// truncation): they describe the model's distribution as penalised and biased for this request,
// independent of how randomly it is then sampled (temperature, top_k, top_p, min_p do not change
// them). Engines differ here: vLLM by default reports logprobs of the raw model output (before
// penalties and bias) and can be configured for processed variants; OpenAI does not document
// its choice. Ours equal the raw ones whenever no penalty, bias or mask is set.
// A banned or masked token has logprob -inf.
//
// DETERMINISM: the PRNG is xoshiro256** (Blackman & Vigna, 2018) seeded by expanding the 64-bit
// seed with splitmix64 into its four state words; each draw takes the next 64-bit output x and
// uses u = (x >> 11) * 2^-53, a double in [0, 1). Weights are exp((logit - max) / T) computed in
// double; the survivors are walked in a defined order (increasing token id, or, when top_k is
// set, decreasing probability with ties by lower id) and the first whose cumulative weight
// exceeds u * (total weight) is chosen. So the same seed, parameters, history and logits give
// the same tokens on
// any machine whose libm exp() agrees (glibc's does, across x86-64 and aarch64); a libm that
// differs in the last bit could change a choice only when u falls within ~1e-16 of a boundary.
// Without a seed, one is taken from std::random_device.
//
// Cost per step: O(n_vocab) (a copy, a few linear passes, one exp per candidate) plus, for
// top_k, O(n log k) worst case with a k-heap (one comparison per token in practice), and for
// top_p, a 1024-bucket histogram of log-weights with a sort of the one bucket where the mass is
// reached: no sort of the vocabulary. Logprobs add one linear pass (log-sum-exp) and a partial
// sort for top_logprobs. Measured on 152k logits: about 1.5-3 ms per step on one core.
//
// Thread safety: a Sampler holds the state of ONE sequence (history, PRNG, constraint); use each
// from one thread at a time. Distinct samplers are independent.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::engine {

// Largest number of alternatives reported per position (OpenAI's top_logprobs limit).
inline constexpr int32_t kMaxTopLogprobs = 20;

struct SamplingParams {
  // 0 = greedy. Valid: [0, 100] (OpenAI allows 0..2; larger is accepted as vLLM does).
  float temperature = 1.0f;
  // Keep only the k most likely tokens; 0 or -1 = no limit (llama.cpp uses 0, vLLM -1).
  int32_t top_k = 0;
  // Nucleus: (0, 1]; 1 = off.
  float top_p = 1.0f;
  // Drop tokens with probability below min_p times the largest probability: [0, 1]; 0 = off.
  float min_p = 0.0f;
  // > 0; 1 = off. Applied to distinct tokens of the last repetition_window_tokens of
  // prompt + output.
  float repetition_penalty = 1.0f;
  // The repetition window in tokens: -1 = the whole history (vLLM, Hugging Face), 0 = none,
  // N = the last N tokens (llama.cpp's penalty_last_n, 64 there by default).
  int32_t repetition_window_tokens = -1;
  // OpenAI: [-2, 2]; 0 = off. Over output tokens only.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // token id -> additive bias in [-100, 100]; <= -100 bans the token.
  std::unordered_map<int32_t, float> logit_bias;
  // The PRNG seed; nullopt = a random one (non-reproducible).
  std::optional<uint64_t> seed;
  // Report the chosen token's logprob.
  bool logprobs = false;
  // Also report this many most likely alternatives: [0, kMaxTopLogprobs]. Implies logprobs.
  int32_t top_logprobs = 0;

  // Ok if every field is in range for a vocabulary of n_vocab tokens.
  // Errors: kInvalidArgument naming the field (`param` set to the OpenAI parameter name).
  Status Validate(int32_t n_vocab) const;
};

// A set of allowed tokens as a bitmask of n_vocab bits. New masks allow everything.
class TokenBitmask {
 public:
  explicit TokenBitmask(int32_t n_vocab);
  int32_t n_vocab() const { return n_vocab_; }
  void AllowAll();
  void DisallowAll();
  // Precondition (not checked: these are per-token hot paths): 0 <= id < n_vocab.
  void Allow(int32_t id) { words_[static_cast<size_t>(id) >> 6] |= Bit(id); }
  void Disallow(int32_t id) { words_[static_cast<size_t>(id) >> 6] &= ~Bit(id); }
  bool IsAllowed(int32_t id) const { return (words_[static_cast<size_t>(id) >> 6] & Bit(id)) != 0; }
  // Keeps only tokens allowed by both masks. Precondition: same n_vocab.
  void IntersectWith(const TokenBitmask& other);

 private:
  static uint64_t Bit(int32_t id) { return uint64_t{1} << (static_cast<uint32_t>(id) & 63); }
  int32_t n_vocab_;
  std::vector<uint64_t> words_;
};

// The hook through which a grammar (JSON schema, regex, tool-call syntax) restricts the choices.
// A Sampler that owns a constraint asks it, before each step, which tokens may come next, and
// tells it which token was chosen. Implementations hold per-sequence state (a parser position)
// and are used from the sampler's thread only.
class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Narrows `allowed` (which arrives allowing every token) to the tokens that may come next.
  // Returning an error aborts the step (Sample returns it).
  virtual Status FillAllowed(TokenBitmask& allowed) = 0;
  // The token the sampler chose (or that was forced with AcceptToken). An error means the
  // constraint cannot continue (Sample / AcceptToken return it).
  virtual Status Accept(int32_t token) = 0;
  // How many more tokens the sequence may generate (the caller's max_tokens minus what it has
  // generated), told before each step. A grammar can use it to close its output in time
  // (e.g. finish a JSON value before the budget runs out). Default: ignored.
  virtual void SetRemainingTokens(int64_t remaining) {}
};

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;  // natural log; -inf for banned/masked tokens
};

struct SampledToken {
  int32_t token = -1;
  // Only when SamplingParams::logprobs or top_logprobs > 0; see the file comment for what the
  // distribution is. 0 otherwise.
  float logprob = 0.0f;
  // The top_logprobs most likely tokens in decreasing order (ties: lower id first); may include
  // the chosen token.
  std::vector<TokenLogprob> top_logprobs;
};

class Sampler {
 public:
  // Errors: as SamplingParams::Validate; kInvalidArgument for n_vocab <= 0.
  static Result<Sampler> Create(SamplingParams params, int32_t n_vocab);

  Sampler(Sampler&&) noexcept;
  Sampler& operator=(Sampler&&) noexcept;
  ~Sampler();

  const SamplingParams& params() const { return params_; }
  int32_t n_vocab() const { return n_vocab_; }

  // Installs (or with nullptr removes) the grammar hook. The sampler owns it.
  void SetConstraint(std::unique_ptr<TokenConstraint> constraint);
  // The installed constraint, or null.
  TokenConstraint* constraint() const { return constraint_.get(); }

  // Appends prompt tokens to the history: they count for the repetition penalty but not for the
  // presence/frequency penalties. Call before the first Sample (may be called in pieces).
  // Tokens outside [0, n_vocab) are ignored.
  void AddPromptTokens(std::span<const int32_t> tokens);

  // Chooses the next token from `logits` (n_vocab floats of the last position), records it as
  // output (history, counts; advances the constraint) and returns it.
  // `allowed`, if given, restricts this step further (intersected with the constraint's mask).
  // NaN logits are treated as -inf; a +inf logit is an error.
  // Errors: kInvalidArgument if logits.size() != n_vocab, an allowed mask has another size, or
  // the largest logit is +inf;
  // kFailedPrecondition if no token can be chosen (all banned / masked / -inf); errors of the
  // constraint. On error nothing is recorded; the PRNG has advanced only if the error came from
  // the constraint's Accept.
  Result<SampledToken> Sample(std::span<const float> logits, const TokenBitmask* allowed = nullptr);

  // Records a token chosen elsewhere (e.g. forced by the caller) as output, exactly as if Sample
  // had returned it. Errors: kInvalidArgument out of range; the constraint's error.
  Status AcceptToken(int32_t token);

  // Output tokens recorded so far.
  const std::vector<int32_t>& output_tokens() const { return output_; }

 private:
  Sampler(SamplingParams params, int32_t n_vocab);
  void Record(int32_t token, bool is_output);
  uint64_t NextRandom();
  double NextUniform();

  SamplingParams params_;
  int32_t n_vocab_;
  std::unique_ptr<TokenConstraint> constraint_;
  // History for the repetition window: all tokens (prompt then output) and the counts of the
  // tokens inside the window, which starts at window_begin_.
  std::vector<int32_t> history_;
  size_t window_begin_ = 0;
  std::unordered_map<int32_t, int32_t> window_counts_;
  std::vector<int32_t> output_;
  std::unordered_map<int32_t, int32_t> output_counts_;
  uint64_t rng_[4] = {0, 0, 0, 0};
  // Scratch buffers reused between steps (n_vocab entries).
  std::vector<float> work_;
  std::vector<int32_t> candidates_;
  std::vector<int32_t> heap_;
  std::vector<double> weights_;
  std::vector<size_t> bucket_members_;
  std::unique_ptr<TokenBitmask> mask_;
};

// The PRNG, exposed for tests and for anyone who needs the same stream: splitmix64 step and
// xoshiro256**. SplitMix64 advances *state and returns the next output.
uint64_t SplitMix64(uint64_t* state);

}  // namespace yunzhi::engine
