#include "model_writer.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/quantize.h"
#include "yunzhi/engine/safetensors.h"

namespace yunzhi::tools {
namespace {

using engine::Architecture;
using engine::TensorType;

// splitmix64: a tiny, well-mixed, portable generator (the same numbers on every platform,
// unlike std::*_distribution).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float Symmetric() {
    return static_cast<float>(static_cast<double>(Next() >> 11) * 0x1p-52 - 1.0);
  }

 private:
  uint64_t state_;
};

// One tensor in HF layout: row-major [rows, cols] (cols == 0 for a vector of `rows`).
struct Tensor {
  std::string hf_name;
  std::string gguf_name;
  int64_t rows = 0;
  int64_t cols = 0;  // 0: a 1-D tensor of `rows` elements
  bool matrix = false;
  bool rope_permute = false;  // llama Q/K: permute rows for GGUF
  int64_t permute_heads = 0;
  std::vector<float> values;  // as generated (HF order)
};

bool IsFloatType(TensorType t) {
  return t == TensorType::kF32 || t == TensorType::kF16 || t == TensorType::kBF16;
}

// Rows of a head-major Q/K matrix reordered from rotate-half (HF) to interleaved (GGUF llama)
// order: within each head of size d, GGUF row 2i holds HF row i and row 2i+1 holds HF row
// i + d/2, so that rotating pairs (2i, 2i+1) equals rotating (i, i + d/2).
std::vector<float> PermuteForInterleavedRope(const std::vector<float>& w, int64_t rows,
                                             int64_t cols, int64_t n_heads) {
  std::vector<float> out(w.size());
  const int64_t d = rows / n_heads;
  const int64_t c = cols == 0 ? 1 : cols;
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < d / 2; ++i) {
      std::memcpy(&out[static_cast<size_t>((h * d + 2 * i) * c)],
                  &w[static_cast<size_t>((h * d + i) * c)], static_cast<size_t>(c) * 4);
      std::memcpy(&out[static_cast<size_t>((h * d + 2 * i + 1) * c)],
                  &w[static_cast<size_t>((h * d + i + d / 2) * c)], static_cast<size_t>(c) * 4);
    }
  }
  return out;
}

std::vector<uint8_t> Encode(TensorType type, const std::vector<float>& values, int64_t row_len) {
  const int64_t n_rows = static_cast<int64_t>(values.size()) / row_len;
  const int64_t row_bytes = engine::RowSizeBytes(type, row_len);
  std::vector<uint8_t> out(static_cast<size_t>(row_bytes * n_rows));
  for (int64_t r = 0; r < n_rows; ++r) {
    engine::Quantize(type, values.data() + r * row_len, out.data() + r * row_bytes, row_len);
  }
  return out;
}

std::vector<float> Decode(TensorType type, const std::vector<uint8_t>& bytes, int64_t n,
                          int64_t row_len) {
  std::vector<float> out(static_cast<size_t>(n));
  const int64_t row_bytes = engine::RowSizeBytes(type, row_len);
  for (int64_t r = 0; r < n / row_len; ++r) {
    engine::Dequantize(type, bytes.data() + r * row_bytes, out.data() + r * row_len, row_len);
  }
  return out;
}

std::vector<uint8_t> FloatBytes(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// The Llama 3.1 scaled inverse frequency for base frequency `freq`.
double Llama3Freq(const ModelSpec& s, double freq) {
  const double old_ctx = static_cast<double>(s.rope_original_context);
  const double low_wavelen = old_ctx / s.rope_low_freq_factor;
  const double high_wavelen = old_ctx / s.rope_high_freq_factor;
  const double wavelen = 2.0 * M_PI / freq;
  if (wavelen < high_wavelen) return freq;
  if (wavelen > low_wavelen) return freq / s.rope_factor;
  const double smooth = (old_ctx / wavelen - s.rope_low_freq_factor) /
                        (s.rope_high_freq_factor - s.rope_low_freq_factor);
  return (1.0 - smooth) * freq / s.rope_factor + smooth * freq;
}

std::string JsonEscape(std::string_view s) {
  std::string out;
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += ch;
    }
  }
  return out;
}

const char kChatMlTemplate[] =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

std::string HfModelType(Architecture a) { return std::string(engine::ArchitectureName(a)); }

