// Logits of the engine against our own Python/PyTorch reference forward pass
// (tests/reference/forward.py) on random-weight models written by the model writer (tools/), for
// every architecture, every weight type, GGUF and safetensors.
//
// The reference runs in float64 on the DEQUANTISED weights (the writer saves them), so the
// quantisation error of the weights does not count; what remains is the engine's arithmetic:
// float32 accumulation, and for quantised weights the on-the-fly quantisation of activations
// (Q8_0 blocks for Q8_0/Q4_0/Q5_0/Q5_1/IQ4_NL, Q8_K for the K-quants and IQ4_XS), which is why
// those types get a looser bound. For Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL and IQ4_XS the
// reference also reads the GGUF file itself and dequantises those blocks with its own decoder
// (tests/reference/gguf_weights.py), which must agree bit for bit with the writer's dequantised
// weights, so the block layout is checked independently of the engine.
//
// Error measures, per case (logits of all 200 positions):
//   max  = max over positions of max|engine - reference| / max|reference logit at that position|
//   mean = mean|engine - reference| / mean over positions of max|reference logit|
// Tolerances (max / mean), with what was measured on AVX-512, AVX2 and scalar kernels:
//   F32, F16, BF16 weights     3e-5 / 3e-6    (measured <= 3e-6 / 3e-7: activations stay float)
//   F32 weights, F16 KV cache  5e-3 / 5e-4    (measured <= 2.2e-3 / 2.1e-4)
//   Q8_0, Q4_0, Q5_0, Q5_1,    1.2e-1 / 1.5e-2 (measured <= 8.8e-2 / 9e-3, Q5_K <= 6.8e-2 /
//   Q2_K, Q3_K, Q4_K, Q5_K,    8.7e-3, Q5_1 <= 6.1e-2 / 6.7e-3, Q3_K <= 6.6e-2 / 8.4e-3, Q2_K
//   Q6_K, IQ4_NL, IQ4_XS       <= 7.1e-2 / 8.5e-3, IQ4_NL <= 5.8e-2 / 6.7e-3, IQ4_XS <= 8.4e-2 /
//                              8.9e-3: the activations are quantised to 8 bits per matmul, and
//                              the error compounds over the layers and through sharp attention;
//                              a wrong block layout or scale gives errors of order 1)
//
// The positions compared are all 200 of a prompt fed as two chunks (150 + 40 tokens, all logits;
// the first runs as passes of 128 and 22) followed by 10 single-token decode steps, so prompt
// processing (GEMM), decoding (GEMV), the paged cache across many blocks and long-range RoPE are
// all covered.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "yunzhi/engine/model.h"

#include "engine/kernels/kernels.h"
#include "model_writer.h"

