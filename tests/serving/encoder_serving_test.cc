// Embedding and reranking models through the ModelManager: the same numbers as the engine, input
// order, batching of large requests, wrong-kind errors, input validation, keep-alive and unload.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "model_writer.h"
#include "serving_test_util.h"
#include "support/process.h"
#include "yunzhi/engine/encoder.h"
#include "yunzhi/serving/model_manager.h"

namespace yunzhi::serving {
namespace {

using testing::WaitLoaded;

using namespace std::chrono_literals;
using yunzhi::testing::TempDir;

class EncoderServingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tools::EncoderSpec spec;
    spec.tokenizer = true;
    spec.pooling = engine::EncoderPooling::kCls;
    ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = Path("embed.gguf")}));
    spec.classifier = true;
    ASSERT_TRUE(tools::WriteEncoderModel(spec, {.hf_dir = Path("rerank")}));
    tools::ModelSpec chat;
    chat.n_embd = 64;
    chat.n_head = 4;
    chat.n_head_kv = 2;
    chat.n_ff = 128;
    ASSERT_TRUE(tools::WriteModel(chat, {.gguf_path = Path("chat.gguf")}));
    paths_ = {{"embed", Path("embed.gguf")}, {"rerank", Path("rerank")}, {"chat", Path("chat.gguf")}};
  }
  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }

  ModelResolver Resolver() {
    return [this](std::string_view name) -> Result<ModelSource> {
      auto it = paths_.find(std::string(name));
      if (it == paths_.end()) {
        return Error(Code::kNotFound, fmt::format("model '{}' does not exist", name), "model",
                     "model_not_found");
      }
      return ModelSource{it->first, "id-" + it->first, it->second, std::nullopt};
    };
  }
  ServingOptions Options() {
    ServingOptions o;
    o.n_threads = 2;
    o.n_ctx = 128;
    o.reap_interval = 10ms;
    return o;
  }

  TempDir dir_;
  std::map<std::string, std::string> paths_;
};

double Norm(const std::vector<float>& v) {
  double n = 0.0;
  for (float f : v) n += static_cast<double>(f) * f;
  return std::sqrt(n);
}

TEST_F(EncoderServingTest, EmbedMatchesTheEngineAndGivesUnitVectors) {
  ModelManager m(Resolver(), Options(), nullptr);
  const std::vector<std::string> texts = {"hello world", "the cat", "hello world",
                                          "what is the capital of france?"};
  auto r = m.Embed("embed", texts);
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->vectors.size(), texts.size());
  auto engine = engine::EncoderModel::Load(Path("embed.gguf"));
  ASSERT_TRUE(engine);
  int64_t tokens = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(r->vectors[i].size(), 64u);
    EXPECT_NEAR(Norm(r->vectors[i]), 1.0, 1e-5);
    auto ids = (*engine)->TokenizeText(texts[i], false);
    ASSERT_TRUE(ids);
    tokens += static_cast<int64_t>(ids->size());
    const std::vector<std::vector<int32_t>> one = {*ids};
    auto direct = (*engine)->Embed(one, true);
    ASSERT_TRUE(direct);
    for (size_t k = 0; k < 64; ++k) EXPECT_NEAR(r->vectors[i][k], (*direct)[0][k], 1e-5);
  }
  EXPECT_EQ(r->prompt_tokens, tokens);
  EXPECT_EQ(r->vectors[0], r->vectors[2]);  // identical inputs, identical vectors
  EXPECT_NE(r->vectors[0], r->vectors[1]);
  auto raw = m.Embed("embed", std::span(texts).subspan(0, 1), /*normalize=*/false);
  ASSERT_TRUE(raw);
  EXPECT_GT(std::fabs(Norm(raw->vectors[0]) - 1.0), 1e-3);
  auto dims = m.EmbeddingDimensions("embed");
  ASSERT_TRUE(dims);
  EXPECT_EQ(*dims, 64);
}

