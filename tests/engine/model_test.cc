// The real pretrained stories260K model (llama2.c TinyStories, F32, llama architecture, GQA)
// must reproduce its published greedy output exactly; the runner's contracts (batched ==
// unbatched, prefix sharing, errors that change nothing) and the loader's errors on bad files
// are checked on it and on tiny random models from the model writer (tools/model_writer.h).
#include "yunzhi/engine/model.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/quantize.h"
#include "yunzhi/engine/safetensors.h"

#include "model_writer.h"

namespace yunzhi::engine {
namespace {

const std::string kStories = std::string(YUNZHI_TESTDATA_DIR) + "/models/stories260K.gguf";

// The text in stories260K.README.md (greedy from BOS, temperature 0).
const char kReference[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. "
    "She said, \"I want to play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to "
    "do.\"\n"
    "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" "
    "Her mom said, \"Don't worry, Lily. We can help you.";

int32_t Argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

std::shared_ptr<const Model> LoadStories() {
  auto model = Model::Load(kStories);
  EXPECT_TRUE(model) << model.error().ToString();
  return model ? *model : nullptr;
}

TEST(ModelStories260K, LoadsConfig) {
  auto model = LoadStories();
  ASSERT_TRUE(model);
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.architecture, Architecture::kLlama);
  EXPECT_EQ(c.n_vocab, 512);
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.n_layer, 5);
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.n_ff, 172);
  EXPECT_EQ(c.rope.layout, RopeLayout::kNormal);
  EXPECT_FALSE(c.tied_output);
  EXPECT_EQ(c.weight_type, TensorType::kF32);
  EXPECT_EQ(model->tokenizer().n_vocab(), 512);
}

// Greedy decoding one token per Forward, as a plain generation loop does.
std::string GreedyFromBos(ModelRunner& runner, int max_tokens) {
  const Tokenizer& tok = runner.model().tokenizer();
  Sequence seq;
  std::vector<int32_t> out;
  int32_t next = tok.vocab().bos_id;
  ForwardOutput logits;
  for (int i = 0; i < max_tokens; ++i) {
    BatchItem item{&seq, std::span<const int32_t>(&next, 1)};
    auto st = runner.Forward(std::span<const BatchItem>(&item, 1), &logits);
    EXPECT_TRUE(st) << st.error().ToString();
    if (!st) break;
    next = Argmax(logits.Row(0));
    if (next == tok.vocab().bos_id || next == tok.vocab().eos_id) break;
    out.push_back(next);
  }
  runner.kv_cache().Release(&seq);
  return tok.Decode(out);
}