namespace yunzhi::engine {
namespace {

using tools::ModelSpec;

constexpr int kPromptTokens = 200;

struct Tolerance {
  double max_relative;
  double mean_relative;
};

Tolerance ToleranceFor(TensorType type, KvCacheType kv) {
  Tolerance t{3e-5, 3e-6};
  switch (type) {
    case TensorType::kQ8_0:
    case TensorType::kQ4_0:
    case TensorType::kQ5_0:
    case TensorType::kQ5_1:
    case TensorType::kQ2_K:
    case TensorType::kQ3_K:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
    case TensorType::kQ6_K:
    case TensorType::kIQ4_NL:
    case TensorType::kIQ4_XS:
      t = {1.2e-1, 1.5e-2};
      break;
    default:
      break;
  }
  if (kv == KvCacheType::kF16) {
    t = {std::max(t.max_relative, 5e-3), std::max(t.mean_relative, 5e-4)};
  }
  return t;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "yz-model-ref-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct Variant {
  std::string name;
  ModelSpec spec;
};

// The architecture variants: tiny shapes whose rows fit every block size (256).
std::vector<Variant> Variants() {
  std::vector<Variant> out;
  ModelSpec base;  // tiny: n_embd 256, 2 layers, 8 heads of 32, 2 KV heads, n_ff 512, vocab 512
  base.n_embd = 256;
  base.n_ff = 512;
  base.n_layer = 2;
  base.n_head = 8;
  base.n_head_kv = 2;
  base.n_vocab = 384;
  {
    Variant v{"llama", base};
    v.spec.architecture = Architecture::kLlama;
    v.spec.seed = 11;
    out.push_back(v);
  }
  {
    Variant v{"llama3_rope", base};
    v.spec.architecture = Architecture::kLlama;
    v.spec.rope_theta = 500000.0f;
    v.spec.rope_scaling = RopeScaling::kLlama3;
    v.spec.rope_factor = 8.0f;
    v.spec.rope_original_context = 64;  // short, so that the scaling bites within 200 tokens
    v.spec.tied_output = true;
    v.spec.seed = 12;
    out.push_back(v);
  }
  {
    Variant v{"mistral", base};
    v.spec.architecture = Architecture::kMistral;
    v.spec.n_head_kv = 8;  // plain multi-head attention
    v.spec.seed = 13;
    out.push_back(v);
  }
  {
    // Mistral v0.1's sliding-window attention, with a window far shorter than the prompt.
    Variant v{"mistral_sliding_window", base};
    v.spec.architecture = Architecture::kMistral;
    v.spec.sliding_window = 24;
    v.spec.seed = 17;
    out.push_back(v);
  }
  {
    Variant v{"qwen2", base};
    v.spec.architecture = Architecture::kQwen2;
    v.spec.rope_theta = 1000000.0f;
    v.spec.tied_output = true;
    v.spec.seed = 14;
    out.push_back(v);
  }
  {
    Variant v{"qwen3", base};
    v.spec.architecture = Architecture::kQwen3;
    v.spec.head_dim = 64;  // n_head * head_dim = 512 != n_embd, as Qwen3 allows
    v.spec.n_head = 8;
    v.spec.n_head_kv = 4;
    v.spec.seed = 15;
    out.push_back(v);
  }
  return out;
}

std::vector<int32_t> PromptTokens(int64_t n_vocab, uint64_t seed) {
  std::vector<int32_t> out;
  uint64_t s = seed * 2654435761u + 7;
  for (int i = 0; i < kPromptTokens; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    out.push_back(static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(n_vocab)));
  }
  return out;
}

// Runs the engine over `tokens` (two prompt chunks, then single-token decode steps) and returns
// the logits of every position.
Result<std::vector<float>> EngineLogits(const std::string& path, const std::vector<int32_t>& tokens,
                                        KvCacheType kv) {
  YZ_ASSIGN_OR_RETURN(std::shared_ptr<const Model> model, Model::Load(path));
  RunnerOptions options;
  options.n_threads = 2;
  options.n_ctx = 256;
  options.kv_cache.type = kv;
  options.max_pass_tokens = 128;  // the 150-token chunk in two passes (128 + 22)
  YZ_ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner, ModelRunner::Create(model, options));
  const int64_t n_vocab = model->config().n_vocab;
  std::vector<float> all;
  Sequence seq;
  ForwardOutput out;
  std::span<const int32_t> rest(tokens);
  for (size_t chunk : {size_t{150}, size_t{40}}) {
    BatchItem item{&seq, rest.first(chunk), true};
    YZ_RETURN_IF_ERROR(runner->Forward(std::span<const BatchItem>(&item, 1), &out));
    all.insert(all.end(), out.logits.begin(), out.logits.end());
    rest = rest.subspan(chunk);
  }
  while (!rest.empty()) {
    BatchItem item{&seq, rest.first(1), false};
    YZ_RETURN_IF_ERROR(runner->Forward(std::span<const BatchItem>(&item, 1), &out));
    all.insert(all.end(), out.logits.begin(), out.logits.begin() + n_vocab);
    rest = rest.subspan(1);
  }
  runner->kv_cache().Release(&seq);
  return all;
}

std::vector<float> ReadFloats(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

struct ErrorStats {
  double max_relative = 0;   // max over rows of max|a - b| / max|b|
  double mean_relative = 0;  // mean |a - b| / mean over rows of max|b|
  int64_t worst_row = -1;
};

ErrorStats CompareLogits(const std::vector<float>& a, const std::vector<float>& b,
                         int64_t n_vocab) {
  ErrorStats st;
  double sum_err = 0;
  double sum_scale = 0;
  const size_t n_rows = b.size() / static_cast<size_t>(n_vocab);
  for (size_t r = 0; r < n_rows; ++r) {
    double scale = 1e-30;
    double err = 0;
    for (int64_t i = 0; i < n_vocab; ++i) {
      const size_t k = r * static_cast<size_t>(n_vocab) + static_cast<size_t>(i);
      const double d = std::fabs(static_cast<double>(a[k]) - b[k]);
      scale = std::max(scale, std::fabs(static_cast<double>(b[k])));
      err = std::max(err, d);
      sum_err += d;
    }
    sum_scale += scale;
    if (err / scale > st.max_relative) {
      st.max_relative = err / scale;
      st.worst_row = static_cast<int64_t>(r);
    }
  }
  st.mean_relative = sum_err / static_cast<double>(b.size()) / (sum_scale / n_rows);
  return st;
}

// Runs forward.py over `job` (cases already listed); fails the test when it does not succeed.
void RunReference(const std::string& job_path) {
  const std::string cmd = fmt::format("'{}' '{}/tests/reference/forward.py' '{}' 2>&1",
                                      YUNZHI_PYTHON3, YUNZHI_SOURCE_DIR, job_path);
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr) << cmd;
  std::string output;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), pipe)) output.append(buf, n);
  const int status = pclose(pipe);
  ASSERT_EQ(status, 0) << "the Python reference failed (is python3-torch installed?):\n"
                       << cmd << "\n"
                       << output;
}

// gtest prints parameters by name, not as a byte dump.
void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

