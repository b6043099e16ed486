#include "yunzhi/engine/quantize.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/safetensors.h"
#include "yunzhi/engine/tokenizer.h"

#include "engine/atomic_file.h"
#include "engine/tokenizer_unicode.h"

namespace yunzhi::engine {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kAlignment = kGgufDefaultAlignment;
constexpr size_t kFlushBytes = 8u << 20;  // output buffer per write(2)

uint64_t AlignUp(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

template <typename T>
void Put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void PutString(std::string& out, std::string_view s) {
  Put<uint64_t>(out, s.size());
  out.append(s);
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The layer number of "blk.N.xxx", or -1.
int64_t LayerOf(std::string_view name) {
  if (!name.starts_with("blk.")) return -1;
  int64_t n = 0;
  size_t i = 4;
  if (i >= name.size() || !std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  for (; i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])); ++i) {
    n = n * 10 + (name[i] - '0');
    if (n > (1 << 24)) return -1;
  }
  return i < name.size() && name[i] == '.' ? n : -1;
}

// llama.cpp's "use more bits" rule: the first and last eighth of the layers and every third one
// in between.
bool UseMoreBits(int64_t layer, int64_t n_layer) {
  return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

// ---- metadata encoding (GGUF key/value entries, copied value by value)

Status EncodeValueBody(const GgufValue& v, std::string& out);

Status EncodeScalar(GgufValueType type, const GgufValue& v, std::string& out) {
  switch (type) {
    case GgufValueType::kUint8: {
      YZ_ASSIGN_OR_RETURN(auto x, v.AsU8());
      Put(out, x);
      break;
    }
    case GgufValueType::kInt8: {
      YZ_ASSIGN_OR_RETURN(auto x, v.AsI8());
      Put(out, x);
      break;
    }
    case GgufValueType::kUint16: {
      YZ_ASSIGN_OR_RETURN(auto x, v.AsU16());
      Put(out, x);
      break;
    }
    case GgufValueType::kInt16: {
      YZ_ASSIGN_OR_RETURN(auto x, v.AsI16());
      Put(out, x);
      break;
    }
    case GgufValueType::kUint32: {
      YZ_ASSIGN_OR_RETURN(auto x, v.AsU32());
      Put(out, x);
      break;
    }
    case GgufValueType::kInt32: {
      YZ_ASSIGN_OR_RETURN(auto x, v.AsI32());
      Put(out, x);
      break;
    }
    case GgufValueType::kUint64: {
      YZ_ASSIGN_OR_RETURN(auto x, v.AsU64());
      Put(out, x);
      break;
    }
    case GgufValueType::kInt64: {
      YZ_ASSIGN_OR_RETURN(auto x, v.AsI64());
      Put(out, x);
      break;
    }
    case GgufValueType::kFloat32: {
      YZ_ASSIGN_OR_RETURN(auto x, v.AsF32());
      Put(out, x);
      break;
    }
    case GgufValueType::kFloat64: {
      YZ_ASSIGN_OR_RETURN(auto x, v.AsF64());
      Put(out, x);
      break;
    }
    case GgufValueType::kBool: {
      YZ_ASSIGN_OR_RETURN(bool x, v.AsBool());
      Put<uint8_t>(out, x ? 1 : 0);
      break;
    }
    case GgufValueType::kString: {
      YZ_ASSIGN_OR_RETURN(std::string_view x, v.AsString());
      PutString(out, x);
      break;
    }
    case GgufValueType::kArray:
      return EncodeValueBody(v, out);
  }
  return OkStatus();
}

Status EncodeValueBody(const GgufValue& v, std::string& out) {
  if (!v.is_array()) return EncodeScalar(v.type(), v, out);
  Put<uint32_t>(out, static_cast<uint32_t>(v.array_type()));
  Put<uint64_t>(out, v.array_size());
  YZ_ASSIGN_OR_RETURN(std::vector<GgufValue> elements, v.AsArray());
  for (const GgufValue& e : elements) YZ_RETURN_IF_ERROR(EncodeScalar(v.array_type(), e, out));
  return OkStatus();
}

// One encoded key/value entry: key, type, value.
struct KvEntry {
  std::string key;
  std::string encoded;
};

Result<KvEntry> EncodeEntry(std::string_view key, const GgufValue& v) {
  KvEntry e{std::string(key), {}};
  PutString(e.encoded, key);
  Put<uint32_t>(e.encoded, static_cast<uint32_t>(v.type()));
  YZ_RETURN_IF_ERROR(EncodeValueBody(v, e.encoded));
  return e;
}

KvEntry EncodeU32Entry(std::string_view key, uint32_t value) {
  KvEntry e{std::string(key), {}};
  PutString(e.encoded, key);
  Put<uint32_t>(e.encoded, static_cast<uint32_t>(GgufValueType::kUint32));
  Put<uint32_t>(e.encoded, value);
  return e;
}

void SetEntry(std::vector<KvEntry>& kvs, KvEntry entry) {
  for (KvEntry& e : kvs) {
    if (e.key == entry.key) {
      e = std::move(entry);
      return;
    }
  }
  kvs.push_back(std::move(entry));
}

// ---- the tensors to write

struct SourceTensor {
  std::string name;         // GGUF name in the output
  std::string source_name;  // name in the input, for messages
  int n_dims = 0;
  std::array<int64_t, kMaxDims> ne = {1, 1, 1, 1};
  TensorType in_type = TensorType::kF32;
  const uint8_t* data = nullptr;   // rows of in_type; null for synthesized tensors
  std::vector<float> synthesized;  // the whole (small, 1-D) tensor when data is null
  int64_t permute_heads = 0;       // > 0: HF rotate-half -> GGUF interleaved, with this many heads
  TensorType out_type = TensorType::kF32;

  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  uint64_t in_bytes() const {
    return data == nullptr ? synthesized.size() * sizeof(float)
                           : static_cast<uint64_t>(RowSizeBytes(in_type, ne[0]) * n_rows());
  }
  uint64_t out_bytes() const {
    return static_cast<uint64_t>(RowSizeBytes(out_type, ne[0]) * n_rows());
  }
};

// The index, in the Hugging Face layout, of the row (or element) that lands at `r` in GGUF's
// interleaved layout: HF keeps the two halves of each head apart (rotate-half RoPE), GGUF
// interleaves them, so GGUF position 2i + j of a head comes from HF position j * hd/2 + i.
int64_t PermutedSource(int64_t r, int64_t total, int64_t n_heads) {
  const int64_t hd = total / n_heads;
  const int64_t h = r / hd;
  const int64_t rem = r % hd;
  return h * hd + (rem % 2) * (hd / 2) + rem / 2;
}

struct Plan {
  std::vector<KvEntry> kvs;
  std::vector<SourceTensor> tensors;
  int64_t n_gqa = 1;  // attention heads per KV head, for the recipe
};

// Keeps the input open while its tensors are written.
struct Inputs {
  std::optional<GgufFile> gguf;
  std::optional<SafetensorsModel> safetensors;
};

// ---- GGUF input

Result<Plan> PlanFromGguf(const GgufFile& in) {
  Plan plan;
  for (const GgufMetadataEntry& entry : in.metadata()) {
    if (entry.key == "general.alignment") continue;
    YZ_ASSIGN_OR_RETURN(KvEntry e, EncodeEntry(entry.key, entry.value));
    plan.kvs.push_back(std::move(e));
  }
  for (const GgufTensorInfo& info : in.tensors()) {
    SourceTensor t;
    t.name = std::string(info.name);
    t.source_name = t.name;
    t.n_dims = info.n_dims;
    t.ne = info.ne;
    t.in_type = info.type;
    t.data = static_cast<const uint8_t*>(info.data);
    plan.tensors.push_back(std::move(t));
  }
  // Heads per KV head for the recipe; a file without them (or with per-layer arrays) counts as 1.
  if (Result<std::string_view> arch = in.GetString("general.architecture")) {
    const std::string a(*arch);
    Result<uint32_t> n_head = in.GetU32(a + ".attention.head_count");
    Result<uint32_t> n_head_kv = in.GetU32(a + ".attention.head_count_kv");
    if (n_head && n_head_kv && *n_head_kv > 0) plan.n_gqa = *n_head / *n_head_kv;
  }
  return plan;
}

// ---- Hugging Face input

Result<std::string> ReadTextFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return NotFoundError(fmt::format("{}: no such file", path));
    return UnavailableError(fmt::format("{}: cannot be read", path));
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return UnavailableError(fmt::format("{}: read error", path));
  return ss.str();
}

Result<json::object> ReadJsonObject(const std::string& path) {
  YZ_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    return InvalidArgumentError(
        fmt::format("{}: not a JSON object{}", path, ec ? ": " + ec.message() : std::string()));
  }
  return std::move(v.as_object());
}

