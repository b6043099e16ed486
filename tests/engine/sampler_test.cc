#include "yunzhi/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace yunzhi::engine {
namespace {

using ::testing::ElementsAre;

Sampler MustCreate(SamplingParams params, int32_t n_vocab) {
  Result<Sampler> s = Sampler::Create(std::move(params), n_vocab);
  EXPECT_TRUE(s.has_value()) << s.error().ToString();
  return std::move(*s);
}

// Logits whose softmax (temperature 1) is exactly `probs`.
std::vector<float> LogitsOf(std::vector<double> probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(p > 0 ? static_cast<float>(std::log(p)) : -INFINITY);
  return l;
}

// Counts the tokens drawn in n steps with a fresh sampler (history does not matter: no penalties).
std::map<int32_t, int> Histogram(const SamplingParams& params, const std::vector<float>& logits,
                                 int n) {
  Sampler s = MustCreate(params, static_cast<int32_t>(logits.size()));
  std::map<int32_t, int> h;
  for (int i = 0; i < n; ++i) {
    Result<SampledToken> t = s.Sample(logits);
    EXPECT_TRUE(t.has_value());
    ++h[t->token];
  }
  return h;
}

std::set<int32_t> Support(const std::map<int32_t, int>& h) {
  std::set<int32_t> s;
  for (const auto& [t, n] : h) s.insert(t);
  return s;
}

TEST(SplitMix64, MatchesTheReferenceSequence) {
  // The published test vector of splitmix64 for seed 1234567.
  uint64_t state = 1234567;
  EXPECT_EQ(SplitMix64(&state), 6457827717110365317ull);
  EXPECT_EQ(SplitMix64(&state), 3203168211198807973ull);
  EXPECT_EQ(SplitMix64(&state), 9817491932198370423ull);
  EXPECT_EQ(SplitMix64(&state), 4593380528125082431ull);
  EXPECT_EQ(SplitMix64(&state), 16408922859458223821ull);
}

TEST(Sampler, GreedyPicksTheArgmaxAndBreaksTiesByLowestId) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler s = MustCreate(p, 5);
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(s.Sample(logits)->token, 1);
  EXPECT_THAT(s.output_tokens(), ElementsAre(1, 1, 1));
}

TEST(Sampler, GreedyTreatsNanAsMinusInfinity) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler s = MustCreate(p, 3);
  EXPECT_EQ(s.Sample(std::vector<float>{NAN, -5.0f, -6.0f})->token, 1);
}

TEST(Sampler, TopKKeepsExactlyTheKMostLikely) {
  SamplingParams p;
  p.top_k = 3;
  p.seed = 1;
  // Probabilities 0.3 0.05 0.25 0.2 0.2: the top 3 by logit are 0, 2, then the tie 3/4 -> 3.
  const auto h = Histogram(p, LogitsOf({0.3, 0.05, 0.25, 0.2, 0.2}), 3000);
  EXPECT_EQ(Support(h), (std::set<int32_t>{0, 2, 3}));
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  const auto logits = LogitsOf({0.05, 0.5, 0.15, 0.3});
  SamplingParams p;
  p.seed = 2;
  p.top_p = 0.75f;  // 0.5 + 0.3 = 0.8 >= 0.75
  EXPECT_EQ(Support(Histogram(p, logits, 3000)), (std::set<int32_t>{1, 3}));
  p.top_p = 0.85f;  // needs 0.15 too
  EXPECT_EQ(Support(Histogram(p, logits, 3000)), (std::set<int32_t>{1, 2, 3}));
  p.top_p = 0.4f;  // the top token alone
  EXPECT_EQ(Support(Histogram(p, logits, 500)), (std::set<int32_t>{1}));
}

TEST(Sampler, MinPDropsTokensBelowTheFractionOfTheTop) {
  const auto logits = LogitsOf({0.05, 0.5, 0.15, 0.3});
  SamplingParams p;
  p.seed = 3;
  p.min_p = 0.2f;  // threshold 0.1: drops 0.05
  EXPECT_EQ(Support(Histogram(p, logits, 3000)), (std::set<int32_t>{1, 2, 3}));
  p.min_p = 0.5f;  // threshold 0.25
  EXPECT_EQ(Support(Histogram(p, logits, 3000)), (std::set<int32_t>{1, 3}));
}

