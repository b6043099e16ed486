// BERT-style encoders for embedding models (bge, gte, e5 families).
//
// An EncoderModel is a post-LayerNorm BERT: word + absolute position + token-type embeddings,
// an embedding LayerNorm, then n_layer blocks of bidirectional multi-head attention and a GELU
// (erf form) feed-forward, each followed by a residual and a LayerNorm. The sentence embedding is
// the hidden state of the first token (CLS pooling) or the mean over the tokens (mean pooling),
// optionally scaled to unit length.
//
// Cross-encoders (rerankers): a model that also has a sequence-classification head (Hugging Face
// BertForSequenceClassification: bert.pooler.dense + tanh, then classifier with num_labels 1; in
// GGUF the llama.cpp names "cls.weight"/"cls.bias" for the pooler and "cls.output.weight"/
// "cls.output.bias" for the classifier) scores sentence pairs "[CLS] a [SEP] b [SEP]" (token
// type 0 for "[CLS] a [SEP]", 1 for "b [SEP]"): Score returns the raw logit (no sigmoid).
//
// Tokenizer: the model's own, when its files carry one (GGUF tokenizer.ggml.*, or tokenizer.json,
// else vocab.txt, in the Hugging Face directory). TokenizeText / TokenizePair add [CLS]/[SEP].
//
// Formats: a GGUF file of llama.cpp's "bert" architecture (pooling from bert.pooling_type), or
// a Hugging Face directory with config.json (model_type "bert") and model.safetensors (pooling
// from sentence-transformers' 1_Pooling/config.json when present, CLS otherwise). Weight types:
// whatever the engine's MatMul runs (F32, F16, BF16, Q8_0, ... in GGUF; F32/F16/BF16 in
// safetensors).
//
// Thread safety: Embed and Score may be called by one thread at a time (they use the model's
// compute pool); config(), tokenizer() and the Tokenize functions are safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/tensor_type.h"
#include "yunzhi/engine/tokenizer.h"

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
  int64_t n_token_types = 0;   // rows of the token-type embeddings (2 for BERT)
  bool has_classifier = false;  // a cross-encoder: Score works
  int64_t n_params = 0;         // weight elements
  int64_t weight_bytes = 0;     // bytes of the weight files as mapped
  TensorType weight_type = TensorType::kF32;  // type of the attention / FFN matrices
};

// Whether `path` holds a BERT encoder as Load reads it (GGUF general.architecture "bert", or a
// directory whose config.json has model_type "bert"), without loading it. Never fails: unreadable
// or other files give false.
bool IsEncoderModelPath(const std::string& path);

// One input of a batch: token ids and, optionally, their token types (empty = all type 0).
struct EncoderInput {
  std::vector<int32_t> tokens;
  std::vector<int32_t> type_ids;
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

  // The model's tokenizer, or null when its files have none (then callers pass token ids).
  const Tokenizer* tokenizer() const;
  // "[CLS] text [SEP]" with the model's tokenizer. Longer than n_ctx_train: cut to n_ctx_train
  // tokens (keeping the final [SEP]) when `truncate`, else kInvalidArgument naming the length.
  // Errors: kFailedPrecondition when the model has no tokenizer.
  Result<std::vector<int32_t>> TokenizeText(std::string_view text, bool truncate) const;
  // "[CLS] a [SEP] b [SEP]" with type ids 0 ... 0 1 ... 1. Too long: when `truncate`, tokens are
  // taken from the end of the longer of a and b until it fits (Hugging Face "longest_first"),
  // else kInvalidArgument. Errors: kFailedPrecondition when the model has no tokenizer.
  Result<EncoderInput> TokenizePair(std::string_view a, std::string_view b, bool truncate) const;

  // One embedding of n_embd floats per input, in order. Each input is a complete token sequence
  // (already including [CLS] ... [SEP]); inputs do not see each other. `normalize`: each
  // embedding is divided by its L2 norm. Errors: kInvalidArgument for an empty input, one longer
  // than n_ctx_train, or a token id outside [0, n_vocab).
  Result<std::vector<std::vector<float>>> Embed(std::span<const std::vector<int32_t>> batch,
                                                bool normalize);
  // As above with token types (each type_ids empty or as long as its tokens, each id in
  // [0, n_token_types)).
  Result<std::vector<std::vector<float>>> Embed(std::span<const EncoderInput> batch,
                                                bool normalize);

  // Cross-encoder relevance: one raw logit per input (usually a TokenizePair result), in order;
  // the whole batch runs as one forward pass. Errors: kFailedPrecondition when the model has no
  // classification head; kInvalidArgument as Embed.
  Result<std::vector<float>> Score(std::span<const EncoderInput> batch);

 private:
  struct State;
  explicit EncoderModel(std::unique_ptr<State> state);
  Result<std::vector<float>> Forward(std::span<const EncoderInput> batch,
                                     std::vector<int64_t>* first);
  std::unique_ptr<State> state_;
};

}  // namespace yunzhi::engine
