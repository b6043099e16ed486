// Model lifecycle on one node: load on first use, keep warm while used, unload when idle, share
// a memory budget.
//
// A model is loaded (engine::Model::Load, a ModelRunner with its KV pool, an engine::Scheduler)
// the first time a request names it; concurrent requests for a model that is loading wait for
// that one load. Each request holds a Lease while it runs: a leased model is never unloaded.
// When the last lease ends, the model's keep-alive starts (Ollama's semantics: the duration from
// the request if it gave one, else the model's own setting from the registry, else the default;
// 0 unloads at once, a negative duration keeps it loaded until the server stops). A reaper
// thread unloads models whose keep-alive ran out.
//
// Memory: a loaded model costs its weight bytes (the file, mapped) plus its KV pool. Before a
// load, idle models are unloaded least recently used first until the new one fits in
// `memory_budget_bytes`; if the models in use leave no room, Acquire fails with
// kResourceExhausted (answer 503 + Retry-After): never an out-of-memory crash.
//
// Encoders: embedding models and rerankers (BERT encoders, engine/encoder.h; told apart from
// decoders by their files) are held by the same manager under the same budget, keep-alive and
// lease rules. They have no scheduler: Embed / Rerank run one batch at a time per model (a
// per-model mutex), splitting large requests into batches of at most kEncoderBatchTokens tokens.
// An encoder costs its weight bytes plus the working memory of one such batch (shown as
// kv_bytes). Acquire serves chat models only; Embed / Rerank / EmbeddingDimensions encoders only.
//
// Thread safety: every method is safe from any thread. Acquire, Embed, Rerank and
// EmbeddingDimensions block while a model loads: call them from a worker thread, never from an
// I/O thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/clock.h"
#include "yunzhi/base/metrics.h"
#include "yunzhi/base/status.h"
#include "yunzhi/engine/chat.h"
#include "yunzhi/engine/encoder.h"
#include "yunzhi/engine/model.h"
#include "yunzhi/engine/scheduler.h"

namespace yunzhi::serving {

// Where a model's weights are and how it wants to be kept (from the hub's registry).
struct ModelSource {
  std::string name;  // what clients call it (the OpenAI model id)
  std::string id;    // stable registry id
  std::string path;  // GGUF file or Hugging Face directory
  std::optional<int64_t> keep_alive_ms;  // the model's own setting; nullopt = the default
};

// Finds a model by name. Errors: kNotFound (detail "model_not_found") for unknown names.
using ModelResolver = std::function<Result<ModelSource>(std::string_view name)>;

struct ServingOptions {
  // Weights + KV pools of all loaded models. 0 = 80% of the machine's physical memory.
  int64_t memory_budget_bytes = 0;
  // Keep-alive when neither the request nor the model sets one (Ollama's default: 5 minutes).
  int64_t default_keep_alive_ms = 5 * 60 * 1000;
  // Compute threads per loaded model; 0 = one per core.
  int n_threads = 0;
  // Context per sequence; 0 = min(the model's trained context, 4096).
  int64_t n_ctx = 0;
  // KV pool per model, in tokens (shared by all its sequences and the prefix cache).
  // 0 = 4 contexts' worth, at least 16384 tokens... bounded by the memory budget.
  int64_t kv_cache_tokens = 0;
  engine::KvCacheType kv_cache_type = engine::KvCacheType::kF16;
  engine::SchedulerOptions scheduler;
  // How often the reaper looks for expired models.
  std::chrono::milliseconds reap_interval{1000};
};

class ModelManager;

// Tokens per encoder forward pass: larger Embed / Rerank requests run as several batches.
inline constexpr int64_t kEncoderBatchTokens = 8192;

// One loaded model, shared by the requests that lease it.
struct LoadedModel {
  ModelSource source;
  std::string kind = "chat";  // "chat", "embedding" or "rerank" (as the hub records it)
  // Chat models: the decoder, its scheduler and chat template; null for encoders.
  std::shared_ptr<const engine::Model> model;
  std::unique_ptr<engine::Scheduler> scheduler;
  std::unique_ptr<engine::ChatFormatter> chat;  // its chat template (or the ChatML fallback)
  // Encoders only (else null); use it while holding encoder_mutex.
  std::unique_ptr<engine::EncoderModel> encoder;
  std::mutex encoder_mutex;  // guards running `encoder` (one batch at a time)
  int64_t weight_bytes = 0;
  int64_t kv_bytes = 0;
  double load_ms = 0;
  int64_t loaded_at_ms = 0;
};

// Keeps a model loaded while held. Move-only; the destructor releases it.
class Lease {
 public:
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&&) = delete;
  Lease(const Lease&) = delete;
  ~Lease();

  LoadedModel& operator*() const { return *loaded_; }
  LoadedModel* operator->() const { return loaded_.get(); }
  // True when this Acquire loaded the model (a cold start).
  bool cold_start() const { return cold_start_; }