std::optional<double> JsonNumber(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_double()) return v->as_double();
  if (v->is_int64()) return static_cast<double>(v->as_int64());
  if (v->is_uint64()) return static_cast<double>(v->as_uint64());
  return std::nullopt;
}

Result<int64_t> RequiredInt(const json::object& o, std::string_view key, const std::string& file) {
  std::optional<double> v = JsonNumber(o, key);
  if (!v || *v < 1 || *v > 1e12 || std::floor(*v) != *v) {
    return InvalidArgumentError(
        fmt::format("{}: '{}' is missing or not a positive integer", file, key));
  }
  return static_cast<int64_t>(*v);
}

struct HfArch {
  std::string gguf_arch;  // "llama", "qwen2", "qwen3"
  bool permute_qk = false;
};

Result<HfArch> DetectHfArch(const json::object& config, const std::string& file) {
  std::vector<std::string> names;
  if (const json::value* a = config.if_contains("architectures"); a && a->is_array()) {
    for (const json::value& v : a->as_array()) {
      if (v.is_string()) names.emplace_back(v.as_string());
    }
  }
  if (const json::value* t = config.if_contains("model_type"); t && t->is_string()) {
    names.emplace_back(t->as_string());
  }
  for (const std::string& n : names) {
    if (n == "LlamaForCausalLM" || n == "llama") return HfArch{"llama", true};
    if (n == "MistralForCausalLM" || n == "mistral") return HfArch{"llama", true};
    if (n == "Qwen2ForCausalLM" || n == "qwen2") return HfArch{"qwen2", false};
    if (n == "Qwen3ForCausalLM" || n == "qwen3") return HfArch{"qwen3", false};
  }
  return UnimplementedError(fmt::format(
      "{}: unsupported architecture '{}' (supported: LlamaForCausalLM, MistralForCausalLM, "
      "Qwen2ForCausalLM, Qwen3ForCausalLM)",
      file, names.empty() ? std::string("(none given)") : names.front()));
}

