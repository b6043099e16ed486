#include "yunzhi/engine/quantize.h"

#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/safetensors.h"
#include "yunzhi/engine/sampler.h"  // SplitMix64, a specified generator for test data
#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("yunzhi_quantize_test_" + std::to_string(::getpid()) + "_" + std::to_string(next_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }
  std::vector<std::string> Files() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path_)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  static inline int next_ = 0;
  fs::path path_;
};

// Gaussian-ish values (sum of uniforms) from a fixed seed.
std::vector<float> RandomValues(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) {
    double s = 0;
    for (int i = 0; i < 4; ++i) s += static_cast<double>(SplitMix64(&seed) >> 11) * 0x1.0p-53;
    x = static_cast<float>((s - 2.0) * 0.05);
  }
  return v;
}

std::vector<uint8_t> AsBytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

struct ModelTensor {
  std::string name;
  std::vector<int64_t> ne;  // GGML order
  std::vector<float> values;
};

// A two-layer llama-shaped model with F32 weights: rows of 256 (K-quant friendly) and one
// tensor with rows of 96 (a multiple of 32 but not of 256).
std::vector<ModelTensor> SmallModel(bool with_output) {
  std::vector<ModelTensor> t;
  uint64_t seed = 1;
  auto add = [&](std::string name, std::vector<int64_t> ne) {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    t.push_back({std::move(name), std::move(ne), RandomValues(n, seed++)});
  };
  add("token_embd.weight", {256, 64});
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {256});
    add(b + "attn_q.weight", {256, 256});
    add(b + "attn_k.weight", {256, 64});
    add(b + "attn_v.weight", {256, 64});
    add(b + "attn_output.weight", {256, 256});
    add(b + "ffn_norm.weight", {256});
    add(b + "ffn_gate.weight", {256, 96});
    add(b + "ffn_up.weight", {256, 96});
    add(b + "ffn_down.weight", {96, 256});
  }
  add("output_norm.weight", {256});
  if (with_output) add("output.weight", {256, 64});
  return t;
}

void WriteGguf(const std::string& path, const std::vector<ModelTensor>& tensors) {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetString("general.name", "tiny");
  w.SetU32("llama.block_count", 2);
  w.SetU32("llama.attention.head_count", 8);
  w.SetU32("llama.attention.head_count_kv", 2);
  w.SetF32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.SetU32("general.file_type", 0);
  std::vector<std::string> tokens = {"<s>", "</s>", "a", "b"};
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  GgufWriter::Array nested(GgufValueType::kArray);
  GgufWriter::Array inner(GgufValueType::kInt16);
  inner.AddI16(-3).AddI16(7);
  nested.AddArray(inner);
  w.SetArray("test.nested", nested);
  w.SetBool("test.flag", true);
  w.SetF64("test.f64", 2.5);
  for (const ModelTensor& t : tensors) {
    ASSERT_TRUE(w.AddTensor(t.name, TensorType::kF32, t.ne, AsBytes(t.values)).has_value());
  }
  ASSERT_TRUE(w.WriteFile(path).has_value());
}

double NormalisedRmsError(const std::vector<float>& want, const std::vector<float>& got) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += (want[i] - got[i]) * (want[i] - got[i]);
    ref += want[i] * want[i];
  }
  return std::sqrt(err / ref);
}

// Tolerances on this data (sum of 4 uniforms: bell-shaped, bounded), as RMS error relative to
// the RMS of the values. Measured with the reference quantisers: F16 0.0002, Q8_0 0.0051,
// Q6_K 0.0166, Q5_K 0.0346, Q5_1 0.0365, Q5_0 0.041, Q4_K 0.069, IQ4_NL 0.071, IQ4_XS 0.072,
// Q4_0 0.082, Q3_K 0.139, Q2_K 0.258; the bounds leave 1.15x-5x headroom. (The exact check is the
// bit-identity with Quantize(); these bounds catch a wrong type or layout on top of it.)
double Tolerance(TensorType type) {
  switch (type) {
    case TensorType::kF32:
      return 0.0;
    case TensorType::kF16:
      return 1e-3;
    case TensorType::kQ8_0:
      return 0.01;
    case TensorType::kQ6_K:
      return 0.025;
    case TensorType::kQ4_K:
      return 0.09;
    case TensorType::kQ5_0:
      return 0.055;
    case TensorType::kQ5_1:
      return 0.048;
    case TensorType::kQ5_K:
      return 0.045;
    case TensorType::kQ4_0:
      return 0.11;
    case TensorType::kIQ4_NL:
    case TensorType::kIQ4_XS:
      return 0.09;
    case TensorType::kQ3_K:
      return 0.17;
    case TensorType::kQ2_K:
      return 0.3;
    default:
      return 0.0;
  }
}

void CheckQuantized(const std::string& out_path, const std::vector<ModelTensor>& tensors,
                    const std::map<std::string, TensorType>& want_types) {
  Result<GgufFile> out = GgufFile::Open(out_path);
  ASSERT_TRUE(out.has_value()) << out.error().ToString();
  ASSERT_EQ(out->tensors().size(), tensors.size());
  for (const ModelTensor& t : tensors) {
    SCOPED_TRACE(t.name);
    Result<TensorView> v = out->GetTensor(t.name);
    ASSERT_TRUE(v.has_value());
    ASSERT_TRUE(want_types.contains(t.name));
    EXPECT_EQ(TypeName(v->type), TypeName(want_types.at(t.name)));
    EXPECT_EQ(v->n_dims, static_cast<int>(t.ne.size()));
    for (size_t d = 0; d < t.ne.size(); ++d) EXPECT_EQ(v->ne[d], t.ne[d]);
    // Bit-identical to the reference quantiser, row by row.
    const int64_t n = v->ne[0];
    std::vector<uint8_t> expected(static_cast<size_t>(RowSizeBytes(v->type, n)));
    const auto* got = static_cast<const uint8_t*>(v->data);
    bool identical = true;
    for (int64_t r = 0; r < v->n_rows(); ++r) {
      Quantize(v->type, t.values.data() + r * n, expected.data(), n);
      identical &= std::memcmp(expected.data(), got + r * expected.size(), expected.size()) == 0;
    }
    EXPECT_TRUE(identical);
    std::vector<float> back(t.values.size());
    Dequantize(v->type, v->data, back.data(), static_cast<int64_t>(back.size()));
    EXPECT_LE(NormalisedRmsError(t.values, back), Tolerance(v->type));
  }
}