std::string ConfigJson(const ModelSpec& s, int64_t head_dim) {
  const char* arch_class = "LlamaForCausalLM";
  if (s.architecture == Architecture::kMistral) arch_class = "MistralForCausalLM";
  if (s.architecture == Architecture::kQwen2) arch_class = "Qwen2ForCausalLM";
  if (s.architecture == Architecture::kQwen3) arch_class = "Qwen3ForCausalLM";
  std::string rope_scaling = "null";
  if (s.rope_scaling == engine::RopeScaling::kLinear) {
    rope_scaling = fmt::format("{{\"rope_type\": \"linear\", \"factor\": {}}}", s.rope_factor);
  } else if (s.rope_scaling == engine::RopeScaling::kLlama3) {
    rope_scaling = fmt::format(
        "{{\"rope_type\": \"llama3\", \"factor\": {}, \"low_freq_factor\": {}, "
        "\"high_freq_factor\": {}, \"original_max_position_embeddings\": {}}}",
        s.rope_factor, s.rope_low_freq_factor, s.rope_high_freq_factor, s.rope_original_context);
  }
  const std::string dtype = s.weight_type == TensorType::kF16    ? "float16"
                            : s.weight_type == TensorType::kBF16 ? "bfloat16"
                                                                 : "float32";
  return fmt::format(
      "{{\n  \"architectures\": [\"{}\"],\n  \"model_type\": \"{}\",\n  \"vocab_size\": {},\n"
      "  \"hidden_size\": {},\n  \"num_hidden_layers\": {},\n  \"num_attention_heads\": {},\n"
      "  \"num_key_value_heads\": {},\n  \"head_dim\": {},\n  \"intermediate_size\": {},\n"
      "  \"max_position_embeddings\": {},\n  \"rms_norm_eps\": {},\n  \"rope_theta\": {},\n"
      "  \"rope_scaling\": {},\n  \"tie_word_embeddings\": {},\n  \"hidden_act\": \"silu\",\n"
      "  \"attention_bias\": {},\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
      "  \"sliding_window\": {},\n  \"torch_dtype\": \"{}\"\n}}\n",
      arch_class, HfModelType(s.architecture), s.n_vocab, s.n_embd, s.n_layer, s.n_head,
      s.n_head_kv, head_dim, s.n_ff, s.n_ctx, s.norm_eps, s.rope_theta, rope_scaling,
      s.tied_output ? "true" : "false", s.architecture == Architecture::kQwen2 ? "true" : "false",
      s.sliding_window > 0 ? std::to_string(s.sliding_window) : std::string("null"), dtype);
}

// ---- synthetic vocabularies

// GGUF: SentencePiece-style, <unk> <s> </s>, the 256 byte tokens, then pieces.
void AddGgufVocab(const ModelSpec& s, engine::GgufWriter* w) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(fmt::format("<0x{:02X}>", b));
    types.push_back(6);
  }
  const std::string sp = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  std::vector<std::string> pieces = {sp};
  for (char c = 'a'; c <= 'z'; ++c) pieces.push_back(std::string(1, c));
  for (char c = 'a'; c <= 'z'; ++c) pieces.push_back(sp + std::string(1, c));
  for (const char* word : {"the", "he", "in", "on", "an", "er", "is", "it", "at", "or"}) {
    pieces.push_back(word);
    pieces.push_back(sp + word);
  }
  for (const std::string& p : pieces) {
    if (static_cast<int64_t>(tokens.size()) >= s.n_vocab) break;
    tokens.push_back(p);
    types.push_back(1);
  }
  for (int64_t i = static_cast<int64_t>(tokens.size()); i < s.n_vocab; ++i) {
    tokens.push_back(fmt::format("{}t{}", sp, i));
    types.push_back(1);
  }
  std::vector<float> scores(tokens.size());
  for (size_t i = 0; i < scores.size(); ++i) scores[i] = -static_cast<float>(i);
  w->SetString("tokenizer.ggml.model", "llama");
  w->SetStringArray("tokenizer.ggml.tokens", tokens);
  w->SetF32Array("tokenizer.ggml.scores", scores);
  w->SetI32Array("tokenizer.ggml.token_type", types);
  w->SetU32("tokenizer.ggml.unknown_token_id", 0);
  w->SetU32("tokenizer.ggml.bos_token_id", 1);
  w->SetU32("tokenizer.ggml.eos_token_id", 2);
  w->SetBool("tokenizer.ggml.add_bos_token", true);
  w->SetString("tokenizer.chat_template", kChatMlTemplate);
}

