// The BERT-style encoder against our own PyTorch reference (tests/reference/encode.py): random
// tiny encoders written by the model writer as GGUF and as a Hugging Face directory, several
// inputs of different lengths in one batch, CLS and mean pooling, normalisation, batching, and
// the errors of bad files.
#include "yunzhi/engine/encoder.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "model_writer.h"

namespace yunzhi::engine {
namespace {

namespace fs = std::filesystem;

class EncoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("yunzhi_encoder_test_{}_{}", getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// Inputs of different lengths; ids below the tiny vocabulary, [CLS] = 101, [SEP] = 102 as bge.
std::vector<std::vector<int32_t>> Inputs() {
  return {{101, 7, 102},
          {101, 400, 12, 999, 3, 58, 102},
          {101, 102},
          {101, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 102},
          {101, 600, 601, 102}};
}

std::string JsonLists(const std::vector<std::vector<int32_t>>& lists) {
  std::string list;
  for (const auto& in : lists) {
    list += (list.empty() ? "" : ",") + fmt::format("[{}]", fmt::join(in, ","));
  }
  return "[" + list + "]";
}

// `types` empty: all type 0. `score`: the cross-encoder logit, one float per input (n_embd 1).
std::vector<std::vector<float>> RunReference(const std::string& dir, const std::string& reference,
                                             const std::vector<std::vector<int32_t>>& inputs,
                                             bool normalize, int64_t n_embd,
                                             const std::vector<std::vector<int32_t>>& types = {},
                                             bool score = false) {
  const std::string job = dir + "/job.json";
  const std::string out = dir + "/ref.f32";
  std::ofstream(job) << fmt::format(
      R"({{"cases": [{{"reference": "{}", "inputs": {}, {} "normalize": {}, "score": {}, "out": "{}"}}]}})",
      reference, JsonLists(inputs),
      types.empty() ? std::string() : fmt::format(R"("type_ids": {},)", JsonLists(types)),
      normalize ? "true" : "false", score ? "true" : "false", out);
  const std::string cmd = fmt::format("'{}' '{}/tests/reference/encode.py' '{}' 2>&1",
                                      YUNZHI_PYTHON3, YUNZHI_SOURCE_DIR, job);
  FILE* pipe = popen(cmd.c_str(), "r");
  EXPECT_NE(pipe, nullptr) << cmd;
  if (pipe == nullptr) return {};
  std::string output;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), pipe)) output.append(buf, n);
  const int status = pclose(pipe);
  EXPECT_EQ(status, 0) << "the Python reference failed (is python3-torch installed?):\n"
                       << cmd << "\n"
                       << output;
  std::vector<std::vector<float>> result(inputs.size(),
                                         std::vector<float>(static_cast<size_t>(n_embd)));
  std::ifstream in(out, std::ios::binary);
  for (auto& row : result) {
    in.read(reinterpret_cast<char*>(row.data()), static_cast<std::streamsize>(n_embd * 4));
  }
  EXPECT_TRUE(in.good()) << out;
  return result;
}

// max over inputs of max|a - b| / max|b|.
double MaxRelativeError(const std::vector<std::vector<float>>& a,
                        const std::vector<std::vector<float>>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].size(), b[i].size());
    double err = 0.0;
    double scale = 1e-30;
    for (size_t k = 0; k < std::min(a[i].size(), b[i].size()); ++k) {
      err = std::max(err, std::fabs(static_cast<double>(a[i][k]) - b[i][k]));
      scale = std::max(scale, std::fabs(static_cast<double>(b[i][k])));
    }
    worst = std::max(worst, err / scale);
  }
  return worst;
}

struct Case {
  const char* name;
  TensorType type;
  EncoderPooling pooling;
  bool gguf;
  double tolerance;  // max relative error against the float64 reference
};