// The recipe for SmallModel (2 layers, 8 heads on 2 KV heads, rows of 256 and 96), worked out by
// hand from llama.cpp's rules.
std::map<std::string, TensorType> ExpectedTypes(QuantizeTarget target, bool with_output) {
  using T = TensorType;
  using Q = QuantizeTarget;
  std::map<std::string, TensorType> m;
  const std::map<Q, T> bulk = {
      {Q::kQ8_0, T::kQ8_0},     {Q::kQ6_K, T::kQ6_K},   {Q::kQ5_K_M, T::kQ5_K},
      {Q::kQ5_K_S, T::kQ5_K},   {Q::kQ5_1, T::kQ5_1},   {Q::kQ5_0, T::kQ5_0},
      {Q::kQ4_K_M, T::kQ4_K},   {Q::kQ4_K_S, T::kQ4_K}, {Q::kQ4_0, T::kQ4_0},
      {Q::kIQ4_XS, T::kIQ4_XS}, {Q::kQ3_K_L, T::kQ3_K}, {Q::kQ3_K_M, T::kQ3_K},
      {Q::kQ3_K_S, T::kQ3_K},   {Q::kQ2_K, T::kQ2_K}};
  const T base = bulk.at(target);
  const T out_type = target == Q::kQ8_0 ? T::kQ8_0 : T::kQ6_K;
  m["token_embd.weight"] = with_output ? base : out_type;
  if (with_output) m["output.weight"] = out_type;
  m["output_norm.weight"] = T::kF32;
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    m[b + "attn_norm.weight"] = T::kF32;
    m[b + "ffn_norm.weight"] = T::kF32;
    m[b + "attn_q.weight"] = base;
    m[b + "attn_k.weight"] = base;
    m[b + "ffn_gate.weight"] = base;
    m[b + "ffn_up.weight"] = base;
    // 2 layers: layer 1 >= 7*2/8 gets more bits in q4_k_m/q5_k_m; layer 0 does not.
    const bool k_mix = target == Q::kQ4_K_M || target == Q::kQ5_K_M;
    const bool more = k_mix && l == 1;
    T v = more ? T::kQ6_K : base;
    if (target == Q::kIQ4_XS) v = T::kQ5_K;  // n_gqa >= 4
    if (target == Q::kQ4_K_S) v = T::kQ5_K;  // the first four attn_v
    if (target == Q::kQ3_K_L) v = T::kQ5_K;
    if (target == Q::kQ3_K_M) v = T::kQ5_K;  // the first two attn_v
    if (target == Q::kQ2_K) v = T::kQ4_K;    // n_gqa >= 4
    m[b + "attn_v.weight"] = v;
    m[b + "attn_output.weight"] = target == Q::kQ3_K_L   ? T::kQ5_K
                                  : target == Q::kQ3_K_M ? T::kQ4_K
                                  : target == Q::kQ2_K   ? T::kQ3_K
                                                         : base;
    T down = more ? T::kQ6_K : base;
    if (target == Q::kQ3_K_L) down = T::kQ5_K;
    if (target == Q::kQ3_K_M) down = T::kQ4_K;  // N >= 2/16
    if (target == Q::kQ2_K) down = T::kQ3_K;
    // Rows of 96: Q2_K, Q3_K and IQ4_XS fall back to IQ4_NL, Q4_K to Q5_0, Q5_K to Q5_1 and
    // Q6_K to Q8_0.
    if (down == T::kQ2_K || down == T::kQ3_K || down == T::kIQ4_XS) down = T::kIQ4_NL;
    if (down == T::kQ4_K) down = T::kQ5_0;
    if (down == T::kQ5_K) down = T::kQ5_1;
    if (down == T::kQ6_K) down = T::kQ8_0;
    m[b + "ffn_down.weight"] = down;
  }
  return m;
}

class QuantizeGguf : public ::testing::TestWithParam<QuantizeTarget> {};