TEST(Sampler, TruncationsCombineInVllmOrder) {
  // temperature 0.5 squares the probabilities: 0.25, 0.09, 0.0225, 0.0025 (unnormalised);
  // after normalisation 0.685, 0.247, 0.062, 0.007. top_p 0.9 keeps {0, 1}: 0.932 >= 0.9.
  // At temperature 1 (0.5, 0.3, 0.15, 0.05), the same top_p would also need token 2.
  const auto logits = LogitsOf({0.5, 0.3, 0.15, 0.05});
  SamplingParams p;
  p.seed = 4;
  p.temperature = 0.5f;
  p.top_p = 0.9f;
  EXPECT_EQ(Support(Histogram(p, logits, 3000)), (std::set<int32_t>{0, 1}));
  p.temperature = 1.0f;
  EXPECT_EQ(Support(Histogram(p, logits, 3000)), (std::set<int32_t>{0, 1, 2}));
}

// Each frequency within 5 standard deviations of its expectation (false failure < 1e-6).
void ExpectFrequencies(const std::map<int32_t, int>& h, const std::vector<double>& probs, int n) {
  for (size_t t = 0; t < probs.size(); ++t) {
    const double expected = probs[t] * n;
    const double sigma = std::sqrt(n * probs[t] * (1 - probs[t]));
    const auto it = h.find(static_cast<int32_t>(t));
    const int got = it == h.end() ? 0 : it->second;
    EXPECT_NEAR(got, expected, 5 * sigma + 1e-9) << "token " << t;
  }
}

TEST(Sampler, FrequenciesMatchTheDistribution) {
  const int n = 40000;
  SamplingParams p;
  p.seed = 5;
  ExpectFrequencies(Histogram(p, LogitsOf({0.5, 0.3, 0.15, 0.05}), n), {0.5, 0.3, 0.15, 0.05}, n);
  // Temperature 2 takes square roots: sqrt(p) normalised.
  p.temperature = 2.0f;
  std::vector<double> q = {std::sqrt(0.5), std::sqrt(0.3), std::sqrt(0.15), std::sqrt(0.05)};
  const double z = std::accumulate(q.begin(), q.end(), 0.0);
  for (double& x : q) x /= z;
  ExpectFrequencies(Histogram(p, LogitsOf({0.5, 0.3, 0.15, 0.05}), n), q, n);
  // top_k 2 renormalises 0.5 / 0.3.
  p.temperature = 1.0f;
  p.top_k = 2;
  ExpectFrequencies(Histogram(p, LogitsOf({0.5, 0.3, 0.15, 0.05}), n), {0.625, 0.375, 0, 0}, n);
}

// The processed logits, observed through the logprobs of every token (n_vocab <= 20).
std::vector<double> ProcessedLogprobs(Sampler& s, const std::vector<float>& logits) {
  Result<SampledToken> t = s.Sample(logits);
  EXPECT_TRUE(t.has_value()) << t.error().ToString();
  std::vector<double> lp(logits.size(), 0.0);
  for (const TokenLogprob& e : t->top_logprobs) lp[static_cast<size_t>(e.token)] = e.logprob;
  return lp;
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  p.top_logprobs = 4;
  Sampler s = MustCreate(p, 4);
  s.AddPromptTokens(std::vector<int32_t>{0, 1, 0});
  const auto lp = ProcessedLogprobs(s, {2.0f, -1.0f, 0.5f, 1.0f});
  // Processed: 1, -2, 0.5, 1.
  EXPECT_NEAR(lp[0] - lp[3], 0.0, 1e-6);
  EXPECT_NEAR(lp[1] - lp[2], -2.5, 1e-6);
  EXPECT_NEAR(lp[3] - lp[2], 0.5, 1e-6);
}

TEST(Sampler, RepetitionWindowCoversOnlyTheLastTokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  p.repetition_window_tokens = 2;
  p.top_logprobs = 4;
  Sampler s = MustCreate(p, 4);
  s.AddPromptTokens(std::vector<int32_t>{0, 1, 2});  // window: 1, 2
  const auto lp = ProcessedLogprobs(s, {1.0f, 1.0f, 1.0f, 1.0f});
  // Processed: 1, 0.5, 0.5, 1. The choice (token 0) enters the window, token 1 leaves it.
  EXPECT_NEAR(lp[0] - lp[1], 0.5, 1e-6);
  EXPECT_NEAR(lp[0] - lp[3], 0.0, 1e-6);
  EXPECT_NEAR(lp[1] - lp[2], 0.0, 1e-6);
  const auto lp2 = ProcessedLogprobs(s, {1.0f, 1.0f, 1.0f, 1.0f});
  // Window now 2, 0: processed 0.5, 1, 0.5, 1.
  EXPECT_NEAR(lp2[1] - lp2[0], 0.5, 1e-6);
  EXPECT_NEAR(lp2[2] - lp2[0], 0.0, 1e-6);
}