TEST_F(EncoderTest, MatchesTorchReference) {
  const Case kCases[] = {
      {"f32 gguf cls", TensorType::kF32, EncoderPooling::kCls, true, 1e-4},
      {"f32 hf mean", TensorType::kF32, EncoderPooling::kMean, false, 1e-4},
      {"f16 gguf mean", TensorType::kF16, EncoderPooling::kMean, true, 1e-4},
      {"f16 hf cls", TensorType::kF16, EncoderPooling::kCls, false, 1e-4},
      {"bf16 hf cls", TensorType::kBF16, EncoderPooling::kCls, false, 1e-4},
      // Q8_0 quantises the activations too, so it is further from the float64 reference.
      {"q8_0 gguf cls", TensorType::kQ8_0, EncoderPooling::kCls, true, 3e-2},
  };
  const auto inputs = Inputs();
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    tools::EncoderSpec spec;
    spec.weight_type = c.type;
    spec.pooling = c.pooling;
    const std::string gguf = Path("m.gguf");
    const std::string hf = Path("hf");
    const std::string ref = Path("m.ref.safetensors");
    tools::WriteTargets targets;
    (c.gguf ? targets.gguf_path : targets.hf_dir) = c.gguf ? gguf : hf;
    targets.reference_path = ref;
    ASSERT_TRUE(tools::WriteEncoderModel(spec, targets));
    auto model = EncoderModel::Load(c.gguf ? gguf : hf, {.n_threads = 2});
    ASSERT_TRUE(model) << model.error().message;
    EXPECT_EQ((*model)->config().pooling, c.pooling);
    EXPECT_EQ((*model)->config().n_embd, spec.n_embd);
    for (bool normalize : {false, true}) {
      auto ours = (*model)->Embed(inputs, normalize);
      ASSERT_TRUE(ours) << ours.error().message;
      const auto theirs = RunReference(dir_.string(), ref, inputs, normalize, spec.n_embd);
      const double err = MaxRelativeError(*ours, theirs);
      std::printf("[ %s normalize=%d ] max relative error %.3g\n", c.name, normalize, err);
      EXPECT_LT(err, c.tolerance);
    }
  }
}

TEST_F(EncoderTest, GgufAndHfDirectoryGiveTheSameEmbeddings) {
  tools::EncoderSpec spec;
  spec.weight_type = TensorType::kF16;
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = Path("m.gguf"), .hf_dir = Path("hf")}));
  auto a = EncoderModel::Load(Path("m.gguf"));
  auto b = EncoderModel::Load(Path("hf"));
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(b) << b.error().message;
  auto ea = (*a)->Embed(Inputs(), true);
  auto eb = (*b)->Embed(Inputs(), true);
  ASSERT_TRUE(ea && eb);
  EXPECT_LT(MaxRelativeError(*ea, *eb), 1e-5);
}

TEST_F(EncoderTest, ClsAndMeanPoolingDifferAndOverrideWorks) {
  tools::EncoderSpec spec;
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = Path("m.gguf")}));
  auto cls = EncoderModel::Load(Path("m.gguf"));
  auto mean = EncoderModel::Load(Path("m.gguf"), {.pooling = EncoderPooling::kMean});
  ASSERT_TRUE(cls && mean);
  EXPECT_EQ((*cls)->config().pooling, EncoderPooling::kCls);
  EXPECT_EQ((*mean)->config().pooling, EncoderPooling::kMean);
  const std::vector<std::vector<int32_t>> one = {{101, 5, 9, 102}};
  auto ec = (*cls)->Embed(one, false);
  auto em = (*mean)->Embed(one, false);
  ASSERT_TRUE(ec && em);
  EXPECT_GT(MaxRelativeError(*ec, *em), 1e-2);
}

TEST_F(EncoderTest, NormalizedEmbeddingsAreUnitVectors) {
  tools::EncoderSpec spec;
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = Path("m.gguf")}));
  auto model = EncoderModel::Load(Path("m.gguf"));
  ASSERT_TRUE(model);
  auto e = (*model)->Embed(Inputs(), true);
  ASSERT_TRUE(e);
  for (const auto& v : *e) {
    double norm = 0.0;
    for (float f : v) norm += static_cast<double>(f) * f;
    EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-5);
  }
}