TEST_P(QuantizeGguf, WritesTheRecipeTypesExactValuesAndCopiedMetadata) {
  TempDir dir;
  for (bool with_output : {true, false}) {
    SCOPED_TRACE(with_output ? "separate output" : "tied output");
    const auto tensors = SmallModel(with_output);
    WriteGguf(dir / "in.gguf", tensors);
    std::vector<QuantizeProgress> progress;
    QuantizeOptions options;
    options.target = GetParam();
    options.progress = [&](const QuantizeProgress& p) {
      progress.push_back(p);
      return true;
    };
    Result<QuantizeStats> stats = QuantizeModel(dir / "in.gguf", dir / "out.gguf", options);
    ASSERT_TRUE(stats.has_value()) << stats.error().ToString();
    EXPECT_EQ(stats->n_tensors, static_cast<int64_t>(tensors.size()));
    EXPECT_EQ(stats->out_file_bytes, fs::file_size(dir / "out.gguf"));
    ASSERT_EQ(progress.size(), tensors.size() + 1);
    EXPECT_EQ(progress.back().n_done_tensors, progress.back().n_tensors);
    EXPECT_EQ(progress.back().out_bytes_done, progress.back().out_bytes_total);

    CheckQuantized(dir / "out.gguf", tensors, ExpectedTypes(GetParam(), with_output));

    Result<GgufFile> in = GgufFile::Open(dir / "in.gguf");
    Result<GgufFile> out = GgufFile::Open(dir / "out.gguf");
    ASSERT_TRUE(in.has_value() && out.has_value());
    EXPECT_EQ(*out->GetU32("general.file_type"), QuantizeTargetFileType(GetParam()));
    EXPECT_EQ(*out->GetU32("general.quantization_version"), 2u);
    EXPECT_EQ(*out->GetString("general.name"), "tiny");
    EXPECT_EQ(*out->GetU32("llama.block_count"), 2u);
    EXPECT_FLOAT_EQ(*out->GetF32("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
    EXPECT_THAT(*out->GetStringArray("tokenizer.ggml.tokens"),
                ::testing::ElementsAre("<s>", "</s>", "a", "b"));
    EXPECT_TRUE(*out->GetBool("test.flag"));
    EXPECT_EQ(*out->GetF64("test.f64"), 2.5);
    Result<std::vector<GgufValue>> nested = out->GetArray("test.nested");
    ASSERT_TRUE(nested.has_value());
    ASSERT_EQ(nested->size(), 1u);
    EXPECT_EQ(nested->at(0).array_type(), GgufValueType::kInt16);
    EXPECT_THAT(*nested->at(0).AsI32Array(), ::testing::ElementsAre(-3, 7));
    // Every input key is present with the same type, in the same order.
    ASSERT_EQ(out->metadata().size(), in->metadata().size() + 1);  // + quantization_version
    for (size_t i = 0; i < in->metadata().size(); ++i) {
      EXPECT_EQ(out->metadata()[i].key, in->metadata()[i].key);
      EXPECT_EQ(out->metadata()[i].value.type(), in->metadata()[i].value.type());
    }
    EXPECT_THAT(dir.Files(), ::testing::ElementsAre("in.gguf", "out.gguf"));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Targets, QuantizeGguf,
    ::testing::Values(QuantizeTarget::kQ8_0, QuantizeTarget::kQ6_K, QuantizeTarget::kQ5_K_M,
                      QuantizeTarget::kQ5_K_S, QuantizeTarget::kQ5_1, QuantizeTarget::kQ5_0,
                      QuantizeTarget::kQ4_K_M, QuantizeTarget::kQ4_K_S, QuantizeTarget::kQ4_0,
                      QuantizeTarget::kIQ4_XS, QuantizeTarget::kQ3_K_L, QuantizeTarget::kQ3_K_M,
                      QuantizeTarget::kQ3_K_S, QuantizeTarget::kQ2_K),
    [](const auto& info) { return std::string(QuantizeTargetName(info.param)); });

TEST(Quantize, OutputDoesNotDependOnTheThreadCount) {
  TempDir dir;
  WriteGguf(dir / "in.gguf", SmallModel(true));
  QuantizeOptions options;
  options.target = QuantizeTarget::kQ4_K_M;
  options.n_threads = 1;
  ASSERT_TRUE(QuantizeModel(dir / "in.gguf", dir / "one.gguf", options).has_value());
  options.n_threads = 3;
  ASSERT_TRUE(QuantizeModel(dir / "in.gguf", dir / "three.gguf", options).has_value());
  auto read = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  EXPECT_EQ(read(dir / "one.gguf"), read(dir / "three.gguf"));
}

TEST(Quantize, RequantizesAQuantizedGguf) {
  TempDir dir;
  const auto tensors = SmallModel(true);
  WriteGguf(dir / "in.gguf", tensors);
  QuantizeOptions options;
  options.target = QuantizeTarget::kQ8_0;
  ASSERT_TRUE(QuantizeModel(dir / "in.gguf", dir / "q8.gguf", options).has_value());
  options.target = QuantizeTarget::kQ4_K_M;
  Result<QuantizeStats> s = QuantizeModel(dir / "q8.gguf", dir / "q4km.gguf", options);
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  Result<GgufFile> out = GgufFile::Open(dir / "q4km.gguf");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->FindTensor("blk.0.attn_q.weight")->type, TensorType::kQ4_K);
  EXPECT_EQ(out->FindTensor("output.weight")->type, TensorType::kQ6_K);
}

TEST(Quantize, RecipeHalfOfAttnVAndFfnDownInQ4KM) {
  // 32 layers: llama.cpp's use_more_bits gives 0-3, 28-31 and every third in between.
  int n_more = 0;
  for (int l = 0; l < 32; ++l) {
    const TensorType t =
        QuantizedTypeFor(QuantizeTarget::kQ4_K_M, "blk." + std::to_string(l) + ".ffn_down.weight",
                         2, 4096, {32, true});
    const bool more = l < 4 || l >= 28 || (l - 4) % 3 == 2;
    EXPECT_EQ(t, more ? TensorType::kQ6_K : TensorType::kQ4_K) << l;
    n_more += more;
  }
  EXPECT_EQ(n_more, 16);
  EXPECT_EQ(QuantizedTypeFor(QuantizeTarget::kQ4_K_M, "blk.5.attn_q.weight", 2, 4096, {32, true}),
            TensorType::kQ4_K);
  EXPECT_EQ(QuantizedTypeFor(QuantizeTarget::kQ4_K_M, "blk.5.attn_q.bias", 1, 4096, {32, true}),
            TensorType::kF32);
  EXPECT_EQ(QuantizedTypeFor(QuantizeTarget::kQ8_0, "blk.0.attn_q.weight", 2, 40, {1, true}),
            TensorType::kF16);
}

TEST(Quantize, RecipeFallsBackAsLlamaCppForRowsOfQwen25_05B) {
  // Qwen2.5-0.5B: 24 layers, n_embd 896 (3.5 super-blocks), n_ff 4864 (19 super-blocks), tied
  // output. llama.cpp's Q4_K_M file of it holds Q5_0 where Q4_K does not fit, Q8_0 where Q6_K
  // does not, and Q4_K/Q6_K for ffn_down, whose rows are 4864 long.
  auto type_of = [](const std::string& name, int64_t row_length) {
    return TypeName(QuantizedTypeFor(QuantizeTarget::kQ4_K_M, name, 2, row_length, {24, false}));
  };
  for (const char* name : {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(type_of(std::string("blk.5.") + name + ".weight", 896), "Q5_0");
  }
  // 24 layers: 0-2, 21-23 and 5, 8, ..., 20 get more bits; layer 4 does not.
  EXPECT_EQ(type_of("blk.4.attn_v.weight", 896), "Q5_0");
  EXPECT_EQ(type_of("blk.5.attn_v.weight", 896), "Q8_0");  // more bits: Q6_K does not fit
  EXPECT_EQ(type_of("blk.4.ffn_down.weight", 4864), "Q4_K");
  EXPECT_EQ(type_of("blk.5.ffn_down.weight", 4864), "Q6_K");
  EXPECT_EQ(type_of("token_embd.weight", 896), "Q8_0");  // the tied output: Q6_K -> Q8_0
  // The q4_0 target keeps Q4_0 (no fallback needed); rows that are not whole 32-blocks get F16.
  EXPECT_EQ(
      TypeName(QuantizedTypeFor(QuantizeTarget::kQ4_0, "blk.5.attn_q.weight", 2, 896, {24, false})),
      "Q4_0");
  EXPECT_EQ(type_of("blk.5.attn_q.weight", 900), "F16");
}

TEST(Quantize, RecipeQ5KMIsQ4KMWithQ5KAndQ5_1) {
  // The same Q6_K tensors as q4_k_m (32 layers: 0-3, 28-31 and every third in between), Q5_K
  // elsewhere.
  auto type_of = [](QuantizeTarget target, const std::string& name, int64_t row_length,
                    int64_t n_layer, bool has_output) {
    return TypeName(QuantizedTypeFor(target, name, 2, row_length, {n_layer, has_output}));
  };
  int n_q6_k = 0;
  for (int l = 0; l < 32; ++l) {
    SCOPED_TRACE(l);
    for (const char* tensor :
         {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
      const std::string name = "blk." + std::to_string(l) + "." + tensor + ".weight";
      const std::string_view q4 = type_of(QuantizeTarget::kQ4_K_M, name, 4096, 32, true);
      const std::string_view q5 = type_of(QuantizeTarget::kQ5_K_M, name, 4096, 32, true);
      EXPECT_EQ(q5, q4 == "Q6_K" ? "Q6_K" : "Q5_K") << tensor;
      n_q6_k += q5 == "Q6_K";
    }
  }
  EXPECT_EQ(n_q6_k, 2 * 16);  // attn_v and ffn_down of 16 layers
  EXPECT_EQ(type_of(QuantizeTarget::kQ5_K_M, "output.weight", 4096, 32, true), "Q6_K");
  EXPECT_EQ(type_of(QuantizeTarget::kQ5_K_M, "token_embd.weight", 4096, 32, true), "Q5_K");
  EXPECT_EQ(type_of(QuantizeTarget::kQ5_K_M, "token_embd.weight", 4096, 32, false), "Q6_K");
  EXPECT_EQ(QuantizedTypeFor(QuantizeTarget::kQ5_K_M, "blk.5.attn_q.bias", 1, 4096, {32, true}),
            TensorType::kF32);

  // Qwen2.5-0.5B (24 layers, rows of 896 = 3.5 super-blocks, ffn_down rows of 4864, tied
  // output): llama.cpp's Q5_K_M file holds Q5_1 where Q5_K does not fit and Q8_0 where Q6_K
  // does not.
  auto qwen = [&](const std::string& name, int64_t row_length) {
    return type_of(QuantizeTarget::kQ5_K_M, name, row_length, 24, false);
  };
  for (const char* name : {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(qwen(std::string("blk.5.") + name + ".weight", 896), "Q5_1");
  }
  EXPECT_EQ(qwen("blk.4.attn_v.weight", 896), "Q5_1");
  EXPECT_EQ(qwen("blk.5.attn_v.weight", 896), "Q8_0");  // more bits: Q6_K does not fit
  EXPECT_EQ(qwen("blk.4.ffn_down.weight", 4864), "Q5_K");
  EXPECT_EQ(qwen("blk.5.ffn_down.weight", 4864), "Q6_K");
  EXPECT_EQ(qwen("token_embd.weight", 896), "Q8_0");   // the tied output: Q6_K -> Q8_0
  EXPECT_EQ(qwen("blk.5.attn_q.weight", 900), "F16");  // not whole 32-blocks either
}

TEST(Quantize, RecipeLowBitTargetsAsLlamaCpp) {
  // The expectations below are llama.cpp's llama_tensor_get_type for these shapes, worked out by
  // hand from its rules (quantize.h has them as a table).
  auto type_of = [](QuantizeTarget target, const std::string& name, int64_t row_length,
                    const RecipeModel& model) {
    return std::string(TypeName(QuantizedTypeFor(target, name, 2, row_length, model)));
  };
  using Q = QuantizeTarget;
  // Llama-3.2-1B: 16 layers, 32 heads on 8 KV heads (n_gqa 4), rows of 2048 and 8192 (ffn_down),
  // output tied to the embeddings.
  const RecipeModel llama1b{.n_layer = 16, .has_output = false, .n_gqa = 4};
  auto l1 = [&](Q target, const std::string& name) {
    return type_of(target, name, name.ends_with("ffn_down.weight") ? 8192 : 2048, llama1b);
  };
  EXPECT_EQ(l1(Q::kQ3_K_M, "blk.3.attn_q.weight"), "Q3_K");
  EXPECT_EQ(l1(Q::kQ3_K_M, "blk.3.ffn_gate.weight"), "Q3_K");
  EXPECT_EQ(l1(Q::kQ3_K_M, "blk.0.attn_v.weight"), "Q5_K");  // the first two attn_v
  EXPECT_EQ(l1(Q::kQ3_K_M, "blk.1.attn_v.weight"), "Q5_K");
  EXPECT_EQ(l1(Q::kQ3_K_M, "blk.2.attn_v.weight"), "Q4_K");
  EXPECT_EQ(l1(Q::kQ3_K_M, "blk.0.ffn_down.weight"), "Q5_K");  // N < 16/16
  EXPECT_EQ(l1(Q::kQ3_K_M, "blk.1.ffn_down.weight"), "Q4_K");
  EXPECT_EQ(l1(Q::kQ3_K_M, "blk.9.attn_output.weight"), "Q4_K");
  EXPECT_EQ(l1(Q::kQ3_K_M, "token_embd.weight"), "Q6_K");  // the tied output
  EXPECT_EQ(l1(Q::kQ2_K, "blk.3.attn_q.weight"), "Q2_K");
  EXPECT_EQ(l1(Q::kQ2_K, "blk.3.ffn_up.weight"), "Q2_K");
  EXPECT_EQ(l1(Q::kQ2_K, "blk.3.attn_v.weight"), "Q4_K");  // n_gqa >= 4
  EXPECT_EQ(l1(Q::kQ2_K, "blk.3.ffn_down.weight"), "Q3_K");
  EXPECT_EQ(l1(Q::kQ2_K, "blk.3.attn_output.weight"), "Q3_K");
  EXPECT_EQ(l1(Q::kQ2_K, "token_embd.weight"), "Q6_K");
  EXPECT_EQ(l1(Q::kIQ4_XS, "blk.3.attn_q.weight"), "IQ4_XS");
  EXPECT_EQ(l1(Q::kIQ4_XS, "blk.3.attn_v.weight"), "Q5_K");    // n_gqa >= 4
  EXPECT_EQ(l1(Q::kIQ4_XS, "blk.1.ffn_down.weight"), "Q5_K");  // N < 16/8
  EXPECT_EQ(l1(Q::kIQ4_XS, "blk.2.ffn_down.weight"), "IQ4_XS");
  EXPECT_EQ(l1(Q::kIQ4_XS, "blk.2.attn_output.weight"), "IQ4_XS");
  EXPECT_EQ(l1(Q::kQ4_K_S, "blk.3.attn_v.weight"), "Q5_K");  // N < 4
  EXPECT_EQ(l1(Q::kQ4_K_S, "blk.4.attn_v.weight"), "Q4_K");
  EXPECT_EQ(l1(Q::kQ4_K_S, "blk.1.ffn_down.weight"), "Q5_K");  // N < 16/8
  EXPECT_EQ(l1(Q::kQ4_K_S, "blk.2.ffn_down.weight"), "Q4_K");
  EXPECT_EQ(l1(Q::kQ3_K_L, "blk.9.attn_v.weight"), "Q5_K");
  EXPECT_EQ(l1(Q::kQ3_K_L, "blk.9.ffn_down.weight"), "Q5_K");
  EXPECT_EQ(l1(Q::kQ3_K_L, "blk.9.attn_output.weight"), "Q5_K");
  EXPECT_EQ(l1(Q::kQ3_K_L, "blk.9.ffn_up.weight"), "Q3_K");
  for (const char* name : {"blk.0.attn_v.weight", "blk.0.ffn_down.weight",
                           "blk.0.attn_output.weight", "blk.0.attn_q.weight"}) {
    EXPECT_EQ(l1(Q::kQ3_K_S, name), "Q3_K") << name;
    EXPECT_EQ(l1(Q::kQ5_K_S, name), "Q5_K") << name;
    EXPECT_EQ(l1(Q::kQ5_0, name), "Q5_0") << name;
    EXPECT_EQ(l1(Q::kQ5_1, name), "Q5_1") << name;
  }
  EXPECT_EQ(l1(Q::kQ5_0, "token_embd.weight"), "Q6_K");
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_v.weight", "blk.7.ffn_down.weight",
                           "token_embd.weight"}) {
    EXPECT_EQ(l1(Q::kQ6_K, name), "Q6_K") << name;
  }

  // A Llama-2-7B shape: 32 layers, no grouped-query attention, a separate output.
  const RecipeModel llama2{.n_layer = 32, .has_output = true, .n_gqa = 1};
  EXPECT_EQ(type_of(Q::kQ2_K, "blk.3.attn_v.weight", 4096, llama2), "Q3_K");
  EXPECT_EQ(type_of(Q::kQ2_K, "token_embd.weight", 4096, llama2), "Q2_K");
  EXPECT_EQ(type_of(Q::kQ2_K, "output.weight", 4096, llama2), "Q6_K");
  EXPECT_EQ(type_of(Q::kIQ4_XS, "blk.3.attn_v.weight", 4096, llama2), "IQ4_XS");
  EXPECT_EQ(type_of(Q::kQ3_K_M, "blk.1.ffn_down.weight", 11008, llama2), "Q5_K");  // N < 32/16
  EXPECT_EQ(type_of(Q::kQ3_K_M, "blk.2.ffn_down.weight", 11008, llama2), "Q4_K");
  EXPECT_EQ(type_of(Q::kQ3_K_M, "token_embd.weight", 4096, llama2), "Q3_K");

  // Qwen2.5-0.5B: 24 layers, 14 heads on 2 KV heads (n_gqa 7), rows of 896 (not whole
  // super-blocks: Q2_K/Q3_K/IQ4_XS fall back to IQ4_NL, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to
  // Q8_0) and 4864 (ffn_down, 19 super-blocks), tied output.
  const RecipeModel qwen{.n_layer = 24, .has_output = false, .n_gqa = 7};
  auto qw = [&](Q target, const std::string& name) {
    return type_of(target, name, name.ends_with("ffn_down.weight") ? 4864 : 896, qwen);
  };
  EXPECT_EQ(qw(Q::kQ3_K_M, "blk.5.attn_q.weight"), "IQ4_NL");
  EXPECT_EQ(qw(Q::kQ3_K_M, "blk.5.ffn_up.weight"), "IQ4_NL");
  EXPECT_EQ(qw(Q::kQ3_K_M, "blk.0.attn_v.weight"), "Q5_1");
  EXPECT_EQ(qw(Q::kQ3_K_M, "blk.5.attn_v.weight"), "Q5_0");
  EXPECT_EQ(qw(Q::kQ3_K_M, "blk.5.attn_output.weight"), "Q5_0");
  EXPECT_EQ(qw(Q::kQ3_K_M, "blk.0.ffn_down.weight"), "Q5_K");  // N < 24/16
  EXPECT_EQ(qw(Q::kQ3_K_M, "blk.1.ffn_down.weight"), "Q4_K");
  EXPECT_EQ(qw(Q::kQ3_K_M, "token_embd.weight"), "Q8_0");
  EXPECT_EQ(qw(Q::kQ2_K, "blk.5.attn_q.weight"), "IQ4_NL");
  EXPECT_EQ(qw(Q::kQ2_K, "blk.5.attn_v.weight"), "Q5_0");
  EXPECT_EQ(qw(Q::kQ2_K, "blk.5.attn_output.weight"), "IQ4_NL");
  EXPECT_EQ(qw(Q::kQ2_K, "blk.5.ffn_down.weight"), "Q3_K");
  EXPECT_EQ(qw(Q::kIQ4_XS, "blk.5.attn_q.weight"), "IQ4_NL");
  EXPECT_EQ(qw(Q::kIQ4_XS, "blk.5.attn_v.weight"), "Q5_1");
  EXPECT_EQ(qw(Q::kIQ4_XS, "blk.2.ffn_down.weight"), "Q5_K");  // N < 24/8
  EXPECT_EQ(qw(Q::kIQ4_XS, "blk.3.ffn_down.weight"), "IQ4_XS");
  EXPECT_EQ(qw(Q::kQ6_K, "blk.5.attn_q.weight"), "Q8_0");
  EXPECT_EQ(qw(Q::kQ6_K, "blk.5.ffn_down.weight"), "Q6_K");
  // Rows that are not whole 32-blocks either: F16.
  EXPECT_EQ(type_of(Q::kQ2_K, "blk.5.attn_q.weight", 900, qwen), "F16");
  EXPECT_EQ(type_of(Q::kIQ4_XS, "blk.5.attn_q.weight", 900, qwen), "F16");
}

TEST(Quantize, CorruptInputFailsWithoutOutput) {
  TempDir dir;
  WriteGguf(dir / "in.gguf", SmallModel(true));
  // Truncate in the middle of the tensor data.
  fs::resize_file(dir / "in.gguf", fs::file_size(dir / "in.gguf") / 2);
  QuantizeOptions options;
  options.target = QuantizeTarget::kQ4_0;
  Result<QuantizeStats> s = QuantizeModel(dir / "in.gguf", dir / "out.gguf", options);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, Code::kInvalidArgument);
  EXPECT_THAT(s.error().message, ::testing::HasSubstr("in.gguf"));
  EXPECT_THAT(dir.Files(), ::testing::ElementsAre("in.gguf"));

  // Garbage.
  std::ofstream(dir / "junk.gguf") << "this is not a model";
  EXPECT_FALSE(QuantizeModel(dir / "junk.gguf", dir / "out.gguf", options).has_value());
  EXPECT_FALSE(QuantizeModel(dir / "missing.gguf", dir / "out.gguf", options).has_value());
  EXPECT_THAT(dir.Files(), ::testing::ElementsAre("in.gguf", "junk.gguf"));
}

TEST(Quantize, CancelledOrUnwritableOutputLeavesNothing) {
  TempDir dir;
  WriteGguf(dir / "in.gguf", SmallModel(true));
  QuantizeOptions options;
  options.target = QuantizeTarget::kQ8_0;
  int calls = 0;
  options.progress = [&](const QuantizeProgress&) { return ++calls < 5; };
  Result<QuantizeStats> s = QuantizeModel(dir / "in.gguf", dir / "out.gguf", options);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, Code::kCancelled);
  EXPECT_THAT(dir.Files(), ::testing::ElementsAre("in.gguf"));

  options.progress = nullptr;
  s = QuantizeModel(dir / "in.gguf", dir / "no/such/dir/out.gguf", options);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, Code::kUnavailable);
  EXPECT_EQ(QuantizeModel(dir / "in.gguf", dir / "in.gguf", options).error().code,
            Code::kInvalidArgument);
}