// GPT-2's reversible byte -> printable character mapping, as UTF-8.
std::string ByteToUnicode(int b) {
  int cp = b;
  const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
  if (!printable) {
    int n = 0;
    for (int x = 0; x < b; ++x) {
      if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) ++n;
    }
    cp = 256 + n;
  }
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// HF: byte-level BPE with the 256 byte symbols, some merges, and three ChatML control tokens
// at the end of the vocabulary.
std::string TokenizerJson(const ModelSpec& s) {
  std::vector<std::string> vocab;
  for (int b = 0; b < 256; ++b) vocab.push_back(ByteToUnicode(b));
  std::vector<std::string> merges;
  const std::string space = ByteToUnicode(' ');
  const int64_t n_normal = s.n_vocab - 3;
  for (char a = 'a'; a <= 'z' && static_cast<int64_t>(vocab.size()) < n_normal; ++a) {
    merges.push_back(space + " " + std::string(1, a));
    vocab.push_back(space + std::string(1, a));
  }
  for (char a = 'a'; a <= 'z'; ++a) {
    for (char b = 'a'; b <= 'z' && static_cast<int64_t>(vocab.size()) < n_normal; ++b) {
      merges.push_back(std::string(1, a) + " " + std::string(1, b));
      vocab.push_back(std::string(1, a) + std::string(1, b));
    }
  }
  for (int64_t i = static_cast<int64_t>(vocab.size()); i < n_normal; ++i) {
    vocab.push_back(fmt::format("<filler_{}>", i));
  }
  std::string out = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n";
  out += "  \"added_tokens\": [\n";
  const char* specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  for (int i = 0; i < 3; ++i) {
    out += fmt::format(
        "    {{\"id\": {}, \"content\": \"{}\", \"single_word\": false, \"lstrip\": false, "
        "\"rstrip\": false, \"normalized\": false, \"special\": true}}{}\n",
        n_normal + i, specials[i], i < 2 ? "," : "");
  }
  out += "  ],\n  \"normalizer\": null,\n";
  out +=
      "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
      "\"trim_offsets\": true, \"use_regex\": true},\n";
  out += "  \"post_processor\": null,\n  \"decoder\": {\"type\": \"ByteLevel\"},\n";
  out +=
      "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, "
      "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": false, "
      "\"byte_fallback\": false, \"ignore_merges\": false,\n    \"vocab\": {";
  for (size_t i = 0; i < vocab.size(); ++i) {
    out += fmt::format("{}\"{}\": {}", i ? ", " : "", JsonEscape(vocab[i]), i);
  }
  out += "},\n    \"merges\": [";
  for (size_t i = 0; i < merges.size(); ++i) {
    out += fmt::format("{}\"{}\"", i ? ", " : "", JsonEscape(merges[i]));
  }
  out += "]\n  }\n}\n";
  return out;
}

Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return UnavailableError(fmt::format("{}: cannot write", path));
  return OkStatus();
}

}  // namespace

Result<ModelSpec> PresetSpec(const std::string& name) {
  ModelSpec s;
  if (name == "tiny") return s;
  if (name == "qwen2.5-0.5b") {
    s.architecture = Architecture::kQwen2;
    s.n_vocab = 151936;
    s.n_embd = 896;
    s.n_layer = 24;
    s.n_head = 14;
    s.n_head_kv = 2;
    s.head_dim = 64;
    s.n_ff = 4864;
    s.n_ctx = 32768;
    s.norm_eps = 1e-6f;
    s.rope_theta = 1000000.0f;
    s.tied_output = true;
    return s;
  }
  if (name == "llama3.2-1b") {
    s.architecture = Architecture::kLlama;
    s.n_vocab = 128256;
    s.n_embd = 2048;
    s.n_layer = 16;
    s.n_head = 32;
    s.n_head_kv = 8;
    s.head_dim = 64;
    s.n_ff = 8192;
    s.n_ctx = 131072;
    s.norm_eps = 1e-5f;
    s.rope_theta = 500000.0f;
    s.rope_scaling = engine::RopeScaling::kLlama3;
    s.rope_factor = 32.0f;
    s.rope_low_freq_factor = 1.0f;
    s.rope_high_freq_factor = 4.0f;
    s.rope_original_context = 8192;
    s.tied_output = true;
    return s;
  }
  if (name == "stories260k") {
    s.architecture = Architecture::kLlama;
    s.n_vocab = 512;
    s.n_embd = 64;
    s.n_layer = 5;
    s.n_head = 8;
    s.n_head_kv = 4;
    s.n_ff = 172;
    return s;
  }
  return InvalidArgumentError(fmt::format(
      "unknown preset '{}' (known: tiny, qwen2.5-0.5b, llama3.2-1b, stories260k)", name));
}