 private:
  friend class ModelManager;
  Lease(ModelManager* manager, std::shared_ptr<LoadedModel> loaded, std::optional<int64_t> keep_alive_ms,
        bool cold_start)
      : manager_(manager), loaded_(std::move(loaded)), keep_alive_ms_(keep_alive_ms),
        cold_start_(cold_start) {}
  ModelManager* manager_;
  std::shared_ptr<LoadedModel> loaded_;
  std::optional<int64_t> keep_alive_ms_;
  bool cold_start_ = false;
};

// What /api/ps and `yunzhi ps` show.
struct LoadedModelInfo {
  std::string name;
  std::string id;
  std::string path;
  std::string architecture;
  std::string kind;  // "chat", "embedding" or "rerank"
  int64_t weight_bytes = 0;
  int64_t kv_bytes = 0;
  int64_t n_ctx = 0;
  int64_t leases = 0;         // requests using it now
  int64_t loaded_at_ms = 0;
  double load_ms = 0;         // its cold start
  std::optional<int64_t> expires_at_ms;  // when idle: when it will be unloaded; nullopt = never / in use
  engine::SchedulerStats stats;  // chat models only (zero for encoders)
};

struct EmbedResult {
  std::vector<std::vector<float>> vectors;  // one per input, in input order
  int64_t prompt_tokens = 0;                // all inputs, with [CLS] and [SEP]
};
struct RerankResult {
  std::vector<float> scores;  // one per document, input order: the raw logit (higher = better)
  int64_t prompt_tokens = 0;  // all "[CLS] query [SEP] document [SEP]" pairs
};

struct EmbedOptions {
  bool normalize = true;  // unit-length vectors
  // An input longer than the model's context: cut to fit when true; else kInvalidArgument
  // (param "input", as OpenAI answers too-long input).
  bool truncate = false;
  std::optional<int64_t> keep_alive_ms = std::nullopt;  // as Acquire
};

class ModelManager {
 public:
  // `metrics` may be null. Starts the reaper thread.
  ModelManager(ModelResolver resolver, ServingOptions options, metrics::Registry* metrics,
               const Clock& clock = *Clock::System());
  // Unloads everything (running requests end with kUnavailable) and stops the reaper.
  ~ModelManager();
  ModelManager(const ModelManager&) = delete;
  ModelManager& operator=(const ModelManager&) = delete;

  // The loaded chat model `name`, loading it if needed. `keep_alive_ms` overrides the model's
  // keep-alive for when this lease ends (0: unload right after; < 0: never).
  // Errors: the resolver's (kNotFound "model_not_found"); kUnavailable with detail
  // "model_load_failed" when loading fails (the message names the file and the problem);
  // kResourceExhausted (detail "memory_budget") when models in use leave no room for it;
  // kInvalidArgument "model X is an embedding model, not a chat model" for an encoder.
  Result<Lease> Acquire(std::string_view name, std::optional<int64_t> keep_alive_ms = {});

  // Embeddings of `texts` (each tokenized as "[CLS] text [SEP]" with the model's tokenizer).
  // Errors: as Acquire; kInvalidArgument "model X is a chat model, not an embedding model" (or a
  // rerank model); kInvalidArgument (param "input") for no texts, an empty text, a text longer
  // than the model's context (unless options.truncate) or a model without a tokenizer.
  Result<EmbedResult> Embed(std::string_view model, std::span<const std::string> texts,
                            bool normalize = true, std::optional<int64_t> keep_alive_ms = {});
  Result<EmbedResult> Embed(std::string_view model, std::span<const std::string> texts,
                            const EmbedOptions& options);
  // Embeddings of token-id inputs (the model's ids; "[CLS] ... [SEP]" is added unless the input
  // already starts with [CLS] and ends with [SEP]). Errors as Embed, plus kInvalidArgument for an
  // id outside the vocabulary.
  Result<EmbedResult> EmbedTokens(std::string_view model,
                                  std::span<const std::vector<int32_t>> inputs,
                                  const EmbedOptions& options = {});
  // Relevance of each document to `query` with a cross-encoder; pairs longer than the context
  // are cut, the longer side first (never an error). Errors: as Acquire; kInvalidArgument when
  // `model` is not a rerank model, for no documents, or a model without a tokenizer.
  Result<RerankResult> Rerank(std::string_view model, std::string_view query,
                              std::span<const std::string> documents,
                              std::optional<int64_t> keep_alive_ms = {});
  // The length of `model`'s embeddings (loading it if needed). Errors as Embed.
  Result<int64_t> EmbeddingDimensions(std::string_view model);

  std::vector<LoadedModelInfo> List() const;
  // Unloads `name` now if no request holds it. Errors: kNotFound if not loaded;
  // kFailedPrecondition while in use.
  Status Unload(std::string_view name);
  // Unloads everything; later Acquires fail with kUnavailable.
  void Shutdown();

  const ServingOptions& options() const;

 private:
  friend class Lease;
  Result<Lease> AcquireKind(std::string_view name, std::optional<int64_t> keep_alive_ms,
                            bool encoder);
  Result<Lease> AcquireEncoder(std::string_view name, std::optional<int64_t> keep_alive_ms,
                               std::string_view want_kind);
  void Release(const std::shared_ptr<LoadedModel>& loaded, std::optional<int64_t> keep_alive_ms);
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace yunzhi::serving
