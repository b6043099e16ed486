// Loading a Hugging Face model directory: config.json for the hyper-parameters,
// model.safetensors (or the shards of model.safetensors.index.json) for the weights,
// tokenizer.json / tokenizer_config.json for the vocabulary and chat template, and
// generation_config.json for generation defaults. HF tensor names are mapped onto the internal
// (GGUF) names so that both formats bind through the same code.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "engine/arch/arch.h"
#include "engine/model_loader.h"

namespace yunzhi::engine::internal {
namespace {

namespace json = boost::json;

// Internal name -> HF name.
std::string HfName(const std::string& name) {
  static const std::pair<std::string_view, std::string_view> kGlobal[] = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  for (const auto& [ours, theirs] : kGlobal) {
    if (name == ours) return std::string(theirs);
  }
  static const std::pair<std::string_view, std::string_view> kLayer[] = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_q_norm.weight", "self_attn.q_norm.weight"},
      {"attn_k_norm.weight", "self_attn.k_norm.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  if (name.rfind("blk.", 0) == 0) {
    const size_t dot = name.find('.', 4);
    const std::string layer = name.substr(4, dot - 4);
    const std::string rest = name.substr(dot + 1);
    for (const auto& [ours, theirs] : kLayer) {
      if (rest == ours) return fmt::format("model.layers.{}.{}", layer, theirs);
    }
  }
  return name;
}

class SafetensorsSource : public WeightSource {
 public:
  SafetensorsSource(const SafetensorsModel& model, std::string dir)
      : model_(model), dir_(std::move(dir)) {}

  Result<std::optional<TensorView>> Find(const std::string& name) const override {
    const std::string hf = HfName(name);
    const SafetensorsTensorInfo* info = model_.FindTensor(hf);
    if (info == nullptr) return std::optional<TensorView>();
    YZ_ASSIGN_OR_RETURN(TensorView view, model_.GetTensor(hf));
    return std::optional<TensorView>(view);
  }
  std::string StoredName(const std::string& name) const override { return HfName(name); }
  std::string FileOf(const std::string& name) const override {
    const std::string hf = HfName(name);
    for (const SafetensorsFile& shard : model_.shards()) {
      if (shard.FindTensor(hf) != nullptr) return shard.name();
    }
    return dir_;
  }
  bool row_major_shapes() const override { return true; }

 private:
  const SafetensorsModel& model_;
  std::string dir_;
};

// Typed field access with a clear error naming the file and key.
struct Fields {
  const std::string& file;
  const json::object& obj;