TEST(Sampler, PresenceAndFrequencyPenaltiesCountOutputTokensOnly) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.presence_penalty = 1.0f;
  p.frequency_penalty = 0.5f;
  p.top_logprobs = 4;
  Sampler s = MustCreate(p, 4);
  s.AddPromptTokens(std::vector<int32_t>{3, 3, 3});  // prompt: no effect
  ASSERT_TRUE(s.AcceptToken(2).has_value());
  ASSERT_TRUE(s.AcceptToken(2).has_value());
  ASSERT_TRUE(s.AcceptToken(1).has_value());
  const auto lp = ProcessedLogprobs(s, {0.0f, 0.0f, 0.0f, 0.0f});
  // Processed: 0, -(0.5 + 1) = -1.5, -(1.0 + 1) = -2, 0.
  EXPECT_NEAR(lp[0] - lp[3], 0.0, 1e-6);
  EXPECT_NEAR(lp[1] - lp[0], -1.5, 1e-6);
  EXPECT_NEAR(lp[2] - lp[0], -2.0, 1e-6);
}

TEST(Sampler, LogitBiasAddsAndMinus100Bans) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.logit_bias = {{0, -100.0f}, {2, 5.0f}};
  p.top_logprobs = 3;
  Sampler s = MustCreate(p, 3);
  Result<SampledToken> t = s.Sample(std::vector<float>{10.0f, 1.0f, 0.0f});
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->token, 2);
  ASSERT_EQ(t->top_logprobs.size(), 3u);
  EXPECT_EQ(t->top_logprobs[0].token, 2);
  EXPECT_EQ(t->top_logprobs[1].token, 1);
  EXPECT_EQ(t->top_logprobs[2].token, 0);
  EXPECT_TRUE(std::isinf(t->top_logprobs[2].logprob));
  EXPECT_NEAR(t->top_logprobs[0].logprob - t->top_logprobs[1].logprob, 4.0, 1e-6);
}

TEST(Sampler, BannedTokensAreNeverSampled) {
  SamplingParams p;
  p.seed = 6;
  p.logit_bias = {{1, -100.0f}};
  const auto h = Histogram(p, {0.0f, 5.0f, 0.0f}, 2000);
  EXPECT_EQ(Support(h), (std::set<int32_t>{0, 2}));
}

TEST(Sampler, LogprobsAreNormalisedAndComputedBeforeTemperature) {
  SamplingParams p;
  p.seed = 7;
  p.temperature = 0.3f;
  p.top_k = 2;  // truncation must not change the reported distribution either
  p.top_logprobs = 5;
  Sampler s = MustCreate(p, 5);
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -3.0f, 0.0f};
  Result<SampledToken> t = s.Sample(logits);
  ASSERT_TRUE(t.has_value());
  ASSERT_EQ(t->top_logprobs.size(), 5u);
  double sum = 0;
  for (const TokenLogprob& e : t->top_logprobs) sum += std::exp(e.logprob);
  EXPECT_NEAR(sum, 1.0, 1e-6);
  // Descending order: 1, 0, 2, 4, 3.
  EXPECT_THAT(std::vector<int32_t>({t->top_logprobs[0].token, t->top_logprobs[1].token,
                                    t->top_logprobs[2].token, t->top_logprobs[3].token,
                                    t->top_logprobs[4].token}),
              ElementsAre(1, 0, 2, 4, 3));
  // Exactly log_softmax(logits) at temperature 1.
  double z = 0;
  for (float l : logits) z += std::exp(l);
  for (const TokenLogprob& e : t->top_logprobs) {
    EXPECT_NEAR(e.logprob, logits[static_cast<size_t>(e.token)] - std::log(z), 1e-5);
  }
  // The chosen token's logprob is its entry.
  for (const TokenLogprob& e : t->top_logprobs) {
    if (e.token == t->token) {
      EXPECT_FLOAT_EQ(e.logprob, t->logprob);
    }
  }
}

TEST(Sampler, SameSeedSameTokensAndGoldenSequence) {
  std::vector<float> logits(1000);
  uint64_t st = 99;
  for (float& l : logits) l = static_cast<float>(SplitMix64(&st) >> 40) / (1 << 22);  // [0, 4)
  SamplingParams p;
  p.seed = 42;
  p.top_p = 0.95f;
  p.frequency_penalty = 0.1f;
  auto run = [&](SamplingParams params) {
    Sampler s = MustCreate(params, 1000);
    std::vector<int32_t> out;
    for (int i = 0; i < 12; ++i) out.push_back(s.Sample(logits)->token);
    return out;
  };
  const std::vector<int32_t> a = run(p);
  EXPECT_EQ(a, run(p));
  // Frozen once from this implementation: the PRNG (splitmix64 + xoshiro256**) and the draw are
  // specified in sampler.h, so any correct build must reproduce this sequence.
  EXPECT_EQ(a, (std::vector<int32_t>{77, 365, 666, 923, 993, 759, 713, 846, 754, 557, 672, 280}));
  p.seed = 43;
  EXPECT_NE(a, run(p));
}