// "Disk full", hermetically: a file size limit makes write(2) fail with EFBIG part way through.
TEST(Quantize, WriteFailurePartWayLeavesNoFile) {
  TempDir dir;
  WriteGguf(dir / "in.gguf", SmallModel(true));
  struct rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 64 * 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);
  QuantizeOptions options;
  options.target = QuantizeTarget::kQ8_0;
  Result<QuantizeStats> s = QuantizeModel(dir / "in.gguf", dir / "out.gguf", options);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  std::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, Code::kUnavailable);
  EXPECT_THAT(s.error().message, ::testing::HasSubstr("out.gguf"));
  EXPECT_THAT(dir.Files(), ::testing::ElementsAre("in.gguf"));
}

TEST(Quantize, ParsesTargets) {
  EXPECT_EQ(*ParseQuantizeTarget("Q4_K_M"), QuantizeTarget::kQ4_K_M);
  EXPECT_EQ(*ParseQuantizeTarget("q8_0"), QuantizeTarget::kQ8_0);
  EXPECT_EQ(*ParseQuantizeTarget("q5_k_m"), QuantizeTarget::kQ5_K_M);
  EXPECT_EQ(*ParseQuantizeTarget("IQ4_XS"), QuantizeTarget::kIQ4_XS);
  EXPECT_EQ(QuantizeTargetName(QuantizeTarget::kQ5_K_M), "q5_k_m");
  // llama.cpp's llama_ftype numbers (LLAMA_FTYPE_MOSTLY_*), which readers show as the file type.
  const std::pair<QuantizeTarget, uint32_t> file_types[] = {
      {QuantizeTarget::kQ8_0, 7},    {QuantizeTarget::kQ6_K, 18},   {QuantizeTarget::kQ5_K_M, 17},
      {QuantizeTarget::kQ5_K_S, 16}, {QuantizeTarget::kQ5_1, 9},    {QuantizeTarget::kQ5_0, 8},
      {QuantizeTarget::kQ4_K_M, 15}, {QuantizeTarget::kQ4_K_S, 14}, {QuantizeTarget::kQ4_0, 2},
      {QuantizeTarget::kIQ4_XS, 30}, {QuantizeTarget::kQ3_K_L, 13}, {QuantizeTarget::kQ3_K_M, 12},
      {QuantizeTarget::kQ3_K_S, 11}, {QuantizeTarget::kQ2_K, 10}};
  for (const auto& [target, file_type] : file_types) {
    EXPECT_EQ(QuantizeTargetFileType(target), file_type) << QuantizeTargetName(target);
    EXPECT_EQ(*ParseQuantizeTarget(QuantizeTargetName(target)), target);
  }
  const auto bad = ParseQuantizeTarget("q4_1");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
  EXPECT_THAT(bad.error().message,
              ::testing::HasSubstr("q8_0, q6_k, q5_k_m, q5_k_s, q5_1, q5_0, q4_k_m, q4_k_s, q4_0, "
                                   "iq4_xs, q3_k_l, q3_k_m, q3_k_s, q2_k"));
}