// Maps a Hugging Face tensor name to its GGUF name. Returns "" for tensors that are dropped and
// nullopt for unknown ones.
std::optional<std::string> MapHfName(std::string_view name) {
  static constexpr std::pair<std::string_view, std::string_view> kGlobal[] = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
  };
  for (const auto& [hf, gguf] : kGlobal) {
    if (name == hf) return std::string(gguf);
  }
  static constexpr std::string_view kLayers = "model.layers.";
  if (!name.starts_with(kLayers)) return std::nullopt;
  std::string_view rest = name.substr(kLayers.size());
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos || dot == 0) return std::nullopt;
  const std::string_view layer = rest.substr(0, dot);
  if (!std::all_of(layer.begin(), layer.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const std::string_view suffix = rest.substr(dot + 1);
  static constexpr std::pair<std::string_view, std::string_view> kPerLayer[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
      {"self_attn.rotary_emb.inv_freq", ""},
  };
  for (const auto& [hf, gguf] : kPerLayer) {
    if (suffix == hf) {
      return gguf.empty() ? std::string() : fmt::format("blk.{}.{}", layer, gguf);
    }
  }
  return std::nullopt;
}

// Sort key of a GGUF tensor name: token_embd, rope_freqs, blocks in order, output_norm, output.
std::tuple<int, int64_t, int, std::string> TensorOrder(const std::string& name) {
  static constexpr std::string_view kBlockOrder[] = {
      "attn_norm",   "attn_q.",  "attn_q_norm", "attn_k.", "attn_k_norm", "attn_v.",
      "attn_output", "ffn_norm", "ffn_gate",    "ffn_up",  "ffn_down"};
  if (name == "token_embd.weight") return {0, 0, 0, name};
  if (name == "rope_freqs.weight") return {1, 0, 0, name};
  const int64_t layer = LayerOf(name);
  if (layer >= 0) {
    const std::string_view rest = std::string_view(name).substr(name.find('.', 4) + 1);
    int rank = static_cast<int>(std::size(kBlockOrder));
    for (size_t i = 0; i < std::size(kBlockOrder); ++i) {
      if (rest.starts_with(kBlockOrder[i])) {
        rank = static_cast<int>(i);
        break;
      }
    }
    return {2, layer, rank, name};
  }
  if (name == "output_norm.weight") return {3, 0, 0, name};
  return {4, 0, 0, name};
}

// llama3 RoPE scaling as per-frequency divisors (what llama.cpp stores in rope_freqs.weight).
std::vector<float> Llama3RopeFactors(const json::object& scaling, double theta, int64_t head_dim) {
  const double factor = JsonNumber(scaling, "factor").value_or(8.0);
  const double low = JsonNumber(scaling, "low_freq_factor").value_or(1.0);
  const double high = JsonNumber(scaling, "high_freq_factor").value_or(4.0);
  const double old_ctx = JsonNumber(scaling, "original_max_position_embeddings").value_or(8192.0);
  const double low_wavelen = old_ctx / low;
  const double high_wavelen = old_ctx / high;
  std::vector<float> factors;
  for (int64_t i = 0; i < head_dim; i += 2) {
    const double freq = 1.0 / std::pow(theta, static_cast<double>(i) / head_dim);
    const double wavelen = 2.0 * std::numbers::pi / freq;
    double f = 1.0;
    if (wavelen > low_wavelen) {
      f = factor;
    } else if (wavelen >= high_wavelen && high != low) {
      const double smooth = (old_ctx / wavelen - low) / (high - low);
      f = 1.0 / ((1.0 - smooth) / factor + smooth);
    }
    factors.push_back(static_cast<float>(f));
  }
  return factors;
}

// Tokenizer metadata from tokenizer.json / tokenizer_config.json.
Status AddHfTokenizer(const std::string& dir, const std::string& gguf_arch, int64_t n_vocab_model,
                      const json::object& config, GgufWriter& w) {
  YZ_ASSIGN_OR_RETURN(Vocab vocab, VocabFromHfDir(dir));
  if (vocab.model != TokenizerModel::kByteLevelBpe) {
    return UnimplementedError(fmt::format(
        "{}: only byte-level BPE tokenizers can be converted to GGUF yet (this one is {})", dir,
        vocab.model == TokenizerModel::kWordPiece ? "WordPiece" : "SentencePiece"));
  }
  if (static_cast<int64_t>(vocab.tokens.size()) > n_vocab_model) {
    return InvalidArgumentError(
        fmt::format("{}: the tokenizer has {} tokens but the embedding only {} rows", dir,
                    vocab.tokens.size(), n_vocab_model));
  }
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetString("tokenizer.ggml.pre", gguf_arch == "llama" ? "llama-bpe" : "qwen2");
  std::vector<std::string> texts;
  std::vector<int32_t> types;
  texts.reserve(static_cast<size_t>(n_vocab_model));
  for (const VocabToken& t : vocab.tokens) {
    const bool mapped = t.type == TokenType::kNormal || t.type == TokenType::kUnused ||
                        t.type == TokenType::kUnknown;
    if (mapped) {
      std::string s;
      for (unsigned char c : t.text) s += internal::ByteToUnicode(c);
      texts.push_back(std::move(s));
    } else {
      texts.push_back(t.text);
    }
    types.push_back(static_cast<int32_t>(t.type));
  }
  // The embedding usually has more rows than the tokenizer has tokens (padding for speed);
  // name the spare rows as llama.cpp's converter does.
  for (int64_t id = static_cast<int64_t>(texts.size()); id < n_vocab_model; ++id) {
    texts.push_back(fmt::format("[PAD{}]", id));
    types.push_back(static_cast<int32_t>(TokenType::kUnused));
  }
  w.SetStringArray("tokenizer.ggml.tokens", texts);
  w.SetI32Array("tokenizer.ggml.token_type", types);
  std::vector<std::string> merges;
  merges.reserve(vocab.merges.size());
  for (const auto& [a, b] : vocab.merges) {
    std::string m;
    for (unsigned char c : a) m += internal::ByteToUnicode(c);
    m += ' ';
    for (unsigned char c : b) m += internal::ByteToUnicode(c);
    merges.push_back(std::move(m));
  }
  w.SetStringArray("tokenizer.ggml.merges", merges);
  int32_t eos = vocab.eos_id;
  if (eos < 0) {
    if (std::optional<double> e = JsonNumber(config, "eos_token_id"))
      eos = static_cast<int32_t>(*e);
  }
  if (vocab.bos_id >= 0)
    w.SetU32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(vocab.bos_id));
  if (eos >= 0) w.SetU32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos));
  if (vocab.eot_id >= 0)
    w.SetU32("tokenizer.ggml.eot_token_id", static_cast<uint32_t>(vocab.eot_id));
  if (vocab.pad_id >= 0) {
    w.SetU32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(vocab.pad_id));
  }
  if (vocab.unk_id >= 0) {
    w.SetU32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(vocab.unk_id));
  }
  w.SetBool("tokenizer.ggml.add_bos_token", vocab.add_bos);
  w.SetBool("tokenizer.ggml.add_eos_token", vocab.add_eos);

  const std::string config_path = dir + "/tokenizer_config.json";
  std::error_code ec;
  if (fs::exists(config_path, ec)) {
    YZ_ASSIGN_OR_RETURN(json::object tc, ReadJsonObject(config_path));
    if (const json::value* t = tc.if_contains("chat_template")) {
      if (t->is_string()) {
        w.SetString("tokenizer.chat_template", std::string_view(t->as_string()));
      } else if (t->is_array()) {  // [{"name": "default", "template": "..."}, ...]
        for (const json::value& item : t->as_array()) {
          const json::object* o = item.if_object();
          if (o == nullptr) continue;
          const json::value* name = o->if_contains("name");
          const json::value* tmpl = o->if_contains("template");
          if (name && name->is_string() && name->as_string() == "default" && tmpl &&
              tmpl->is_string()) {
            w.SetString("tokenizer.chat_template", std::string_view(tmpl->as_string()));
          }
        }
      }
    }
  }
  return OkStatus();
}