TEST_F(EncoderServingTest, LargeRequestsRunInSeveralBatchesWithTheSameResults) {
  ModelManager m(Resolver(), Options(), nullptr);
  // 200 inputs of ~60 tokens: more than kEncoderBatchTokens in all.
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    std::string t;
    for (int w = 0; w < 58; ++w) t += (w + i) % 3 == 0 ? "cat " : ((w * i) % 5 == 0 ? "dog " : "a ");
    texts.push_back(t);
  }
  auto all = m.Embed("embed", texts);
  ASSERT_TRUE(all) << all.error().ToString();
  ASSERT_GT(all->prompt_tokens, kEncoderBatchTokens);
  ASSERT_EQ(all->vectors.size(), texts.size());
  for (size_t i : {size_t{0}, size_t{137}, size_t{199}}) {
    auto one = m.Embed("embed", std::span(texts).subspan(i, 1));
    ASSERT_TRUE(one);
    for (size_t k = 0; k < 64; ++k) EXPECT_NEAR(all->vectors[i][k], one->vectors[0][k], 1e-5);
  }
}

TEST_F(EncoderServingTest, RerankMatchesTheEngineInInputOrderAndTruncatesLongPairs) {
  ModelManager m(Resolver(), Options(), nullptr);
  std::string long_doc;
  for (int i = 0; i < 100; ++i) long_doc += "paris is the capital of france. ";
  const std::vector<std::string> docs = {"paris is the capital of france", "the cat", long_doc,
                                         "hello world"};
  const std::string query = "what is the capital of france?";
  auto r = m.Rerank("rerank", query, docs);
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->scores.size(), docs.size());
  auto engine = engine::EncoderModel::Load(Path("rerank"));
  ASSERT_TRUE(engine);
  int64_t tokens = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    auto pair = (*engine)->TokenizePair(query, docs[i], true);
    ASSERT_TRUE(pair);
    tokens += static_cast<int64_t>(pair->tokens.size());
    const std::vector<engine::EncoderInput> one = {*pair};
    auto direct = (*engine)->Score(one);
    ASSERT_TRUE(direct);
    EXPECT_NEAR(r->scores[i], (*direct)[0], 1e-5) << "document " << i;
  }
  EXPECT_EQ(r->prompt_tokens, tokens);
  EXPECT_NE(r->scores[0], r->scores[1]);
}

TEST_F(EncoderServingTest, WrongKindsGiveClearErrors) {
  ModelManager m(Resolver(), Options(), nullptr);
  const std::vector<std::string> texts = {"hello"};
  auto chat_embed = m.Embed("chat", texts);
  ASSERT_FALSE(chat_embed);
  EXPECT_EQ(chat_embed.error().code, Code::kInvalidArgument);
  EXPECT_EQ(chat_embed.error().message, "model 'chat' is a chat model, not an embedding model");
  auto embed_chat = m.Acquire("embed");
  ASSERT_FALSE(embed_chat);
  EXPECT_EQ(embed_chat.error().code, Code::kInvalidArgument);
  ASSERT_TRUE(m.Embed("embed", texts));  // now loaded: the check holds for loaded ones too
  auto loaded_chat = m.Acquire("embed");
  ASSERT_FALSE(loaded_chat);
  EXPECT_EQ(loaded_chat.error().message, "model 'embed' is an embedding model, not a chat model");
  auto embed_rerank = m.Rerank("embed", "q", texts);
  ASSERT_FALSE(embed_rerank);
  EXPECT_EQ(embed_rerank.error().message, "model 'embed' is an embedding model, not a rerank model");
  auto rerank_embed = m.Embed("rerank", texts);
  ASSERT_FALSE(rerank_embed);
  EXPECT_EQ(rerank_embed.error().message, "model 'rerank' is a rerank model, not an embedding model");
  auto missing = m.Embed("nope", texts);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kNotFound);
  // The chat model still works as one.
  auto chat = m.Acquire("chat");
  ASSERT_TRUE(chat) << chat.error().ToString();
}