// ---- Hugging Face input

// A byte-level BPE tokenizer: "a", "b", "Ġ", "ab", one special token.
constexpr std::string_view kTokenizerJson = R"({
  "added_tokens": [{"id": 5, "content": "<|end|>", "special": true}],
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "\u0120": 2, "ab": 3, "\u0120a": 4},
            "merges": ["a b", "\u0120 a"]}
})";

void WriteText(const std::string& path, std::string_view text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A llama HF checkpoint: 4 heads of dim 8 (n_embd 32), 2 KV heads, 1 layer, vocab 8 rows.
struct HfModel {
  std::map<std::string, std::vector<float>> values;  // row-major
  std::map<std::string, std::vector<int64_t>> shapes;
};

HfModel WriteHfLlama(const std::string& dir, const std::string& arch) {
  HfModel m;
  uint64_t seed = 100;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    m.values[name] = RandomValues(n, seed++);
    m.shapes[name] = shape;
  };
  add("model.embed_tokens.weight", {8, 32});
  add("model.norm.weight", {32});
  add("lm_head.weight", {8, 32});
  add("model.layers.0.input_layernorm.weight", {32});
  add("model.layers.0.self_attn.q_proj.weight", {32, 32});
  add("model.layers.0.self_attn.k_proj.weight", {16, 32});
  add("model.layers.0.self_attn.v_proj.weight", {16, 32});
  add("model.layers.0.self_attn.o_proj.weight", {32, 32});
  add("model.layers.0.post_attention_layernorm.weight", {32});
  add("model.layers.0.mlp.gate_proj.weight", {64, 32});
  add("model.layers.0.mlp.up_proj.weight", {64, 32});
  add("model.layers.0.mlp.down_proj.weight", {32, 64});
  SafetensorsWriter w;
  for (const auto& [name, v] : m.values) {
    std::vector<uint8_t> bytes = AsBytes(v);
    EXPECT_TRUE(w.AddTensor(name, TensorType::kF32, m.shapes[name], std::move(bytes)).has_value());
  }
  EXPECT_TRUE(w.WriteFile(dir + "/model.safetensors").has_value());
  WriteText(dir + "/config.json", R"({"architectures": [")" + arch + R"("], "hidden_size": 32,
                "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
                "intermediate_size": 64, "max_position_embeddings": 2048,
                "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "vocab_size": 8,
                "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 8192}})");
  WriteText(dir + "/tokenizer.json", kTokenizerJson);
  WriteText(dir + "/tokenizer_config.json",
            R"({"eos_token": "<|end|>", "chat_template": "{{ messages }}"})");
  return m;
}

