#include "yunzhi/serving/model_manager.h"

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "yunzhi/base/log.h"

namespace yunzhi::serving {
namespace {

int64_t PhysicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return int64_t{8} << 30;
  return static_cast<int64_t>(pages) * page;
}

int64_t KvBytesPerToken(const engine::ModelConfig& c, engine::KvCacheType type) {
  return 2 * c.n_layer * c.n_head_kv * c.head_dim * (type == engine::KvCacheType::kF16 ? 2 : 4);
}

std::string Mib(int64_t bytes) { return fmt::format("{:.0f} MiB", bytes / 1048576.0); }

}  // namespace

struct ModelManager::State {
  ModelResolver resolver;
  ServingOptions options;
  const Clock* clock;

  struct Entry {
    std::shared_ptr<LoadedModel> loaded;  // null while loading
    int64_t reserved_bytes = 0;           // counted against the budget from the start of a load
    int64_t leases = 0;
    int64_t last_used_ms = 0;
    std::optional<int64_t> expires_at_ms;  // idle: when to unload; nullopt = never / in use
  };
  mutable std::mutex mutex;
  std::condition_variable loaded_cv;  // a load finished (or failed)
  std::condition_variable reaper_cv;
  std::map<std::string, Entry, std::less<>> models;
  bool stopping = false;
  std::thread reaper;

  // Metrics (null when no registry).
  metrics::Family<metrics::Histogram>* load_seconds = nullptr;
  metrics::Family<metrics::Gauge>* loaded_models = nullptr;
  metrics::Family<metrics::Histogram>* batch_size = nullptr;
  metrics::Family<metrics::Histogram>* step_seconds = nullptr;
  metrics::Family<metrics::Gauge>* kv_blocks = nullptr;

  int64_t UsedBytes() const {
    int64_t used = 0;
    for (const auto& [name, e] : models) used += e.reserved_bytes;
    return used;
  }
  void UpdateLoadedGauge() {
    if (loaded_models) loaded_models->WithLabels({}).Set(static_cast<double>(models.size()));
  }
  // Moves idle models out of the map, least recently used first, until `need` more bytes fit.
  // Returns whether they fit; the caller destroys `evicted` outside the lock.
  bool MakeRoom(int64_t need, std::vector<std::shared_ptr<LoadedModel>>* evicted) {
    const int64_t budget = options.memory_budget_bytes;
    while (UsedBytes() + need > budget) {
      auto victim = models.end();
      for (auto it = models.begin(); it != models.end(); ++it) {
        const Entry& e = it->second;
        if (!e.loaded || e.leases > 0) continue;
        if (victim == models.end() || e.last_used_ms < victim->second.last_used_ms) victim = it;
      }
      if (victim == models.end()) return false;
      log::Info("model_evicted", {{"model", victim->first}, {"reason", "memory_budget"}});
      evicted->push_back(std::move(victim->second.loaded));
      models.erase(victim);
    }
    return true;
  }
  void ReaperLoop();
};

Lease::Lease(Lease&& other) noexcept
    : manager_(other.manager_), loaded_(std::move(other.loaded_)),
      keep_alive_ms_(other.keep_alive_ms_), cold_start_(other.cold_start_) {
  other.manager_ = nullptr;
}

Lease::~Lease() {
  if (manager_ != nullptr && loaded_) manager_->Release(loaded_, keep_alive_ms_);
}