// YUNZHI_TEST_ISA=scalar|avx2|avx512 runs the comparison on that kernel variant (default: the
// best one this CPU has, as in production).
void SelectIsaFromEnvironment() {
  const char* isa = std::getenv("YUNZHI_TEST_ISA");
  if (isa == nullptr) return;
  for (kernels::Isa i : {kernels::Isa::kScalar, kernels::Isa::kAvx2, kernels::Isa::kAvx512}) {
    if (kernels::IsaName(i) == isa && i <= kernels::DetectIsa()) kernels::SetActiveIsa(i);
  }
}

class ModelReference : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override { SelectIsaFromEnvironment(); }
};

TEST_P(ModelReference, LogitsMatchTorchForEveryWeightTypeAndFormat) {
  const Variant& variant = GetParam();
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  struct Case {
    std::string label;
    std::string model_path;
    std::string logits_path;
    TensorType type;
    KvCacheType kv;
  };
  std::vector<Case> cases;
  std::string job = "{\"cases\": [\n";
  const std::vector<int32_t> tokens = PromptTokens(variant.spec.n_vocab, variant.spec.seed);
  std::string token_list;
  for (size_t i = 0; i < tokens.size(); ++i)
    token_list += fmt::format("{}{}", i ? "," : "", tokens[i]);
  const TensorType types[] = {TensorType::kF32,  TensorType::kF16,    TensorType::kBF16,
                              TensorType::kQ8_0, TensorType::kQ4_0,   TensorType::kQ5_0,
                              TensorType::kQ5_1, TensorType::kQ2_K,   TensorType::kQ3_K,
                              TensorType::kQ4_K, TensorType::kQ5_K,   TensorType::kQ6_K,
                              TensorType::kIQ4_NL, TensorType::kIQ4_XS};
  for (TensorType type : types) {
    ModelSpec spec = variant.spec;
    spec.weight_type = type;
    const std::string stem = fmt::format("{}/{}", dir.path(), TypeName(type));
    tools::WriteTargets targets;
    targets.gguf_path = stem + ".gguf";
    targets.reference_path = stem + ".ref.safetensors";
    const bool float_type =
        type == TensorType::kF32 || type == TensorType::kF16 || type == TensorType::kBF16;
    if (float_type) targets.hf_dir = stem + ".hf";
    auto st = tools::WriteModel(spec, targets);
    ASSERT_TRUE(st) << st.error().ToString();
    // Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS: the reference decodes the GGUF's blocks
    // itself (see the top of this file).
    const bool decode_gguf = type == TensorType::kQ5_0 || type == TensorType::kQ5_1 ||
                             type == TensorType::kQ2_K || type == TensorType::kQ3_K ||
                             type == TensorType::kQ5_K || type == TensorType::kIQ4_NL ||
                             type == TensorType::kIQ4_XS;
    const std::string gguf_key =
        decode_gguf ? fmt::format(", \"gguf\": \"{}\"", targets.gguf_path) : "";
    job +=
        fmt::format("{}{{\"reference\": \"{}\"{}, \"tokens\": [{}], \"out\": \"{}.logits\"}}\n",
                    cases.empty() ? "" : ",", targets.reference_path, gguf_key, token_list, stem);
    cases.push_back({fmt::format("{} GGUF", TypeName(type)), targets.gguf_path, stem + ".logits",
                     type, KvCacheType::kF32});
    if (float_type) {
      cases.push_back({fmt::format("{} safetensors", TypeName(type)), targets.hf_dir,
                       stem + ".logits", type, KvCacheType::kF32});
    }
    if (type == TensorType::kF32) {
      cases.push_back(
          {"F32 GGUF, F16 KV cache", targets.gguf_path, stem + ".logits", type, KvCacheType::kF16});
    }
  }
  job += "]}\n";
  const std::string job_path = dir.path() + "/job.json";
  std::ofstream(job_path) << job;
  ASSERT_NO_FATAL_FAILURE(RunReference(job_path));

  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{} {}", variant.name, c.label));
    auto logits = EngineLogits(c.model_path, tokens, c.kv);
    ASSERT_TRUE(logits) << logits.error().ToString();
    const std::vector<float> reference = ReadFloats(c.logits_path);
    ASSERT_EQ(logits->size(), reference.size());
    const ErrorStats err = CompareLogits(*logits, reference, variant.spec.n_vocab);
    const Tolerance tol = ToleranceFor(c.type, c.kv);
    std::printf(
        "  %-12s %-24s %-7s max rel %.2e (tol %.1e, worst pos %3lld)  mean rel %.2e "
        "(tol %.1e)\n",
        variant.name.c_str(), c.label.c_str(),
        std::string(kernels::IsaName(kernels::ActiveIsa())).c_str(), err.max_relative,
        tol.max_relative, static_cast<long long>(err.worst_row), err.mean_relative,
        tol.mean_relative);
    EXPECT_LE(err.max_relative, tol.max_relative) << "worst position " << err.worst_row;
    EXPECT_LE(err.mean_relative, tol.mean_relative);
  }
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, ModelReference, ::testing::ValuesIn(Variants()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace yunzhi::engine