Result<Plan> PlanFromHf(const std::string& dir, const SafetensorsModel& st) {
  const std::string config_path = dir + "/config.json";
  YZ_ASSIGN_OR_RETURN(json::object config, ReadJsonObject(config_path));
  YZ_ASSIGN_OR_RETURN(HfArch arch, DetectHfArch(config, config_path));
  const std::string& a = arch.gguf_arch;
  YZ_ASSIGN_OR_RETURN(int64_t n_embd, RequiredInt(config, "hidden_size", config_path));
  YZ_ASSIGN_OR_RETURN(int64_t n_layer, RequiredInt(config, "num_hidden_layers", config_path));
  YZ_ASSIGN_OR_RETURN(int64_t n_head, RequiredInt(config, "num_attention_heads", config_path));
  YZ_ASSIGN_OR_RETURN(int64_t n_ff, RequiredInt(config, "intermediate_size", config_path));
  int64_t n_head_kv = n_head;
  if (config.contains("num_key_value_heads")) {
    YZ_ASSIGN_OR_RETURN(n_head_kv, RequiredInt(config, "num_key_value_heads", config_path));
  }
  std::optional<int64_t> head_dim_key;
  if (const json::value* hd = config.if_contains("head_dim"); hd && !hd->is_null()) {
    YZ_ASSIGN_OR_RETURN(head_dim_key, RequiredInt(config, "head_dim", config_path));
  }
  if (n_embd % n_head != 0 && !head_dim_key) {
    return InvalidArgumentError(
        fmt::format("{}: hidden_size {} is not a multiple of "
                    "num_attention_heads {}",
                    config_path, n_embd, n_head));
  }
  const int64_t head_dim = head_dim_key.value_or(n_embd / n_head);
  const double theta = JsonNumber(config, "rope_theta").value_or(10000.0);

  GgufWriter w;
  w.SetString("general.architecture", a);
  w.SetString("general.type", "model");
  fs::path dir_path = fs::path(dir).lexically_normal();
  if (dir_path.filename().empty()) dir_path = dir_path.parent_path();
  w.SetString("general.name", dir_path.filename().string());
  w.SetU32(a + ".block_count", static_cast<uint32_t>(n_layer));
  w.SetU32(a + ".context_length",
           static_cast<uint32_t>(JsonNumber(config, "max_position_embeddings").value_or(4096)));
  w.SetU32(a + ".embedding_length", static_cast<uint32_t>(n_embd));
  w.SetU32(a + ".feed_forward_length", static_cast<uint32_t>(n_ff));
  w.SetU32(a + ".attention.head_count", static_cast<uint32_t>(n_head));
  w.SetU32(a + ".attention.head_count_kv", static_cast<uint32_t>(n_head_kv));
  w.SetF32(a + ".rope.freq_base", static_cast<float>(theta));
  w.SetF32(a + ".attention.layer_norm_rms_epsilon",
           static_cast<float>(JsonNumber(config, "rms_norm_eps").value_or(1e-6)));
  w.SetU32(a + ".rope.dimension_count", static_cast<uint32_t>(head_dim));
  if (head_dim_key) {
    w.SetU32(a + ".attention.key_length", static_cast<uint32_t>(head_dim));
    w.SetU32(a + ".attention.value_length", static_cast<uint32_t>(head_dim));
  }

  Plan plan;
  plan.n_gqa = n_head_kv > 0 ? n_head / n_head_kv : 1;
  const json::value* rs = config.if_contains("rope_scaling");
  if (rs != nullptr && rs->is_object()) {
    const json::object& scaling = rs->as_object();
    std::string type;
    for (std::string_view k : {"rope_type", "type"}) {
      if (const json::value* t = scaling.if_contains(k); t && t->is_string()) {
        type = std::string(t->as_string());
        break;
      }
    }
    if (type == "llama3") {
      SourceTensor t;
      t.name = "rope_freqs.weight";
      t.source_name = "config.json rope_scaling (llama3)";
      t.synthesized = Llama3RopeFactors(scaling, theta, head_dim);
      t.n_dims = 1;
      t.ne[0] = static_cast<int64_t>(t.synthesized.size());
      plan.tensors.push_back(std::move(t));
    } else if (type == "linear" || type == "yarn") {
      w.SetString(a + ".rope.scaling.type", type);
      w.SetF32(a + ".rope.scaling.factor",
               static_cast<float>(JsonNumber(scaling, "factor").value_or(1.0)));
      if (std::optional<double> o = JsonNumber(scaling, "original_max_position_embeddings")) {
        w.SetU32(a + ".rope.scaling.original_context_length", static_cast<uint32_t>(*o));
      }
    } else if (!type.empty() && type != "default") {
      return UnimplementedError(
          fmt::format("{}: rope_scaling type '{}' is not supported", config_path, type));
    }
  }

  // Tensors.
  int64_t n_vocab_model = 0;
  for (std::string_view hf_name : st.tensor_names()) {
    std::optional<std::string> name = MapHfName(hf_name);
    if (!name) {
      return UnimplementedError(
          fmt::format("{}: tensor '{}' has no GGUF equivalent in the {} "
                      "layout",
                      dir, hf_name, a));
    }
    if (name->empty()) continue;
    YZ_ASSIGN_OR_RETURN(TensorView view, st.GetTensor(hf_name));
    SourceTensor t;
    t.name = std::move(*name);
    t.source_name = std::string(hf_name);
    t.n_dims = view.n_dims;
    t.ne = view.ne;
    t.in_type = view.type;
    t.data = static_cast<const uint8_t*>(view.data);
    if (t.name == "token_embd.weight") n_vocab_model = view.ne[1];
    if (arch.permute_qk &&
        (EndsWith(t.name, ".attn_q.weight") || EndsWith(t.name, ".attn_q.bias") ||
         EndsWith(t.name, ".attn_k.weight") || EndsWith(t.name, ".attn_k.bias"))) {
      t.permute_heads = t.name.find(".attn_q.") != std::string::npos ? n_head : n_head_kv;
      const int64_t rows = t.n_dims == 1 ? t.ne[0] : t.ne[1];
      if (rows % (2 * t.permute_heads) != 0 || (t.n_dims != 1 && t.n_dims != 2)) {
        return InvalidArgumentError(
            fmt::format("{}: tensor '{}' of {} rows cannot be split into "
                        "{} heads",
                        dir, hf_name, rows, t.permute_heads));
      }
    }
    plan.tensors.push_back(std::move(t));
  }
  if (n_vocab_model == 0) {
    return NotFoundError(fmt::format("{}: no model.embed_tokens.weight tensor", dir));
  }
  w.SetU32(a + ".vocab_size", static_cast<uint32_t>(n_vocab_model));
  YZ_RETURN_IF_ERROR(AddHfTokenizer(dir, a, n_vocab_model, config, w));
  std::sort(plan.tensors.begin(), plan.tensors.end(),
            [](const SourceTensor& x, const SourceTensor& y) {
              return TensorOrder(x.name) < TensorOrder(y.name);
            });

  // The metadata goes through the GGUF writer and reader so that both inputs are copied by the
  // same code.
  YZ_ASSIGN_OR_RETURN(std::string image, w.Serialize());
  YZ_ASSIGN_OR_RETURN(
      GgufFile meta,
      GgufFile::FromMemory({reinterpret_cast<const uint8_t*>(image.data()), image.size()},
                           config_path));
  for (const GgufMetadataEntry& entry : meta.metadata()) {
    YZ_ASSIGN_OR_RETURN(KvEntry e, EncodeEntry(entry.key, entry.value));
    plan.kvs.push_back(std::move(e));
  }
  return plan;
}