  Result<int64_t> Int(std::string_view key, int64_t fallback = -1) const {
    const json::value* v = obj.if_contains(key);
    if (v == nullptr || v->is_null()) {
      if (fallback >= 0) return fallback;
      return InvalidArgumentError(fmt::format("{}: '{}' is missing", file, key));
    }
    if (v->is_int64()) return v->as_int64();
    if (v->is_uint64() && v->as_uint64() < (1ull << 62))
      return static_cast<int64_t>(v->as_uint64());
    if (v->is_double() &&
        v->as_double() == static_cast<double>(static_cast<int64_t>(v->as_double()))) {
      return static_cast<int64_t>(v->as_double());
    }
    return InvalidArgumentError(fmt::format("{}: '{}' must be an integer", file, key));
  }
  Result<float> Float(std::string_view key, float fallback) const {
    const json::value* v = obj.if_contains(key);
    if (v == nullptr || v->is_null()) return fallback;
    if (v->is_number()) return static_cast<float>(v->to_number<double>());
    return InvalidArgumentError(fmt::format("{}: '{}' must be a number", file, key));
  }
  bool Bool(std::string_view key, bool fallback) const {
    const json::value* v = obj.if_contains(key);
    return v != nullptr && v->is_bool() ? v->as_bool() : fallback;
  }
  std::string String(std::string_view key) const {
    const json::value* v = obj.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
  }
};

Status ReadRopeScaling(const std::string& file, const json::object& cfg, RopeConfig* rope) {
  const json::value* v = cfg.if_contains("rope_scaling");
  if (v == nullptr || v->is_null()) return OkStatus();
  if (!v->is_object()) {
    return InvalidArgumentError(fmt::format("{}: 'rope_scaling' must be an object", file));
  }
  Fields s{file, v->as_object()};
  std::string type = s.String("rope_type");
  if (type.empty()) type = s.String("type");
  if (type == "default" || type.empty()) return OkStatus();
  YZ_ASSIGN_OR_RETURN(rope->factor, s.Float("factor", 1.0f));
  if (type == "linear") {
    rope->scaling = RopeScaling::kLinear;
  } else if (type == "llama3") {
    rope->scaling = RopeScaling::kLlama3;
    YZ_ASSIGN_OR_RETURN(rope->low_freq_factor, s.Float("low_freq_factor", 1.0f));
    YZ_ASSIGN_OR_RETURN(rope->high_freq_factor, s.Float("high_freq_factor", 4.0f));
    YZ_ASSIGN_OR_RETURN(rope->original_context_tokens,
                        s.Int("original_max_position_embeddings", 8192));
  } else {
    return UnimplementedError(fmt::format("{}: RoPE scaling '{}' is not supported", file, type));
  }
  return OkStatus();
}

void ReadGenerationConfig(const std::string& dir, GenerationDefaults* gen) {
  auto obj = ReadJsonObject(dir + "/generation_config.json");
  if (!obj) return;  // optional file: absent or unreadable means no defaults
  const json::value* eos = obj->if_contains("eos_token_id");
  if (eos != nullptr) {
    if (eos->is_int64()) gen->eos_token_ids.push_back(static_cast<int32_t>(eos->as_int64()));
    if (eos->is_array()) {
      for (const json::value& e : eos->as_array()) {
        if (e.is_int64()) gen->eos_token_ids.push_back(static_cast<int32_t>(e.as_int64()));
      }
    }
  }
  auto number = [&](std::string_view key) -> std::optional<double> {
    const json::value* v = obj->if_contains(key);
    if (v == nullptr || !v->is_number()) return std::nullopt;
    return v->to_number<double>();
  };
  if (auto t = number("temperature")) gen->temperature = static_cast<float>(*t);
  if (auto t = number("top_p")) gen->top_p = static_cast<float>(*t);
  if (auto t = number("top_k")) gen->top_k = static_cast<int32_t>(*t);
  if (auto t = number("repetition_penalty")) gen->repetition_penalty = static_cast<float>(*t);
}

// tokenizer_config.json "chat_template": a string, or a list of {name, template} (the one named
// "default" is the chat template).
std::string ChatTemplateOf(const std::string& dir) {
  auto obj = ReadJsonObject(dir + "/tokenizer_config.json");
  if (!obj) return {};
  const json::value* v = obj->if_contains("chat_template");
  if (v == nullptr) return {};
  if (v->is_string()) return std::string(v->as_string());
  if (v->is_array()) {
    for (const json::value& e : v->as_array()) {
      if (!e.is_object()) continue;
      Fields f{dir, e.as_object()};
      if (f.String("name") == "default") return f.String("template");
    }
  }
  return {};
}

}  // namespace

Result<std::string> ReadText(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return NotFoundError(fmt::format("{}: no such file", path));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  if (!in && !in.eof()) return UnavailableError(fmt::format("{}: cannot read", path));
  return out.str();
}

Result<json::object> ReadJsonObject(const std::string& path) {
  YZ_ASSIGN_OR_RETURN(std::string text, ReadText(path));
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    return InvalidArgumentError(
        fmt::format("{}: not a JSON object{}", path, ec ? " (" + ec.message() + ")" : ""));
  }
  return std::move(v.as_object());
}