ModelManager::ModelManager(ModelResolver resolver, ServingOptions options,
                           metrics::Registry* metrics, const Clock& clock)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.resolver = std::move(resolver);
  if (options.memory_budget_bytes <= 0) {
    options.memory_budget_bytes = PhysicalMemoryBytes() / 10 * 8;
  }
  s.options = std::move(options);
  s.clock = &clock;
  if (metrics != nullptr) {
    s.load_seconds = metrics->AddHistogram("yunzhi_model_load_seconds",
                                           "Cold start: time to load a model and start serving it.",
                                           {"model"});
    s.loaded_models = metrics->AddGauge("yunzhi_models_loaded", "Models loaded now.");
    s.batch_size = metrics->AddHistogram("yunzhi_batch_sequences",
                                         "Sequences in each scheduler step.", {"model"},
                                         {1, 2, 4, 8, 16, 32, 64, 128});
    s.step_seconds = metrics->AddHistogram("yunzhi_step_seconds",
                                           "Time of each batched forward pass.", {"model"});
    s.kv_blocks = metrics->AddGauge("yunzhi_kv_blocks",
                                    "KV cache blocks by state: used (by running requests), free, "
                                    "cached (in the prefix cache; reusable, evicted when needed).",
                                    {"model", "state"});
  }
  s.reaper = std::thread([&s] { s.ReaperLoop(); });
}

ModelManager::~ModelManager() {
  Shutdown();
}

const ServingOptions& ModelManager::options() const { return state_->options; }

void ModelManager::Shutdown() {
  State& s = *state_;
  std::vector<std::shared_ptr<LoadedModel>> all;
  {
    std::lock_guard lock(s.mutex);
    s.stopping = true;
    for (auto& [name, e] : s.models) {
      if (e.loaded) all.push_back(e.loaded);
    }
    s.models.clear();
    s.UpdateLoadedGauge();
  }
  s.reaper_cv.notify_all();
  s.loaded_cv.notify_all();
  if (s.reaper.joinable()) s.reaper.join();
  // Requests still running end with kUnavailable; their leases may outlive this call, so the
  // LoadedModel lives on until the last one lets go (Release then finds no entry).
  for (auto& m : all) {
    if (m->scheduler) m->scheduler->Shutdown();
  }
}

void ModelManager::State::ReaperLoop() {
  std::unique_lock lock(mutex);
  while (!stopping) {
    reaper_cv.wait_for(lock, options.reap_interval);
    if (stopping) break;
    const int64_t now = clock->NowUnixMs();
    std::vector<std::shared_ptr<LoadedModel>> expired;
    for (auto it = models.begin(); it != models.end();) {
      Entry& e = it->second;
      if (e.loaded && e.leases == 0 && e.expires_at_ms && *e.expires_at_ms <= now) {
        log::Info("model_unloaded", {{"model", it->first}, {"reason", "keep_alive expired"}});
        expired.push_back(std::move(e.loaded));
        it = models.erase(it);
      } else {
        ++it;
      }
    }
    UpdateLoadedGauge();
    lock.unlock();
    expired.clear();  // joins their scheduler threads, unmaps the weights
    lock.lock();
  }
}

Result<Lease> ModelManager::Acquire(std::string_view name, std::optional<int64_t> keep_alive_ms) {
  return AcquireKind(name, keep_alive_ms, /*encoder=*/false);
}

namespace {

Error WrongKind(std::string_view name, std::string_view is, std::string_view wanted) {
  return InvalidArgumentError(
      fmt::format("model '{}' is {} {} model, not {} {} model", name,
                  is.starts_with("e") ? "an" : "a", is, wanted.starts_with("e") ? "an" : "a",
                  wanted),
      "model");
}

}  // namespace