// ---- writing

// Converts rows [r0, r1) of `t` into `dst` (RowSizeBytes(out_type, ne[0]) bytes per row).
void ConvertRows(const SourceTensor& t, int64_t r0, int64_t r1, uint8_t* dst) {
  const int64_t n = t.ne[0];
  const int64_t n_rows = t.n_rows();
  const int64_t in_row_bytes = t.data != nullptr ? RowSizeBytes(t.in_type, n) : 0;
  const int64_t out_row_bytes = RowSizeBytes(t.out_type, n);
  std::vector<float> row(static_cast<size_t>(n));
  std::vector<float> permuted;
  for (int64_t r = r0; r < r1; ++r) {
    if (t.data == nullptr) {
      std::copy_n(t.synthesized.data() + r * n, n, row.data());
    } else {
      int64_t src = r;
      if (t.permute_heads > 0 && t.n_dims == 2) src = PermutedSource(r, n_rows, t.permute_heads);
      Dequantize(t.in_type, t.data + src * in_row_bytes, row.data(), n);
      if (t.permute_heads > 0 && t.n_dims == 1) {
        permuted.resize(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) permuted[i] = row[PermutedSource(i, n, t.permute_heads)];
        row.swap(permuted);
      }
    }
    Quantize(t.out_type, row.data(), dst + (r - r0) * out_row_bytes, n);
  }
}