// A constraint that allows only even tokens and records what it is told.
class EvenOnly : public TokenConstraint {
 public:
  explicit EvenOnly(std::vector<int32_t>* accepted) : accepted_(accepted) {}
  Status FillAllowed(TokenBitmask& allowed) override {
    for (int32_t i = 1; i < allowed.n_vocab(); i += 2) allowed.Disallow(i);
    return OkStatus();
  }
  Status Accept(int32_t token) override {
    accepted_->push_back(token);
    return OkStatus();
  }

 private:
  std::vector<int32_t>* accepted_;
};

TEST(Sampler, ConstraintAndMaskRestrictChoices) {
  SamplingParams p;
  p.seed = 8;
  Sampler s = MustCreate(p, 10);
  std::vector<int32_t> accepted;
  s.SetConstraint(std::make_unique<EvenOnly>(&accepted));
  TokenBitmask mask(10);
  mask.DisallowAll();
  mask.Allow(3);
  mask.Allow(4);
  mask.Allow(6);
  const std::vector<float> logits(10, 0.0f);
  std::set<int32_t> seen;
  for (int i = 0; i < 200; ++i) seen.insert(s.Sample(logits, &mask)->token);
  EXPECT_EQ(seen, (std::set<int32_t>{4, 6}));
  EXPECT_EQ(accepted.size(), 200u);
  // Without the per-call mask: even tokens only.
  for (int i = 0; i < 500; ++i) seen.insert(s.Sample(logits)->token);
  EXPECT_EQ(seen, (std::set<int32_t>{0, 2, 4, 6, 8}));
}

TEST(Sampler, NothingToSampleIsAnError) {
  SamplingParams p;
  Sampler s = MustCreate(p, 3);
  TokenBitmask mask(3);
  mask.DisallowAll();
  Result<SampledToken> t = s.Sample(std::vector<float>{1, 2, 3}, &mask);
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code, Code::kFailedPrecondition);
  EXPECT_TRUE(s.output_tokens().empty());
  EXPECT_EQ(s.Sample(std::vector<float>{1, 2}).error().code, Code::kInvalidArgument);
}

TEST(Sampler, InvalidParametersAreRejectedNamingTheParameter) {
  auto param_of = [](SamplingParams p) {
    Result<Sampler> s = Sampler::Create(std::move(p), 100);
    return s.has_value() ? std::string("ok") : s.error().param;
  };
  SamplingParams p;
  EXPECT_EQ(param_of(p), "ok");
  p.temperature = -1;
  EXPECT_EQ(param_of(p), "temperature");
  p = {};
  p.top_p = 0;
  EXPECT_EQ(param_of(p), "top_p");
  p = {};
  p.min_p = 1.5f;
  EXPECT_EQ(param_of(p), "min_p");
  p = {};
  p.logit_bias = {{100, 1.0f}};
  EXPECT_EQ(param_of(p), "logit_bias");
  p = {};
  p.top_logprobs = 21;
  EXPECT_EQ(param_of(p), "top_logprobs");
  p = {};
  p.presence_penalty = 3;
  EXPECT_EQ(param_of(p), "presence_penalty");
  p = {};
  p.repetition_penalty = 0;
  EXPECT_EQ(param_of(p), "repetition_penalty");
}

// A Qwen-sized vocabulary: the nucleus found with partial sorts equals the brute-force one.
TEST(Sampler, LargeVocabTopPMatchesBruteForce) {
  const int32_t n = 152064;
  std::vector<float> logits(static_cast<size_t>(n));
  uint64_t st = 7;
  for (float& l : logits) {
    l = static_cast<float>(static_cast<double>(SplitMix64(&st) >> 11) * 0x1.0p-53 * 12.0);
  }
  SamplingParams p;
  p.seed = 9;
  p.top_p = 0.5f;
  p.temperature = 0.7f;
  // Brute force: sort everything.
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  const float max_l = logits[order[0]];
  double total = 0;
  for (float l : logits) total += std::exp((static_cast<double>(l) - max_l) / 0.7);
  std::set<int32_t> nucleus;
  double mass = 0;
  for (int32_t t : order) {
    nucleus.insert(t);
    mass += std::exp((static_cast<double>(logits[t]) - max_l) / 0.7);
    if (mass >= 0.5 * total) break;
  }
  ASSERT_GT(nucleus.size(), 64u);  // exercises the growing partial sort
  Sampler s = MustCreate(p, n);
  for (int i = 0; i < 200; ++i) {
    const int32_t t = s.Sample(logits)->token;
    EXPECT_TRUE(nucleus.contains(t)) << t;
  }
}

}  // namespace
}  // namespace yunzhi::engine