TEST(ModelStories260K, GreedyFromBosReproducesReferenceText) {
  auto model = LoadStories();
  ASSERT_TRUE(model);
  for (KvCacheType kv : {KvCacheType::kF32, KvCacheType::kF16}) {
    auto runner =
        ModelRunner::Create(model, {.n_threads = 2, .n_ctx = 512, .kv_cache = {.type = kv}});
    ASSERT_TRUE(runner) << runner.error().ToString();
    const std::string text = GreedyFromBos(**runner, 300);
    ASSERT_GE(text.size(), sizeof(kReference) - 1) << text;
    EXPECT_EQ(text.substr(0, sizeof(kReference) - 1), kReference)
        << "KV cache " << (kv == KvCacheType::kF16 ? "F16" : "F32");
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers for tests on generated models.

using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "yz-model-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

tools::ModelSpec TinySpec(Architecture arch, TensorType type) {
  tools::ModelSpec s;
  s.architecture = arch;
  s.weight_type = type;
  s.n_vocab = 300;
  s.n_embd = 64;
  s.n_ff = 128;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_layer = 2;
  s.n_ctx = 512;
  return s;
}

// A TinySpec model written to dir/m.gguf and loaded from there.
Result<std::shared_ptr<const Model>> WriteAndLoadTiny(const TempDir& dir, Architecture arch,
                                                      TensorType type) {
  YZ_RETURN_IF_ERROR(tools::WriteModel(TinySpec(arch, type), {.gguf_path = dir / "m.gguf"}));
  return Model::Load(dir / "m.gguf");
}

std::vector<int32_t> Tokens(int n, int salt) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back((i * 37 + salt * 101 + 5) % 300);
  return out;
}

TEST(ModelLoad, NamesTheWeightsByTheFilesTypeWhenItSaysOne) {
  // The model writer's file says nothing: the label is the type of most weight bytes. The same
  // model through `yunzhi quantize --type q4_k_m` says 15, Q4_K_M -- although its 64-column rows
  // are not whole super-blocks and so are Q5_0, the name users know the file by.
  TempDir dir;
  Result<std::shared_ptr<const Model>> plain =
      WriteAndLoadTiny(dir, Architecture::kLlama, TensorType::kF16);
  ASSERT_TRUE(plain) << plain.error().ToString();
  EXPECT_EQ((*plain)->config().file_type, "");
  EXPECT_EQ(WeightTypeLabel((*plain)->config()), "F16");
  QuantizeOptions options;
  options.target = QuantizeTarget::kQ4_K_M;
  ASSERT_TRUE(QuantizeModel(dir / "m.gguf", dir / "q.gguf", options));
  Result<std::shared_ptr<const Model>> q = Model::Load(dir / "q.gguf");
  ASSERT_TRUE(q) << q.error().ToString();
  EXPECT_EQ((*q)->config().weight_type, TensorType::kQ5_0);
  EXPECT_EQ((*q)->config().file_type, "Q4_K_M");
  EXPECT_EQ(WeightTypeLabel((*q)->config()), "Q4_K_M");
}

double MaxRelDiff(std::span<const float> a, std::span<const float> b) {
  double scale = 1e-30;
  double err = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
    err = std::max(err, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return err / scale;
}

std::unique_ptr<ModelRunner> MakeRunner(std::shared_ptr<const Model> model, RunnerOptions o = {}) {
  if (o.n_threads == 0) o.n_threads = 2;
  auto runner = ModelRunner::Create(std::move(model), o);
  EXPECT_TRUE(runner) << runner.error().ToString();
  return runner ? std::move(*runner) : nullptr;
}

// Feeds `chunks` to a fresh sequence one Forward each (alone) and returns the last chunk's
// logits for all of its tokens.
std::vector<float> RunAlone(std::shared_ptr<const Model> model,
                            const std::vector<std::vector<int32_t>>& chunks) {
  auto runner = MakeRunner(model);
  Sequence seq;
  ForwardOutput out;
  for (const auto& chunk : chunks) {
    BatchItem item{&seq, chunk, true};
    auto st = runner->Forward(std::span<const BatchItem>(&item, 1), &out);
    EXPECT_TRUE(st) << st.error().ToString();
  }
  return out.logits;
}

class ModelBatching : public ::testing::TestWithParam<TensorType> {};

TEST_P(ModelBatching, BatchedEqualsUnbatchedWithMixedPromptAndDecodeItems) {
  TempDir dir;
  auto model = WriteAndLoadTiny(dir, Architecture::kQwen2, GetParam());
  ASSERT_TRUE(model) << model.error().ToString();
  const std::vector<int32_t> a = Tokens(40, 1), b = Tokens(21, 2), c = Tokens(6, 3);
  auto slice = [](const std::vector<int32_t>& v, size_t from, size_t to) {
    return std::vector<int32_t>(v.begin() + from, v.begin() + to);
  };
  // Alone.
  const std::vector<float> a_alone = RunAlone(*model, {slice(a, 0, 33), slice(a, 33, 40)});
  const std::vector<float> b_alone = RunAlone(*model, {slice(b, 0, 20), slice(b, 20, 21)});
  const std::vector<float> c_alone = RunAlone(*model, {c});
  // Together: step 1 two prompts, step 2 a prompt chunk, a decode token and a new prompt.
  auto runner = MakeRunner(*model);
  Sequence sa, sb, sc;
  ForwardOutput out;
  const std::vector<int32_t> a1 = slice(a, 0, 33), b1 = slice(b, 0, 20);
  const BatchItem step1[] = {{&sa, a1, false}, {&sb, b1, false}};
  ASSERT_TRUE(runner->Forward(step1, &out));
  const std::vector<int32_t> a2 = slice(a, 33, 40), b2 = slice(b, 20, 21);
  const BatchItem step2[] = {{&sa, a2, true}, {&sb, b2, true}, {&sc, c, true}};
  ASSERT_TRUE(runner->Forward(step2, &out));
  ASSERT_EQ(out.n_rows, (std::vector<int64_t>{7, 1, 6}));
  const int64_t nv = out.n_vocab;
  auto rows = [&](size_t item) {
    return std::span<const float>(out.logits.data() + out.first_row[item] * nv,
                                  static_cast<size_t>(out.n_rows[item] * nv));
  };
  EXPECT_LT(MaxRelDiff(rows(0), a_alone), 1e-4);
  EXPECT_LT(MaxRelDiff(rows(1), b_alone), 1e-4);
  EXPECT_LT(MaxRelDiff(rows(2), c_alone), 1e-4);
  EXPECT_EQ(sa.n_tokens(), 40);
  EXPECT_EQ(sb.n_tokens(), 21);
  EXPECT_EQ(sc.n_tokens(), 6);
}

TEST_P(ModelBatching, OneLongCallEqualsSeparateCallsBitForBit) {
  // With max_pass_tokens 100, Forward computes 300 tokens in 3 passes of 100 (bounded activation
  // memory): they must give, bit for bit, the logits of three calls of 100 tokens.
  TempDir dir;
  auto model = WriteAndLoadTiny(dir, Architecture::kQwen2, GetParam());
  ASSERT_TRUE(model) << model.error().ToString();
  const std::vector<int32_t> tokens = Tokens(300, 4);
  auto runner = MakeRunner(*model, {.max_pass_tokens = 100});
  Sequence one;
  ForwardOutput whole;
  const BatchItem item{&one, tokens, true};
  ASSERT_TRUE(runner->Forward(std::span<const BatchItem>(&item, 1), &whole));
  ASSERT_EQ(whole.n_rows, (std::vector<int64_t>{300}));
  EXPECT_EQ(one.n_tokens(), 300);
  runner->kv_cache().Release(&one);  // the cache holds one sequence of the full context
  Sequence split;
  std::vector<float> pieces;
  for (size_t from = 0; from < 300; from += 100) {
    const std::vector<int32_t> part(tokens.begin() + static_cast<long>(from),
                                    tokens.begin() + static_cast<long>(from + 100));
    ForwardOutput out;
    const BatchItem piece{&split, part, true};
    ASSERT_TRUE(runner->Forward(std::span<const BatchItem>(&piece, 1), &out));
    pieces.insert(pieces.end(), out.logits.begin(), out.logits.end());
  }
  ASSERT_EQ(pieces.size(), whole.logits.size());
  EXPECT_TRUE(pieces == whole.logits);
  runner->kv_cache().Release(&split);

  // 201 tokens in passes of at most 100: 100, 98 and 3 (a last pass of 1 token would run the
  // decoding kernels), the same bits as one pass.
  const std::vector<int32_t> odd = Tokens(201, 5);
  std::vector<float> by_pass[2];
  for (int64_t max_pass : {int64_t{100}, int64_t{0}}) {
    auto r = MakeRunner(*model, {.max_pass_tokens = max_pass});
    Sequence seq;
    ForwardOutput out;
    const BatchItem all{&seq, odd, true};
    ASSERT_TRUE(r->Forward(std::span<const BatchItem>(&all, 1), &out));
    by_pass[max_pass == 0 ? 1 : 0] = out.logits;
    r->kv_cache().Release(&seq);
  }
  EXPECT_TRUE(by_pass[0] == by_pass[1]);
}

// One case of the test below: a model of `type` decoded on each thread count.
struct OneTokenCase {
  Architecture arch;
  int n_head, n_head_kv;
  int64_t n_embd, n_ff;
  std::vector<int> threads;  // the first is compared with the others
};

void ExpectSameBitsWhateverTheThreadCount(const OneTokenCase& tc, TensorType type) {
  SCOPED_TRACE(fmt::format("arch {} {} n_embd {} n_ff {}", static_cast<int>(tc.arch),
                           TypeName(type), tc.n_embd, tc.n_ff));
  TempDir dir;
  tools::ModelSpec spec = TinySpec(tc.arch, type);
  spec.n_head = tc.n_head;
  spec.n_head_kv = tc.n_head_kv;
  spec.n_embd = tc.n_embd;
  spec.n_ff = tc.n_ff;
  ASSERT_TRUE(tools::WriteModel(spec, {.gguf_path = dir / "m.gguf"}));
  auto model = Model::Load(dir / "m.gguf");
  ASSERT_TRUE(model) << model.error().ToString();
  std::vector<std::vector<float>> logits_by_threads;
  for (int threads : tc.threads) {
    auto runner = MakeRunner(*model, {.n_threads = threads});
    Sequence seq;
    ForwardOutput out;
    const std::vector<int32_t> prompt = Tokens(7, 3);
    const BatchItem first{&seq, prompt, true};
    ASSERT_TRUE(runner->Forward(std::span<const BatchItem>(&first, 1), &out));
    std::vector<float> all;
    for (int step = 0; step < 24; ++step) {
      const std::vector<int32_t> one = {(step * 53 + 11) % 300};
      const BatchItem item{&seq, one, true};
      ASSERT_TRUE(runner->Forward(std::span<const BatchItem>(&item, 1), &out));
      all.insert(all.end(), out.logits.begin(), out.logits.end());
    }
    logits_by_threads.push_back(std::move(all));
    runner->kv_cache().Release(&seq);
  }
  for (size_t i = 1; i < tc.threads.size(); ++i) {
    EXPECT_EQ(logits_by_threads[0], logits_by_threads[i])
        << tc.threads[0] << " vs " << tc.threads[i] << " threads";
  }
}

TEST_P(ModelBatching, OneTokenStepsGiveTheSameBitsWhateverTheThreadCount) {
  // Decoding one token with 2+ threads runs every layer in one parallel region
  // (arch/one_token.cc: per-phase work items, each thread preparing its own inputs): one item per
  // KV head when the threads divide the KV heads, else q/k/v row ranges and then per-head items;
  // SiLU(gate) * up and its conversion to down's input done a gate/up pair of row ranges at a
  // time, by whichever thread finished the pair. One thread takes the layer-by-layer path. The
  // logits must be the same bits: Qwen2 (Q/K/V biases) and Qwen3 (Q/K norms) with 2 KV heads on
  // 2 and 3 threads against 1, and a Llama with 4 KV heads on 4, 2 and 3 threads against 1 -- 3
  // or 4 threads on a 2-core machine, so workers often start late and the others take over their
  // items. n_ff 1024: 16-22 gate/up pairs, split between the threads.
  const OneTokenCase cases[] = {{Architecture::kQwen2, 4, 2, 64, 128, {1, 2, 3}},
                                {Architecture::kQwen2, 4, 2, 64, 1024, {1, 2, 3}},
                                {Architecture::kQwen3, 4, 2, 64, 128, {1, 2, 3}},
                                {Architecture::kLlama, 8, 4, 128, 128, {1, 4, 2, 3}}};
  for (const OneTokenCase& tc : cases) ExpectSameBitsWhateverTheThreadCount(tc, GetParam());
}

// The same with the other activation formats of down's input: Q4_0 (panels, groups of 128) and
// Q2_K to Q5_K (blocks of 256, so 4 gate/up pairs of 256 rows); and Q5_0/Q5_1 in the shape of
// Qwen2.5-0.5B's rows (896 columns: 3.5 super-blocks, the reason llama.cpp's Q4_K_M files hold
// Q5_0 and its Q5_K_M files Q5_1), alone and as the fallback of a Q5_K model (Q5_K only in
// down, whose rows are n_ff long), and a Q2_K or Q3_K model's (the writer's IQ4_NL beside a K-quant
// down).
TEST(ModelRunner, OneTokenStepsGiveTheSameBitsWhateverTheThreadCountQ4_0Q5_0Q5_1AndKQuants) {
  for (TensorType type :
       {TensorType::kQ4_0, TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ2_K,
        TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K}) {
    ExpectSameBitsWhateverTheThreadCount({Architecture::kQwen2, 4, 2, 256, 1024, {1, 2, 3}},
                                         type);
  }
  for (TensorType type : {TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ5_K,
                          TensorType::kQ3_K, TensorType::kQ2_K}) {
    ExpectSameBitsWhateverTheThreadCount({Architecture::kQwen2, 14, 2, 896, 1024, {1, 2, 3}},
                                         type);
  }
}

INSTANTIATE_TEST_SUITE_P(Types, ModelBatching,
                         ::testing::Values(TensorType::kF32, TensorType::kQ8_0, TensorType::kQ5_0,
                                           TensorType::kQ5_1),
                         [](const auto& info) { return std::string(TypeName(info.param)); });

TEST(ModelRunner, ForkedSequencesShareThePrefixAndContinueIndependently) {
  TempDir dir;
  auto model = WriteAndLoadTiny(dir, Architecture::kLlama, TensorType::kF32);
  ASSERT_TRUE(model) << model.error().ToString();
  const std::vector<int32_t> prefix = Tokens(37, 4);  // 2 full blocks of 16 + 5
  const std::vector<int32_t> x = Tokens(3, 5), y = Tokens(4, 6);
  const std::vector<float> x_alone = RunAlone(*model, {prefix, x});
  const std::vector<float> y_alone = RunAlone(*model, {prefix, y});

  auto runner = MakeRunner(*model);
  KvCache& cache = runner->kv_cache();
  const int64_t free_at_start = cache.n_free_blocks();
  Sequence s1, s2;
  ForwardOutput out;
  BatchItem first{&s1, prefix, false};
  ASSERT_TRUE(runner->Forward(std::span<const BatchItem>(&first, 1), &out));
  ASSERT_TRUE(cache.Fork(s1, &s2));
  EXPECT_EQ(s2.n_tokens(), 37);
  EXPECT_EQ(cache.ref_count(s1.blocks()[0]), 2);  // full blocks shared
  EXPECT_EQ(cache.ref_count(s1.blocks()[2]), 1);  // the partial block was copied
  EXPECT_NE(s1.blocks()[2], s2.blocks()[2]);
  const BatchItem both[] = {{&s1, x, true}, {&s2, y, true}};
  ASSERT_TRUE(runner->Forward(both, &out));
  EXPECT_LT(MaxRelDiff(std::span<const float>(out.logits.data(), x_alone.size()), x_alone), 1e-4);
  EXPECT_LT(MaxRelDiff(std::span<const float>(out.logits.data() + out.first_row[1] * out.n_vocab,
                                              y_alone.size()),
                       y_alone),
            1e-4);
  cache.Release(&s1);
  EXPECT_EQ(cache.ref_count(s2.blocks()[0]), 1);
  cache.Release(&s2);
  EXPECT_EQ(cache.n_free_blocks(), free_at_start);
}

TEST(ModelRunner, TruncateThenContinueEqualsRunningTheShorterPrompt) {
  TempDir dir;
  auto model = WriteAndLoadTiny(dir, Architecture::kQwen3, TensorType::kF32);
  ASSERT_TRUE(model) << model.error().ToString();
  const std::vector<int32_t> p = Tokens(40, 7), tail = Tokens(2, 8);
  const std::vector<int32_t> p20(p.begin(), p.begin() + 20);
  const std::vector<float> expected = RunAlone(*model, {p20, tail});
  auto runner = MakeRunner(*model);
  Sequence seq;
  ForwardOutput out;
  BatchItem item{&seq, p, false};
  ASSERT_TRUE(runner->Forward(std::span<const BatchItem>(&item, 1), &out));
  ASSERT_TRUE(runner->kv_cache().Truncate(&seq, 20));
  EXPECT_EQ(seq.n_tokens(), 20);
  EXPECT_EQ(seq.blocks().size(), 2u);
  BatchItem next{&seq, tail, true};
  ASSERT_TRUE(runner->Forward(std::span<const BatchItem>(&next, 1), &out));
  EXPECT_LT(MaxRelDiff(out.logits, expected), 1e-4);
}

// A cache of 2 layers, head_dim 8, blocks of 4 positions.
Result<std::unique_ptr<KvCache>> SmallCache(int64_t n_head_kv, KvCacheType type, int64_t n_blocks) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head_kv = n_head_kv;
  c.head_dim = 8;
  return KvCache::Create(c, {.type = type, .block_tokens = 4, .n_blocks = n_blocks});
}

TEST(KvCache, ReserveReleaseAndSharedBlocksCountReferences) {
  auto cache = SmallCache(2, KvCacheType::kF32, 5);
  ASSERT_TRUE(cache);
  KvCache& kv = **cache;
  EXPECT_EQ(kv.size_bytes(), 2 * 2 * 5 * 4 * 2 * 8 * 4);
  Sequence a;
  ASSERT_TRUE(kv.Reserve(&a, 10));  // 3 blocks
  EXPECT_EQ(a.blocks().size(), 3u);
  EXPECT_EQ(kv.n_free_blocks(), 2);
  auto st = kv.Reserve(&a, 21);  // 6 blocks: 3 more, 2 free
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Code::kResourceExhausted);
  EXPECT_EQ(a.blocks().size(), 3u);
  kv.SetLength(&a, 10);
  // Rows of different positions, heads and layers never overlap.
  EXPECT_NE(kv.KeyRow(a, 0, 9, 1), kv.KeyRow(a, 0, 9, 0));
  EXPECT_NE(kv.KeyRow(a, 0, 9, 1), kv.KeyRow(a, 1, 9, 1));
  EXPECT_NE(kv.KeyRow(a, 0, 9, 1), kv.ValueRow(a, 0, 9, 1));
  // One head's rows are contiguous: within a block, and across the blocks handed out in a row
  // (0, 1, 2), which is what attention streams.
  auto gap = [&](int64_t pos, int64_t head) {
    return static_cast<char*>(kv.KeyRow(a, 0, pos + 1, head)) -
           static_cast<char*>(kv.KeyRow(a, 0, pos, head));
  };
  EXPECT_EQ(gap(0, 0), 8 * 4);
  EXPECT_EQ(gap(3, 0), 8 * 4);  // block 0 -> block 1
  EXPECT_EQ(gap(7, 1), 8 * 4);  // block 1 -> block 2
  const void* k_rows[10];
  const void* v_rows[10];
  kv.HeadRows(a, 1, 1, 0, 10, k_rows, v_rows);
  for (int64_t pos = 0; pos < 10; ++pos) {
    EXPECT_EQ(k_rows[pos], kv.KeyRow(a, 1, pos, 1));
    EXPECT_EQ(v_rows[pos], kv.ValueRow(a, 1, pos, 1));
  }
  std::memset(kv.KeyRow(a, 0, 9, 0), 0x5A, 8 * 4);
  std::memset(kv.ValueRow(a, 1, 8, 1), 0x3C, 8 * 4);
  Sequence b;
  ASSERT_TRUE(kv.Fork(a, &b));  // shares 2 full blocks, copies the third (every layer and head)
  EXPECT_EQ(kv.ref_count(a.blocks()[0]), 2);
  EXPECT_EQ(kv.ref_count(a.blocks()[1]), 2);
  EXPECT_NE(b.blocks()[2], a.blocks()[2]);
  EXPECT_EQ(std::memcmp(kv.KeyRow(a, 0, 9, 0), kv.KeyRow(b, 0, 9, 0), 8 * 4), 0);
  EXPECT_EQ(std::memcmp(kv.ValueRow(a, 1, 8, 1), kv.ValueRow(b, 1, 8, 1), 8 * 4), 0);
  EXPECT_EQ(kv.n_free_blocks(), 1);
  // Truncating b into a shared block copies it, so a's rows stay untouched.
  ASSERT_TRUE(kv.Truncate(&b, 6));
  EXPECT_EQ(b.n_tokens(), 6);
  EXPECT_EQ(b.blocks().size(), 2u);
  EXPECT_EQ(b.blocks()[0], a.blocks()[0]);
  EXPECT_NE(b.blocks()[1], a.blocks()[1]);
  EXPECT_EQ(kv.ref_count(a.blocks()[1]), 1);
  kv.Release(&a);
  kv.Release(&b);
  EXPECT_EQ(kv.n_free_blocks(), 5);
  EXPECT_EQ(a.n_tokens(), 0);
}

