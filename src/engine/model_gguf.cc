// Loading a model from one GGUF file: hyper-parameters from "<arch>.*" metadata, the tokenizer
// from "tokenizer.ggml.*", tensors used in place from the mapping.
#include <fmt/format.h>

#include <string>
#include <string_view>
#include <utility>

#include "engine/arch/arch.h"
#include "engine/model_loader.h"

namespace yunzhi::engine::internal {
namespace {

class GgufSource : public WeightSource {
 public:
  explicit GgufSource(const GgufFile& file) : file_(file) {}

  Result<std::optional<TensorView>> Find(const std::string& name) const override {
    const GgufTensorInfo* info = file_.FindTensor(name);
    if (info == nullptr) return std::optional<TensorView>();
    if (!IsSupported(info->type)) {
      return UnimplementedError(
          fmt::format("{}: {}", file_.name(), CheckSupported(info->type, name).error().message));
    }
    YZ_ASSIGN_OR_RETURN(TensorView view, file_.GetTensor(name));
    return std::optional<TensorView>(view);
  }
  std::string StoredName(const std::string& name) const override { return name; }
  std::string FileOf(const std::string&) const override { return file_.name(); }
  bool row_major_shapes() const override { return false; }

 private:
  const GgufFile& file_;
};

// Reads an integer hyper-parameter; absent -> `fallback` (or an error when fallback < 0).
Result<int64_t> GetInt(const GgufFile& f, const std::string& key, int64_t fallback) {
  if (!f.HasKey(key)) {
    if (fallback >= 0) return fallback;
    return InvalidArgumentError(fmt::format("{}: metadata key '{}' is missing", f.name(), key));
  }
  YZ_ASSIGN_OR_RETURN(uint64_t v, f.GetU64(key));
  if (v > (1ull << 40)) {
    return InvalidArgumentError(
        fmt::format("{}: metadata '{}' = {} is out of range", f.name(), key, v));
  }
  return static_cast<int64_t>(v);
}

// GGUF general.file_type (llama.cpp's numbering of its quantisation mixes) by name; "" when
// absent, not an integer or not known. Display only: a file is read by its tensors' own types.
std::string FileTypeName(const GgufFile& f) {
  static constexpr std::pair<int, std::string_view> kNames[] = {
      {0, "F32"},     {1, "F16"},      {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},
      {8, "Q5_0"},    {9, "Q5_1"},     {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"},
      {13, "Q3_K_L"}, {14, "Q4_K_S"},  {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},
      {18, "Q6_K"},   {19, "IQ2_XXS"}, {20, "IQ2_XS"}, {21, "Q2_K_S"}, {22, "IQ3_XS"},
      {23, "IQ3_XXS"}, {24, "IQ1_S"},  {25, "IQ4_NL"}, {26, "IQ3_S"},  {27, "IQ3_M"},
      {28, "IQ2_S"},  {29, "IQ2_M"},   {30, "IQ4_XS"}, {31, "IQ1_M"},  {32, "BF16"}};
  if (!f.HasKey("general.file_type")) return "";
  const Result<uint64_t> v = f.GetU64("general.file_type");
  if (!v) return "";
  for (const auto& [id, name] : kNames) {
    if (static_cast<uint64_t>(id) == *v) return std::string(name);
  }
  return "";
}

Result<float> GetFloat(const GgufFile& f, const std::string& key, float fallback) {
  if (!f.HasKey(key)) return fallback;
  return f.GetF32(key);
}

}  // namespace

Result<std::unique_ptr<ModelState>> LoadGguf(const std::string& path,
                                             const ModelLoadOptions& options) {
  auto state = std::make_unique<ModelState>();
  state->path = path;
  state->vocab_only = options.vocab_only;
  YZ_ASSIGN_OR_RETURN(GgufFile file, GgufFile::Open(path, {.prefetch = options.prefetch}));
  state->gguf.emplace(std::move(file));
  const GgufFile& f = *state->gguf;

  YZ_ASSIGN_OR_RETURN(std::string_view arch_name, f.GetString("general.architecture"));
  auto arch = ParseArchitecture(arch_name);
  if (!arch) {
    return UnimplementedError(fmt::format("{}: {}", path, arch.error().message));
  }
  ModelConfig& c = state->config;
  c.architecture = *arch;
  c.file_type = FileTypeName(f);
  const std::string p = std::string(arch_name) + ".";
  YZ_ASSIGN_OR_RETURN(c.n_embd, GetInt(f, p + "embedding_length", -1));
  YZ_ASSIGN_OR_RETURN(c.n_layer, GetInt(f, p + "block_count", -1));
  YZ_ASSIGN_OR_RETURN(c.n_ff, GetInt(f, p + "feed_forward_length", -1));
  YZ_ASSIGN_OR_RETURN(c.n_head, GetInt(f, p + "attention.head_count", -1));
  YZ_ASSIGN_OR_RETURN(c.n_head_kv, GetInt(f, p + "attention.head_count_kv", c.n_head));
  YZ_ASSIGN_OR_RETURN(c.n_ctx_train, GetInt(f, p + "context_length", 2048));
  const int64_t default_head_dim = c.n_head > 0 ? c.n_embd / c.n_head : 0;
  YZ_ASSIGN_OR_RETURN(c.head_dim, GetInt(f, p + "attention.key_length", default_head_dim));
  YZ_ASSIGN_OR_RETURN(int64_t value_dim, GetInt(f, p + "attention.value_length", c.head_dim));
  if (value_dim != c.head_dim) {
    return UnimplementedError(
        fmt::format("{}: key length {} differs from value length {}", path, c.head_dim, value_dim));
  }
  YZ_ASSIGN_OR_RETURN(c.norm_eps, GetFloat(f, p + "attention.layer_norm_rms_epsilon", 1e-5f));
  YZ_ASSIGN_OR_RETURN(c.rope.theta, GetFloat(f, p + "rope.freq_base", 10000.0f));
  YZ_ASSIGN_OR_RETURN(c.sliding_window, GetInt(f, p + "attention.sliding_window", 0));
  YZ_ASSIGN_OR_RETURN(int64_t rope_dims, GetInt(f, p + "rope.dimension_count", c.head_dim));
  if (rope_dims != c.head_dim) {
    return UnimplementedError(
        fmt::format("{}: partial RoPE ({} of {} head dimensions) is not supported", path, rope_dims,
                    c.head_dim));
  }
  if (f.HasKey(p + "rope.scaling.type")) {
    YZ_ASSIGN_OR_RETURN(std::string_view type, f.GetString(p + "rope.scaling.type"));
    if (type == "linear") {
      c.rope.scaling = RopeScaling::kLinear;
      YZ_ASSIGN_OR_RETURN(c.rope.factor, GetFloat(f, p + "rope.scaling.factor", 1.0f));
    } else if (type == "llama3") {
      c.rope.scaling = RopeScaling::kLlama3;
    } else if (type != "none") {
      return UnimplementedError(fmt::format("{}: RoPE scaling '{}' is not supported", path, type));
    }
  }
  YZ_ASSIGN_OR_RETURN(c.rope.original_context_tokens,
                      GetInt(f, p + "rope.scaling.original_context_length", 8192));
  if (const GgufTensorInfo* freqs = f.FindTensor("rope_freqs.weight")) {
    // Llama 3.1 GGUF files carry the scaled frequencies as per-frequency divisors.
    YZ_ASSIGN_OR_RETURN(TensorView view, f.GetTensor("rope_freqs.weight"));
    if (view.type != TensorType::kF32 || view.n_dims != 1) {
      return InvalidArgumentError(
          fmt::format("{}: tensor 'rope_freqs.weight' must be a 1-D F32 tensor", path));
    }
    c.rope.freq_factors.resize(static_cast<size_t>(view.ne[0]));
    Dequantize(TensorType::kF32, view.data, c.rope.freq_factors.data(), view.ne[0]);
    c.rope.scaling = RopeScaling::kLlama3;
    (void)freqs;
  }
  arch::FindArch(c.architecture).finish_config(c, /*from_gguf=*/true);
  YZ_RETURN_IF_ERROR(ValidateConfig(path, c));

  // Tokenizer and chat template.
  auto vocab = VocabFromGguf(f);
  if (!vocab) return vocab.error();
  auto tokenizer = Tokenizer::Create(std::move(*vocab));
  if (!tokenizer) {
    return Error(tokenizer.error().code,
                 fmt::format("{}: tokenizer: {}", path, tokenizer.error().message));
  }
  state->tokenizer.emplace(std::move(*tokenizer));
  if (f.HasKey("tokenizer.chat_template")) {
    YZ_ASSIGN_OR_RETURN(std::string_view tmpl, f.GetString("tokenizer.chat_template"));
    state->chat_template = std::string(tmpl);
  }

  // The vocabulary size comes from the embedding matrix (the tokenizer may be shorter: padded
  // embeddings are common).
  const GgufTensorInfo* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr) {
    if (options.vocab_only) return state;
    return NotFoundError(fmt::format("{}: tensor 'token_embd.weight' not found", path));
  }
  c.n_vocab = embd->n_dims >= 2 ? embd->ne[1] : 0;
  if (c.n_vocab < state->tokenizer->n_vocab()) {
    return InvalidArgumentError(
        fmt::format("{}: tensor 'token_embd.weight' has {} rows but the tokenizer has {} tokens",
                    path, c.n_vocab, state->tokenizer->n_vocab()));
  }
  if (options.vocab_only) return state;
  GgufSource source(f);
  YZ_RETURN_IF_ERROR(BindWeights(source, state.get()));
  return state;
}

}  // namespace yunzhi::engine::internal
