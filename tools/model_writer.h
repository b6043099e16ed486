// Random-weight model writer: deterministic test and benchmark models of every supported
// architecture, shape and weight type, as a GGUF file and/or a Hugging Face directory.
//
// The weights are drawn from a seeded generator in the Hugging Face layout; the GGUF file gets
// the same tensors under GGUF names (Q/K rows of llama/mistral permuted into the interleaved RoPE
// order, as the llama.cpp converters do), so a GGUF file and an HF directory written with the
// same spec and seed hold the same model. Optionally, a "reference" safetensors file holds every
// weight as float32 exactly as the engine will see it after dequantisation (HF names and layout,
// config.json text under the metadata key "config"), for the Python reference forward pass
// (tests/reference/forward.py).
//
// Thread safety: plain functions; no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/encoder.h"
#include "yunzhi/engine/model.h"
#include "yunzhi/engine/tensor_type.h"

namespace yunzhi::tools {

struct ModelSpec {
  engine::Architecture architecture = engine::Architecture::kLlama;
  int64_t n_vocab = 512;
  int64_t n_embd = 256;
  int64_t n_layer = 2;
  int64_t n_head = 8;
  int64_t n_head_kv = 2;
  int64_t head_dim = 0;  // 0 = n_embd / n_head
  int64_t n_ff = 512;
  int64_t n_ctx = 2048;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  engine::RopeScaling rope_scaling = engine::RopeScaling::kNone;
  float rope_factor = 8.0f;
  float rope_low_freq_factor = 1.0f;
  float rope_high_freq_factor = 4.0f;
  int64_t rope_original_context = 64;
  bool tied_output = false;
  // Sliding-window attention (written for llama/mistral only); 0 = none.
  int64_t sliding_window = 0;
  // Matrices (and the token embedding) are stored in this type; norms and biases in F32 (GGUF)
  // or this type (safetensors; F32/F16/BF16 only). Their values are rounded through this type
  // in both formats so that both hold the same numbers.
  engine::TensorType weight_type = engine::TensorType::kF32;
  uint64_t seed = 1;
};

// Standard shapes: "tiny" (the tests' default above), "qwen2.5-0.5b", "llama3.2-1b",
// "stories260k". Errors: kInvalidArgument for an unknown name.
Result<ModelSpec> PresetSpec(const std::string& name);

struct WriteTargets {
  std::string gguf_path = {};       // empty = do not write
  std::string hf_dir = {};          // created if missing; empty = do not write
  std::string reference_path = {};  // F32 safetensors for the Python reference; empty = none
};

// Writes the model. Errors: kInvalidArgument for an inconsistent spec (e.g. a row length that
// is not a multiple of the weight type's block size, a quantised type for safetensors);
// kUnavailable for I/O errors.
Status WriteModel(const ModelSpec& spec, const WriteTargets& targets);

// A random-weight BERT encoder (post-LayerNorm, GELU, absolute positions) as llama.cpp's GGUF
// "bert" architecture and/or a Hugging Face BertModel directory (config.json, model.safetensors,
// sentence-transformers' 1_Pooling/config.json). With `tokenizer`, a WordPiece vocab is written
// too (GGUF tokenizer.ggml.* / tokenizer.json): [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK]
// 103, then a-z, ##a-##z, 0-9, ##0-##9, a few punctuation marks and words, then filler words
// "wNNN", so any lower-case ASCII text tokenizes (needs n_vocab >= 300). With `classifier`, a
// cross-encoder (Hugging Face BertForSequenceClassification, num_labels 1: "bert."-prefixed
// encoder, bert.pooler.dense, classifier; GGUF cls.* / cls.output.* and pooling_type 4 "rank").
// The reference file holds every weight as float32 under its HF name, config.json under the
// metadata key "config" and "cls" or "mean" under "pooling" (tests/reference/encode.py).
struct EncoderSpec {
  int64_t n_vocab = 1000;
  int64_t n_embd = 64;
  int64_t n_layer = 2;
  int64_t n_head = 4;
  int64_t n_ff = 128;
  int64_t n_ctx = 64;  // position embeddings
  int64_t n_token_types = 2;
  float norm_eps = 1e-12f;
  engine::EncoderPooling pooling = engine::EncoderPooling::kCls;
  bool tokenizer = false;
  bool classifier = false;
  // Matrices and embedding tables are stored in this type (any type for GGUF; F32/F16/BF16 for
  // safetensors); LayerNorms and biases in F32 (GGUF) or this type (safetensors), rounded
  // through it in both so both files hold the same numbers.
  engine::TensorType weight_type = engine::TensorType::kF32;
  uint64_t seed = 1;
};

// The writer's WordPiece vocab for `n_vocab` tokens (see EncoderSpec::tokenizer), ids = index.
std::vector<std::string> EncoderVocab(int64_t n_vocab);

// Writes the encoder. Errors as WriteModel (kInvalidArgument for tokenizer with n_vocab < 300).
Status WriteEncoderModel(const EncoderSpec& spec, const WriteTargets& targets);

}  // namespace yunzhi::tools
