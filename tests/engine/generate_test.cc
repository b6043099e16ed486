#include "yunzhi/engine/generate.h"

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace yunzhi::engine {
namespace {

const std::string kModelPath = std::string(YUNZHI_TESTDATA_DIR) + "/models/stories260K.gguf";

// The greedy reference output printed in stories260K.README.md (llama2.c's run, temperature 0).
std::string ReferenceText() {
  std::ifstream in(std::string(YUNZHI_TESTDATA_DIR) + "/models/stories260K.README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string readme = ss.str();
  const std::string start = "Once upon a time, there was a little girl named Lily.";
  const size_t begin = readme.find(start);
  const size_t end = readme.find("\n```", begin);
  if (begin == std::string::npos || end == std::string::npos) return {};
  return readme.substr(begin, end - begin);
}

class GenerateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = Model::Load(kModelPath);
    ASSERT_TRUE(model) << model.error().ToString();
    model_ = *model;
    RunnerOptions options;
    options.n_threads = 2;
    auto runner = ModelRunner::Create(model_, options);
    ASSERT_TRUE(runner) << runner.error().ToString();
    runner_ = std::move(*runner);
    bos_ = {model_->tokenizer().Encode("", {.add_special = true, .parse_special = false})};
    ASSERT_FALSE(bos_.empty());
  }

  GenerateOptions Greedy(int64_t max_tokens) {
    GenerateOptions o;
    o.max_tokens = max_tokens;
    o.sampling.temperature = 0;
    return o;
  }

  std::shared_ptr<const Model> model_;
  std::unique_ptr<ModelRunner> runner_;
  std::vector<int32_t> bos_;
};

TEST_F(GenerateTest, GreedyFromBosReproducesTheReferenceStory) {
  const std::string reference = ReferenceText();
  ASSERT_GT(reference.size(), 500u);
  std::string streamed;
  auto r = Generate(*runner_, bos_, Greedy(300), [&](std::string_view piece) {
    streamed.append(piece);
    return true;
  });
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_GE(r->text.size(), reference.size()) << r->text;
  EXPECT_EQ(r->text.substr(0, reference.size()), reference);
  EXPECT_EQ(streamed, r->text);
  EXPECT_EQ(r->n_prompt_tokens, static_cast<int64_t>(bos_.size()));
}

TEST_F(GenerateTest, StopsAtStopStringAndAtTokenLimit) {
  GenerateOptions options = Greedy(100);
  options.stop = {"named"};
  auto stopped = Generate(*runner_, bos_, options);
  ASSERT_TRUE(stopped) << stopped.error().ToString();
  EXPECT_EQ(stopped->text, "Once upon a time, there was a little girl ");
  EXPECT_EQ(stopped->finish_reason, FinishReason::kStop);

  auto limited = Generate(*runner_, bos_, Greedy(5));
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->tokens.size(), 5u);
  EXPECT_EQ(limited->finish_reason, FinishReason::kLength);
  EXPECT_TRUE(std::string("Once upon a time, there").starts_with(limited->text)) << limited->text;
}

TEST_F(GenerateTest, CallbackCancelsAndBlocksAreReleased) {
  const int64_t free_before = runner_->kv_cache().n_free_blocks();
  int pieces = 0;
  auto r = Generate(*runner_, bos_, Greedy(100), [&](std::string_view) { return ++pieces < 3; });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(pieces, 3);
  EXPECT_EQ(runner_->kv_cache().n_free_blocks(), free_before);
}

TEST_F(GenerateTest, LogprobsOfGreedyChoiceAreTheTopAlternative) {
  GenerateOptions options = Greedy(8);
  options.sampling.top_logprobs = 3;
  auto r = Generate(*runner_, bos_, options);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->sampled.size(), 8u);
  for (const auto& s : r->sampled) {
    ASSERT_EQ(s.top_logprobs.size(), 3u);
    EXPECT_EQ(s.top_logprobs[0].token, s.token);
    EXPECT_FLOAT_EQ(s.top_logprobs[0].logprob, s.logprob);
    EXPECT_LE(s.logprob, 0.0f);
    EXPECT_GE(s.top_logprobs[0].logprob, s.top_logprobs[1].logprob);
  }
}

TEST_F(GenerateTest, SeededSamplingIsReproducible) {
  GenerateOptions options;
  options.max_tokens = 40;
  options.sampling.temperature = 1.0f;
  options.sampling.top_p = 0.9f;
  options.sampling.seed = 133742;
  auto a = Generate(*runner_, bos_, options);
  auto b = Generate(*runner_, bos_, options);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->tokens, b->tokens);
  options.sampling.seed = 7;
  auto c = Generate(*runner_, bos_, options);
  ASSERT_TRUE(c);
  EXPECT_NE(a->tokens, c->tokens);
}

TEST_F(GenerateTest, RejectsEmptyAndOverlongPrompts) {
  auto empty = Generate(*runner_, {}, Greedy(4));
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, Code::kInvalidArgument);
  std::vector<int32_t> long_prompt(static_cast<size_t>(runner_->n_ctx()), bos_[0]);
  auto overlong = Generate(*runner_, long_prompt, Greedy(4));
  ASSERT_FALSE(overlong);
  EXPECT_EQ(overlong.error().code, Code::kInvalidArgument);
  EXPECT_NE(overlong.error().message.find("context"), std::string::npos);
}

}  // namespace
}  // namespace yunzhi::engine