TEST_F(EncoderTest, BatchEqualsOneAtATime) {
  tools::EncoderSpec spec;
  spec.pooling = EncoderPooling::kMean;
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = Path("m.gguf")}));
  auto model = EncoderModel::Load(Path("m.gguf"), {.n_threads = 2});
  ASSERT_TRUE(model);
  const auto inputs = Inputs();
  auto batch = (*model)->Embed(inputs, false);
  ASSERT_TRUE(batch);
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto single = (*model)->Embed(std::span(inputs).subspan(i, 1), false);
    ASSERT_TRUE(single);
    EXPECT_LT(MaxRelativeError({(*batch)[i]}, *single), 1e-5) << "input " << i;
  }
}

TEST_F(EncoderTest, RejectsBadInputs) {
  tools::EncoderSpec spec;
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = Path("m.gguf")}));
  auto model = EncoderModel::Load(Path("m.gguf"));
  ASSERT_TRUE(model);
  const std::vector<std::vector<int32_t>> empty = {{}};
  const std::vector<std::vector<int32_t>> bad_id = {{101, 1000, 102}};
  const std::vector<std::vector<int32_t>> too_long = {std::vector<int32_t>(65, 5)};
  for (const auto* in : {&empty, &bad_id, &too_long}) {
    auto r = (*model)->Embed(*in, false);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Code::kInvalidArgument) << r.error().message;
  }
}

TEST_F(EncoderTest, BadFilesGiveClearErrors) {
  tools::EncoderSpec spec;
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.hf_dir = Path("hf")}));
  auto missing = EncoderModel::Load(Path("nope.gguf"));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nope.gguf"), std::string::npos)
      << missing.error().message;

  fs::copy(Path("hf"), Path("hf2"), fs::copy_options::recursive);
  std::ofstream(Path("hf2/1_Pooling/config.json")) << R"({"pooling_mode_max_tokens": true})";
  auto pooling = EncoderModel::Load(Path("hf2"));
  ASSERT_FALSE(pooling);
  EXPECT_EQ(pooling.error().code, Code::kUnimplemented);
  EXPECT_NE(pooling.error().message.find("1_Pooling/config.json"), std::string::npos);

  std::ofstream(Path("hf/config.json"))
      << R"({"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 3,
             "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 1000,
             "max_position_embeddings": 64})";
  auto extra_layer = EncoderModel::Load(Path("hf"));
  ASSERT_FALSE(extra_layer);
  EXPECT_EQ(extra_layer.error().code, Code::kNotFound);
  EXPECT_NE(extra_layer.error().message.find("encoder.layer.2.attention.self.query.weight"),
            std::string::npos)
      << extra_layer.error().message;
  EXPECT_NE(extra_layer.error().message.find(Path("hf")), std::string::npos);

  std::ofstream(Path("hf/config.json"))
      << R"({"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 1000,
             "max_position_embeddings": 64})";
  auto wrong_shape = EncoderModel::Load(Path("hf"));
  ASSERT_FALSE(wrong_shape);
  EXPECT_EQ(wrong_shape.error().code, Code::kInvalidArgument);
  EXPECT_NE(wrong_shape.error().message.find("embeddings.word_embeddings.weight"),
            std::string::npos)
      << wrong_shape.error().message;

  std::ofstream(Path("hf/config.json")) << R"({"model_type": "llama"})";
  auto other = EncoderModel::Load(Path("hf"));
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, Code::kUnimplemented);

  std::ofstream(Path("garbage.gguf")) << "not a gguf file at all";
  auto garbage = EncoderModel::Load(Path("garbage.gguf"));
  ASSERT_FALSE(garbage);
  EXPECT_NE(garbage.error().message.find("garbage.gguf"), std::string::npos)
      << garbage.error().message;
}

// Sentence pairs "[CLS] a [SEP] b [SEP]" with type ids 0 then 1.
std::vector<EncoderInput> Pairs() {
  return {{{101, 7, 102, 8, 9, 102}, {0, 0, 0, 1, 1, 1}},
          {{101, 400, 12, 999, 102, 3, 58, 102}, {0, 0, 0, 0, 0, 1, 1, 1}},
          {{101, 102, 102}, {0, 0, 1}},
          {{101, 5, 6, 7, 102, 8, 9, 10, 11, 12, 13, 14, 102},
           {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}}};
}