TEST(QuantizeHf, ConvertsALlamaDirectoryWithPermutedQkAndTokenizer) {
  TempDir dir;
  fs::create_directories(dir.path() / "llama-tiny");
  const HfModel m = WriteHfLlama(dir / "llama-tiny", "LlamaForCausalLM");
  QuantizeOptions options;
  options.target = QuantizeTarget::kQ8_0;
  Result<QuantizeStats> s = QuantizeModel(dir / "llama-tiny", dir / "out.gguf", options);
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  Result<GgufFile> out = GgufFile::Open(dir / "out.gguf");
  ASSERT_TRUE(out.has_value()) << out.error().ToString();

  EXPECT_EQ(*out->GetString("general.architecture"), "llama");
  EXPECT_EQ(*out->GetString("general.name"), "llama-tiny");
  EXPECT_EQ(*out->GetU32("llama.block_count"), 1u);
  EXPECT_EQ(*out->GetU32("llama.embedding_length"), 32u);
  EXPECT_EQ(*out->GetU32("llama.attention.head_count"), 4u);
  EXPECT_EQ(*out->GetU32("llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(*out->GetU32("llama.feed_forward_length"), 64u);
  EXPECT_EQ(*out->GetU32("llama.context_length"), 2048u);
  EXPECT_EQ(*out->GetU32("llama.rope.dimension_count"), 8u);
  EXPECT_FLOAT_EQ(*out->GetF32("llama.rope.freq_base"), 500000.0f);
  EXPECT_EQ(*out->GetU32("general.file_type"), 7u);
  EXPECT_EQ(*out->GetString("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(*out->GetString("tokenizer.ggml.pre"), "llama-bpe");
  EXPECT_EQ(*out->GetString("tokenizer.chat_template"), "{{ messages }}");
  // 6 tokens from the tokenizer, 2 padding rows; Ġ spelled as in GGUF files.
  EXPECT_THAT(
      *out->GetStringArray("tokenizer.ggml.tokens"),
      ::testing::ElementsAre("a", "b", "\u0120", "ab", "\u0120a", "<|end|>", "[PAD6]", "[PAD7]"));
  EXPECT_THAT(*out->GetStringArray("tokenizer.ggml.merges"),
              ::testing::ElementsAre("a b", "\u0120 a"));
  EXPECT_THAT(*out->GetI32Array("tokenizer.ggml.token_type"),
              ::testing::ElementsAre(1, 1, 1, 1, 1, 3, 5, 5));
  EXPECT_EQ(*out->GetU32("tokenizer.ggml.eos_token_id"), 5u);

  // Names, types and order.
  std::vector<std::string> names;
  for (const GgufTensorInfo& t : out->tensors()) names.emplace_back(t.name);
  EXPECT_THAT(names, ::testing::ElementsAre(
                         "token_embd.weight", "rope_freqs.weight", "blk.0.attn_norm.weight",
                         "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
                         "blk.0.attn_output.weight", "blk.0.ffn_norm.weight",
                         "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight",
                         "output_norm.weight", "output.weight"));
  EXPECT_EQ(out->FindTensor("blk.0.attn_q.weight")->type, TensorType::kQ8_0);
  EXPECT_EQ(out->FindTensor("blk.0.attn_norm.weight")->type, TensorType::kF32);

  // rope_freqs: 4 factors for head_dim 8; the highest frequency is not scaled, the lowest
  // (wavelength 2*pi*500000^(6/8) ~ 116k > 8192) is scaled by the full factor.
  Result<TensorView> rf = out->GetTensor("rope_freqs.weight");
  ASSERT_TRUE(rf.has_value());
  ASSERT_EQ(rf->ne[0], 4);
  const auto* f = static_cast<const float*>(rf->data);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_FLOAT_EQ(f[3], 8.0f);

  // Q/K rows permuted: GGUF row 2i + j of head h is HF row h*hd + j*hd/2 + i (hd = 8).
  for (const auto& [hf, gguf, heads] :
       {std::tuple{"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", 4},
        std::tuple{"model.layers.0.self_attn.k_proj.weight", "blk.0.attn_k.weight", 2}}) {
    SCOPED_TRACE(gguf);
    Result<TensorView> v = out->GetTensor(gguf);
    ASSERT_TRUE(v.has_value());
    const std::vector<float>& src = m.values.at(hf);
    const int64_t rows = v->ne[1];
    EXPECT_EQ(rows, 8 * heads);
    std::vector<float> back(static_cast<size_t>(rows * 32));
    Dequantize(v->type, v->data, back.data(), rows * 32);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t h = r / 8, i = (r % 8) / 2, j = r % 2;
      const int64_t hf_row = h * 8 + j * 4 + i;
      for (int64_t c = 0; c < 32; ++c) {
        ASSERT_NEAR(back[r * 32 + c], src[hf_row * 32 + c], 2e-3) << r << "," << c;
      }
    }
  }
  // V is not permuted.
  Result<TensorView> v = out->GetTensor("blk.0.attn_v.weight");
  std::vector<float> back(16 * 32);
  Dequantize(v->type, v->data, back.data(), 16 * 32);
  EXPECT_NEAR(back[5 * 32 + 3], m.values.at("model.layers.0.self_attn.v_proj.weight")[5 * 32 + 3],
              2e-3);
}

TEST(QuantizeHf, QwenIsNotPermutedAndUnknownTensorsOrArchsFail) {
  TempDir dir;
  fs::create_directories(dir.path() / "qwen");
  const HfModel m = WriteHfLlama(dir / "qwen", "Qwen2ForCausalLM");
  QuantizeOptions options;
  options.target = QuantizeTarget::kQ8_0;
  Result<QuantizeStats> s = QuantizeModel(dir / "qwen", dir / "out.gguf", options);
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  Result<GgufFile> out = GgufFile::Open(dir / "out.gguf");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out->GetString("tokenizer.ggml.pre"), "qwen2");
  Result<TensorView> q = out->GetTensor("blk.0.attn_q.weight");
  std::vector<float> back(32 * 32);
  Dequantize(q->type, q->data, back.data(), 32 * 32);
  const auto& src = m.values.at("model.layers.0.self_attn.q_proj.weight");
  for (size_t i = 0; i < back.size(); ++i) ASSERT_NEAR(back[i], src[i], 2e-3) << i;

  // Unknown architecture.
  fs::create_directories(dir.path() / "gemma");
  WriteHfLlama(dir / "gemma", "GemmaForCausalLM");
  s = QuantizeModel(dir / "gemma", dir / "gemma.gguf", options);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, Code::kUnimplemented);
  EXPECT_THAT(s.error().message, ::testing::HasSubstr("GemmaForCausalLM"));
  EXPECT_FALSE(fs::exists(dir / "gemma.gguf"));

  // Missing config.json.
  fs::remove(dir.path() / "qwen" / "config.json");
  s = QuantizeModel(dir / "qwen", dir / "out2.gguf", options);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, Code::kNotFound);
  EXPECT_FALSE(fs::exists(dir / "out2.gguf"));
}

