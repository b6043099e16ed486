#include "yunzhi/engine/sampler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

#include <fmt/format.h>

namespace yunzhi::engine {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

Error ParamError(std::string message, std::string param) {
  return InvalidArgumentError(std::move(message), std::move(param));
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

Status SamplingParams::Validate(int32_t n_vocab) const {
  // Written as negations so that NaN fails every check.
  if (!(temperature >= 0.0f && temperature <= 100.0f)) {
    return ParamError(fmt::format("temperature must be in [0, 100], got {}", temperature),
                      "temperature");
  }
  if (top_k < -1) return ParamError(fmt::format("top_k must be >= -1, got {}", top_k), "top_k");
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return ParamError(fmt::format("top_p must be in (0, 1], got {}", top_p), "top_p");
  }
  if (!(min_p >= 0.0f && min_p <= 1.0f)) {
    return ParamError(fmt::format("min_p must be in [0, 1], got {}", min_p), "min_p");
  }
  if (!(repetition_penalty > 0.0f && std::isfinite(repetition_penalty))) {
    return ParamError(fmt::format("repetition_penalty must be > 0, got {}", repetition_penalty),
                      "repetition_penalty");
  }
  if (repetition_window_tokens < -1) {
    return ParamError("repetition window must be >= -1", "repetition_window_tokens");
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return ParamError(fmt::format("presence_penalty must be in [-2, 2], got {}", presence_penalty),
                      "presence_penalty");
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return ParamError(
        fmt::format("frequency_penalty must be in [-2, 2], got {}", frequency_penalty),
        "frequency_penalty");
  }
  for (const auto& [token, bias] : logit_bias) {
    if (token < 0 || token >= n_vocab) {
      return ParamError(
          fmt::format("logit_bias names token {}, outside the vocabulary of {}", token, n_vocab),
          "logit_bias");
    }
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return ParamError(
          fmt::format("logit_bias for token {} must be in [-100, 100], got {}", token, bias),
          "logit_bias");
    }
  }
  if (top_logprobs < 0 || top_logprobs > kMaxTopLogprobs) {
    return ParamError(
        fmt::format("top_logprobs must be in [0, {}], got {}", kMaxTopLogprobs, top_logprobs),
        "top_logprobs");
  }
  return OkStatus();
}

// ---- TokenBitmask

TokenBitmask::TokenBitmask(int32_t n_vocab)
    : n_vocab_(n_vocab), words_((static_cast<size_t>(std::max(n_vocab, 0)) + 63) / 64) {
  AllowAll();
}

void TokenBitmask::AllowAll() {
  std::fill(words_.begin(), words_.end(), ~uint64_t{0});
  // Bits past n_vocab stay clear so that whole-word scans never see phantom tokens.
  if (n_vocab_ % 64 != 0 && !words_.empty()) {
    words_.back() = (uint64_t{1} << (n_vocab_ % 64)) - 1;
  }
}

void TokenBitmask::DisallowAll() { std::fill(words_.begin(), words_.end(), 0); }

void TokenBitmask::IntersectWith(const TokenBitmask& other) {
  YZ_CHECK(other.n_vocab_ == n_vocab_);
  for (size_t i = 0; i < words_.size(); ++i) words_[i] &= other.words_[i];
}

// ---- Sampler

Sampler::Sampler(SamplingParams params, int32_t n_vocab)
    : params_(std::move(params)), n_vocab_(n_vocab) {
  uint64_t seed = params_.seed.has_value()
                      ? *params_.seed
                      : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  for (uint64_t& word : rng_) word = SplitMix64(&seed);
  if (params_.top_logprobs > 0) params_.logprobs = true;
}

Sampler::Sampler(Sampler&&) noexcept = default;
Sampler& Sampler::operator=(Sampler&&) noexcept = default;
Sampler::~Sampler() = default;