// HeadRows gathers the same rows as KeyRow/ValueRow, across block boundaries and for a block
// table whose blocks are not in pool order.
TEST(KvCache, HeadRowsMatchesRowByRowAccess) {
  auto cache = SmallCache(3, KvCacheType::kF16, 8);
  ASSERT_TRUE(cache);
  KvCache& kv = **cache;
  Sequence filler, a;
  ASSERT_TRUE(kv.Reserve(&filler, 8));  // blocks 0-1 taken first
  ASSERT_TRUE(kv.Reserve(&a, 4));
  kv.Release(&filler);  // a's next blocks come back from the free list
  ASSERT_TRUE(kv.Reserve(&a, 19));
  kv.SetLength(&a, 19);
  for (int64_t layer : {0, 1}) {
    for (int64_t head = 0; head < 3; ++head) {
      for (auto [first, n] : {std::pair<int64_t, int64_t>{0, 19}, {3, 9}, {5, 1}, {8, 4}}) {
        std::vector<const void*> k(n), v(n);
        kv.HeadRows(a, layer, head, first, n, k.data(), v.data());
        for (int64_t j = 0; j < n; ++j) {
          EXPECT_EQ(k[j], kv.KeyRow(a, layer, first + j, head)) << layer << head << first << j;
          EXPECT_EQ(v[j], kv.ValueRow(a, layer, first + j, head)) << layer << head << first << j;
        }
      }
    }
  }
  kv.Release(&a);
}