Result<Lease> ModelManager::AcquireKind(std::string_view name,
                                        std::optional<int64_t> keep_alive_ms, bool encoder) {
  State& s = *state_;
  YZ_ASSIGN_OR_RETURN(ModelSource source, s.resolver(name));
  const std::string key = source.name;
  {
    std::unique_lock lock(s.mutex);
    while (true) {
      if (s.stopping) return UnavailableError("the server is shutting down");
      auto it = s.models.find(key);
      if (it == s.models.end()) break;
      State::Entry& e = it->second;
      if (!e.loaded) {  // loading: wait for it
        s.loaded_cv.wait(lock);
        continue;
      }
      if (e.loaded->source.path != source.path) break;  // re-imported under the same name
      if ((e.loaded->encoder != nullptr) != encoder) {
        return WrongKind(key, e.loaded->kind, encoder ? "embedding" : "chat");
      }
      ++e.leases;
      e.expires_at_ms.reset();
      e.last_used_ms = s.clock->NowUnixMs();
      return Lease(this, e.loaded, keep_alive_ms, false);
    }
    // Not loaded: claim it (others wait for this load).
    State::Entry placeholder;
    if (auto it = s.models.find(key); it != s.models.end()) {
      // An older version of this name is loaded: it goes once idle; load the new one beside it
      // under the same key only when the old one is not in use.
      if (it->second.leases > 0) {
        return UnavailableError(fmt::format(
            "model '{}' was replaced while in use; retry when its requests finish", key));
      }
      s.models.erase(it);
    }
    s.models.emplace(key, std::move(placeholder));
  }
  // On any failure below, the placeholder goes and the waiters retry (and fail the same way).
  auto fail = [&](Error error) -> Result<Lease> {
    {
      std::lock_guard lock(s.mutex);
      s.models.erase(key);
    }
    s.loaded_cv.notify_all();
    return error;
  };
  // A finished load replaces the placeholder, leased once by this caller (a cold start).
  auto publish = [&](std::shared_ptr<LoadedModel> loaded) -> Result<Lease> {
    {
      std::lock_guard lock(s.mutex);
      if (s.stopping) {
        s.models.erase(key);
        s.loaded_cv.notify_all();
        return UnavailableError("the server is shutting down");
      }
      State::Entry& e = s.models[key];
      e.loaded = loaded;
      e.leases = 1;
      e.last_used_ms = s.clock->NowUnixMs();
      s.UpdateLoadedGauge();
    }
    s.loaded_cv.notify_all();
    return Lease(this, std::move(loaded), keep_alive_ms, true);
  };

  const auto start = std::chrono::steady_clock::now();
  // A vanished file is not a wrong kind: the load below reports it (model_load_failed).
  std::error_code exists_ec;
  if (std::filesystem::exists(source.path, exists_ec) &&
      engine::IsEncoderModelPath(source.path) != encoder) {
    return fail(encoder ? WrongKind(key, "chat", "embedding")
                        : WrongKind(key, "embedding", "chat"));
  }
  if (encoder) {
    auto enc = engine::EncoderModel::Load(source.path, {.n_threads = s.options.n_threads});
    if (!enc) {
      log::Error("model_load_failed", {{"model", key}, {"error", enc.error().message}});
      return fail(Error(Code::kUnavailable,
                        fmt::format("cannot load model '{}': {}", key, enc.error().message),
                        "model", "model_load_failed"));
    }
    const engine::EncoderConfig& c = (*enc)->config();
    const int64_t weight_bytes = c.weight_bytes;
    // One batch's activations: x, q, k, v, attention, output (n_embd each) and the FFN.
    const int64_t work_bytes = kEncoderBatchTokens * (6 * c.n_embd + c.n_ff) * 4;
    std::vector<std::shared_ptr<LoadedModel>> evicted;
    {
      std::lock_guard lock(s.mutex);
      if (s.MakeRoom(weight_bytes + work_bytes, &evicted)) {
        s.models[key].reserved_bytes = weight_bytes + work_bytes;
      } else {
        s.models.erase(key);
        s.loaded_cv.notify_all();
        return Error(Code::kResourceExhausted,
                     fmt::format("model '{}' needs {} ({} weights + {} working memory) but the "
                                 "models in use leave less than that of the {} memory budget; "
                                 "retry later",
                                 key, Mib(weight_bytes + work_bytes), Mib(weight_bytes),
                                 Mib(work_bytes), Mib(s.options.memory_budget_bytes)),
                     "model", "memory_budget");
      }
    }
    evicted.clear();
    auto loaded = std::make_shared<LoadedModel>();
    loaded->source = source;
    loaded->kind = c.has_classifier ? "rerank" : "embedding";
    loaded->encoder = std::move(*enc);
    loaded->weight_bytes = weight_bytes;
    loaded->kv_bytes = work_bytes;
    loaded->load_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    loaded->loaded_at_ms = s.clock->NowUnixMs();
    if (s.load_seconds != nullptr) {
      s.load_seconds->WithLabels({key}).Observe(loaded->load_ms / 1000);
    }
    log::Info("model_loaded", {{"model", key},
                               {"path", source.path},
                               {"kind", loaded->kind},
                               {"load_ms", loaded->load_ms},
                               {"weight_bytes", weight_bytes},
                               {"n_ctx", c.n_ctx_train}});
    return publish(std::move(loaded));
  }
  auto model = engine::Model::Load(source.path);
  if (!model) {
    log::Error("model_load_failed", {{"model", key}, {"error", model.error().message}});
    return fail(Error(Code::kUnavailable,
                      fmt::format("cannot load model '{}': {}", key, model.error().message), "model",
                      "model_load_failed"));
  }
  const engine::ModelConfig& config = (*model)->config();
  engine::RunnerOptions ro;
  ro.n_threads = s.options.n_threads;
  ro.n_ctx = s.options.n_ctx > 0 ? s.options.n_ctx
                                  : std::min<int64_t>(config.n_ctx_train > 0 ? config.n_ctx_train
                                                                             : engine::kDefaultContextTokens,
                                                      engine::kDefaultContextTokens);
  ro.kv_cache.type = s.options.kv_cache_type;
  const int64_t kv_tokens =
      std::max(ro.n_ctx, s.options.kv_cache_tokens > 0 ? s.options.kv_cache_tokens : 4 * ro.n_ctx);
  ro.kv_cache.n_blocks = (kv_tokens + ro.kv_cache.block_tokens - 1) / ro.kv_cache.block_tokens;
  const int64_t kv_bytes =
      KvBytesPerToken(config, ro.kv_cache.type) * ro.kv_cache.n_blocks * ro.kv_cache.block_tokens;
  const int64_t weight_bytes = config.weight_bytes;

  std::vector<std::shared_ptr<LoadedModel>> evicted;
  {
    std::lock_guard lock(s.mutex);
    if (s.MakeRoom(weight_bytes + kv_bytes, &evicted)) {
      s.models[key].reserved_bytes = weight_bytes + kv_bytes;
    } else {
      s.models.erase(key);
      s.loaded_cv.notify_all();
      return Error(Code::kResourceExhausted,
                   fmt::format("model '{}' needs {} ({} weights + {} KV cache) but the models in "
                               "use leave less than that of the {} memory budget; retry later",
                               key, Mib(weight_bytes + kv_bytes), Mib(weight_bytes), Mib(kv_bytes),
                               Mib(s.options.memory_budget_bytes)),
                   "model", "memory_budget");
    }
  }
  evicted.clear();

  auto runner = engine::ModelRunner::Create(*model, ro);
  if (!runner) {
    return fail(Error(Code::kUnavailable,
                      fmt::format("cannot start model '{}': {}", key, runner.error().message),
                      "model", "model_load_failed"));
  }
  auto chat = engine::ChatFormatter::ForModel(*model);
  if (!chat) {
    return fail(Error(Code::kUnavailable,
                      fmt::format("model '{}' has a chat template we cannot use: {}", key,
                                  chat.error().message),
                      "model", "model_load_failed"));
  }
  std::function<void(const engine::StepInfo&)> on_step;
  if (s.batch_size != nullptr) {
    metrics::Histogram* batch = &s.batch_size->WithLabels({key});
    metrics::Histogram* step = &s.step_seconds->WithLabels({key});
    metrics::Gauge* used = &s.kv_blocks->WithLabels({key, "used"});
    metrics::Gauge* free = &s.kv_blocks->WithLabels({key, "free"});
    metrics::Gauge* cached = &s.kv_blocks->WithLabels({key, "cached"});
    on_step = [batch, step, used, free, cached](const engine::StepInfo& info) {
      if (info.batch_sequences > 0) {
        batch->Observe(static_cast<double>(info.batch_sequences));
        step->Observe(info.forward_ms / 1000.0);
      }
      used->Set(static_cast<double>(info.stats.kv_blocks_used));
      free->Set(static_cast<double>(info.stats.kv_blocks_free));
      cached->Set(static_cast<double>(info.stats.kv_blocks_cached));
    };
  }
  auto scheduler = engine::Scheduler::Create(std::move(*runner), s.options.scheduler, on_step);
  if (!scheduler) {
    return fail(Error(Code::kUnavailable,
                      fmt::format("cannot start model '{}': {}", key, scheduler.error().message),
                      "model", "model_load_failed"));
  }
  auto loaded = std::make_shared<LoadedModel>();
  loaded->source = source;
  loaded->model = *model;
  loaded->scheduler = std::move(*scheduler);
  loaded->chat = std::make_unique<engine::ChatFormatter>(std::move(*chat));
  loaded->weight_bytes = weight_bytes;
  loaded->kv_bytes = kv_bytes;
  loaded->load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  loaded->loaded_at_ms = s.clock->NowUnixMs();
  if (s.load_seconds != nullptr) s.load_seconds->WithLabels({key}).Observe(loaded->load_ms / 1000);
  if (s.kv_blocks != nullptr) {
    s.kv_blocks->WithLabels({key, "free"}).Set(static_cast<double>(ro.kv_cache.n_blocks));
    s.kv_blocks->WithLabels({key, "used"}).Set(0);
    s.kv_blocks->WithLabels({key, "cached"}).Set(0);
  }
  log::Info("model_loaded", {{"model", key},
                             {"path", source.path},
                             {"load_ms", loaded->load_ms},
                             {"weight_bytes", weight_bytes},
                             {"kv_bytes", kv_bytes},
                             {"n_ctx", ro.n_ctx}});
  return publish(std::move(loaded));
}