Result<std::unique_ptr<ModelState>> LoadHfDirectory(const std::string& dir,
                                                    const ModelLoadOptions& options) {
  auto state = std::make_unique<ModelState>();
  state->path = dir;
  state->vocab_only = options.vocab_only;
  const std::string config_path = dir + "/config.json";
  YZ_ASSIGN_OR_RETURN(json::object cfg, ReadJsonObject(config_path));
  Fields f{config_path, cfg};

  std::string model_type = f.String("model_type");
  if (model_type.empty()) {
    return InvalidArgumentError(fmt::format("{}: 'model_type' is missing", config_path));
  }
  auto arch = ParseArchitecture(model_type);
  if (!arch) return UnimplementedError(fmt::format("{}: {}", config_path, arch.error().message));
  ModelConfig& c = state->config;
  c.architecture = *arch;
  YZ_ASSIGN_OR_RETURN(c.n_vocab, f.Int("vocab_size"));
  YZ_ASSIGN_OR_RETURN(c.n_embd, f.Int("hidden_size"));
  YZ_ASSIGN_OR_RETURN(c.n_layer, f.Int("num_hidden_layers"));
  YZ_ASSIGN_OR_RETURN(c.n_head, f.Int("num_attention_heads"));
  YZ_ASSIGN_OR_RETURN(c.n_head_kv, f.Int("num_key_value_heads", c.n_head));
  YZ_ASSIGN_OR_RETURN(c.n_ff, f.Int("intermediate_size"));
  YZ_ASSIGN_OR_RETURN(c.n_ctx_train, f.Int("max_position_embeddings", 2048));
  YZ_ASSIGN_OR_RETURN(c.head_dim, f.Int("head_dim", c.n_head > 0 ? c.n_embd / c.n_head : 0));
  YZ_ASSIGN_OR_RETURN(c.norm_eps, f.Float("rms_norm_eps", 1e-6f));
  YZ_ASSIGN_OR_RETURN(c.rope.theta, f.Float("rope_theta", 10000.0f));
  YZ_RETURN_IF_ERROR(ReadRopeScaling(config_path, cfg, &c.rope));
  c.qkv_bias = f.Bool("attention_bias", false);
  // Mistral v0.1 attends within a window; later Mistrals set it to null. Qwen2 configs carry a
  // window too but only use it with use_sliding_window (per layer; not supported, ignored when
  // off).
  if (c.architecture == Architecture::kMistral || c.architecture == Architecture::kLlama ||
      f.Bool("use_sliding_window", false)) {
    YZ_ASSIGN_OR_RETURN(c.sliding_window, f.Int("sliding_window", 0));
    if (c.architecture == Architecture::kQwen2 || c.architecture == Architecture::kQwen3) {
      return UnimplementedError(fmt::format(
          "{}: per-layer sliding-window attention (use_sliding_window) is not supported",
          config_path));
    }
  }
  arch::FindArch(c.architecture).finish_config(c, /*from_gguf=*/false);
  YZ_RETURN_IF_ERROR(ValidateConfig(config_path, c));
  if (c.n_vocab <= 0) {
    return InvalidArgumentError(fmt::format("{}: 'vocab_size' must be positive", config_path));
  }

  auto vocab = VocabFromHfDir(dir);
  if (!vocab) return vocab.error();
  auto tokenizer = Tokenizer::Create(std::move(*vocab));
  if (!tokenizer) {
    return Error(tokenizer.error().code,
                 fmt::format("{}: tokenizer: {}", dir, tokenizer.error().message));
  }
  state->tokenizer.emplace(std::move(*tokenizer));
  if (state->tokenizer->n_vocab() > c.n_vocab) {
    return InvalidArgumentError(
        fmt::format("{}: the tokenizer has {} tokens, more than vocab_size {}", dir,
                    state->tokenizer->n_vocab(), c.n_vocab));
  }
  state->chat_template = ChatTemplateOf(dir);
  ReadGenerationConfig(dir, &state->generation);
  if (options.vocab_only) return state;

  YZ_ASSIGN_OR_RETURN(SafetensorsModel weights, SafetensorsModel::Open(dir));
  state->safetensors.emplace(std::move(weights));
  SafetensorsSource source(*state->safetensors, dir);
  YZ_RETURN_IF_ERROR(BindWeights(source, state.get()));
  // HF checkpoints without lm_head.weight are tied only when the config says so.
  if (c.tied_output && !f.Bool("tie_word_embeddings", false)) {
    return NotFoundError(
        fmt::format("{}: tensor 'lm_head.weight' not found and "
                    "tie_word_embeddings is not set in config.json",
                    dir));
  }
  return state;
}

}  // namespace yunzhi::engine::internal