TEST_F(EncoderTest, TokenTypesMatchTorchReference) {
  tools::EncoderSpec spec;
  const std::string ref = Path("m.ref.safetensors");
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = Path("m.gguf"), .reference_path = ref}));
  auto model = EncoderModel::Load(Path("m.gguf"), {.n_threads = 2});
  ASSERT_TRUE(model) << model.error().message;
  EXPECT_EQ((*model)->config().n_token_types, 2);
  EXPECT_FALSE((*model)->config().has_classifier);
  const auto pairs = Pairs();
  std::vector<std::vector<int32_t>> tokens, types;
  for (const auto& p : pairs) {
    tokens.push_back(p.tokens);
    types.push_back(p.type_ids);
  }
  auto ours = (*model)->Embed(pairs, false);
  ASSERT_TRUE(ours) << ours.error().message;
  const auto theirs = RunReference(dir_.string(), ref, tokens, false, spec.n_embd, types);
  EXPECT_LT(MaxRelativeError(*ours, theirs), 1e-4);
  // Type 1 changes the result: the types are really used.
  auto type0 = (*model)->Embed(tokens, false);
  ASSERT_TRUE(type0);
  EXPECT_GT(MaxRelativeError(*ours, *type0), 1e-3);
}

TEST_F(EncoderTest, CrossEncoderScoreMatchesTorchReference) {
  const Case kCases[] = {
      {"f32 gguf", TensorType::kF32, EncoderPooling::kCls, true, 1e-4},
      {"f32 hf", TensorType::kF32, EncoderPooling::kCls, false, 1e-4},
      {"f16 hf", TensorType::kF16, EncoderPooling::kCls, false, 1e-4},
      {"q8_0 gguf", TensorType::kQ8_0, EncoderPooling::kCls, true, 3e-2},
  };
  const auto pairs = Pairs();
  std::vector<std::vector<int32_t>> tokens, types;
  for (const auto& p : pairs) {
    tokens.push_back(p.tokens);
    types.push_back(p.type_ids);
  }
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    tools::EncoderSpec spec;
    spec.weight_type = c.type;
    spec.classifier = true;
    const std::string ref = Path("m.ref.safetensors");
    tools::WriteTargets targets;
    (c.gguf ? targets.gguf_path : targets.hf_dir) = c.gguf ? Path("m.gguf") : Path("hf");
    targets.reference_path = ref;
    ASSERT_TRUE(tools::WriteEncoderModel(spec, targets));
    auto model = EncoderModel::Load(c.gguf ? Path("m.gguf") : Path("hf"), {.n_threads = 2});
    ASSERT_TRUE(model) << model.error().message;
    ASSERT_TRUE((*model)->config().has_classifier);
    auto ours = (*model)->Score(pairs);
    ASSERT_TRUE(ours) << ours.error().message;
    ASSERT_EQ(ours->size(), pairs.size());
    const auto theirs = RunReference(dir_.string(), ref, tokens, false, 1, types, true);
    double worst = 0.0, spread = 0.0;
    for (size_t i = 0; i < pairs.size(); ++i) {
      std::printf("[ %s ] pair %zu: ours %.6f reference %.6f\n", c.name, i, (*ours)[i],
                  theirs[i][0]);
      worst = std::max(worst, std::fabs(static_cast<double>((*ours)[i]) - theirs[i][0]) /
                                  std::max(1.0, std::fabs(static_cast<double>(theirs[i][0]))));
      spread = std::max(spread, std::fabs(static_cast<double>(theirs[i][0]) - theirs[0][0]));
    }
    EXPECT_LT(worst, c.tolerance);
    EXPECT_GT(spread, 1e-4) << "different pairs should score differently";
  }
}