void ModelManager::Release(const std::shared_ptr<LoadedModel>& loaded,
                           std::optional<int64_t> keep_alive_ms) {
  State& s = *state_;
  std::lock_guard lock(s.mutex);
  auto it = s.models.find(loaded->source.name);
  if (it == s.models.end() || it->second.loaded != loaded) return;  // unloaded meanwhile
  State::Entry& e = it->second;
  const int64_t now = s.clock->NowUnixMs();
  e.last_used_ms = now;
  if (--e.leases > 0) return;
  const int64_t keep =
      keep_alive_ms.value_or(loaded->source.keep_alive_ms.value_or(s.options.default_keep_alive_ms));
  if (keep < 0) {
    e.expires_at_ms.reset();
  } else {
    e.expires_at_ms = now + keep;
    // Never unload here: this may run on the model's own scheduler thread. The reaper does it.
    if (keep == 0) s.reaper_cv.notify_all();
  }
}

std::vector<LoadedModelInfo> ModelManager::List() const {
  const State& s = *state_;
  std::vector<LoadedModelInfo> out;
  std::lock_guard lock(s.mutex);
  for (const auto& [name, e] : s.models) {
    if (!e.loaded) continue;
    const LoadedModel& m = *e.loaded;
    LoadedModelInfo info;
    info.name = name;
    info.id = m.source.id;
    info.path = m.source.path;
    info.kind = m.kind;
    info.weight_bytes = m.weight_bytes;
    info.kv_bytes = m.kv_bytes;
    if (m.encoder) {
      info.architecture = "bert";
      info.n_ctx = m.encoder->config().n_ctx_train;
    } else {
      info.architecture = std::string(engine::ArchitectureName(m.model->config().architecture));
      info.n_ctx = m.scheduler->n_ctx();
      info.stats = m.scheduler->stats();
    }
    info.leases = e.leases;
    info.loaded_at_ms = m.loaded_at_ms;
    info.load_ms = m.load_ms;
    info.expires_at_ms = e.leases == 0 ? e.expires_at_ms : std::nullopt;
    out.push_back(std::move(info));
  }
  return out;
}

