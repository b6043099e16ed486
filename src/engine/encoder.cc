// The BERT-style encoder: loading (GGUF "bert" and Hugging Face BertModel directories, both
// mapped onto one set of weights) and the forward pass with pooling.
#include "yunzhi/engine/encoder.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/safetensors.h"
#include "yunzhi/engine/tensor_type.h"

#include "engine/kernels/kernels.h"
#include "engine/model_loader.h"

namespace yunzhi::engine {
namespace {

namespace json = boost::json;
using internal::ReadJsonObject;

struct EncoderLayer {
  TensorView wq, wk, wv, wo, w_up, w_down;
  std::vector<float> bq, bk, bv, bo, b_up, b_down;
  std::vector<float> attn_norm_w, attn_norm_b, out_norm_w, out_norm_b;
};

// Looks tensors up by their GGUF names in whichever file the model came from.
using FindFn = std::function<Result<std::optional<TensorView>>(const std::string&)>;
using StoredNameFn = std::function<std::string(const std::string&)>;

// Internal (GGUF) name -> Hugging Face BertModel name (without any "bert." prefix).
std::string HfName(const std::string& name) {
  static const std::pair<std::string_view, std::string_view> kGlobal[] = {
      {"token_embd.weight", "embeddings.word_embeddings.weight"},
      {"position_embd.weight", "embeddings.position_embeddings.weight"},
      {"token_types.weight", "embeddings.token_type_embeddings.weight"},
      {"token_embd_norm.weight", "embeddings.LayerNorm.weight"},
      {"token_embd_norm.bias", "embeddings.LayerNorm.bias"},
      {"cls.weight", "pooler.dense.weight"},
      {"cls.bias", "pooler.dense.bias"},
  };
  for (const auto& [ours, theirs] : kGlobal) {
    if (name == ours) return std::string(theirs);
  }
  static const std::pair<std::string_view, std::string_view> kLayer[] = {
      {"attn_q", "attention.self.query"},
      {"attn_k", "attention.self.key"},
      {"attn_v", "attention.self.value"},
      {"attn_output", "attention.output.dense"},
      {"attn_output_norm", "attention.output.LayerNorm"},
      {"ffn_up", "intermediate.dense"},
      {"ffn_down", "output.dense"},
      {"layer_output_norm", "output.LayerNorm"},
  };
  // "blk.N.<part>.<weight|bias>"
  if (name.rfind("blk.", 0) == 0) {
    const size_t dot1 = name.find('.', 4);
    const size_t dot2 = name.rfind('.');
    const std::string layer = name.substr(4, dot1 - 4);
    const std::string part = name.substr(dot1 + 1, dot2 - dot1 - 1);
    const std::string kind = name.substr(dot2 + 1);
    for (const auto& [ours, theirs] : kLayer) {
      if (part == ours) return fmt::format("encoder.layer.{}.{}.{}", layer, theirs, kind);
    }
  }
  return name;
}

Result<int64_t> JsonInt(const std::string& file, const json::object& obj, std::string_view key,
                        int64_t fallback) {
  const json::value* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) {
    if (fallback >= 0) return fallback;
    return InvalidArgumentError(fmt::format("{}: '{}' is missing", file, key));
  }
  if (v->is_int64() && v->as_int64() >= 0 && v->as_int64() < (int64_t{1} << 40)) {
    return v->as_int64();
  }
  if (v->is_uint64() && v->as_uint64() < (uint64_t{1} << 40)) {
    return static_cast<int64_t>(v->as_uint64());
  }
  return InvalidArgumentError(fmt::format("{}: '{}' must be a non-negative integer", file, key));
}

Result<int64_t> GgufInt(const GgufFile& f, const std::string& key, int64_t fallback) {
  if (!f.HasKey(key)) {
    if (fallback >= 0) return fallback;
    return InvalidArgumentError(fmt::format("{}: metadata key '{}' is missing", f.name(), key));
  }
  YZ_ASSIGN_OR_RETURN(uint64_t v, f.GetU64(key));
  if (v > (uint64_t{1} << 40)) {
    return InvalidArgumentError(
        fmt::format("{}: metadata '{}' = {} is out of range", f.name(), key, v));
  }
  return static_cast<int64_t>(v);
}

// A BERT vocab.txt (one WordPiece token per line, id = line number) with the uncased BERT
// normaliser defaults; [CLS], [SEP], [UNK], [PAD], [MASK] become control tokens.
Result<Vocab> VocabFromBertVocabTxt(const std::string& file) {
  std::ifstream in(file);
  if (!in) return UnavailableError(fmt::format("{}: cannot read", file));
  Vocab v;
  v.model = TokenizerModel::kWordPiece;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    VocabToken t;
    t.text = line;
    t.type = TokenType::kNormal;
    const int32_t id = static_cast<int32_t>(v.tokens.size());
    if (line == "[CLS]") v.bos_id = id;
    if (line == "[SEP]") v.eos_id = id;
    if (line == "[PAD]") v.pad_id = id;
    if (line == "[UNK]") {
      v.unk_id = id;
      t.type = TokenType::kUnknown;
    } else if (line == "[CLS]" || line == "[SEP]" || line == "[PAD]" || line == "[MASK]") {
      t.type = TokenType::kControl;
    }
    v.tokens.push_back(std::move(t));
  }
  if (v.tokens.empty()) return InvalidArgumentError(fmt::format("{}: empty vocab", file));
  v.add_bos = v.bos_id >= 0;
  v.add_eos = v.eos_id >= 0;
  return v;
}

}  // namespace

