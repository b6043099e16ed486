// Decoder-only language models: loading weights and describing their shape.
//
// `Model::Load` opens a GGUF file or a Hugging Face model directory (config.json plus
// model.safetensors or shards listed by model.safetensors.index.json, tokenizer.json,
// tokenizer_config.json, generation_config.json), checks every tensor the architecture needs
// (presence, shape, type) once, and keeps the weights where they are: in the read-only mapping of
// the file. Nothing is copied or repacked, so a loaded model costs its file size in page cache
// and a few KiB of heap.
//
// Supported architectures (one source file per family under src/engine/arch/):
//   llama   Llama 2, Llama 3 / 3.x (incl. llama3 RoPE scaling), and anything using its layout
//   mistral the same graph as llama, plus sliding-window attention when the model has one
//   qwen2   Qwen2 / Qwen2.5: biases on Q, K and V
//   qwen3   Qwen3: RMSNorm on each head of Q and K
// All with grouped-query attention, SwiGLU feed-forward, RMSNorm, RoPE, and tied or separate
// output embeddings. Weight types: F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K,
// Q5_K, Q6_K, IQ4_NL, IQ4_XS (safetensors: the first three).
//
// Running a model is the job of `ModelRunner` (below), which owns the compute threads and a
// paged `KvCache` (kv_cache.h).
//
// Thread safety: a loaded Model is immutable; share it through the shared_ptr and call its const
// methods from any number of threads. It must outlive nothing: runners hold a shared_ptr to it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/kv_cache.h"
#include "yunzhi/engine/tensor_type.h"
#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine {

enum class Architecture { kLlama, kMistral, kQwen2, kQwen3 };

// "llama", "mistral", "qwen2", "qwen3" (the GGUF general.architecture names).
std::string_view ArchitectureName(Architecture arch);
// Parses a GGUF general.architecture name (or the lower-cased HF model_type).
// Errors: kUnimplemented "unknown architecture 'gemma' (supported: llama, mistral, qwen2, qwen3)".
Result<Architecture> ParseArchitecture(std::string_view name);

// Which elements RoPE rotates together.
enum class RopeLayout {
  kNormal,  // (2i, 2i+1): llama/mistral GGUF files (converters permute Q/K rows for this)
  kNeox,    // (i, i + head_dim/2), "rotate half": every HF checkpoint, Qwen2/Qwen3 GGUF files
};

enum class RopeScaling {
  kNone,
  kLinear,  // positions divided by `factor`
  kLlama3,  // Llama 3.1 frequency-dependent scaling (factor, low/high_freq_factor, original ctx)
};

struct RopeConfig {
  float theta = 10000.0f;  // base frequency
  RopeLayout layout = RopeLayout::kNormal;
  RopeScaling scaling = RopeScaling::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_context_tokens = 8192;
  // GGUF llama3 models store the per-frequency divisors in a `rope_freqs.weight` tensor instead of
  // the four numbers above; when set (head_dim / 2 entries), they are used as they are.
  std::vector<float> freq_factors;
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  int64_t n_vocab = 0;
  int64_t n_embd = 0;  // hidden size
  int64_t n_layer = 0;
  int64_t n_head = 0;       // query heads
  int64_t n_head_kv = 0;    // key/value heads (n_head % n_head_kv == 0)
  int64_t head_dim = 0;     // usually n_embd / n_head; Qwen3 may differ
  int64_t n_ff = 0;         // feed-forward (intermediate) size
  int64_t n_ctx_train = 0;  // context the model was trained for (tokens)
  float norm_eps = 1e-5f;   // RMSNorm epsilon
  RopeConfig rope;
  bool qkv_bias = false;     // qwen2
  bool qk_norm = false;      // qwen3
  bool tied_output = false;  // output projection is the token embedding
  // Sliding-window attention (Mistral v0.1): a position attends to itself and the
  // sliding_window - 1 positions before it. 0 = to every earlier position.
  int64_t sliding_window = 0;
  // The type of most weight bytes (e.g. Q4_K for a Llama Q4_K_M file, Q5_0 for Qwen2.5-0.5B's).
  TensorType weight_type = TensorType::kF32;
  // The file's own name for its mix of types (GGUF general.file_type, e.g. "Q4_K_M"), as users
  // know the file; "" when the file does not say (or says a number this build does not know).
  std::string file_type;
  int64_t n_params = 0;      // elements of all weights
  int64_t weight_bytes = 0;  // bytes of all weights as stored
};

// How to name a model's weights to a user: its file type (Q4_K_M) if known, else the type of
// most of its weight bytes.
std::string WeightTypeLabel(const ModelConfig& config);

struct ModelLoadOptions {
  // Ask the kernel to read the weights in now (madvise WILLNEED) rather than on first touch.
  bool prefetch = false;
  // Read the hyper-parameters, vocabulary and chat template but bind no tensors (for tokenizing
  // without the weights; missing or bad tensors go unnoticed). Runners refuse such a model.
  bool vocab_only = false;
};

// Generation defaults shipped with the model (HF generation_config.json; GGUF has none).
struct GenerationDefaults {
  std::vector<int32_t> eos_token_ids;  // in addition to the tokenizer's EOS
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
  std::optional<float> repetition_penalty;
};