Status ModelManager::Unload(std::string_view name) {
  State& s = *state_;
  std::shared_ptr<LoadedModel> victim;
  {
    std::lock_guard lock(s.mutex);
    auto it = s.models.find(name);
    if (it == s.models.end() || !it->second.loaded) {
      return Error(Code::kNotFound, fmt::format("model '{}' is not loaded", name));
    }
    if (it->second.leases > 0) {
      return Error(Code::kFailedPrecondition,
                   fmt::format("model '{}' is serving {} requests", name, it->second.leases));
    }
    victim = std::move(it->second.loaded);
    s.models.erase(it);
    s.UpdateLoadedGauge();
  }
  log::Info("model_unloaded", {{"model", std::string(name)}, {"reason", "requested"}});
  return OkStatus();
}

Result<Lease> ModelManager::AcquireEncoder(std::string_view name,
                                           std::optional<int64_t> keep_alive_ms,
                                           std::string_view want_kind) {
  YZ_ASSIGN_OR_RETURN(Lease lease, AcquireKind(name, keep_alive_ms, /*encoder=*/true));
  if (lease->kind != want_kind) return WrongKind(lease->source.name, lease->kind, want_kind);
  return lease;
}

namespace {

// Runs `inputs` through `run` in consecutive batches of at most kEncoderBatchTokens tokens (at
// least one input each), appending each batch's results to `out`.
template <typename Out, typename Fn>
Status RunInBatches(std::span<const engine::EncoderInput> inputs, std::vector<Out>* out, Fn run) {
  size_t begin = 0;
  while (begin < inputs.size()) {
    size_t end = begin;
    int64_t tokens = 0;
    while (end < inputs.size() &&
           (end == begin ||
            tokens + static_cast<int64_t>(inputs[end].tokens.size()) <= kEncoderBatchTokens)) {
      tokens += static_cast<int64_t>(inputs[end].tokens.size());
      ++end;
    }
    YZ_ASSIGN_OR_RETURN(std::vector<Out> part, run(inputs.subspan(begin, end - begin)));
    for (auto& p : part) out->push_back(std::move(p));
    begin = end;
  }
  return OkStatus();
}

Status CheckTokenizer(const LoadedModel& m) {
  if (m.encoder->tokenizer() == nullptr) {
    return InvalidArgumentError(
        fmt::format("model '{}' has no tokenizer; send token ids instead of text", m.source.name),
        "input");
  }
  return OkStatus();
}

Result<EmbedResult> EmbedInputs(LoadedModel& m, std::vector<engine::EncoderInput> inputs,
                                bool normalize) {
  EmbedResult result;
  for (const auto& in : inputs) result.prompt_tokens += static_cast<int64_t>(in.tokens.size());
  std::lock_guard lock(m.encoder_mutex);
  YZ_RETURN_IF_ERROR(RunInBatches(
      std::span<const engine::EncoderInput>(inputs), &result.vectors,
      [&](std::span<const engine::EncoderInput> batch) {
        return m.encoder->Embed(batch, normalize);
      }));
  return result;
}

}  // namespace

