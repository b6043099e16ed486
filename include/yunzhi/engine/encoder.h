// BERT-style encoders for embedding models (bge, gte, e5 families).
//
// An EncoderModel is a post-LayerNorm BERT: word + absolute position + token-type-0 embeddings,
// an embedding LayerNorm, then n_layer blocks of bidirectional multi-head attention and a GELU
// (erf form) feed-forward, each followed by a residual and a LayerNorm. The sentence embedding is
// the hidden state of the first token (CLS pooling) or the mean over the tokens (mean pooling),
// optionally scaled to unit length.
//
// Formats: a GGUF file of llama.cpp's "bert" architecture (pooling from bert.pooling_type), or
// a Hugging Face directory with config.json (model_type "bert") and model.safetensors (pooling
// from sentence-transformers' 1_Pooling/config.json when present, CLS otherwise). Weight types:
// whatever the engine's MatMul runs (F32, F16, BF16, Q8_0, ... in GGUF; F32/F16/BF16 in
// safetensors).
//
// Thread safety: Embed may be called by one thread at a time (it uses the model's compute
// pool); config() is safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::engine {

enum class EncoderPooling {
  kCls,   // the hidden state of the first token ([CLS])
  kMean,  // the mean of the hidden states of all tokens
};

struct EncoderConfig {
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_ff = 0;
  int64_t n_ctx_train = 0;  // number of position embeddings: the longest input
  float norm_eps = 1e-12f;
  EncoderPooling pooling = EncoderPooling::kCls;
};

struct EncoderLoadOptions {
  int n_threads = 0;  // compute threads; <= 0: one per core
  // Overrides the pooling the model files declare.
  std::optional<EncoderPooling> pooling = std::nullopt;
};

class EncoderModel {
 public:
  // Loads `path`: a GGUF file, or a directory holding a Hugging Face BERT model.
  // Errors: kNotFound (no such file, a tensor missing; the message names the file and tensor),
  // kInvalidArgument (bad metadata, a tensor of the wrong shape), kUnimplemented (another
  // architecture, an unsupported weight type or pooling).
  static Result<std::unique_ptr<EncoderModel>> Load(const std::string& path,
                                                    const EncoderLoadOptions& options = {});
  ~EncoderModel();
  EncoderModel(const EncoderModel&) = delete;
  EncoderModel& operator=(const EncoderModel&) = delete;

  const EncoderConfig& config() const;

  // One embedding of n_embd floats per input, in order. Each input is a complete token sequence
  // (already including [CLS] ... [SEP]); inputs do not see each other. `normalize`: each
  // embedding is divided by its L2 norm. Errors: kInvalidArgument for an empty input, one longer
  // than n_ctx_train, or a token id outside [0, n_vocab).
  Result<std::vector<std::vector<float>>> Embed(std::span<const std::vector<int32_t>> batch,
                                                bool normalize);

 private:
  struct State;
  explicit EncoderModel(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace yunzhi::engine