struct EncoderModel::State {
  std::string path;
  EncoderConfig config;
  std::optional<GgufFile> gguf;
  std::optional<SafetensorsModel> safetensors;
  TensorView token_embd, position_embd;
  std::vector<float> token_types;  // all rows of the token-type embeddings, dequantised
  // Cross-encoder head (has_classifier): pooler dense [d, d] + tanh, classifier [1, d].
  TensorView pooler_w;
  std::vector<float> pooler_b, cls_w, cls_b;
  std::optional<Tokenizer> tokenizer;
  std::vector<float> embd_norm_w, embd_norm_b;
  std::vector<EncoderLayer> layers;
  std::unique_ptr<ComputePool> pool;

  // Binds every tensor through `find` and checks its shape.
  Status Bind(const FindFn& find, const StoredNameFn& stored);
};

Status EncoderModel::State::Bind(const FindFn& find, const StoredNameFn& stored) {
  const EncoderConfig& c = config;
  auto get = [&](const std::string& name, int64_t cols, int64_t rows) -> Result<TensorView> {
    YZ_ASSIGN_OR_RETURN(std::optional<TensorView> view, find(name));
    if (!view) {
      return NotFoundError(fmt::format("{}: tensor '{}' not found", path, stored(name)));
    }
    config.n_params += view->n_elements();
    const int64_t want_rows = rows;
    const bool ok = rows == 0
                        ? (view->n_elements() == cols && view->ne[0] == cols)
                        : (view->n_dims == 2 && view->ne[0] == cols && view->ne[1] == want_rows);
    if (!ok) {
      return InvalidArgumentError(
          fmt::format("{}: tensor '{}' has shape [{}] but [{}] was expected", path, stored(name),
                      fmt::join(view->RowMajorShape(), ", "),
                      rows == 0 ? fmt::format("{}", cols) : fmt::format("{}, {}", rows, cols)));
    }
    if (!IsValidRowLength(view->type, view->ne[0])) {
      return InvalidArgumentError(fmt::format("{}: tensor '{}' of type {} has rows of {} elements",
                                              path, stored(name), TypeName(view->type),
                                              view->ne[0]));
    }
    return *view;
  };
  auto vec = [&](const std::string& name, int64_t n) -> Result<std::vector<float>> {
    YZ_ASSIGN_OR_RETURN(TensorView view, get(name, n, 0));
    std::vector<float> out(static_cast<size_t>(n));
    Dequantize(view.type, view.data, out.data(), n);
    return out;
  };
  YZ_ASSIGN_OR_RETURN(token_embd, get("token_embd.weight", c.n_embd, c.n_vocab));
  YZ_ASSIGN_OR_RETURN(position_embd, get("position_embd.weight", c.n_embd, c.n_ctx_train));
  {
    YZ_ASSIGN_OR_RETURN(std::optional<TensorView> types, find("token_types.weight"));
    if (!types) {
      return NotFoundError(
          fmt::format("{}: tensor '{}' not found", path, stored("token_types.weight")));
    }
    const int64_t n_types = types->n_dims >= 2 ? types->ne[1] : 1;
    YZ_ASSIGN_OR_RETURN(TensorView t, get("token_types.weight", c.n_embd, n_types));
    config.n_token_types = n_types;
    token_types.resize(static_cast<size_t>(n_types * c.n_embd));
    for (int64_t r = 0; r < n_types; ++r) {
      kernels::DequantizeRow(t.type, static_cast<const uint8_t*>(t.data) + r * t.row_size_bytes(),
                             token_types.data() + r * c.n_embd, c.n_embd);
    }
  }
  // A classification head makes it a cross-encoder. An embedding checkpoint may carry the pooler
  // alone (BertModel saves it): that is not a head.
  {
    YZ_ASSIGN_OR_RETURN(std::optional<TensorView> out, find("cls.output.weight"));
    if (out) {
      if (out->n_dims == 2 && out->ne[1] != 1) {
        return UnimplementedError(fmt::format(
            "{}: the classifier has {} labels; only rerankers with one label are supported", path,
            out->ne[1]));
      }
      YZ_ASSIGN_OR_RETURN(TensorView cw, get("cls.output.weight", c.n_embd, out->n_dims == 2 ? 1 : 0));
      cls_w.resize(static_cast<size_t>(c.n_embd));
      Dequantize(cw.type, cw.data, cls_w.data(), c.n_embd);
      YZ_ASSIGN_OR_RETURN(cls_b, vec("cls.output.bias", 1));
      YZ_ASSIGN_OR_RETURN(pooler_w, get("cls.weight", c.n_embd, c.n_embd));
      YZ_ASSIGN_OR_RETURN(pooler_b, vec("cls.bias", c.n_embd));
      config.has_classifier = true;
    }
  }
  YZ_ASSIGN_OR_RETURN(embd_norm_w, vec("token_embd_norm.weight", c.n_embd));
  YZ_ASSIGN_OR_RETURN(embd_norm_b, vec("token_embd_norm.bias", c.n_embd));
  layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    EncoderLayer& l = layers[static_cast<size_t>(i)];
    const std::string p = fmt::format("blk.{}.", i);
    YZ_ASSIGN_OR_RETURN(l.wq, get(p + "attn_q.weight", c.n_embd, c.n_embd));
    config.weight_type = l.wq.type;
    YZ_ASSIGN_OR_RETURN(l.wk, get(p + "attn_k.weight", c.n_embd, c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.wv, get(p + "attn_v.weight", c.n_embd, c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.wo, get(p + "attn_output.weight", c.n_embd, c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.w_up, get(p + "ffn_up.weight", c.n_embd, c.n_ff));
    YZ_ASSIGN_OR_RETURN(l.w_down, get(p + "ffn_down.weight", c.n_ff, c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.bq, vec(p + "attn_q.bias", c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.bk, vec(p + "attn_k.bias", c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.bv, vec(p + "attn_v.bias", c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.bo, vec(p + "attn_output.bias", c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.b_up, vec(p + "ffn_up.bias", c.n_ff));
    YZ_ASSIGN_OR_RETURN(l.b_down, vec(p + "ffn_down.bias", c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.attn_norm_w, vec(p + "attn_output_norm.weight", c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.attn_norm_b, vec(p + "attn_output_norm.bias", c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.out_norm_w, vec(p + "layer_output_norm.weight", c.n_embd));
    YZ_ASSIGN_OR_RETURN(l.out_norm_b, vec(p + "layer_output_norm.bias", c.n_embd));
  }
  return {};
}

namespace {

Status ValidateConfig(const std::string& path, const EncoderConfig& c) {
  if (c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_ff <= 0 || c.n_ctx_train <= 0 ||
      c.n_embd % c.n_head != 0) {
    return InvalidArgumentError(fmt::format(
        "{}: inconsistent hyper-parameters (n_embd {}, n_layer {}, n_head {}, n_ff {}, n_ctx {})",
        path, c.n_embd, c.n_layer, c.n_head, c.n_ff, c.n_ctx_train));
  }
  if (!(c.norm_eps > 0.0f)) {
    return InvalidArgumentError(fmt::format("{}: layer norm epsilon must be positive", path));
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<EncoderModel>> EncoderModel::Load(const std::string& path,
                                                         const EncoderLoadOptions& options) {
  auto state = std::make_unique<State>();
  state->path = path;
  EncoderConfig& c = state->config;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    const std::string config_path = path + "/config.json";
    YZ_ASSIGN_OR_RETURN(json::object cfg, ReadJsonObject(config_path));
    const json::value* type = cfg.if_contains("model_type");
    if (type == nullptr || !type->is_string() || type->as_string() != "bert") {
      return UnimplementedError(
          fmt::format("{}: model_type must be \"bert\" for an encoder", config_path));
    }
    YZ_ASSIGN_OR_RETURN(c.n_embd, JsonInt(config_path, cfg, "hidden_size", -1));
    YZ_ASSIGN_OR_RETURN(c.n_layer, JsonInt(config_path, cfg, "num_hidden_layers", -1));
    YZ_ASSIGN_OR_RETURN(c.n_head, JsonInt(config_path, cfg, "num_attention_heads", -1));
    YZ_ASSIGN_OR_RETURN(c.n_ff, JsonInt(config_path, cfg, "intermediate_size", -1));
    YZ_ASSIGN_OR_RETURN(c.n_vocab, JsonInt(config_path, cfg, "vocab_size", -1));
    YZ_ASSIGN_OR_RETURN(c.n_ctx_train, JsonInt(config_path, cfg, "max_position_embeddings", 512));
    if (const json::value* eps = cfg.if_contains("layer_norm_eps"); eps && eps->is_number()) {
      c.norm_eps = static_cast<float>(eps->to_number<double>());
    }
    if (const json::value* act = cfg.if_contains("hidden_act");
        act && act->is_string() && act->as_string() != "gelu") {
      return UnimplementedError(fmt::format("{}: hidden_act '{}' is not supported (only gelu)",
                                            config_path, std::string_view(act->as_string())));
    }
    const std::string pooling_path = path + "/1_Pooling/config.json";
    if (std::filesystem::is_regular_file(pooling_path, ec)) {
      YZ_ASSIGN_OR_RETURN(json::object pool, ReadJsonObject(pooling_path));
      auto flag = [&](std::string_view key) {
        const json::value* v = pool.if_contains(key);
        return v != nullptr && v->is_bool() && v->as_bool();
      };
      if (flag("pooling_mode_cls_token")) {
        c.pooling = EncoderPooling::kCls;
      } else if (flag("pooling_mode_mean_tokens")) {
        c.pooling = EncoderPooling::kMean;
      } else {
        return UnimplementedError(
            fmt::format("{}: only CLS or mean-token pooling is supported", pooling_path));
      }
    }
    YZ_RETURN_IF_ERROR(ValidateConfig(path, c));
    const std::string index = path + "/model.safetensors.index.json";
    const std::string weights =
        std::filesystem::is_regular_file(index, ec) ? index : path + "/model.safetensors";
    YZ_ASSIGN_OR_RETURN(SafetensorsModel st, SafetensorsModel::Open(weights));
    state->safetensors.emplace(std::move(st));
    const SafetensorsModel& m = *state->safetensors;
    // Checkpoints saved from BertForXxx carry a "bert." prefix.
    const std::string prefix =
        m.FindTensor("bert.embeddings.word_embeddings.weight") != nullptr ? "bert." : "";
    auto stored = [&](const std::string& name) {
      // The classifier sits outside the "bert." module of BertForSequenceClassification.
      if (name.rfind("cls.output.", 0) == 0) return "classifier." + name.substr(11);
      return prefix + HfName(name);
    };
    auto find = [&](const std::string& name) -> Result<std::optional<TensorView>> {
      const std::string hf = stored(name);
      if (m.FindTensor(hf) == nullptr) return std::optional<TensorView>();
      YZ_ASSIGN_OR_RETURN(TensorView view, m.GetTensor(hf));
      if (!IsSupported(view.type)) {
        return UnimplementedError(
            fmt::format("{}: {}", weights, CheckSupported(view.type, hf).error().message));
      }
      return std::optional<TensorView>(view);
    };
    YZ_RETURN_IF_ERROR(state->Bind(find, stored));
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      if (entry.path().extension() == ".safetensors") {
        c.weight_bytes += static_cast<int64_t>(entry.file_size(ec));
      }
    }
    if (std::filesystem::is_regular_file(path + "/tokenizer.json", ec)) {
      YZ_ASSIGN_OR_RETURN(Vocab vocab, VocabFromHfDir(path));
      YZ_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Create(std::move(vocab)));
      state->tokenizer.emplace(std::move(tok));
    } else if (std::filesystem::is_regular_file(path + "/vocab.txt", ec)) {
      YZ_ASSIGN_OR_RETURN(Vocab vocab, VocabFromBertVocabTxt(path + "/vocab.txt"));
      YZ_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Create(std::move(vocab)));
      state->tokenizer.emplace(std::move(tok));
    }
  } else {
    YZ_ASSIGN_OR_RETURN(GgufFile file, GgufFile::Open(path));
    state->gguf.emplace(std::move(file));
    const GgufFile& f = *state->gguf;
    YZ_ASSIGN_OR_RETURN(std::string_view arch, f.GetString("general.architecture"));
    if (arch != "bert") {
      return UnimplementedError(
          fmt::format("{}: architecture '{}' is not a BERT encoder", path, arch));
    }
    YZ_ASSIGN_OR_RETURN(c.n_embd, GgufInt(f, "bert.embedding_length", -1));
    YZ_ASSIGN_OR_RETURN(c.n_layer, GgufInt(f, "bert.block_count", -1));
    YZ_ASSIGN_OR_RETURN(c.n_head, GgufInt(f, "bert.attention.head_count", -1));
    YZ_ASSIGN_OR_RETURN(c.n_ff, GgufInt(f, "bert.feed_forward_length", -1));
    YZ_ASSIGN_OR_RETURN(c.n_ctx_train, GgufInt(f, "bert.context_length", 512));
    if (f.HasKey("bert.attention.layer_norm_epsilon")) {
      YZ_ASSIGN_OR_RETURN(c.norm_eps, f.GetF32("bert.attention.layer_norm_epsilon"));
    }
    if (f.HasKey("bert.pooling_type")) {
      // llama.cpp's enum: 0 none, 1 mean, 2 cls, 3 last, 4 rank (CLS + classifier head).
      YZ_ASSIGN_OR_RETURN(int64_t type, GgufInt(f, "bert.pooling_type", -1));
      if (type == 1) {
        c.pooling = EncoderPooling::kMean;
      } else if (type == 2 || type == 4) {
        c.pooling = EncoderPooling::kCls;
      } else {
        return UnimplementedError(fmt::format(
            "{}: bert.pooling_type {} is not supported (1 mean, 2 cls, 4 rank)", path, type));
      }
    }
    YZ_RETURN_IF_ERROR(ValidateConfig(path, c));
    const GgufTensorInfo* embd = f.FindTensor("token_embd.weight");
    if (embd == nullptr) {
      return NotFoundError(fmt::format("{}: tensor 'token_embd.weight' not found", path));
    }
    c.n_vocab = embd->n_dims >= 2 ? embd->ne[1] : 0;
    auto stored = [](const std::string& name) { return name; };
    auto find = [&](const std::string& name) -> Result<std::optional<TensorView>> {
      const GgufTensorInfo* info = f.FindTensor(name);
      if (info == nullptr) return std::optional<TensorView>();
      if (!IsSupported(info->type)) {
        return UnimplementedError(
            fmt::format("{}: {}", path, CheckSupported(info->type, name).error().message));
      }
      YZ_ASSIGN_OR_RETURN(TensorView view, f.GetTensor(name));
      return std::optional<TensorView>(view);
    };
    YZ_RETURN_IF_ERROR(state->Bind(find, stored));
    c.weight_bytes = static_cast<int64_t>(std::filesystem::file_size(path, ec));
    if (f.HasKey("tokenizer.ggml.tokens")) {
      YZ_ASSIGN_OR_RETURN(Vocab vocab, VocabFromGguf(f));
      YZ_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Create(std::move(vocab)));
      state->tokenizer.emplace(std::move(tok));
    }
  }
  if (state->tokenizer) {
    const Vocab& v = state->tokenizer->vocab();
    if (v.bos_id < 0 || v.eos_id < 0) {
      return InvalidArgumentError(
          fmt::format("{}: the tokenizer names no [CLS] / [SEP] token", path));
    }
  }
  if (options.pooling) c.pooling = *options.pooling;
  state->pool = std::make_unique<ComputePool>(options.n_threads);
  return std::unique_ptr<EncoderModel>(new EncoderModel(std::move(state)));
}

EncoderModel::EncoderModel(std::unique_ptr<State> state) : state_(std::move(state)) {}
EncoderModel::~EncoderModel() = default;
const EncoderConfig& EncoderModel::config() const { return state_->config; }
const Tokenizer* EncoderModel::tokenizer() const {
  return state_->tokenizer ? &*state_->tokenizer : nullptr;
}

Result<std::vector<int32_t>> EncoderModel::TokenizeText(std::string_view text,
                                                        bool truncate) const {
  const State& s = *state_;
  if (!s.tokenizer) {
    return FailedPreconditionError(fmt::format("{}: the model has no tokenizer", s.path));
  }
  std::vector<int32_t> ids = s.tokenizer->Encode(text);
  const int64_t max_text = s.config.n_ctx_train - 2;
  if (static_cast<int64_t>(ids.size()) > max_text) {
    if (!truncate) {
      return InvalidArgumentError(
          fmt::format("the input has {} tokens; the model takes at most {}", ids.size() + 2,
                      s.config.n_ctx_train));
    }
    ids.resize(static_cast<size_t>(std::max<int64_t>(max_text, 0)));
  }
  const Vocab& v = s.tokenizer->vocab();
  ids.insert(ids.begin(), v.bos_id);
  ids.push_back(v.eos_id);
  return ids;
}

Result<EncoderInput> EncoderModel::TokenizePair(std::string_view a, std::string_view b,
                                                bool truncate) const {
  const State& s = *state_;
  if (!s.tokenizer) {
    return FailedPreconditionError(fmt::format("{}: the model has no tokenizer", s.path));
  }
  std::vector<int32_t> ia = s.tokenizer->Encode(a);
  std::vector<int32_t> ib = s.tokenizer->Encode(b);
  const size_t max_text = static_cast<size_t>(std::max<int64_t>(s.config.n_ctx_train - 3, 0));
  if (ia.size() + ib.size() > max_text) {
    if (!truncate) {
      return InvalidArgumentError(
          fmt::format("the pair has {} tokens; the model takes at most {}",
                      ia.size() + ib.size() + 3, s.config.n_ctx_train));
    }
    while (ia.size() + ib.size() > max_text) {
      (ia.size() > ib.size() ? ia : ib).pop_back();
    }
  }
  const Vocab& v = s.tokenizer->vocab();
  EncoderInput in;
  in.tokens.reserve(ia.size() + ib.size() + 3);
  in.tokens.push_back(v.bos_id);
  in.tokens.insert(in.tokens.end(), ia.begin(), ia.end());
  in.tokens.push_back(v.eos_id);
  in.type_ids.assign(in.tokens.size(), 0);
  in.tokens.insert(in.tokens.end(), ib.begin(), ib.end());
  in.tokens.push_back(v.eos_id);
  in.type_ids.resize(in.tokens.size(), 1);
  return in;
}

bool IsEncoderModelPath(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    auto cfg = internal::ReadJsonObject(path + "/config.json");
    if (!cfg) return false;
    const json::value* type = cfg->if_contains("model_type");
    return type != nullptr && type->is_string() && type->as_string() == "bert";
  }
  auto f = GgufFile::Open(path);
  if (!f) return false;
  auto arch = f->GetString("general.architecture");
  return arch && *arch == "bert";
}

namespace {

// y = (x - mean) / sqrt(var + eps) * w + b over rows of n; y may alias x.
void LayerNormRows(const float* x, const std::vector<float>& w, const std::vector<float>& b,
                   float eps, int64_t n_rows, int64_t n, float* y) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double mean = 0.0;
    for (int64_t i = 0; i < n; ++i) mean += xr[i];
    mean /= static_cast<double>(n);
    double var = 0.0;
    for (int64_t i = 0; i < n; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= static_cast<double>(n);
    const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    const float m = static_cast<float>(mean);
    for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - m) * inv * w[i] + b[i];
  }
}

void AddBiasRows(float* y, const std::vector<float>& bias, int64_t n_rows) {
  const int64_t n = static_cast<int64_t>(bias.size());
  for (int64_t r = 0; r < n_rows; ++r) kernels::AddInPlace(y + r * n, bias.data(), n);
}

void Linear(ComputePool* pool, const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  kernels::MatMul(pool, w.type, w.data, w.ne[1], w.ne[0], x, n_tokens, y);
}

}  // namespace

Result<std::vector<float>> EncoderModel::Forward(std::span<const EncoderInput> batch,
                                                 std::vector<int64_t>* first_out) {
  const State& s = *state_;
  const EncoderConfig& c = s.config;
  const int64_t d = c.n_embd;
  const int64_t hd = d / c.n_head;
  // All inputs' tokens run through the linear layers together; attention stays within an input.
  std::vector<int64_t>& first = *first_out;
  first.assign(batch.size() + 1, 0);
  for (size_t b = 0; b < batch.size(); ++b) {
    const auto& tokens = batch[b].tokens;
    const auto& types = batch[b].type_ids;
    if (!types.empty() && types.size() != tokens.size()) {
      return InvalidArgumentError(fmt::format("input {} has {} tokens but {} type ids", b,
                                              tokens.size(), types.size()));
    }
    for (int32_t t : types) {
      if (t < 0 || t >= c.n_token_types) {
        return InvalidArgumentError(
            fmt::format("input {}: token type {} is outside [0, {})", b, t, c.n_token_types));
      }
    }
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (n == 0) return InvalidArgumentError(fmt::format("input {} is empty", b));
    if (n > c.n_ctx_train) {
      return InvalidArgumentError(
          fmt::format("input {} has {} tokens; the model takes at most {}", b, n, c.n_ctx_train));
    }
    for (int32_t id : tokens) {
      if (id < 0 || id >= c.n_vocab) {
        return InvalidArgumentError(
            fmt::format("input {}: token id {} is outside [0, {})", b, id, c.n_vocab));
      }
    }
    first[b + 1] = first[b] + n;
  }
  if (batch.empty()) return std::vector<float>();
  const int64_t n_tokens = first.back();
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  std::vector<float> x(sz(n_tokens * d)), q(sz(n_tokens * d)), k(sz(n_tokens * d)),
      v(sz(n_tokens * d)), attn(sz(n_tokens * d)), out(sz(n_tokens * d)), ff(sz(n_tokens * c.n_ff)),
      row(sz(d));

  for (size_t b = 0; b < batch.size(); ++b) {
    for (int64_t i = 0; i < first[b + 1] - first[b]; ++i) {
      float* xt = x.data() + (first[b] + i) * d;
      const TensorView& te = s.token_embd;
      kernels::DequantizeRow(
          te.type, static_cast<const uint8_t*>(te.data) + batch[b].tokens[sz(i)] * te.row_size_bytes(), xt,
          d);
      const TensorView& pe = s.position_embd;
      kernels::DequantizeRow(
          pe.type, static_cast<const uint8_t*>(pe.data) + i * pe.row_size_bytes(), row.data(), d);
      kernels::AddInPlace(xt, row.data(), d);
      const int32_t type = batch[b].type_ids.empty() ? 0 : batch[b].type_ids[sz(i)];
      kernels::AddInPlace(xt, s.token_types.data() + type * d, d);
    }
  }
  LayerNormRows(x.data(), s.embd_norm_w, s.embd_norm_b, c.norm_eps, n_tokens, d, x.data());

  ComputePool* pool = s.pool.get();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  int64_t max_len = 0;
  for (size_t b = 0; b < batch.size(); ++b) max_len = std::max(max_len, first[b + 1] - first[b]);
  std::vector<std::vector<float>> scores(sz(pool->n_threads()), std::vector<float>(sz(max_len)));

  for (const EncoderLayer& l : s.layers) {
    const kernels::MatMulTarget targets[] = {{l.wq.type, l.wq.data, l.wq.ne[1], q.data()},
                                             {l.wk.type, l.wk.data, l.wk.ne[1], k.data()},
                                             {l.wv.type, l.wv.data, l.wv.ne[1], v.data()}};
    kernels::MatMulMany(pool, targets, d, x.data(), n_tokens);
    AddBiasRows(q.data(), l.bq, n_tokens);
    AddBiasRows(k.data(), l.bk, n_tokens);
    AddBiasRows(v.data(), l.bv, n_tokens);
    // Bidirectional attention: every token of an input sees every token of that input. One work
    // item per (token, head).
    const int64_t n_items = n_tokens * c.n_head;
    pool->Run([&](int ith, int nth) {
      float* sc = scores[sz(ith)].data();
      for (int64_t item = n_items * ith / nth; item < n_items * (ith + 1) / nth; ++item) {
        const int64_t t = item / c.n_head;
        const int64_t h = item % c.n_head;
        const size_t b = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), t) -
                                             first.begin() - 1);
        const int64_t begin = first[b];
        const int64_t n = first[b + 1] - begin;
        const float* qt = q.data() + t * d + h * hd;
        for (int64_t j = 0; j < n; ++j) {
          const float* kj = k.data() + (begin + j) * d + h * hd;
          float dot = 0.0f;
          for (int64_t e = 0; e < hd; ++e) dot += qt[e] * kj[e];
          sc[j] = dot * scale;
        }
        kernels::Softmax(sc, n);
        float* o = attn.data() + t * d + h * hd;
        std::fill(o, o + hd, 0.0f);
        for (int64_t j = 0; j < n; ++j) {
          const float* vj = v.data() + (begin + j) * d + h * hd;
          for (int64_t e = 0; e < hd; ++e) o[e] += sc[j] * vj[e];
        }
      }
    });
    Linear(pool, l.wo, attn.data(), n_tokens, out.data());
    AddBiasRows(out.data(), l.bo, n_tokens);
    kernels::AddInPlace(x.data(), out.data(), n_tokens * d);
    LayerNormRows(x.data(), l.attn_norm_w, l.attn_norm_b, c.norm_eps, n_tokens, d, x.data());

    Linear(pool, l.w_up, x.data(), n_tokens, ff.data());
    AddBiasRows(ff.data(), l.b_up, n_tokens);
    constexpr float kInvSqrt2 = 0.70710678118654752f;
    for (float& f : ff) f = 0.5f * f * (1.0f + std::erf(f * kInvSqrt2));
    Linear(pool, l.w_down, ff.data(), n_tokens, out.data());
    AddBiasRows(out.data(), l.b_down, n_tokens);
    kernels::AddInPlace(x.data(), out.data(), n_tokens * d);
    LayerNormRows(x.data(), l.out_norm_w, l.out_norm_b, c.norm_eps, n_tokens, d, x.data());
  }

  return x;
}

Result<std::vector<std::vector<float>>> EncoderModel::Embed(
    std::span<const std::vector<int32_t>> batch, bool normalize) {
  std::vector<EncoderInput> inputs(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) inputs[i].tokens = batch[i];
  return Embed(inputs, normalize);
}

Result<std::vector<float>> EncoderModel::Score(std::span<const EncoderInput> batch) {
  const State& s = *state_;
  const EncoderConfig& c = s.config;
  if (!c.has_classifier) {
    return FailedPreconditionError(
        fmt::format("{}: the model has no classification head (not a reranker)", s.path));
  }
  std::vector<int64_t> first;
  YZ_ASSIGN_OR_RETURN(std::vector<float> x, Forward(batch, &first));
  const int64_t d = c.n_embd;
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  // The [CLS] row of every input through the pooler (dense + tanh), then the classifier.
  std::vector<float> cls(sz(static_cast<int64_t>(batch.size()) * d));
  for (size_t b = 0; b < batch.size(); ++b) {
    std::copy_n(x.data() + first[b] * d, d, cls.data() + static_cast<int64_t>(b) * d);
  }
  std::vector<float> pooled(cls.size());
  Linear(s.pool.get(), s.pooler_w, cls.data(), static_cast<int64_t>(batch.size()), pooled.data());
  AddBiasRows(pooled.data(), s.pooler_b, static_cast<int64_t>(batch.size()));
  std::vector<float> scores(batch.size());
  for (size_t b = 0; b < batch.size(); ++b) {
    double acc = s.cls_b[0];
    for (int64_t i = 0; i < d; ++i) {
      acc += static_cast<double>(s.cls_w[sz(i)]) * std::tanh(pooled[b * sz(d) + sz(i)]);
    }
    scores[b] = static_cast<float>(acc);
  }
  return scores;
}

Result<std::vector<std::vector<float>>> EncoderModel::Embed(std::span<const EncoderInput> batch,
                                                            bool normalize) {
  const State& s = *state_;
  const EncoderConfig& c = s.config;
  const int64_t d = c.n_embd;
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  std::vector<int64_t> first;
  YZ_ASSIGN_OR_RETURN(std::vector<float> x, Forward(batch, &first));
  std::vector<std::vector<float>> result;
  result.reserve(batch.size());
  for (size_t b = 0; b < batch.size(); ++b) {
    std::vector<float> e(sz(d), 0.0f);
    if (c.pooling == EncoderPooling::kCls) {
      std::copy_n(x.data() + first[b] * d, d, e.begin());
    } else {
      const int64_t n = first[b + 1] - first[b];
      for (int64_t t = first[b]; t < first[b + 1]; ++t) {
        kernels::AddInPlace(e.data(), x.data() + t * d, d);
      }
      for (float& f : e) f /= static_cast<float>(n);
    }
    if (normalize) {
      double norm = 0.0;
      for (float f : e) norm += static_cast<double>(f) * f;
      norm = std::sqrt(norm);
      // Same floor as torch.nn.functional.normalize: a zero vector stays zero.
      const float inv = static_cast<float>(1.0 / std::max(norm, 1e-12));
      for (float& f : e) f *= inv;
    }
    result.push_back(std::move(e));
  }
  return result;
}

}  // namespace yunzhi::engine