TEST_F(EncoderServingTest, ValidatesInputsAndTruncatesOnlyWhenAsked) {
  ModelManager m(Resolver(), Options(), nullptr);
  std::string long_text;
  for (int i = 0; i < 80; ++i) long_text += "cat ";
  const std::vector<std::string> none;
  const std::vector<std::string> empty = {"a", ""};
  const std::vector<std::string> too_long = {"a", long_text};  // "a" is one token
  for (const auto* in : {&none, &empty, &too_long}) {
    auto r = m.Embed("embed", *in);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Code::kInvalidArgument) << r.error().message;
    EXPECT_EQ(r.error().param, "input") << r.error().message;
  }
  EXPECT_NE(m.Embed("embed", too_long).error().message.find("input[1]"), std::string::npos);
  auto cut = m.Embed("embed", too_long, EmbedOptions{.truncate = true});
  ASSERT_TRUE(cut) << cut.error().ToString();
  EXPECT_EQ(cut->prompt_tokens, 3 + 64);
  // Token ids: [CLS]/[SEP] are added, so ids give what the text gives.
  auto engine = engine::EncoderModel::Load(Path("embed.gguf"));
  ASSERT_TRUE(engine);
  auto ids = (*engine)->tokenizer()->Encode("hello world");
  const std::vector<std::vector<int32_t>> token_inputs = {ids};
  auto by_ids = m.EmbedTokens("embed", token_inputs);
  auto by_text = m.Embed("embed", std::vector<std::string>{"hello world"});
  ASSERT_TRUE(by_ids && by_text);
  EXPECT_EQ(by_ids->vectors[0], by_text->vectors[0]);
  const std::vector<std::vector<int32_t>> bad_id = {{5, 99999}};
  auto bad = m.EmbedTokens("embed", bad_id);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
  auto no_docs = m.Rerank("rerank", "q", none);
  ASSERT_FALSE(no_docs);
  EXPECT_EQ(no_docs.error().param, "documents");
}

TEST_F(EncoderServingTest, EncodersFollowKeepAliveAndShowInList) {
  ModelManager m(Resolver(), Options(), nullptr);
  const std::vector<std::string> texts = {"hello"};
  ASSERT_TRUE(m.Embed("embed", texts, true, -1));
  ASSERT_TRUE(m.Rerank("rerank", "q", texts, 0));
  EXPECT_TRUE(WaitLoaded(m, "rerank", false));  // keep_alive 0: gone after the request
  auto list = m.List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "embed");
  EXPECT_EQ(list[0].kind, "embedding");
  EXPECT_EQ(list[0].architecture, "bert");
  EXPECT_EQ(list[0].n_ctx, 64);
  EXPECT_GT(list[0].weight_bytes, 0);
  EXPECT_FALSE(list[0].expires_at_ms.has_value());  // never
  ASSERT_TRUE(m.Unload("embed"));
  EXPECT_TRUE(m.List().empty());
  // Budget: room for the encoder alone; loading the chat model evicts the idle encoder.
  ASSERT_TRUE(m.Embed("embed", texts));
  const int64_t encoder_cost = m.List()[0].weight_bytes + m.List()[0].kv_bytes;
  ServingOptions o = Options();
  o.memory_budget_bytes = encoder_cost + 1;
  ModelManager small(Resolver(), o, nullptr);
  ASSERT_TRUE(small.Embed("embed", texts));
  auto chat = small.Acquire("chat");
  if (chat) {
    EXPECT_TRUE(WaitLoaded(small, "embed", false));
  } else {
    EXPECT_EQ(chat.error().code, Code::kResourceExhausted);  // the chat model alone is bigger
  }
}

}  // namespace
}  // namespace yunzhi::serving