// ---- errors of Forward: each leaves the cache and the sequences as they were.

class ModelRunnerErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = Model::Load(kStories);
    ASSERT_TRUE(model);
    model_ = *model;
  }
  std::shared_ptr<const Model> model_;
};

TEST_F(ModelRunnerErrors, PromptLongerThanTheContextIsRejectedWithTheNumbers) {
  auto runner = MakeRunner(model_, {.n_ctx = 64});
  Sequence seq;
  ForwardOutput out;
  const std::vector<int32_t> ok = Tokens(60, 1), more = Tokens(5, 2), prompt = Tokens(65, 3);
  BatchItem item{&seq, prompt};
  auto st = runner->Forward(std::span<const BatchItem>(&item, 1), &out);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Code::kInvalidArgument);
  EXPECT_THAT(st.error().message, HasSubstr("context"));
  EXPECT_THAT(st.error().message, HasSubstr("65"));
  EXPECT_THAT(st.error().message, HasSubstr("64"));
  EXPECT_EQ(seq.n_tokens(), 0);
  EXPECT_TRUE(seq.blocks().empty());
  // 60 fit; 5 more overflow.
  item.tokens = ok;
  ASSERT_TRUE(runner->Forward(std::span<const BatchItem>(&item, 1), &out));
  item.tokens = more;
  st = runner->Forward(std::span<const BatchItem>(&item, 1), &out);
  ASSERT_FALSE(st);
  EXPECT_THAT(st.error().message, HasSubstr("60 tokens"));
  EXPECT_EQ(seq.n_tokens(), 60);
}