Result<Sampler> Sampler::Create(SamplingParams params, int32_t n_vocab) {
  if (n_vocab <= 0)
    return InvalidArgumentError(fmt::format("n_vocab must be > 0, got {}", n_vocab));
  YZ_RETURN_IF_ERROR(params.Validate(n_vocab));
  return Sampler(std::move(params), n_vocab);
}

void Sampler::SetConstraint(std::unique_ptr<TokenConstraint> constraint) {
  constraint_ = std::move(constraint);
}

uint64_t Sampler::NextRandom() {
  // xoshiro256**
  const uint64_t result = Rotl(rng_[1] * 5, 7) * 9;
  const uint64_t t = rng_[1] << 17;
  rng_[2] ^= rng_[0];
  rng_[3] ^= rng_[1];
  rng_[1] ^= rng_[2];
  rng_[0] ^= rng_[3];
  rng_[2] ^= t;
  rng_[3] = Rotl(rng_[3], 45);
  return result;
}

double Sampler::NextUniform() { return static_cast<double>(NextRandom() >> 11) * 0x1.0p-53; }

void Sampler::Record(int32_t token, bool is_output) {
  const int32_t window = params_.repetition_window_tokens;
  if (window != 0) {
    history_.push_back(token);
    ++window_counts_[token];
    if (window > 0) {
      while (history_.size() - window_begin_ > static_cast<size_t>(window)) {
        auto it = window_counts_.find(history_[window_begin_]);
        if (--it->second == 0) window_counts_.erase(it);
        ++window_begin_;
      }
      // Drop the history that left the window once it dominates the vector.
      if (window_begin_ > 4096 && window_begin_ > history_.size() / 2) {
        history_.erase(history_.begin(), history_.begin() + static_cast<ptrdiff_t>(window_begin_));
        window_begin_ = 0;
      }
    }
  }
  if (is_output) {
    output_.push_back(token);
    ++output_counts_[token];
  }
}

void Sampler::AddPromptTokens(std::span<const int32_t> tokens) {
  for (int32_t t : tokens) {
    if (t >= 0 && t < n_vocab_) Record(t, /*is_output=*/false);
  }
}

Status Sampler::AcceptToken(int32_t token) {
  if (token < 0 || token >= n_vocab_) {
    return InvalidArgumentError(
        fmt::format("token {} is outside the vocabulary of {}", token, n_vocab_));
  }
  if (constraint_ != nullptr) YZ_RETURN_IF_ERROR(constraint_->Accept(token));
  Record(token, /*is_output=*/true);
  return OkStatus();
}

namespace {

// The order of candidates: larger logit first, then lower id. A strict total order, so sorting
// gives the same sequence with any standard library.
struct ByLogitDesc {
  const float* logits;
  bool operator()(int32_t a, int32_t b) const {
    if (logits[a] != logits[b]) return logits[a] > logits[b];
    return a < b;
  }
};

}  // namespace