Result<EmbedResult> ModelManager::Embed(std::string_view model, std::span<const std::string> texts,
                                        bool normalize, std::optional<int64_t> keep_alive_ms) {
  return Embed(model, texts, EmbedOptions{.normalize = normalize, .keep_alive_ms = keep_alive_ms});
}

Result<EmbedResult> ModelManager::Embed(std::string_view model, std::span<const std::string> texts,
                                        const EmbedOptions& options) {
  if (texts.empty()) return InvalidArgumentError("input must not be empty", "input");
  for (size_t i = 0; i < texts.size(); ++i) {
    if (texts[i].empty()) {
      return InvalidArgumentError(fmt::format("input[{}] is an empty string", i), "input");
    }
  }
  YZ_ASSIGN_OR_RETURN(Lease lease, AcquireEncoder(model, options.keep_alive_ms, "embedding"));
  YZ_RETURN_IF_ERROR(CheckTokenizer(*lease));
  std::vector<engine::EncoderInput> inputs(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto ids = lease->encoder->TokenizeText(texts[i], options.truncate);
    if (!ids) {
      return InvalidArgumentError(fmt::format("input[{}]: {}", i, ids.error().message), "input");
    }
    inputs[i].tokens = std::move(*ids);
  }
  return EmbedInputs(*lease, std::move(inputs), options.normalize);
}