TEST_F(ModelRunnerErrors, TokenIdOutsideTheVocabularyIsRejected) {
  auto runner = MakeRunner(model_);
  Sequence seq;
  ForwardOutput out;
  for (int32_t bad : {-1, 512, 100000}) {
    const std::vector<int32_t> tokens = {1, 2, bad};
    BatchItem item{&seq, tokens};
    auto st = runner->Forward(std::span<const BatchItem>(&item, 1), &out);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, Code::kInvalidArgument);
    EXPECT_THAT(st.error().message, HasSubstr(std::to_string(bad)));
    EXPECT_EQ(seq.n_tokens(), 0);
  }
}

TEST_F(ModelRunnerErrors, NoFreeKvBlockIsResourceExhaustedAndChangesNothing) {
  // 4 blocks of 16 positions: 64 positions for all sequences together.
  auto runner = MakeRunner(model_, {.n_ctx = 512, .kv_cache = {.block_tokens = 16, .n_blocks = 4}});
  KvCache& cache = runner->kv_cache();
  Sequence a, b;
  ForwardOutput out;
  const std::vector<int32_t> pa = Tokens(40, 1), pb = Tokens(30, 2);
  BatchItem item{&a, pa};
  ASSERT_TRUE(runner->Forward(std::span<const BatchItem>(&item, 1), &out));  // 3 blocks
  EXPECT_EQ(cache.n_free_blocks(), 1);
  const BatchItem both[] = {{&a, Tokens(1, 3)}, {&b, pb}};  // b needs 2 blocks
  std::vector<int32_t> one = {5};
  const BatchItem batch[] = {{&a, one}, {&b, pb}};
  auto st = runner->Forward(batch, &out);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Code::kResourceExhausted);
  EXPECT_EQ(cache.n_free_blocks(), 1);
  EXPECT_EQ(a.n_tokens(), 40);
  EXPECT_EQ(a.blocks().size(), 3u);
  EXPECT_TRUE(b.blocks().empty());
  (void)both;
  // After releasing a, b fits.
  cache.Release(&a);
  item = {&b, pb};
  EXPECT_TRUE(runner->Forward(std::span<const BatchItem>(&item, 1), &out));
}