Status WriteModel(const ModelSpec& s, const WriteTargets& targets) {
  const int64_t head_dim = s.head_dim > 0 ? s.head_dim : (s.n_head > 0 ? s.n_embd / s.n_head : 0);
  if (s.n_vocab < 262 || s.n_embd <= 0 || s.n_layer <= 0 || s.n_head <= 0 || s.n_head_kv <= 0 ||
      s.n_ff <= 0 || head_dim <= 0 || head_dim % 2 != 0 || s.n_head % s.n_head_kv != 0) {
    return InvalidArgumentError(fmt::format(
        "inconsistent shape: n_vocab {} (>= 262), n_embd {}, n_layer {}, n_head {}, n_head_kv {} "
        "(must divide n_head), head_dim {} (even), n_ff {}",
        s.n_vocab, s.n_embd, s.n_layer, s.n_head, s.n_head_kv, head_dim, s.n_ff));
  }
  if (!engine::IsSupported(s.weight_type)) {
    return InvalidArgumentError(fmt::format("weight type {} is not supported (supported: {})",
                                            engine::TypeName(s.weight_type),
                                            engine::SupportedTypeNames()));
  }
  if (!targets.hf_dir.empty() && !IsFloatType(s.weight_type)) {
    return InvalidArgumentError(
        fmt::format("safetensors holds only F32, F16 and BF16 weights, not {}",
                    engine::TypeName(s.weight_type)));
  }
  const bool llama_family =
      s.architecture == Architecture::kLlama || s.architecture == Architecture::kMistral;
  const bool qkv_bias = s.architecture == Architecture::kQwen2;
  const bool qk_norm = s.architecture == Architecture::kQwen3;
  const int64_t q_dim = s.n_head * head_dim;
  const int64_t kv_dim = s.n_head_kv * head_dim;

  // ---- Draw every tensor (HF layout), in a fixed order so the seed fixes the values.
  Rng rng(s.seed);
  std::vector<Tensor> tensors;
  auto matrix = [&](std::string hf, std::string gguf, int64_t rows, int64_t cols, float scale,
                    bool permute = false, int64_t heads = 0) {
    Tensor t{std::move(hf), std::move(gguf), rows, cols, true, permute && llama_family, heads, {}};
    t.values.resize(static_cast<size_t>(rows * cols));
    for (float& v : t.values) v = rng.Symmetric() * scale;
    tensors.push_back(std::move(t));
  };
  auto vector = [&](std::string hf, std::string gguf, int64_t n, float center, float spread,
                    bool permute = false, int64_t heads = 0) {
    Tensor t{std::move(hf), std::move(gguf), n, 0, false, permute && llama_family, heads, {}};
    t.values.resize(static_cast<size_t>(n));
    for (float& v : t.values) v = center + rng.Symmetric() * spread;
    tensors.push_back(std::move(t));
  };
  // Uniform(-a, a) has standard deviation a / sqrt(3): scale matrices to keep activations O(1).
  auto fan_in = [](int64_t cols) { return std::sqrt(3.0f / static_cast<float>(cols)); };
  matrix("model.embed_tokens.weight", "token_embd.weight", s.n_vocab, s.n_embd, 1.0f);
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const std::string h = fmt::format("model.layers.{}.", l);
    const std::string g = fmt::format("blk.{}.", l);
    vector(h + "input_layernorm.weight", g + "attn_norm.weight", s.n_embd, 1.0f, 0.2f);
    matrix(h + "self_attn.q_proj.weight", g + "attn_q.weight", q_dim, s.n_embd,
           fan_in(s.n_embd) * 2.0f, true, s.n_head);
    matrix(h + "self_attn.k_proj.weight", g + "attn_k.weight", kv_dim, s.n_embd,
           fan_in(s.n_embd) * 2.0f, true, s.n_head_kv);
    matrix(h + "self_attn.v_proj.weight", g + "attn_v.weight", kv_dim, s.n_embd, fan_in(s.n_embd));
    if (qkv_bias) {
      vector(h + "self_attn.q_proj.bias", g + "attn_q.bias", q_dim, 0.0f, 0.5f);
      vector(h + "self_attn.k_proj.bias", g + "attn_k.bias", kv_dim, 0.0f, 0.5f);
      vector(h + "self_attn.v_proj.bias", g + "attn_v.bias", kv_dim, 0.0f, 0.5f);
    }
    if (qk_norm) {
      vector(h + "self_attn.q_norm.weight", g + "attn_q_norm.weight", head_dim, 1.0f, 0.3f);
      vector(h + "self_attn.k_norm.weight", g + "attn_k_norm.weight", head_dim, 1.0f, 0.3f);
    }
    matrix(h + "self_attn.o_proj.weight", g + "attn_output.weight", s.n_embd, q_dim, fan_in(q_dim));
    vector(h + "post_attention_layernorm.weight", g + "ffn_norm.weight", s.n_embd, 1.0f, 0.2f);
    matrix(h + "mlp.gate_proj.weight", g + "ffn_gate.weight", s.n_ff, s.n_embd, fan_in(s.n_embd));
    matrix(h + "mlp.up_proj.weight", g + "ffn_up.weight", s.n_ff, s.n_embd, fan_in(s.n_embd));
    matrix(h + "mlp.down_proj.weight", g + "ffn_down.weight", s.n_embd, s.n_ff, fan_in(s.n_ff));
  }
  vector("model.norm.weight", "output_norm.weight", s.n_embd, 1.0f, 0.2f);
  if (!s.tied_output) {
    matrix("lm_head.weight", "output.weight", s.n_vocab, s.n_embd, fan_in(s.n_embd) * 4.0f);
  }

  // ---- Store: each tensor's type, bytes, and the values as the engine will read them back.
  engine::GgufWriter gguf;
  engine::SafetensorsWriter hf;
  engine::SafetensorsWriter ref;
  for (Tensor& t : tensors) {
    const int64_t row_len = t.matrix ? t.cols : t.rows;
    TensorType type = t.matrix ? s.weight_type : TensorType::kF32;
    if (!engine::IsValidRowLength(type, row_len)) {
      // Real files fall back to another type where a row does not fit the super-block
      // (llama.cpp's quantiser, as `yunzhi quantize`).
      type = engine::RowFallbackType(type);
      if (!engine::IsValidRowLength(type, row_len)) {
        return InvalidArgumentError(fmt::format(
            "tensor {}: row length {} is not a multiple of the {} block size ({})", t.gguf_name,
            row_len, engine::TypeName(type), engine::Traits(type).block_size));
      }
    }
    // Vectors are rounded through the float weight type so that GGUF (F32 vectors) and
    // safetensors (vectors in the weight type) hold the same numbers.
    if (!t.matrix && IsFloatType(s.weight_type) && s.weight_type != TensorType::kF32) {
      t.values = Decode(s.weight_type, Encode(s.weight_type, t.values, row_len), t.rows, row_len);
    }
    std::vector<uint8_t> bytes = Encode(type, t.values, row_len);
    std::vector<float> effective =
        Decode(type, bytes, static_cast<int64_t>(t.values.size()), row_len);
    std::vector<int64_t> shape =
        t.matrix ? std::vector<int64_t>{t.rows, t.cols} : std::vector<int64_t>{t.rows};
    if (!targets.reference_path.empty()) {
      YZ_RETURN_IF_ERROR(ref.AddTensor(t.hf_name, TensorType::kF32, shape, FloatBytes(effective)));
    }
    if (!targets.hf_dir.empty()) {
      const TensorType hf_type = s.weight_type;
      YZ_RETURN_IF_ERROR(hf.AddTensor(
          t.hf_name, hf_type, shape, hf_type == type ? bytes : Encode(hf_type, t.values, row_len)));
    }
    if (!targets.gguf_path.empty()) {
      std::vector<float> stored = t.values;
      if (t.rope_permute)
        stored = PermuteForInterleavedRope(stored, t.rows, t.cols, t.permute_heads);
      std::vector<int64_t> ne =
          t.matrix ? std::vector<int64_t>{t.cols, t.rows} : std::vector<int64_t>{t.rows};
      YZ_RETURN_IF_ERROR(gguf.AddTensor(t.gguf_name, type, ne,
                                        t.rope_permute ? Encode(type, stored, row_len) : bytes));
    }
  }

  const std::string config = ConfigJson(s, head_dim);
  if (!targets.gguf_path.empty()) {
    const std::string arch(engine::ArchitectureName(s.architecture));
    gguf.SetString("general.architecture", arch);
    gguf.SetString("general.name",
                   fmt::format("yunzhi random {} {}", arch, engine::TypeName(s.weight_type)));
    gguf.SetU32(arch + ".context_length", static_cast<uint32_t>(s.n_ctx));
    gguf.SetU32(arch + ".embedding_length", static_cast<uint32_t>(s.n_embd));
    gguf.SetU32(arch + ".block_count", static_cast<uint32_t>(s.n_layer));
    gguf.SetU32(arch + ".feed_forward_length", static_cast<uint32_t>(s.n_ff));
    gguf.SetU32(arch + ".attention.head_count", static_cast<uint32_t>(s.n_head));
    gguf.SetU32(arch + ".attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv));
    gguf.SetU32(arch + ".attention.key_length", static_cast<uint32_t>(head_dim));
    gguf.SetU32(arch + ".attention.value_length", static_cast<uint32_t>(head_dim));
    gguf.SetF32(arch + ".attention.layer_norm_rms_epsilon", s.norm_eps);
    gguf.SetF32(arch + ".rope.freq_base", s.rope_theta);
  if (s.sliding_window > 0) {
    gguf.SetU32(arch + ".attention.sliding_window", static_cast<uint32_t>(s.sliding_window));
  }
    gguf.SetU32(arch + ".rope.dimension_count", static_cast<uint32_t>(head_dim));
    if (s.rope_scaling == engine::RopeScaling::kLinear) {
      gguf.SetString(arch + ".rope.scaling.type", "linear");
      gguf.SetF32(arch + ".rope.scaling.factor", s.rope_factor);
    } else if (s.rope_scaling == engine::RopeScaling::kLlama3) {
      // As the llama.cpp converter does: the divisor of every frequency in a tensor.
      std::vector<float> factors(static_cast<size_t>(head_dim / 2));
      for (int64_t i = 0; i < head_dim / 2; ++i) {
        const double freq = std::pow(static_cast<double>(s.rope_theta),
                                     -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
        factors[static_cast<size_t>(i)] = static_cast<float>(freq / Llama3Freq(s, freq));
      }
      YZ_RETURN_IF_ERROR(gguf.AddTensor("rope_freqs.weight", TensorType::kF32, {head_dim / 2},
                                        FloatBytes(factors)));
    }
    AddGgufVocab(s, &gguf);
    YZ_RETURN_IF_ERROR(gguf.WriteFile(targets.gguf_path));
  }
  if (!targets.hf_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(targets.hf_dir, ec);
    if (ec) {
      return UnavailableError(fmt::format("{}: cannot create: {}", targets.hf_dir, ec.message()));
    }
    hf.SetMetadata("format", "pt");
    YZ_RETURN_IF_ERROR(hf.WriteFile(targets.hf_dir + "/model.safetensors"));
    YZ_RETURN_IF_ERROR(WriteText(targets.hf_dir + "/config.json", config));
    YZ_RETURN_IF_ERROR(WriteText(targets.hf_dir + "/tokenizer.json", TokenizerJson(s)));
    YZ_RETURN_IF_ERROR(
        WriteText(targets.hf_dir + "/tokenizer_config.json",
                  fmt::format("{{\n  \"bos_token\": null,\n  \"eos_token\": \"<|endoftext|>\",\n"
                              "  \"add_bos_token\": false,\n  \"chat_template\": \"{}\"\n}}\n",
                              JsonEscape(kChatMlTemplate))));
    YZ_RETURN_IF_ERROR(
        WriteText(targets.hf_dir + "/generation_config.json",
                  fmt::format("{{\n  \"eos_token_id\": [{}, {}],\n  \"temperature\": 0.7,\n"
                              "  \"top_p\": 0.8\n}}\n",
                              s.n_vocab - 3, s.n_vocab - 1)));
  }
  if (!targets.reference_path.empty()) {
    ref.SetMetadata("config", config);
    YZ_RETURN_IF_ERROR(ref.WriteFile(targets.reference_path));
  }
  return OkStatus();
}

std::vector<std::string> EncoderVocab(int64_t n_vocab) {
  std::vector<std::string> v;
  v.push_back("[PAD]");
  for (int i = 1; i < 100; ++i) v.push_back(fmt::format("[unused{}]", i));
  for (const char* t : {"[UNK]", "[CLS]", "[SEP]", "[MASK]"}) v.push_back(t);
  for (char c = 'a'; c <= 'z'; ++c) v.push_back(std::string(1, c));
  for (char c = 'a'; c <= 'z'; ++c) v.push_back("##" + std::string(1, c));
  for (char c = '0'; c <= '9'; ++c) v.push_back(std::string(1, c));
  for (char c = '0'; c <= '9'; ++c) v.push_back("##" + std::string(1, c));
  for (const char* t : {".", ",", "!", "?", "'", "-", ":", ";", "(", ")", "the", "a", "is",
                        "hello", "world", "cat", "dog", "paris", "capital", "france", "of",
                        "what", "model", "##ing", "##ed"}) {
    v.push_back(t);
  }
  while (static_cast<int64_t>(v.size()) < n_vocab) v.push_back(fmt::format("w{}", v.size()));
  v.resize(static_cast<size_t>(n_vocab));
  return v;
}

namespace {

std::string EncoderTokenizerJson(const std::vector<std::string>& vocab) {
  std::string added;
  std::string map;
  for (size_t i = 0; i < vocab.size(); ++i) {
    const std::string& t = vocab[i];
    if (t.size() > 2 && t.front() == '[' && t.back() == ']' && t.rfind("[unused", 0) != 0) {
      added += fmt::format("{}{{\"id\": {}, \"content\": \"{}\", \"special\": true}}",
                           added.empty() ? "" : ", ", i, t);
    }
    map += fmt::format("{}\"{}\": {}", map.empty() ? "" : ", ", JsonEscape(t), i);
  }
  return fmt::format(
      "{{\n  \"added_tokens\": [{}],\n"
      "  \"normalizer\": {{\"type\": \"BertNormalizer\", \"clean_text\": true, "
      "\"handle_chinese_chars\": true, \"strip_accents\": null, \"lowercase\": true}},\n"
      "  \"pre_tokenizer\": {{\"type\": \"BertPreTokenizer\"}},\n"
      "  \"post_processor\": {{\"type\": \"BertProcessing\", \"sep\": [\"[SEP]\", 102], "
      "\"cls\": [\"[CLS]\", 101]}},\n"
      "  \"decoder\": {{\"type\": \"WordPiece\", \"prefix\": \"##\", \"cleanup\": true}},\n"
      "  \"model\": {{\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", "
      "\"continuing_subword_prefix\": \"##\", \"max_input_chars_per_word\": 100,\n"
      "    \"vocab\": {{{}}}}}\n}}\n",
      added, map);
}

}  // namespace

Status WriteEncoderModel(const EncoderSpec& s, const WriteTargets& targets) {
  if (s.tokenizer && s.n_vocab < 300) {
    return InvalidArgumentError("encoder spec: a tokenizer needs n_vocab >= 300");
  }
  if (s.n_embd <= 0 || s.n_head <= 0 || s.n_embd % s.n_head != 0 || s.n_layer <= 0 || s.n_ff <= 0 ||
      s.n_vocab <= 0 || s.n_ctx <= 0 || s.n_token_types <= 0) {
    return InvalidArgumentError("encoder spec: inconsistent shape");
  }
  for (int64_t n : {s.n_embd, s.n_ff}) {
    if (!engine::IsValidRowLength(s.weight_type, n)) {
      return InvalidArgumentError(fmt::format("encoder spec: rows of {} elements cannot be {}", n,
                                              engine::TypeName(s.weight_type)));
    }
  }
  if (!targets.hf_dir.empty() && !IsFloatType(s.weight_type)) {
    return InvalidArgumentError(
        fmt::format("encoder spec: safetensors cannot hold {}", engine::TypeName(s.weight_type)));
  }
  // Vectors: F32 in GGUF, rounded through the weight type when it is a float type.
  const TensorType vector_type = IsFloatType(s.weight_type) ? s.weight_type : TensorType::kF32;
  Rng rng(s.seed);
  std::vector<Tensor> tensors;
  auto matrix = [&](std::string hf, std::string gguf, int64_t rows, int64_t cols, float scale) {
    Tensor t{std::move(hf), std::move(gguf), rows, cols, true, false, 0, {}};
    t.values.resize(static_cast<size_t>(rows * cols));
    for (float& v : t.values) v = scale * rng.Symmetric();
    tensors.push_back(std::move(t));
  };
  auto vector = [&](std::string hf, std::string gguf, int64_t n, float center, float scale) {
    Tensor t{std::move(hf), std::move(gguf), n, 0, false, false, 0, {}};
    t.values.resize(static_cast<size_t>(n));
    for (float& v : t.values) v = center + scale * rng.Symmetric();
    tensors.push_back(std::move(t));
  };
  const int64_t d = s.n_embd;
  const float w_scale = 1.0f / std::sqrt(static_cast<float>(d));
  matrix("embeddings.word_embeddings.weight", "token_embd.weight", s.n_vocab, d, 1.0f);
  matrix("embeddings.position_embeddings.weight", "position_embd.weight", s.n_ctx, d, 0.5f);
  matrix("embeddings.token_type_embeddings.weight", "token_types.weight", s.n_token_types, d, 0.5f);
  vector("embeddings.LayerNorm.weight", "token_embd_norm.weight", d, 1.0f, 0.2f);
  vector("embeddings.LayerNorm.bias", "token_embd_norm.bias", d, 0.0f, 0.1f);
  for (int64_t i = 0; i < s.n_layer; ++i) {
    const std::string h = fmt::format("encoder.layer.{}.", i);
    const std::string g = fmt::format("blk.{}.", i);
    const std::pair<const char*, const char*> kSquare[] = {
        {"attention.self.query", "attn_q"},
        {"attention.self.key", "attn_k"},
        {"attention.self.value", "attn_v"},
        {"attention.output.dense", "attn_output"}};
    for (const auto& [hf, gg] : kSquare) {
      matrix(h + hf + ".weight", g + gg + ".weight", d, d, 2.0f * w_scale);
      vector(h + hf + ".bias", g + gg + ".bias", d, 0.0f, 0.1f);
    }
    vector(h + "attention.output.LayerNorm.weight", g + "attn_output_norm.weight", d, 1.0f, 0.2f);
    vector(h + "attention.output.LayerNorm.bias", g + "attn_output_norm.bias", d, 0.0f, 0.1f);
    matrix(h + "intermediate.dense.weight", g + "ffn_up.weight", s.n_ff, d, 2.0f * w_scale);
    vector(h + "intermediate.dense.bias", g + "ffn_up.bias", s.n_ff, 0.0f, 0.1f);
    matrix(h + "output.dense.weight", g + "ffn_down.weight", d, s.n_ff,
           2.0f / std::sqrt(static_cast<float>(s.n_ff)));
    vector(h + "output.dense.bias", g + "ffn_down.bias", d, 0.0f, 0.1f);
    vector(h + "output.LayerNorm.weight", g + "layer_output_norm.weight", d, 1.0f, 0.2f);
    vector(h + "output.LayerNorm.bias", g + "layer_output_norm.bias", d, 0.0f, 0.1f);
  }
  if (s.classifier) {
    matrix("pooler.dense.weight", "cls.weight", d, d, 2.0f * w_scale);
    vector("pooler.dense.bias", "cls.bias", d, 0.0f, 0.1f);
    matrix("classifier.weight", "cls.output.weight", 1, d, w_scale);
    vector("classifier.bias", "cls.output.bias", 1, 0.0f, 0.5f);
  }

  const bool cls = s.pooling == engine::EncoderPooling::kCls;
  const std::string config = fmt::format(
      "{{\n  \"architectures\": [\"{}\"],\n  \"model_type\": \"bert\",\n"
      "  \"hidden_size\": {},\n  \"num_hidden_layers\": {},\n  \"num_attention_heads\": {},\n"
      "  \"intermediate_size\": {},\n  \"vocab_size\": {},\n  \"max_position_embeddings\": {},\n"
      "  \"type_vocab_size\": {},\n  \"layer_norm_eps\": {},\n  \"hidden_act\": \"gelu\",\n"
      "  \"position_embedding_type\": \"absolute\",\n  \"torch_dtype\": \"{}\"{}\n}}\n",
      s.classifier ? "BertForSequenceClassification" : "BertModel", d, s.n_layer, s.n_head, s.n_ff, s.n_vocab, s.n_ctx, s.n_token_types, s.norm_eps,
      s.weight_type == TensorType::kF16    ? "float16"
      : s.weight_type == TensorType::kBF16 ? "bfloat16"
                                           : "float32",
      s.classifier ? ",\n  \"id2label\": {\"0\": \"LABEL_0\"},\n  \"label2id\": {\"LABEL_0\": 0}"
                   : "");

  engine::GgufWriter gguf;
  engine::SafetensorsWriter hf;
  engine::SafetensorsWriter ref;
  gguf.SetString("general.architecture", "bert");
  gguf.SetString("general.name", "yunzhi random bert");
  gguf.SetU32("bert.embedding_length", static_cast<uint32_t>(d));
  gguf.SetU32("bert.block_count", static_cast<uint32_t>(s.n_layer));
  gguf.SetU32("bert.feed_forward_length", static_cast<uint32_t>(s.n_ff));
  gguf.SetU32("bert.attention.head_count", static_cast<uint32_t>(s.n_head));
  gguf.SetU32("bert.context_length", static_cast<uint32_t>(s.n_ctx));
  gguf.SetF32("bert.attention.layer_norm_epsilon", s.norm_eps);
  gguf.SetBool("bert.attention.causal", false);
  // llama.cpp: 1 mean, 2 cls, 4 rank (CLS through the classifier head).
  gguf.SetU32("bert.pooling_type", s.classifier ? 4 : (cls ? 2 : 1));
  const std::vector<std::string> vocab =
      s.tokenizer ? EncoderVocab(s.n_vocab) : std::vector<std::string>();
  if (s.tokenizer) {
    // GGUF spells WordPiece as llama.cpp's converter does: "▁word" starts a word, "piece"
    // continues one; special tokens as they are.
    std::vector<std::string> spelled;
    std::vector<int32_t> types;
    for (const std::string& t : vocab) {
      const bool special = t.size() > 2 && t.front() == '[' && t.back() == ']';
      types.push_back(special ? 3 : 1);
      if (special) {
        spelled.push_back(t);
      } else if (t.rfind("##", 0) == 0) {
        spelled.push_back(t.substr(2));
      } else {
        spelled.push_back("\xE2\x96\x81" + t);
      }
    }
    gguf.SetString("tokenizer.ggml.model", "bert");
    gguf.SetStringArray("tokenizer.ggml.tokens", spelled);
    gguf.SetI32Array("tokenizer.ggml.token_type", types);
    gguf.SetU32("tokenizer.ggml.unknown_token_id", 100);
    gguf.SetU32("tokenizer.ggml.padding_token_id", 0);
    gguf.SetU32("tokenizer.ggml.cls_token_id", 101);
    gguf.SetU32("tokenizer.ggml.seperator_token_id", 102);
  }
  for (Tensor& t : tensors) {
    const int64_t row_len = t.matrix ? t.cols : t.rows;
    const TensorType gguf_type = t.matrix ? s.weight_type : TensorType::kF32;
    const TensorType round_type = t.matrix ? s.weight_type : vector_type;
    // Round through the stored type so that every file holds the same numbers.
    t.values = Decode(round_type, Encode(round_type, t.values, row_len),
                      static_cast<int64_t>(t.values.size()), row_len);
    if (!targets.gguf_path.empty()) {
      std::vector<int64_t> ne =
          t.matrix ? std::vector<int64_t>{t.cols, t.rows} : std::vector<int64_t>{t.rows};
      YZ_RETURN_IF_ERROR(
          gguf.AddTensor(t.gguf_name, gguf_type, ne, Encode(gguf_type, t.values, row_len)));
    }
    std::vector<int64_t> shape =
        t.matrix ? std::vector<int64_t>{t.rows, t.cols} : std::vector<int64_t>{t.rows};
    if (!targets.hf_dir.empty()) {
      // BertForSequenceClassification keeps the encoder (and pooler) under "bert.".
      const std::string name =
          s.classifier && t.hf_name.rfind("classifier.", 0) != 0 ? "bert." + t.hf_name : t.hf_name;
      YZ_RETURN_IF_ERROR(
          hf.AddTensor(name, round_type, shape, Encode(round_type, t.values, row_len)));
    }
    if (!targets.reference_path.empty()) {
      YZ_RETURN_IF_ERROR(ref.AddTensor(t.hf_name, TensorType::kF32, shape, FloatBytes(t.values)));
    }
  }
  if (!targets.gguf_path.empty()) YZ_RETURN_IF_ERROR(gguf.WriteFile(targets.gguf_path));
  if (!targets.hf_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(targets.hf_dir + "/1_Pooling", ec);
    if (ec) {
      return UnavailableError(fmt::format("{}: cannot create ({})", targets.hf_dir, ec.message()));
    }
    hf.SetMetadata("format", "pt");
    YZ_RETURN_IF_ERROR(hf.WriteFile(targets.hf_dir + "/model.safetensors"));
    YZ_RETURN_IF_ERROR(WriteText(targets.hf_dir + "/config.json", config));
    if (s.tokenizer) {
      YZ_RETURN_IF_ERROR(
          WriteText(targets.hf_dir + "/tokenizer.json", EncoderTokenizerJson(vocab)));
    }
    YZ_RETURN_IF_ERROR(WriteText(
        targets.hf_dir + "/1_Pooling/config.json",
        fmt::format(
            "{{\n  \"word_embedding_dimension\": {},\n  \"pooling_mode_cls_token\": {},\n"
            "  \"pooling_mode_mean_tokens\": {},\n  \"pooling_mode_max_tokens\": false\n}}\n",
            d, cls, !cls)));
  }
  if (!targets.reference_path.empty()) {
    ref.SetMetadata("config", config);
    ref.SetMetadata("pooling", cls ? "cls" : "mean");
    YZ_RETURN_IF_ERROR(ref.WriteFile(targets.reference_path));
  }
  return OkStatus();
}

}  // namespace yunzhi::tools