Status WriteOutput(const Plan& plan, const std::string& out_path, const QuantizeOptions& options,
                   QuantizeStats* stats) {
  // Header, metadata, tensor infos: every size is known before any data is written.
  std::string head;
  Put<uint32_t>(head, kGgufMagic);
  Put<uint32_t>(head, 3);
  Put<uint64_t>(head, plan.tensors.size());
  Put<uint64_t>(head, plan.kvs.size());
  for (const KvEntry& kv : plan.kvs) head += kv.encoded;
  uint64_t offset = 0;
  uint64_t out_total = 0;
  for (const SourceTensor& t : plan.tensors) {
    PutString(head, t.name);
    Put<uint32_t>(head, static_cast<uint32_t>(t.n_dims));
    for (int d = 0; d < t.n_dims; ++d) Put<uint64_t>(head, static_cast<uint64_t>(t.ne[d]));
    Put<uint32_t>(head, static_cast<uint32_t>(t.out_type));
    Put<uint64_t>(head, offset);
    offset += AlignUp(t.out_bytes(), kAlignment);
    out_total += t.out_bytes();
  }
  head.resize(AlignUp(head.size(), kAlignment), '\0');

  YZ_ASSIGN_OR_RETURN(internal::AtomicFileWriter file,
                      internal::AtomicFileWriter::Create(out_path));
  YZ_RETURN_IF_ERROR(file.Append(head));

  QuantizeProgress progress;
  progress.n_tensors = static_cast<int64_t>(plan.tensors.size());
  progress.out_bytes_total = out_total;
  if (options.progress && !options.progress(progress)) {
    return Error(Code::kCancelled, "quantisation cancelled");
  }

  const int n_threads = options.n_threads > 0
                            ? options.n_threads
                            : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  std::string buffer;
  for (const SourceTensor& t : plan.tensors) {
    const int64_t out_row_bytes = RowSizeBytes(t.out_type, t.ne[0]);
    const int64_t n_rows = t.n_rows();
    // Rows are converted in chunks of about kFlushBytes of output, split over the threads; each
    // row is independent, so the bytes do not depend on the thread count.
    const int64_t chunk_rows = std::max<int64_t>(
        1, static_cast<int64_t>(kFlushBytes) / std::max<int64_t>(1, out_row_bytes));
    for (int64_t r0 = 0; r0 < n_rows; r0 += chunk_rows) {
      const int64_t r1 = std::min(n_rows, r0 + chunk_rows);
      const size_t old_size = buffer.size();
      buffer.resize(old_size + static_cast<size_t>((r1 - r0) * out_row_bytes));
      auto* dst = reinterpret_cast<uint8_t*>(buffer.data() + old_size);
      const int64_t per_thread = (r1 - r0 + n_threads - 1) / n_threads;
      std::vector<std::thread> workers;
      for (int i = 1; i < n_threads && r0 + i * per_thread < r1; ++i) {
        const int64_t a = r0 + i * per_thread;
        const int64_t b = std::min(r1, a + per_thread);
        workers.emplace_back(ConvertRows, std::cref(t), a, b, dst + (a - r0) * out_row_bytes);
      }
      ConvertRows(t, r0, std::min(r1, r0 + per_thread), dst);
      for (std::thread& w : workers) w.join();
      if (buffer.size() >= kFlushBytes) {
        YZ_RETURN_IF_ERROR(file.Append(buffer));
        buffer.clear();
      }
    }
    buffer.resize(buffer.size() + (AlignUp(t.out_bytes(), kAlignment) - t.out_bytes()), '\0');
    ++stats->n_tensors;
    if (Traits(t.out_type).block_size > 1) ++stats->n_quantized_tensors;
    stats->in_tensor_bytes += t.in_bytes();
    stats->out_tensor_bytes += t.out_bytes();
    if (options.progress) {
      progress.n_done_tensors = stats->n_tensors;
      progress.tensor_name = t.name;
      progress.from_type = t.in_type;
      progress.to_type = t.out_type;
      progress.in_bytes_done = stats->in_tensor_bytes;
      progress.out_bytes_done = stats->out_tensor_bytes;
      if (!options.progress(progress)) return Error(Code::kCancelled, "quantisation cancelled");
    }
  }
  YZ_RETURN_IF_ERROR(file.Append(buffer));
  YZ_RETURN_IF_ERROR(file.Commit());
  stats->out_file_bytes = head.size() + offset;
  return OkStatus();
}