TEST_F(ModelRunnerErrors, MalformedBatchesAreRejected) {
  auto runner = MakeRunner(model_);
  Sequence seq;
  ForwardOutput out;
  EXPECT_FALSE(runner->Forward({}, &out));
  const std::vector<int32_t> t = {1};
  const BatchItem twice[] = {{&seq, t}, {&seq, t}};
  auto st = runner->Forward(twice, &out);
  ASSERT_FALSE(st);
  EXPECT_THAT(st.error().message, HasSubstr("repeats"));
  const BatchItem empty[] = {{&seq, {}}};
  EXPECT_FALSE(runner->Forward(empty, &out));
  EXPECT_EQ(seq.n_tokens(), 0);
}

// ---- bad files: clear errors naming the file and the problem.

TEST(ModelLoadErrors, TruncatedGguf) {
  TempDir dir;
  std::ifstream in(kStories, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t keep : {size_t{10}, bytes.size() / 3, bytes.size() - 100}) {
    const std::string path = dir / "truncated.gguf";
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, keep);
    auto model = Model::Load(path);
    ASSERT_FALSE(model) << keep;
    EXPECT_EQ(model.error().code, Code::kInvalidArgument) << model.error().message;
    EXPECT_THAT(model.error().message, HasSubstr(path));
  }
}

TEST(ModelLoadErrors, MissingFileAndDirectory) {
  TempDir dir;
  auto model = Model::Load(dir / "nope.gguf");
  ASSERT_FALSE(model);
  EXPECT_EQ(model.error().code, Code::kNotFound);
  std::filesystem::create_directories(dir / "empty");
  model = Model::Load(dir / "empty");
  ASSERT_FALSE(model);
  EXPECT_EQ(model.error().code, Code::kNotFound);
  EXPECT_THAT(model.error().message, HasSubstr("config.json"));
}

TEST(ModelLoadErrors, UnknownArchitecture) {
  TempDir dir;
  GgufWriter w;
  w.SetString("general.architecture", "gemma");
  ASSERT_TRUE(w.WriteFile(dir / "gemma.gguf"));
  auto model = Model::Load(dir / "gemma.gguf");
  ASSERT_FALSE(model);
  EXPECT_EQ(model.error().code, Code::kUnimplemented);
  EXPECT_THAT(model.error().message, HasSubstr("gemma"));
  EXPECT_THAT(model.error().message, HasSubstr(dir / "gemma.gguf"));

  // The same through config.json.
  ASSERT_TRUE(
      tools::WriteModel(TinySpec(Architecture::kLlama, TensorType::kF32), {.hf_dir = dir / "hf"}));
  std::ofstream(dir / "hf/config.json", std::ios::trunc)
      << R"({"model_type": "gpt_neox", "hidden_size": 64})";
  model = Model::Load(dir / "hf");
  ASSERT_FALSE(model);
  EXPECT_EQ(model.error().code, Code::kUnimplemented);
  EXPECT_THAT(model.error().message, HasSubstr("gpt_neox"));
}

// Rewrites dir/model.safetensors through `edit(name, info, writer)`.
template <typename Edit>
void RewriteSafetensors(const std::string& dir, const Edit& edit) {
  auto file = SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file);
  std::vector<std::vector<uint8_t>> copies;
  SafetensorsWriter w;
  for (const SafetensorsTensorInfo& t : file->tensors()) {
    copies.emplace_back(static_cast<const uint8_t*>(t.data),
                        static_cast<const uint8_t*>(t.data) + t.size_bytes);
    edit(t, std::span<const uint8_t>(copies.back()), &w);
  }
  ASSERT_TRUE(w.WriteFile(dir + "/model.safetensors.new"));
  file = SafetensorsFile::Open(dir + "/model.safetensors.new");  // drop the old mapping first
  std::filesystem::rename(dir + "/model.safetensors.new", dir + "/model.safetensors");
}

TEST(ModelLoadErrors, MissingTensorIsNamed) {
  TempDir dir;
  ASSERT_TRUE(
      tools::WriteModel(TinySpec(Architecture::kQwen2, TensorType::kF32), {.hf_dir = dir / "hf"}));
  RewriteSafetensors(dir / "hf", [](const SafetensorsTensorInfo& t, std::span<const uint8_t> d,
                                    SafetensorsWriter* w) {
    if (t.name != "model.layers.1.self_attn.k_proj.bias") {
      ASSERT_TRUE(w->AddTensor(t.name, *t.type, t.shape, d));
    }
  });
  auto model = Model::Load(dir / "hf");
  ASSERT_FALSE(model);
  EXPECT_EQ(model.error().code, Code::kNotFound);
  EXPECT_THAT(model.error().message, HasSubstr("model.layers.1.self_attn.k_proj.bias"));
  EXPECT_THAT(model.error().message, HasSubstr(dir / "hf"));
}

TEST(ModelLoadErrors, WrongShapeIsNamedWithBothShapes) {
  TempDir dir;
  ASSERT_TRUE(
      tools::WriteModel(TinySpec(Architecture::kLlama, TensorType::kF16), {.hf_dir = dir / "hf"}));
  RewriteSafetensors(dir / "hf", [](const SafetensorsTensorInfo& t, std::span<const uint8_t> d,
                                    SafetensorsWriter* w) {
    std::vector<int64_t> shape = t.shape;
    if (t.name == "model.layers.0.mlp.up_proj.weight") shape = {shape[0] / 2, shape[1] * 2};
    ASSERT_TRUE(w->AddTensor(t.name, *t.type, shape, d));
  });
  auto model = Model::Load(dir / "hf");
  ASSERT_FALSE(model);
  EXPECT_EQ(model.error().code, Code::kInvalidArgument);
  EXPECT_THAT(model.error().message, HasSubstr("model.layers.0.mlp.up_proj.weight"));
  EXPECT_THAT(model.error().message, HasSubstr("has shape [64, 128], expected [128, 64]"));
}