Result<SampledToken> Sampler::Sample(std::span<const float> logits, const TokenBitmask* allowed) {
  if (logits.size() != static_cast<size_t>(n_vocab_)) {
    return InvalidArgumentError(
        fmt::format("sampler got {} logits for a vocabulary of {}", logits.size(), n_vocab_));
  }
  if (allowed != nullptr && allowed->n_vocab() != n_vocab_) {
    return InvalidArgumentError(fmt::format("allowed-token mask has {} tokens, vocabulary {}",
                                            allowed->n_vocab(), n_vocab_));
  }
  const size_t n = logits.size();
  work_.assign(logits.begin(), logits.end());
  float* w = work_.data();
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(w[i])) w[i] = kNegInf;
  }

  // 1. logit bias.
  for (const auto& [token, bias] : params_.logit_bias) {
    w[token] = bias <= -100.0f ? kNegInf : w[token] + bias;
  }
  // 2. allowed-token masks.
  const TokenBitmask* mask = allowed;
  if (constraint_ != nullptr) {
    if (mask_ == nullptr) mask_ = std::make_unique<TokenBitmask>(n_vocab_);
    mask_->AllowAll();
    YZ_RETURN_IF_ERROR(constraint_->FillAllowed(*mask_));
    if (allowed != nullptr) mask_->IntersectWith(*allowed);
    mask = mask_.get();
  }
  if (mask != nullptr) {
    for (int32_t i = 0; i < n_vocab_; ++i) {
      if (!mask->IsAllowed(i)) w[i] = kNegInf;
    }
  }
  // 3. repetition penalty.
  if (params_.repetition_penalty != 1.0f) {
    const float penalty = params_.repetition_penalty;
    for (const auto& [token, count] : window_counts_) {
      float& l = w[token];
      l = l > 0.0f ? l / penalty : l * penalty;
    }
  }
  // 4. presence / frequency penalties.
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    for (const auto& [token, count] : output_counts_) {
      w[token] -= params_.frequency_penalty * static_cast<float>(count) + params_.presence_penalty;
    }
  }

  // The argmax of the processed logits (ties -> lowest id): the greedy choice, and the anchor of
  // every softmax below.
  int32_t best = 0;
  for (int32_t i = 1; i < n_vocab_; ++i) {
    if (w[i] > w[best]) best = i;
  }
  const float max_logit = w[best];
  if (max_logit == kNegInf) {
    return FailedPreconditionError("no token can be sampled: every token is banned or masked");
  }
  if (std::isinf(max_logit)) {
    return InvalidArgumentError("sampler got a logit of +inf");
  }

  SampledToken out;
  double log_z = 0.0;  // log-sum-exp of the processed logits, when logprobs are wanted
  if (params_.logprobs) {
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(w[i]) - max_logit);
    log_z = static_cast<double>(max_logit) + std::log(sum);
    if (params_.top_logprobs > 0) {
      const size_t k = std::min(static_cast<size_t>(params_.top_logprobs), n);
      candidates_.resize(n);
      for (size_t i = 0; i < n; ++i) candidates_[i] = static_cast<int32_t>(i);
      std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<ptrdiff_t>(k),
                        candidates_.end(), ByLogitDesc{w});
      out.top_logprobs.reserve(k);
      for (size_t i = 0; i < k; ++i) {
        const int32_t t = candidates_[i];
        out.top_logprobs.push_back({t, static_cast<float>(w[t] - log_z)});
      }
    }
  }

  int32_t chosen = best;
  if (params_.temperature > 0.0f) {
    const double inv_t = 1.0 / static_cast<double>(params_.temperature);
    std::vector<int32_t>& cand = candidates_;
    cand.clear();
    // 6 + 7. temperature and min_p, relative to the most likely token:
    //   p_i >= min_p * p_max  <=>  (l_i - l_max) / T >= log(min_p). Also drops -inf tokens.
    const double min_rel =
        params_.min_p > 0.0f ? std::log(static_cast<double>(params_.min_p)) : -HUGE_VAL;
    for (int32_t i = 0; i < n_vocab_; ++i) {
      if (w[i] == kNegInf) continue;
      if ((static_cast<double>(w[i]) - max_logit) * inv_t >= min_rel) cand.push_back(i);
    }
    // 8. top_k: one pass with a heap of the k best so far (its top is the worst of them); most
    //    tokens are rejected by one comparison. The survivors end sorted, best first.
    if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < cand.size()) {
      const size_t k = static_cast<size_t>(params_.top_k);
      const ByLogitDesc better{w};
      std::vector<int32_t>& heap = heap_;
      heap.assign(cand.begin(), cand.begin() + static_cast<ptrdiff_t>(k));
      std::make_heap(heap.begin(), heap.end(), better);
      for (size_t i = k; i < cand.size(); ++i) {
        if (better(cand[i], heap.front())) {
          std::pop_heap(heap.begin(), heap.end(), better);
          heap.back() = cand[i];
          std::push_heap(heap.begin(), heap.end(), better);
        }
      }
      std::sort_heap(heap.begin(), heap.end(), better);
      cand.swap(heap);
    }
    // Weights exp((l - l_max) / T), computed once, in double.
    std::vector<double>& weight = weights_;
    weight.resize(cand.size());
    double total = 0.0;
    for (size_t i = 0; i < cand.size(); ++i) {
      weight[i] = std::exp((static_cast<double>(w[cand[i]]) - max_logit) * inv_t);
      total += weight[i];
    }
    // 9. top_p: the shortest prefix, by decreasing probability (ties: lower id), whose mass
    //    reaches top_p. Found without sorting the vocabulary: tokens are bucketed by log-weight,
    //    buckets are summed from the top until the one where the mass is reached, and only that
    //    bucket is sorted. The kept tokens are then filtered in their existing (canonical) order.
    if (params_.top_p < 1.0f && cand.size() > 1) {
      const double target = static_cast<double>(params_.top_p) * total;
      constexpr int kBuckets = 1024;
      constexpr double kMinRel = -64.0;  // weights below e^-64 share the last bucket
      double lowest = 0.0;
      for (size_t i = 0; i < cand.size(); ++i) {
        lowest = std::min(lowest, (static_cast<double>(w[cand[i]]) - max_logit) * inv_t);
      }
      lowest = std::max(lowest, kMinRel);
      const double scale = lowest < 0.0 ? kBuckets / -lowest : 0.0;
      auto bucket_of = [&](size_t i) {
        const double rel = (static_cast<double>(w[cand[i]]) - max_logit) * inv_t;
        return static_cast<int>(std::min<double>(kBuckets - 1, -rel * scale));
      };
      std::array<double, kBuckets> mass{};
      for (size_t i = 0; i < cand.size(); ++i) mass[static_cast<size_t>(bucket_of(i))] += weight[i];
      int crossing = kBuckets - 1;
      double above = 0.0;  // mass of the buckets before `crossing`
      for (int b = 0; b < kBuckets; ++b) {
        if (above + mass[static_cast<size_t>(b)] >= target) {
          crossing = b;
          break;
        }
        if (b < kBuckets - 1) above += mass[static_cast<size_t>(b)];
      }
      // Sort the crossing bucket and find the last token the nucleus needs.
      std::vector<size_t>& in_bucket = bucket_members_;
      in_bucket.clear();
      for (size_t i = 0; i < cand.size(); ++i) {
        if (bucket_of(i) == crossing) in_bucket.push_back(i);
      }
      std::sort(in_bucket.begin(), in_bucket.end(),
                [&](size_t a, size_t b) { return ByLogitDesc{w}(cand[a], cand[b]); });
      int32_t last = in_bucket.empty() ? cand.front() : cand[in_bucket.back()];
      double acc = above;
      for (size_t i : in_bucket) {
        acc += weight[i];
        if (acc >= target) {
          last = cand[i];
          break;
        }
      }
      // Keep every token that comes no later than `last` in the order.
      size_t kept = 0;
      total = 0.0;
      for (size_t i = 0; i < cand.size(); ++i) {
        if (cand[i] == last || ByLogitDesc{w}(cand[i], last)) {
          cand[kept] = cand[i];
          weight[kept] = weight[i];
          total += weight[i];
          ++kept;
        }
      }
      cand.resize(kept);
      weight.resize(kept);
    }
    // 10. draw.
    const double u = NextUniform() * total;
    double acc = 0.0;
    chosen = cand.back();  // if rounding leaves u beyond the last boundary
    for (size_t i = 0; i < cand.size(); ++i) {
      acc += weight[i];
      if (u < acc) {
        chosen = cand[i];
        break;
      }
    }
  }

  if (constraint_ != nullptr) YZ_RETURN_IF_ERROR(constraint_->Accept(chosen));
  Record(chosen, /*is_output=*/true);
  out.token = chosen;
  if (params_.logprobs) out.logprob = static_cast<float>(w[chosen] - log_z);
  return out;
}

}  // namespace yunzhi::engine