Result<EmbedResult> ModelManager::EmbedTokens(std::string_view model,
                                              std::span<const std::vector<int32_t>> token_inputs,
                                              const EmbedOptions& options) {
  if (token_inputs.empty()) return InvalidArgumentError("input must not be empty", "input");
  for (size_t i = 0; i < token_inputs.size(); ++i) {
    if (token_inputs[i].empty()) {
      return InvalidArgumentError(fmt::format("input[{}] has no tokens", i), "input");
    }
  }
  YZ_ASSIGN_OR_RETURN(Lease lease, AcquireEncoder(model, options.keep_alive_ms, "embedding"));
  const engine::EncoderConfig& c = lease->encoder->config();
  const engine::Tokenizer* tok = lease->encoder->tokenizer();
  std::vector<engine::EncoderInput> inputs(token_inputs.size());
  for (size_t i = 0; i < token_inputs.size(); ++i) {
    std::vector<int32_t> ids = token_inputs[i];
    for (int32_t id : ids) {
      if (id < 0 || id >= c.n_vocab) {
        return InvalidArgumentError(
            fmt::format("input[{}]: token id {} is outside [0, {})", i, id, c.n_vocab), "input");
      }
    }
    if (tok != nullptr) {
      const int32_t cls = tok->vocab().bos_id;
      const int32_t sep = tok->vocab().eos_id;
      if (!(ids.size() >= 2 && ids.front() == cls && ids.back() == sep)) {
        ids.insert(ids.begin(), cls);
        ids.push_back(sep);
      }
    }
    if (static_cast<int64_t>(ids.size()) > c.n_ctx_train) {
      if (!options.truncate) {
        return InvalidArgumentError(
            fmt::format("input[{}] has {} tokens; the model takes at most {}", i, ids.size(),
                        c.n_ctx_train),
            "input");
      }
      const int32_t last = ids.back();
      ids.resize(static_cast<size_t>(c.n_ctx_train));
      if (tok != nullptr) ids.back() = last;
    }
    inputs[i].tokens = std::move(ids);
  }
  return EmbedInputs(*lease, std::move(inputs), options.normalize);
}

Result<RerankResult> ModelManager::Rerank(std::string_view model, std::string_view query,
                                          std::span<const std::string> documents,
                                          std::optional<int64_t> keep_alive_ms) {
  if (documents.empty()) return InvalidArgumentError("documents must not be empty", "documents");
  YZ_ASSIGN_OR_RETURN(Lease lease, AcquireEncoder(model, keep_alive_ms, "rerank"));
  YZ_RETURN_IF_ERROR(CheckTokenizer(*lease));
  std::vector<engine::EncoderInput> inputs(documents.size());
  RerankResult result;
  for (size_t i = 0; i < documents.size(); ++i) {
    YZ_ASSIGN_OR_RETURN(inputs[i], lease->encoder->TokenizePair(query, documents[i], true));
    result.prompt_tokens += static_cast<int64_t>(inputs[i].tokens.size());
  }
  std::lock_guard lock(lease->encoder_mutex);
  YZ_RETURN_IF_ERROR(RunInBatches(std::span<const engine::EncoderInput>(inputs), &result.scores,
                                  [&](std::span<const engine::EncoderInput> batch) {
                                    return lease->encoder->Score(batch);
                                  }));
  return result;
}

Result<int64_t> ModelManager::EmbeddingDimensions(std::string_view model) {
  YZ_ASSIGN_OR_RETURN(Lease lease, AcquireEncoder(model, std::nullopt, "embedding"));
  return lease->encoder->config().n_embd;
}

}  // namespace yunzhi::serving