TEST(ModelLoadErrors, UnsupportedWeightTypeIsNamed) {
  TempDir dir;
  // safetensors: an integer dtype where a weight should be.
  ASSERT_TRUE(
      tools::WriteModel(TinySpec(Architecture::kLlama, TensorType::kF16), {.hf_dir = dir / "hf"}));
  RewriteSafetensors(dir / "hf", [](const SafetensorsTensorInfo& t, std::span<const uint8_t> d,
                                    SafetensorsWriter* w) {
    if (t.name == "model.layers.1.self_attn.o_proj.weight") {
      ASSERT_TRUE(w->AddRawTensor(t.name, "I16", t.shape, d));
    } else {
      ASSERT_TRUE(w->AddTensor(t.name, *t.type, t.shape, d));
    }
  });
  auto model = Model::Load(dir / "hf");
  ASSERT_FALSE(model);
  EXPECT_EQ(model.error().code, Code::kUnimplemented);
  EXPECT_THAT(model.error().message, HasSubstr("model.layers.1.self_attn.o_proj.weight"));
  EXPECT_THAT(model.error().message, HasSubstr("I16"));

  // GGUF: a Q4_0 tensor relabelled MXFP4 (blocks of 32 too, a byte smaller, so the tensor stays
  // inside the file; a type we cannot run).
  const std::string path = dir / "m.gguf";
  ASSERT_TRUE(
      tools::WriteModel(TinySpec(Architecture::kLlama, TensorType::kQ4_0), {.gguf_path = path}));
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const std::string name = "blk.1.ffn_down.weight";
  size_t at = bytes.find(name);
  ASSERT_NE(at, std::string::npos);
  at += name.size();
  uint32_t n_dims = 0;
  std::memcpy(&n_dims, bytes.data() + at, 4);
  ASSERT_EQ(n_dims, 2u);
  const size_t type_at = at + 4 + 8 * n_dims;
  uint32_t type = 0;
  std::memcpy(&type, bytes.data() + type_at, 4);
  ASSERT_EQ(type, static_cast<uint32_t>(TensorType::kQ4_0));
  type = static_cast<uint32_t>(TensorType::kMXFP4);
  f.seekp(static_cast<std::streamoff>(type_at));
  f.write(reinterpret_cast<const char*>(&type), 4);
  f.close();
  model = Model::Load(path);
  ASSERT_FALSE(model);
  EXPECT_EQ(model.error().code, Code::kUnimplemented);
  EXPECT_THAT(model.error().message, HasSubstr(name));
  EXPECT_THAT(model.error().message, HasSubstr("MXFP4"));
  EXPECT_THAT(model.error().message, HasSubstr(path));
}

// ---- other real files, HF directory extras, GGUF == HF.

TEST(ModelLoad, Llama2TinyRandomF16WithTheFullVocabularyRuns) {
  auto model = Model::Load(std::string(YUNZHI_TESTDATA_DIR) + "/models/llama-2-tiny-random.gguf");
  ASSERT_TRUE(model) << model.error().ToString();
  const ModelConfig& c = (*model)->config();
  EXPECT_EQ(c.architecture, Architecture::kLlama);
  EXPECT_EQ(c.n_vocab, 32000);
  EXPECT_EQ(c.weight_type, TensorType::kF16);
  EXPECT_EQ((*model)->tokenizer().n_vocab(), 32000);
  const std::vector<int32_t> prompt =
      (*model)->tokenizer().Encode("Hello world", {.add_special = true});
  ASSERT_FALSE(prompt.empty());
  EXPECT_EQ(prompt[0], 1);  // BOS
  const std::vector<float> logits = RunAlone(*model, {prompt});
  ASSERT_EQ(logits.size(), prompt.size() * 32000);
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
}

TEST(ModelLoad, VocabOnlySkipsTheTensorsAndCannotRun) {
  auto model = Model::Load(kStories, {.vocab_only = true});
  ASSERT_TRUE(model) << model.error().ToString();
  EXPECT_TRUE((*model)->vocab_only());
  EXPECT_EQ((*model)->tokenizer().n_vocab(), 512);
  auto runner = ModelRunner::Create(*model);
  ASSERT_FALSE(runner);
  EXPECT_EQ(runner.error().code, Code::kFailedPrecondition);
}

TEST(ModelLoad, HfDirectoryReadsTokenizerTemplateAndGenerationConfig) {
  TempDir dir;
  ASSERT_TRUE(
      tools::WriteModel(TinySpec(Architecture::kQwen3, TensorType::kBF16), {.hf_dir = dir / "hf"}));
  auto model = Model::Load(dir / "hf");
  ASSERT_TRUE(model) << model.error().ToString();
  const Model& m = **model;
  EXPECT_EQ(m.config().architecture, Architecture::kQwen3);
  EXPECT_EQ(m.config().weight_type, TensorType::kBF16);
  EXPECT_EQ(m.config().rope.layout, RopeLayout::kNeox);
  EXPECT_TRUE(m.config().qk_norm);
  EXPECT_EQ(m.tokenizer().n_vocab(), 300);
  EXPECT_THAT(m.chat_template(), HasSubstr("<|im_start|>"));
  EXPECT_EQ(m.generation_defaults().eos_token_ids, (std::vector<int32_t>{297, 299}));
  ASSERT_TRUE(m.generation_defaults().temperature);
  EXPECT_FLOAT_EQ(*m.generation_defaults().temperature, 0.7f);
  EXPECT_EQ(m.tokenizer().Decode(m.tokenizer().Encode("hello world")), "hello world");
}

TEST(ModelLoad, ShardedSafetensorsLoadLikeOneFile) {
  TempDir dir;
  ASSERT_TRUE(tools::WriteModel(TinySpec(Architecture::kMistral, TensorType::kF32),
                                {.hf_dir = dir / "hf"}));
  auto one = Model::Load(dir / "hf");
  ASSERT_TRUE(one);
  const std::vector<float> expected = RunAlone(*one, {Tokens(9, 1)});
  one->reset();
  {
    auto file = SafetensorsFile::Open(dir / "hf/model.safetensors");
    ASSERT_TRUE(file);
    SafetensorsWriter w;
    for (const SafetensorsTensorInfo& t : file->tensors()) {
      ASSERT_TRUE(
          w.AddTensor(t.name, *t.type, t.shape,
                      std::span<const uint8_t>(static_cast<const uint8_t*>(t.data), t.size_bytes)));
    }
    ASSERT_TRUE(w.WriteSharded(dir / "hf", 100000));
  }
  std::filesystem::remove(dir / "hf/model.safetensors");
  auto sharded = Model::Load(dir / "hf");
  ASSERT_TRUE(sharded) << sharded.error().ToString();
  EXPECT_EQ(RunAlone(*sharded, {Tokens(9, 1)}), expected);
}