TEST_F(EncoderTest, ScoreNeedsAClassifierAndValidTypes) {
  tools::EncoderSpec spec;
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = Path("e.gguf")}));
  spec.classifier = true;
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = Path("r.gguf")}));
  auto embedder = EncoderModel::Load(Path("e.gguf"));
  auto reranker = EncoderModel::Load(Path("r.gguf"));
  ASSERT_TRUE(embedder && reranker);
  auto no_head = (*embedder)->Score(Pairs());
  ASSERT_FALSE(no_head);
  EXPECT_EQ(no_head.error().code, Code::kFailedPrecondition);
  const std::vector<EncoderInput> bad_type = {{{101, 5, 102}, {0, 2, 0}}};
  const std::vector<EncoderInput> bad_len = {{{101, 5, 102}, {0, 0}}};
  for (const auto* in : {&bad_type, &bad_len}) {
    auto r = (*reranker)->Score(*in);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Code::kInvalidArgument) << r.error().message;
  }
}

TEST_F(EncoderTest, TokenizesWithTheModelsOwnVocab) {
  tools::EncoderSpec spec;
  spec.tokenizer = true;
  ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = Path("m.gguf"), .hf_dir = Path("hf")}));
  auto gguf = EncoderModel::Load(Path("m.gguf"));
  auto hf = EncoderModel::Load(Path("hf"));
  ASSERT_TRUE(gguf) << gguf.error().message;
  ASSERT_TRUE(hf) << hf.error().message;
  ASSERT_NE((*gguf)->tokenizer(), nullptr);
  ASSERT_NE((*hf)->tokenizer(), nullptr);
  const auto vocab = tools::EncoderVocab(spec.n_vocab);
  auto id = [&](const std::string& t) {
    return static_cast<int32_t>(std::find(vocab.begin(), vocab.end(), t) - vocab.begin());
  };
  for (auto* m : {&*gguf, &*hf}) {
    auto ids = (*m)->TokenizeText("Hello, World", false);
    ASSERT_TRUE(ids) << ids.error().message;
    EXPECT_EQ(*ids, (std::vector<int32_t>{101, id("hello"), id(","), id("world"), 102}));
    auto pair = (*m)->TokenizePair("the cat", "dogs", false);
    ASSERT_TRUE(pair) << pair.error().message;
    EXPECT_EQ(pair->tokens, (std::vector<int32_t>{101, id("the"), id("cat"), 102, id("dog"),
                                                  id("##s"), 102}));
    EXPECT_EQ(pair->type_ids, (std::vector<int32_t>{0, 0, 0, 0, 1, 1, 1}));
  }
  // n_ctx 64: 70 words are too many unless truncated.
  std::string long_text;
  for (int i = 0; i < 70; ++i) long_text += "cat ";
  auto too_long = (*gguf)->TokenizeText(long_text, false);
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().code, Code::kInvalidArgument);
  auto cut = (*gguf)->TokenizeText(long_text, true);
  ASSERT_TRUE(cut);
  EXPECT_EQ(static_cast<int64_t>(cut->size()), spec.n_ctx);
  EXPECT_EQ(cut->back(), 102);
  // Pairs are cut from the longer side first; the short query survives whole.
  auto pair = (*gguf)->TokenizePair("dog", long_text, true);
  ASSERT_TRUE(pair);
  EXPECT_EQ(static_cast<int64_t>(pair->tokens.size()), spec.n_ctx);
  EXPECT_EQ(pair->tokens[1], id("dog"));
  EXPECT_EQ(pair->tokens[2], 102);
  EXPECT_EQ(pair->tokens.back(), 102);
  EXPECT_FALSE((*gguf)->TokenizePair("dog", long_text, false));
  // Without a tokenizer: a clear error.
  tools::EncoderSpec bare;
  ASSERT_TRUE(tools::WriteEncoderModel(bare, {.gguf_path = Path("bare.gguf")}));
  auto b = EncoderModel::Load(Path("bare.gguf"));
  ASSERT_TRUE(b);
  EXPECT_EQ((*b)->tokenizer(), nullptr);
  auto none = (*b)->TokenizeText("hello", true);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Code::kFailedPrecondition);
  EXPECT_TRUE(IsEncoderModelPath(Path("bare.gguf")));
  EXPECT_TRUE(IsEncoderModelPath(Path("hf")));
  EXPECT_FALSE(IsEncoderModelPath(Path("nope.gguf")));
}

}  // namespace
}  // namespace yunzhi::engine