struct TargetInfo {
  QuantizeTarget target;
  std::string_view name;
  uint32_t file_type;  // llama_ftype
  TensorType bulk;     // the type of every 2-D weight the recipe does not single out
};

constexpr TargetInfo kTargets[] = {
    {QuantizeTarget::kQ8_0, "q8_0", 7, TensorType::kQ8_0},
    {QuantizeTarget::kQ6_K, "q6_k", 18, TensorType::kQ6_K},
    {QuantizeTarget::kQ5_K_M, "q5_k_m", 17, TensorType::kQ5_K},
    {QuantizeTarget::kQ5_K_S, "q5_k_s", 16, TensorType::kQ5_K},
    {QuantizeTarget::kQ5_1, "q5_1", 9, TensorType::kQ5_1},
    {QuantizeTarget::kQ5_0, "q5_0", 8, TensorType::kQ5_0},
    {QuantizeTarget::kQ4_K_M, "q4_k_m", 15, TensorType::kQ4_K},
    {QuantizeTarget::kQ4_K_S, "q4_k_s", 14, TensorType::kQ4_K},
    {QuantizeTarget::kQ4_0, "q4_0", 2, TensorType::kQ4_0},
    {QuantizeTarget::kIQ4_XS, "iq4_xs", 30, TensorType::kIQ4_XS},
    {QuantizeTarget::kQ3_K_L, "q3_k_l", 13, TensorType::kQ3_K},
    {QuantizeTarget::kQ3_K_M, "q3_k_m", 12, TensorType::kQ3_K},
    {QuantizeTarget::kQ3_K_S, "q3_k_s", 11, TensorType::kQ3_K},
    {QuantizeTarget::kQ2_K, "q2_k", 10, TensorType::kQ2_K},
};

const TargetInfo& InfoOf(QuantizeTarget target) {
  for (const TargetInfo& info : kTargets) {
    if (info.target == target) return info;
  }
  return kTargets[0];  // unreachable: every enumerator is in the table
}

}  // namespace

Result<QuantizeTarget> ParseQuantizeTarget(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const TargetInfo& info : kTargets) {
    if (lower == info.name) return info.target;
  }
  return InvalidArgumentError(
      fmt::format("unknown quantisation type '{}' (choose one of {})", name, QuantizeTargetNames()),
      "type");
}

std::string_view QuantizeTargetName(QuantizeTarget target) { return InfoOf(target).name; }

TensorType RowFallbackType(TensorType type) {
  switch (type) {
    case TensorType::kQ2_K:
    case TensorType::kQ3_K:
    case TensorType::kIQ4_XS:
      return TensorType::kIQ4_NL;
    case TensorType::kQ4_K:
      return TensorType::kQ5_0;
    case TensorType::kQ5_K:
      return TensorType::kQ5_1;
    case TensorType::kQ6_K:
      return TensorType::kQ8_0;
    default:
      return type;
  }
}

std::string QuantizeTargetNames() {
  std::string names;
  for (const TargetInfo& info : kTargets) {
    if (!names.empty()) names += ", ";
    names += info.name;
  }
  return names;
}

uint32_t QuantizeTargetFileType(QuantizeTarget target) { return InfoOf(target).file_type; }