// The real Qwen2.5 and Llama 3.1 tokenizers survive the conversion: the GGUF vocabulary encodes
// text exactly as the Hugging Face one does.
void CheckRealTokenizer(const std::string& tokenizer_dir, const std::string& arch,
                        int64_t n_vocab_rows, const std::string& want_pre) {
  TempDir dir;
  const std::string model_dir = dir / "model";
  fs::create_directories(model_dir);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(tokenizer_dir + "/" + f, model_dir + "/" + f);
  }
  SafetensorsWriter w;
  const int64_t n_embd = 32;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"model.embed_tokens.weight", {n_vocab_rows, n_embd}},
      {"model.norm.weight", {n_embd}},
      {"model.layers.0.input_layernorm.weight", {n_embd}},
      {"model.layers.0.self_attn.q_proj.weight", {n_embd, n_embd}},
      {"model.layers.0.self_attn.k_proj.weight", {n_embd, n_embd}},
      {"model.layers.0.self_attn.v_proj.weight", {n_embd, n_embd}},
      {"model.layers.0.self_attn.o_proj.weight", {n_embd, n_embd}},
      {"model.layers.0.post_attention_layernorm.weight", {n_embd}},
      {"model.layers.0.mlp.gate_proj.weight", {64, n_embd}},
      {"model.layers.0.mlp.up_proj.weight", {64, n_embd}},
      {"model.layers.0.mlp.down_proj.weight", {n_embd, 64}},
  };
  uint64_t seed = 5;
  for (const auto& [name, shape] : shapes) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    ASSERT_TRUE(
        w.AddTensor(name, TensorType::kF32, shape, AsBytes(RandomValues(n, seed++))).has_value());
  }
  ASSERT_TRUE(w.WriteFile(model_dir + "/model.safetensors").has_value());
  WriteText(model_dir + "/config.json", R"({"architectures": [")" + arch + R"("], "hidden_size": 32,
                "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
                "intermediate_size": 64, "rms_norm_eps": 1e-06, "tie_word_embeddings": true})");
  QuantizeOptions options;
  options.target = QuantizeTarget::kQ4_K_M;
  Result<QuantizeStats> s = QuantizeModel(model_dir, dir / "out.gguf", options);
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  Result<GgufFile> out = GgufFile::Open(dir / "out.gguf");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out->GetString("tokenizer.ggml.pre"), want_pre);
  // Tied output: the token embedding carries the output and gets Q6_K (rows of 32: Q8_0).
  EXPECT_EQ(out->FindTensor("output.weight"), nullptr);
  EXPECT_EQ(out->FindTensor("token_embd.weight")->type, TensorType::kQ8_0);
  EXPECT_FALSE(out->GetString("tokenizer.chat_template")->empty());

  Result<Vocab> from_gguf = VocabFromGguf(*out);
  ASSERT_TRUE(from_gguf.has_value()) << from_gguf.error().ToString();
  EXPECT_EQ(static_cast<int64_t>(from_gguf->tokens.size()), n_vocab_rows);
  Result<Vocab> from_hf = VocabFromHfDir(tokenizer_dir);
  ASSERT_TRUE(from_hf.has_value());
  EXPECT_EQ(from_gguf->bos_id, from_hf->bos_id);
  EXPECT_EQ(from_gguf->eos_id, from_hf->eos_id);
  EXPECT_EQ(from_gguf->add_bos, from_hf->add_bos);
  Result<Tokenizer> a = Tokenizer::Create(std::move(*from_gguf));
  Result<Tokenizer> b = Tokenizer::Create(std::move(*from_hf));
  ASSERT_TRUE(a.has_value() && b.has_value());
  for (std::string_view text :
       {"Hello, world! It's 2026.\n\n  def f(x):\treturn x**2", "通义千问大模型，阿里云发布。",
        "<|im_start|>user\nhi<|im_end|> <|begin_of_text|> naïve café 🙂 1234567"}) {
    const EncodeOptions opts{.add_special = true, .parse_special = true};
    EXPECT_EQ(a->Encode(text, opts), b->Encode(text, opts)) << text;
  }
}

TEST(QuantizeHf, RealQwen25TokenizerRoundTrips) {
  CheckRealTokenizer(std::string(YUNZHI_TESTDATA_DIR) + "/tokenizer/hf/qwen2.5", "Qwen2ForCausalLM",
                     151936, "qwen2");
}

TEST(QuantizeHf, RealLlama31TokenizerRoundTrips) {
  CheckRealTokenizer(std::string(YUNZHI_TESTDATA_DIR) + "/tokenizer/hf/llama3.1",
                     "LlamaForCausalLM", 128256, "llama-bpe");
}

}  // namespace
}  // namespace yunzhi::engine