namespace internal {
struct ModelState;
}  // namespace internal

class ModelRunner;

class Model {
 public:
  // Loads the model at `path`: a `.gguf` file, or a directory with config.json (HF layout).
  // Errors, each naming the file and, where there is one, the tensor:
  //   kNotFound         no such file/directory, missing config.json/tokenizer/weights file,
  //                     a tensor the architecture needs ("... tensor 'blk.3.ffn_up.weight' ...")
  //   kInvalidArgument  malformed or truncated file, inconsistent hyper-parameters, a tensor of
  //                     the wrong shape ("... has shape [64, 128], expected [128, 64]", in the
  //                     file's own order: GGML ne[] for GGUF, row-major for safetensors)
  //   kUnimplemented    unknown architecture; a weight type this build cannot run
  //   kUnavailable      I/O errors
  static Result<std::shared_ptr<const Model>> Load(const std::string& path,
                                                   const ModelLoadOptions& options = {});

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const std::string& path() const;
  const ModelConfig& config() const;
  const Tokenizer& tokenizer() const;
  // The Jinja2 chat template source; empty when the model has none.
  const std::string& chat_template() const;
  const GenerationDefaults& generation_defaults() const;
  bool vocab_only() const;

 private:
  friend class ModelRunner;  // reads the bound weights
  explicit Model(std::unique_ptr<internal::ModelState> state);
  const internal::ModelState& state() const { return *state_; }
  std::unique_ptr<internal::ModelState> state_;
};

// ---------------------------------------------------------------------------------------------
// Running a model.

// One sequence's share of a batch: the tokens to append to it.
struct BatchItem {
  Sequence* sequence = nullptr;     // not owned; distinct sequences within one batch
  std::span<const int32_t> tokens;  // at least one; a prompt chunk or one decode token
  bool all_logits = false;          // logits for every token, not just the last
};

// Logits of one Forward call: one row of n_vocab floats per requested position.
struct ForwardOutput {
  int64_t n_vocab = 0;
  std::vector<float> logits;       // rows back to back
  std::vector<int64_t> first_row;  // per batch item
  std::vector<int64_t> n_rows;     // per batch item: 1, or its token count when all_logits

  // Row `i` of item `item` (default: its last row). Precondition: in range.
  std::span<const float> Row(size_t item, int64_t i = -1) const {
    const int64_t row = first_row[item] + (i < 0 ? n_rows[item] - 1 : i);
    return {logits.data() + row * n_vocab, static_cast<size_t>(n_vocab)};
  }
};

inline constexpr int64_t kDefaultContextTokens = 4096;

struct RunnerOptions {
  // Compute threads (the caller's thread is one of them); <= 0: one per core.
  int n_threads = 0;
  // Longest sequence in tokens; 0 = min(n_ctx_train, kDefaultContextTokens), because the
  // trained context of recent models (32k-128k) would cost GiBs of KV cache by default. May
  // exceed n_ctx_train (RoPE extrapolates, quality drops).
  int64_t n_ctx = 0;
  KvCacheOptions kv_cache = {};
  // Most tokens one pass of Forward computes (llama.cpp's "ubatch"): a longer batch runs in
  // passes, bounding the activation memory; results are the same bits. 0 = automatic: the most
  // multiples of 128 tokens whose activations fit 12 MiB, at least 128.
  int64_t max_pass_tokens = 0;
};

namespace internal {
struct RunnerState;
}  // namespace internal

// Runs a model over batches of sequences with continuous batching in mind: each Forward call
// appends tokens to any mix of sequences (prompt chunks and single decode tokens together); the
// linear layers of all tokens run as one matrix product, attention runs per sequence over its
// blocks in the paged KvCache that the runner owns.
//
// Thread safety: one thread at a time per runner (it owns scratch buffers, threads and the
// cache). Several runners may share one Model.
class ModelRunner {
 public:
  // Errors: kFailedPrecondition for a vocab-only model; kInvalidArgument for bad options;
  // kResourceExhausted when the cache cannot be allocated.
  static Result<std::unique_ptr<ModelRunner>> Create(std::shared_ptr<const Model> model,
                                                     const RunnerOptions& options = {});
  ~ModelRunner();

  const Model& model() const;
  KvCache& kv_cache();
  int64_t n_ctx() const;

  // Appends each item's tokens to its sequence (KV written into the cache, blocks reserved as
  // needed) and fills `out` (not null; its buffers are reused) with the logits asked for. The
  // sequences must have been created for this runner's cache (or be empty).
  // Errors (checked for the whole batch before anything changes):
  //   kInvalidArgument    an empty batch or item, a null or repeated sequence, a token id outside
  //                       [0, n_vocab), context overflow ("context overflow: sequence of batch
  //                       item 2 holds 4090 tokens and 10 more would make 4100, more than the
  //                       context of 4096 tokens")
  //   kResourceExhausted  not enough free KV blocks for the batch
  Status Forward(std::span<const BatchItem> batch, ForwardOutput* out);

 private:
  explicit ModelRunner(std::unique_ptr<internal::RunnerState> state);
  std::unique_ptr<internal::RunnerState> state_;
};

}  // namespace yunzhi::engine