TensorType QuantizedTypeFor(QuantizeTarget target, std::string_view name, int n_dims,
                            int64_t row_length, const RecipeModel& model) {
  if (n_dims < 2 || !EndsWith(name, "weight")) return TensorType::kF32;
  using T = TensorType;
  using Q = QuantizeTarget;
  T type = InfoOf(target).bulk;
  const int64_t layer = LayerOf(name);
  const int64_t n_layer = model.n_layer;
  const bool more_bits = layer >= 0 && UseMoreBits(layer, n_layer);
  const bool is_output =
      name == "output.weight" || (!model.has_output && name == "token_embd.weight");
  if (is_output) {
    if (target != Q::kQ8_0) type = T::kQ6_K;
  } else if (EndsWith(name, ".attn_v.weight")) {
    if ((target == Q::kQ4_K_M || target == Q::kQ5_K_M) && more_bits) type = T::kQ6_K;
    if (target == Q::kQ4_K_S && layer >= 0 && layer < 4) type = T::kQ5_K;
    if (target == Q::kIQ4_XS && model.n_gqa >= 4) type = T::kQ5_K;
    if (target == Q::kQ3_K_L) type = T::kQ5_K;
    if (target == Q::kQ3_K_M) type = layer >= 0 && layer < 2 ? T::kQ5_K : T::kQ4_K;
    if (target == Q::kQ2_K) type = model.n_gqa >= 4 ? T::kQ4_K : T::kQ3_K;
  } else if (EndsWith(name, ".ffn_down.weight")) {
    if ((target == Q::kQ4_K_M || target == Q::kQ5_K_M) && more_bits) type = T::kQ6_K;
    if ((target == Q::kIQ4_XS || target == Q::kQ4_K_S) && layer >= 0 && layer < n_layer / 8) {
      type = T::kQ5_K;
    }
    if (target == Q::kQ3_K_L) type = T::kQ5_K;
    if (target == Q::kQ3_K_M) type = layer >= 0 && layer < n_layer / 16 ? T::kQ5_K : T::kQ4_K;
    if (target == Q::kQ2_K) type = T::kQ3_K;
  } else if (EndsWith(name, ".attn_output.weight")) {
    if (target == Q::kQ3_K_L) type = T::kQ5_K;
    if (target == Q::kQ3_K_M) type = T::kQ4_K;
    if (target == Q::kQ2_K) type = T::kQ3_K;
  }
  if (!IsValidRowLength(type, row_length)) {
    // llama.cpp's fallbacks (llama_tensor_get_type): Qwen2.5-0.5B's 896-column rows are Q5_0
    // in its Q4_K_M file, Q5_1 in its Q5_K_M one and IQ4_NL in its Q3_K_M and Q2_K ones.
    type = RowFallbackType(type);
    if (!IsValidRowLength(type, row_length)) type = T::kF16;
  }
  return type;
}

Result<QuantizeStats> QuantizeModel(const std::string& in_path, const std::string& out_path,
                                    const QuantizeOptions& options) {
  std::error_code ec;
  if (!fs::exists(in_path, ec))
    return NotFoundError(fmt::format("{}: no such file or directory", in_path));
  if (fs::exists(out_path, ec) && fs::equivalent(in_path, out_path, ec)) {
    return InvalidArgumentError(fmt::format("{}: the output must not be the input file", out_path));
  }

  Inputs inputs;
  Plan plan;
  if (fs::is_directory(in_path, ec)) {
    if (!fs::exists(fs::path(in_path) / "config.json", ec)) {
      return NotFoundError(fmt::format("{}: a model directory needs config.json", in_path));
    }
    YZ_ASSIGN_OR_RETURN(SafetensorsModel st, SafetensorsModel::Open(in_path));
    inputs.safetensors.emplace(std::move(st));
    YZ_ASSIGN_OR_RETURN(plan, PlanFromHf(in_path, *inputs.safetensors));
  } else {
    YZ_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::Open(in_path));
    inputs.gguf.emplace(std::move(gguf));
    inputs.gguf->Advise(MappedFile::Advice::kSequential);
    YZ_ASSIGN_OR_RETURN(plan, PlanFromGguf(*inputs.gguf));
  }

  // Choose each tensor's type; check that every input type can be read.
  int64_t n_layer = 0;
  bool has_output = false;
  for (const SourceTensor& t : plan.tensors) {
    n_layer = std::max(n_layer, LayerOf(t.name) + 1);
    if (t.name == "output.weight") has_output = true;
  }
  const RecipeModel model{.n_layer = n_layer, .has_output = has_output, .n_gqa = plan.n_gqa};
  for (SourceTensor& t : plan.tensors) {
    if (t.data != nullptr && !IsSupported(t.in_type)) {
      return UnimplementedError(fmt::format(
          "{}: tensor '{}' has type {}, which this build cannot convert (supported: {})", in_path,
          t.source_name, TypeName(t.in_type), SupportedTypeNames()));
    }
    t.out_type = QuantizedTypeFor(options.target, t.name, t.n_dims, t.ne[0], model);
    if (!IsSupported(t.out_type)) {
      return UnimplementedError(
          fmt::format("{}: tensor '{}' would be written as {}, which this "
                      "build cannot write (supported: {})",
                      out_path, t.name, TypeName(t.out_type), SupportedTypeNames()));
    }
  }
  SetEntry(plan.kvs, EncodeU32Entry("general.quantization_version", 2));
  SetEntry(plan.kvs, EncodeU32Entry("general.file_type", QuantizeTargetFileType(options.target)));

  QuantizeStats stats;
  Status written = WriteOutput(plan, out_path, options, &stats);
  if (!written) {
    Error e = std::move(written).error();
    if (e.code == Code::kUnavailable)
      e.message = fmt::format("writing {}: {}", out_path, e.message);
    return e;
  }
  return stats;
}

}  // namespace yunzhi::engine