TEST(MakeModelCommand, WritesLoadableGgufAndHfDirectoryFromFlags) {
  TempDir dir;
  const std::string cmd = std::string(YUNZHI_MAKE_MODEL) +
                          " --arch qwen3 --type bf16 --n-vocab 300 --n-embd 64 --n-ff 128"
                          " --n-head 4 --n-head-kv 2 --head-dim 32 --n-layer 3 --tied 1 --seed 7"
                          " --gguf " +
                          (dir / "m.gguf") + " --hf " + (dir / "hf");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (const std::string& path : {dir / "m.gguf", dir / "hf"}) {
    auto model = Model::Load(path);
    ASSERT_TRUE(model) << model.error().ToString();
    const ModelConfig& c = (*model)->config();
    EXPECT_EQ(c.architecture, Architecture::kQwen3);
    EXPECT_EQ(c.n_layer, 3);
    EXPECT_EQ(c.head_dim, 32);
    EXPECT_TRUE(c.tied_output);
    EXPECT_EQ(c.weight_type, TensorType::kBF16);
  }
  // A quantised type cannot go into safetensors: a clear error, non-zero exit.
  const std::string bad =
      std::string(YUNZHI_MAKE_MODEL) + " --type q4_0 --hf " + (dir / "x") + " 2>/dev/null";
  EXPECT_NE(std::system(bad.c_str()), 0);

  // Q5_0 from --type, in rows of 896 (Qwen2.5-0.5B's n_embd): loads and runs.
  const std::string q5_0 = std::string(YUNZHI_MAKE_MODEL) +
                           " --arch qwen2 --type q5_0 --n-vocab 300 --n-embd 896 --n-ff 256"
                           " --n-head 14 --n-head-kv 2 --n-layer 1 --gguf " +
                           (dir / "q5_0.gguf");
  ASSERT_EQ(std::system(q5_0.c_str()), 0) << q5_0;
  auto model = Model::Load(dir / "q5_0.gguf");
  ASSERT_TRUE(model) << model.error().ToString();
  EXPECT_EQ((*model)->config().weight_type, TensorType::kQ5_0);
  EXPECT_EQ((*model)->config().n_embd, 896);
  const std::vector<float> logits = RunAlone(*model, {Tokens(5, 1)});
  ASSERT_EQ(logits.size(), 5u * 300u);
  EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float x) { return std::isfinite(x); }));

  // The super-block types from --type, same shape: rows of 896 fall back as in llama.cpp's
  // files (Q5_K_M: Q5_1; IQ4_XS, Q3_K_M, Q2_K: IQ4_NL), down's rows of n_ff = 512 keep the type;
  // loads and runs.
  const std::tuple<const char*, std::string_view, std::string_view> super_block_cases[] = {
      {"q5_k", "Q5_K", "Q5_1"},
      {"iq4_xs", "IQ4_XS", "IQ4_NL"},
      {"q3_k", "Q3_K", "IQ4_NL"},
      {"q2_k", "Q2_K", "IQ4_NL"}};
  for (const auto& [flag, bulk, fallback] : super_block_cases) {
    SCOPED_TRACE(flag);
    const std::string path = dir / (std::string(flag) + ".gguf");
    const std::string command = std::string(YUNZHI_MAKE_MODEL) + " --arch qwen2 --type " + flag +
                                " --n-vocab 300 --n-embd 896 --n-ff 512"
                                " --n-head 14 --n-head-kv 2 --n-layer 1 --gguf " +
                                path;
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    {
      auto gguf = GgufFile::Open(path);
      ASSERT_TRUE(gguf) << gguf.error().ToString();
      for (const char* name : {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_up.weight",
                               "blk.0.ffn_down.weight"}) {
        SCOPED_TRACE(name);
        const GgufTensorInfo* t = gguf->FindTensor(name);
        ASSERT_NE(t, nullptr);
        EXPECT_EQ(TypeName(t->type),
                  std::string_view(name) == "blk.0.ffn_down.weight" ? bulk : fallback);
      }
    }
    auto loaded = Model::Load(path);
    ASSERT_TRUE(loaded) << loaded.error().ToString();
    EXPECT_EQ((*loaded)->config().n_embd, 896);
    const std::vector<float> out = RunAlone(*loaded, {Tokens(5, 1)});
    ASSERT_EQ(out.size(), 5u * 300u);
    EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](float x) { return std::isfinite(x); }));
  }
}

TEST(ModelLoad, GgufAndHfFilesOfOneModelGiveTheSameLogits) {
  // The writer permutes llama Q/K rows for GGUF (interleaved RoPE) and keeps the HF order
  // (rotate-half RoPE): the engine must undo exactly that.
  for (Architecture arch : {Architecture::kLlama, Architecture::kQwen2}) {
    TempDir dir;
    ASSERT_TRUE(tools::WriteModel(TinySpec(arch, TensorType::kF32),
                                  {.gguf_path = dir / "m.gguf", .hf_dir = dir / "hf"}));
    auto gguf = Model::Load(dir / "m.gguf");
    auto hf = Model::Load(dir / "hf");
    ASSERT_TRUE(gguf && hf);
    EXPECT_EQ((*gguf)->config().rope.layout,
              arch == Architecture::kLlama ? RopeLayout::kNormal : RopeLayout::kNeox);
    EXPECT_EQ((*hf)->config().rope.layout, RopeLayout::kNeox);
    const std::vector<int32_t> t = Tokens(50, 9);
    EXPECT_LT(MaxRelDiff(RunAlone(*gguf, {t}), RunAlone(*hf, {t})), 1e-4) << ArchitectureName(arch);
  }
}

}  // namespace
}  // namespace yunzhi::engine
