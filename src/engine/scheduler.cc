#include "yunzhi/engine/scheduler.h"

#include <algorithm>
#include <climits>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "yunzhi/base/log.h"
#include "yunzhi/engine/prefix_cache.h"
#include "yunzhi/engine/stop.h"
#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine {
namespace {

using SteadyClock = std::chrono::steady_clock;

double MsBetween(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// One request inside the scheduler.
struct Active {
  Active(GenerationRequest r, Sampler s, StopMatcher st, StreamingDecoder d)
      : request(std::move(r)), sampler(std::move(s)), stop(std::move(st)), decoder(std::move(d)) {}

  GenerationRequest request;
  Sampler sampler;
  StopMatcher stop;
  StreamingDecoder decoder;
  std::shared_ptr<std::atomic<bool>> cancel_flag;
  // The sequence's content: prompt, then generated tokens. Positions [seq.n_tokens(), size())
  // are pending: they still have to go through Forward.
  std::vector<int32_t> tokens;
  Sequence seq;
  int64_t max_new = 0;    // tokens this request may generate
  uint64_t admitted = 0;  // admission order (0 = waiting)
  bool ever_admitted = false;
  // Prefix cache bookkeeping: blocks of `seq` registered so far and the chain hash of the last.
  int64_t cached_blocks = 0;
  uint64_t chain_hash = PrefixCache::kRootHash;
  GenerationResult result;
  SteadyClock::time_point submitted;
  bool sampled_any = false;

  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - seq.n_tokens(); }
  bool IsCancelled() const {
    return cancel_flag->load() || (request.cancelled && request.cancelled());
  }
};

}  // namespace

struct Scheduler::State {
  std::unique_ptr<ModelRunner> runner;
  SchedulerOptions options;
  std::function<void(const StepInfo&)> on_step;
  std::unique_ptr<PrefixCache> prefix_cache;
  std::vector<int32_t> eog;  // sorted extra end tokens shared by all requests (model defaults)

  // Shared with submitters.
  mutable std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::unique_ptr<Active>> inbox;
  bool stopping = false;
  int64_t n_waiting = 0;  // inbox + queues
  int64_t n_running = 0;  // admitted and not finished
  SchedulerStats stats;   // snapshot, updated after each step

  // Scheduler thread only.
  std::map<std::string, std::deque<std::unique_ptr<Active>>> waiting;
  std::string last_key;  // round-robin cursor over `waiting`
  bool served_any_key = false;
  std::vector<std::unique_ptr<Active>> running;  // admission order
  uint64_t admissions = 0;
  ForwardOutput out;
  SchedulerStats totals;

  std::thread thread;

  void Loop();
  void Step();
  void SweepCancelled();
  void Admit();
  bool EnsureDecodeBlocks();
  void Preempt(size_t index);
  void AfterForward(Active& a, size_t item);
  void Sample(Active& a, size_t item);
  void Finish(Active& a, FinishReason reason, Status status);
  void FinishWithTail(Active& a, FinishReason reason);
  void RemoveFinished();
  void FailEverything(const Status& status);
  bool HasWaiting() const {
    for (const auto& [key, q] : waiting) {
      if (!q.empty()) return true;
    }
    return false;
  }
  void Publish();
  int64_t FreeBlocks() const { return runner->kv_cache().n_free_blocks(); }
  // Frees blocks from the prefix cache until `n` are free; returns whether they are.
  bool MakeFree(int64_t n) {
    const int64_t missing = n - FreeBlocks();
    if (missing > 0 && prefix_cache) prefix_cache->Evict(missing);
    return FreeBlocks() >= n;
  }
  std::vector<std::unique_ptr<Active>> finished;  // done this step, removed after the step
};

Result<std::unique_ptr<Scheduler>> Scheduler::Create(std::unique_ptr<ModelRunner> runner,
                                                     const SchedulerOptions& options,
                                                     std::function<void(const StepInfo&)> on_step) {
  if (!runner) return InvalidArgumentError("scheduler: no runner");
  if (options.max_running < 1 || options.max_waiting < 0 ||
      options.max_step_tokens <= options.max_running) {
    return InvalidArgumentError(fmt::format(
        "scheduler: max_running ({}) must be at least 1 and below max_step_tokens ({}); "
        "max_waiting ({}) at least 0",
        options.max_running, options.max_step_tokens, options.max_waiting));
  }
  KvCache& cache = runner->kv_cache();
  if (cache.n_blocks() < cache.BlocksFor(runner->n_ctx())) {
    return InvalidArgumentError(fmt::format(
        "scheduler: the KV cache ({} blocks of {} tokens) must hold at least one full context "
        "({} tokens)",
        cache.n_blocks(), cache.block_tokens(), runner->n_ctx()));
  }
  auto state = std::make_unique<State>();
  state->options = options;
  state->on_step = std::move(on_step);
  if (options.prefix_caching) state->prefix_cache = std::make_unique<PrefixCache>(&cache);
  for (int32_t id : runner->model().generation_defaults().eos_token_ids) state->eog.push_back(id);
  std::sort(state->eog.begin(), state->eog.end());
  state->runner = std::move(runner);
  state->totals.kv_blocks_total = cache.n_blocks();
  state->totals.block_tokens = cache.block_tokens();
  state->Publish();
  std::unique_ptr<Scheduler> scheduler(new Scheduler(std::move(state)));
  State* s = scheduler->state_.get();
  s->thread = std::thread([s] { s->Loop(); });
  return scheduler;
}

Scheduler::Scheduler(std::unique_ptr<State> state) : state_(std::move(state)) {}

Scheduler::~Scheduler() {
  Shutdown();
  // The prefix cache drops its references before the runner (and its cache) go.
  state_->prefix_cache.reset();
}

const Model& Scheduler::model() const { return state_->runner->model(); }
int64_t Scheduler::n_ctx() const { return state_->runner->n_ctx(); }

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(state_->mutex);
  return state_->stats;
}

void Scheduler::Shutdown() {
  {
    std::lock_guard lock(state_->mutex);
    state_->stopping = true;
  }
  state_->wake.notify_all();
  if (state_->thread.joinable()) state_->thread.join();
}

Result<RequestHandle> Scheduler::Submit(GenerationRequest request) {
  State& s = *state_;
  const Model& model = s.runner->model();
  const int64_t n_ctx = s.runner->n_ctx();
  const auto n_prompt = static_cast<int64_t>(request.prompt.size());
  if (n_prompt == 0) return InvalidArgumentError("the prompt is empty", "prompt");
  if (n_prompt >= n_ctx) {
    return Error(Code::kInvalidArgument,
                 fmt::format("This model's maximum context length is {} tokens. However, your "
                             "prompt has {} tokens (no room is left for the completion).",
                             n_ctx, n_prompt),
                 "messages", "context_length_exceeded");
  }
  const auto n_vocab = static_cast<int32_t>(model.config().n_vocab);
  for (int32_t t : request.prompt) {
    if (t < 0 || t >= n_vocab) {
      return InvalidArgumentError(
          fmt::format("token id {} is outside the vocabulary [0, {})", t, n_vocab), "prompt");
    }
  }
  YZ_ASSIGN_OR_RETURN(Sampler sampler, Sampler::Create(request.options.sampling, n_vocab));
  YZ_ASSIGN_OR_RETURN(StopMatcher stop, StopMatcher::Create(request.options.stop));
  sampler.AddPromptTokens(request.prompt);
  if (request.constraint) sampler.SetConstraint(std::move(request.constraint));
  const Tokenizer& tokenizer = model.tokenizer();
  DecodeOptions decode;
  decode.skip_special = !request.keep_special_text;
  decode.remove_space_prefix = tokenizer.IsSpecial(request.prompt.back());

  auto active = std::make_unique<Active>(std::move(request), std::move(sampler), std::move(stop),
                                         StreamingDecoder(tokenizer, decode));
  Active& a = *active;
  a.tokens = a.request.prompt;
  a.result.prompt_tokens = n_prompt;
  const int64_t room = n_ctx - n_prompt;
  a.max_new = a.request.options.max_tokens > 0 ? std::min(a.request.options.max_tokens, room)
                                                : room;
  a.submitted = SteadyClock::now();
  RequestHandle handle;
  a.cancel_flag = handle.cancelled_;
  {
    std::lock_guard lock(s.mutex);
    if (s.stopping) return UnavailableError("the model is being unloaded; retry the request");
    // Requests that a free batch slot will take at once do not count as waiting.
    const int64_t free_slots = std::max<int64_t>(0, s.options.max_running - s.n_running);
    if (s.n_waiting - free_slots >= s.options.max_waiting) {
      return Error(Code::kResourceExhausted,
                   fmt::format("The server is busy: {} requests are already waiting for this "
                               "model. Retry shortly.",
                               s.n_waiting),
                   "", "queue_full");
    }
    ++s.n_waiting;
    s.inbox.push_back(std::move(active));
  }
  s.wake.notify_one();
  return handle;
}

void Scheduler::State::Publish() {
  SchedulerStats snap = totals;
  snap.running = static_cast<int64_t>(running.size());
  const KvCache& cache = runner->kv_cache();
  snap.kv_blocks_free = cache.n_free_blocks();
  snap.kv_blocks_cached = prefix_cache ? prefix_cache->n_entries() : 0;
  snap.kv_blocks_used = snap.kv_blocks_total - snap.kv_blocks_free -
                        (prefix_cache ? prefix_cache->n_evictable() : 0);
  std::lock_guard lock(mutex);
  snap.waiting = n_waiting;
  stats = snap;
}

void Scheduler::State::Loop() {
  while (true) {
    {
      std::unique_lock lock(mutex);
      wake.wait(lock, [&] { return stopping || !inbox.empty() || !running.empty() || HasWaiting(); });
      if (stopping) break;
      while (!inbox.empty()) {
        std::unique_ptr<Active> a = std::move(inbox.front());
        inbox.pop_front();
        waiting[a->request.fairness_key].push_back(std::move(a));
      }
    }
    Step();
  }
  FailEverything(UnavailableError("the model is being unloaded; retry the request"));
}

void Scheduler::State::FailEverything(const Status& status) {
  std::deque<std::unique_ptr<Active>> rest;
  {
    std::lock_guard lock(mutex);
    rest.swap(inbox);
  }
  for (auto& a : rest) waiting[a->request.fairness_key].push_back(std::move(a));
  for (auto& a : running) Finish(*a, FinishReason::kCancelled, status);
  for (auto& [key, q] : waiting) {
    for (auto& a : q) {
      {
        std::lock_guard lock(mutex);
        --n_waiting;
      }
      Finish(*a, FinishReason::kCancelled, status);
    }
    q.clear();
  }
  RemoveFinished();
  Publish();
}

void Scheduler::State::Finish(Active& a, FinishReason reason, Status status) {
  runner->kv_cache().Release(&a.seq);
  a.result.status = std::move(status);
  a.result.finish_reason = reason;
  a.result.completion_tokens = a.sampler.output_tokens().size();
  a.result.total_ms = MsBetween(a.submitted, SteadyClock::now());
  a.admitted = UINT64_MAX;  // marks it finished
  ++totals.completed;
  if (a.request.on_done) a.request.on_done(a.result);
}

void Scheduler::State::RemoveFinished() {
  const size_t removed = std::erase_if(
      running, [](const std::unique_ptr<Active>& a) { return a->admitted == UINT64_MAX; });
  if (removed > 0) {
    std::lock_guard lock(mutex);
    n_running -= static_cast<int64_t>(removed);
  }
  for (auto it = waiting.begin(); it != waiting.end();) {
    std::erase_if(it->second,
                  [](const std::unique_ptr<Active>& a) { return a->admitted == UINT64_MAX; });
    it = it->second.empty() ? waiting.erase(it) : std::next(it);
  }
}

void Scheduler::State::SweepCancelled() {
  for (auto& a : running) {
    if (a->IsCancelled()) Finish(*a, FinishReason::kCancelled, OkStatus());
  }
  for (auto& [key, q] : waiting) {
    for (auto& a : q) {
      if (a->IsCancelled()) {
        {
          std::lock_guard lock(mutex);
          --n_waiting;
        }
        Finish(*a, FinishReason::kCancelled, OkStatus());
      }
    }
  }
  RemoveFinished();
}

void Scheduler::State::Admit() {
  KvCache& cache = runner->kv_cache();
  while (static_cast<int32_t>(running.size()) < options.max_running && !waiting.empty()) {
    // The highest priority class waiting first; within it, round robin: the first key after
    // the last one served (wrapping around) whose next request is of that class.
    int top = INT_MIN;
    for (const auto& [key, q] : waiting) top = std::max(top, q.front()->request.priority);
    auto it = served_any_key ? waiting.upper_bound(last_key) : waiting.begin();
    for (size_t n = 0; n <= waiting.size(); ++n, ++it) {
      if (it == waiting.end()) it = waiting.begin();
      if (it->second.front()->request.priority == top) break;
    }
    Active& a = *it->second.front();

    // Reuse cached blocks of the prompt; at least one token is always computed (its logits
    // give the first sampled token).
    PrefixCache::Match match;
    if (prefix_cache) {
      match = prefix_cache->Lookup(a.tokens, static_cast<int64_t>(a.tokens.size()) - 1);
    }
    if (Status s = cache.Adopt(&a.seq, match.blocks); !s) {
      log::Error("scheduler_adopt_failed", {{"error", s.error().message}});
      cache.Release(&a.seq);
      match = {};
    }
    // A block that matches only in part is copied (one block copy instead of recomputing up
    // to block_tokens - 1 positions); skipped when no block is free for the copy.
    int64_t partial = 0;
    if (match.partial_tokens > 0 && MakeFree(1) &&
        cache.AppendCopy(&a.seq, match.partial_block, match.partial_tokens)) {
      partial = match.partial_tokens;
    }
    // Keep the blocks the running sequences need for their next token.
    int64_t reserve = 0;
    for (const auto& r : running) {
      if (r->pending() == 1) reserve += cache.ExtraBlocksFor(r->seq, r->seq.n_tokens() + 1);
    }
    const int64_t need = cache.ExtraBlocksFor(a.seq, static_cast<int64_t>(a.tokens.size()));
    if (!MakeFree(need + reserve)) {
      cache.Release(&a.seq);  // wait until running sequences give blocks back
      break;
    }
    if (Status s = cache.Reserve(&a.seq, static_cast<int64_t>(a.tokens.size())); !s) {
      cache.Release(&a.seq);
      break;
    }
    const int64_t reused =
        static_cast<int64_t>(match.blocks.size()) * cache.block_tokens() + partial;
    a.cached_blocks = static_cast<int64_t>(match.blocks.size());
    a.chain_hash = match.last_hash;
    if (!a.ever_admitted) {
      a.ever_admitted = true;
      a.result.cached_prompt_tokens = reused;
      a.result.queue_ms = MsBetween(a.submitted, SteadyClock::now());
      totals.prompt_tokens += a.result.prompt_tokens;
      totals.cached_prompt_tokens += reused;
    }
    a.admitted = ++admissions;
    last_key = it->first;
    served_any_key = true;
    running.push_back(std::move(it->second.front()));
    it->second.pop_front();
    if (it->second.empty()) waiting.erase(it);
    std::lock_guard lock(mutex);
    --n_waiting;
    ++n_running;
  }
}

void Scheduler::State::Preempt(size_t index) {
  std::unique_ptr<Active> a = std::move(running[index]);
  running.erase(running.begin() + static_cast<std::ptrdiff_t>(index));
  runner->kv_cache().Release(&a->seq);  // its full blocks may live on in the prefix cache
  a->cached_blocks = 0;
  a->chain_hash = PrefixCache::kRootHash;
  a->admitted = 0;
  ++a->result.preemptions;
  ++totals.preemptions;
  log::Info("scheduler_preempted", {{"tokens", static_cast<int64_t>(a->tokens.size())}});
  auto& q = waiting[a->request.fairness_key];
  q.push_front(std::move(a));
  std::lock_guard lock(mutex);
  ++n_waiting;
  --n_running;
}

bool Scheduler::State::EnsureDecodeBlocks() {
  KvCache& cache = runner->kv_cache();
  // Oldest first: when memory runs short the youngest sequences give way.
  for (size_t i = 0; i < running.size(); ++i) {
    Active& a = *running[i];
    if (a.pending() != 1) continue;  // prefilling sequences reserved their prompt at admission
    const int64_t need = cache.ExtraBlocksFor(a.seq, a.seq.n_tokens() + 1);
    while (!MakeFree(need)) {
      // Preempt the youngest running sequence (possibly this one).
      const size_t victim = running.size() - 1;
      const bool self = victim == i;
      Preempt(victim);
      if (self) return true;  // nothing after it to visit
    }
    if (Status s = cache.Reserve(&a.seq, a.seq.n_tokens() + 1); !s) return false;
  }
  return true;
}

void Scheduler::State::Step() {
  SweepCancelled();
  Admit();
  if (!EnsureDecodeBlocks()) {
    FailEverything(InternalError("scheduler: KV cache accounting error"));
    return;
  }
  if (running.empty()) {
    Publish();
    if (on_step) {
      StepInfo info;  // no forward pass: the cache state changed (cancellations) all the same
      {
        std::lock_guard lock(mutex);
        info.stats = stats;
      }
      on_step(info);
    }
    return;
  }

  // Decode tokens first, then prompt chunks from what is left of the budget, oldest first.
  std::vector<BatchItem> batch;
  std::vector<Active*> owners;
  int64_t budget = options.max_step_tokens;
  for (auto& a : running) {
    if (a->pending() == 1) {
      batch.push_back({&a->seq, std::span<const int32_t>(&a->tokens.back(), 1), false});
      owners.push_back(a.get());
      --budget;
    }
  }
  for (auto& a : running) {
    if (budget <= 0) break;
    const int64_t pending = a->pending();
    if (pending <= 1) continue;
    const int64_t n = std::min(pending, budget);
    batch.push_back({&a->seq,
                     std::span<const int32_t>(a->tokens.data() + a->seq.n_tokens(),
                                              static_cast<size_t>(n)),
                     false});
    owners.push_back(a.get());
    budget -= n;
  }
  int64_t batch_tokens = 0;
  for (const BatchItem& item : batch) batch_tokens += static_cast<int64_t>(item.tokens.size());

  const auto start = SteadyClock::now();
  Status status = runner->Forward(batch, &out);
  const double forward_ms = MsBetween(start, SteadyClock::now());
  ++totals.steps;
  if (!status) {
    log::Error("scheduler_forward_failed", {{"error", status.error().message}});
    for (Active* a : owners) Finish(*a, FinishReason::kCancelled, status);
  } else {
    for (size_t i = 0; i < owners.size(); ++i) AfterForward(*owners[i], i);
  }
  RemoveFinished();
  Publish();
  if (on_step) {
    StepInfo info;
    info.batch_sequences = static_cast<int64_t>(batch.size());
    info.batch_tokens = batch_tokens;
    info.forward_ms = forward_ms;
    {
      std::lock_guard lock(mutex);
      info.stats = stats;
    }
    on_step(info);
  }
}

void Scheduler::State::AfterForward(Active& a, size_t item) {
  // Register the blocks this step filled, so that later requests can share them.
  if (prefix_cache) {
    const int64_t bt = runner->kv_cache().block_tokens();
    while ((a.cached_blocks + 1) * bt <= a.seq.n_tokens()) {
      const auto first = static_cast<size_t>(a.cached_blocks * bt);
      a.chain_hash = prefix_cache->Insert(
          a.chain_hash, std::span<const int32_t>(a.tokens.data() + first, static_cast<size_t>(bt)),
          a.seq.blocks()[static_cast<size_t>(a.cached_blocks)]);
      ++a.cached_blocks;
    }
  }
  if (a.pending() == 0) Sample(a, item);
}

void Scheduler::State::Sample(Active& a, size_t item) {
  const int64_t generated = static_cast<int64_t>(a.sampler.output_tokens().size());
  // One token is kept for the end-of-generation token, so that a grammar closes its output in
  // time to stop (finish_reason "stop") rather than at the limit.
  if (TokenConstraint* c = a.sampler.constraint()) {
    c->SetRemainingTokens(std::max<int64_t>(1, a.max_new - generated - 1));
  }
  auto sampled = a.sampler.Sample(out.Row(item));
  if (!sampled) {
    Finish(a, FinishReason::kCancelled, Status(sampled.error()));
    return;
  }
  const int32_t token = sampled->token;
  ++totals.generated_tokens;
  if (!a.sampled_any) {
    a.sampled_any = true;
    a.result.ttft_ms = MsBetween(a.submitted, SteadyClock::now());
  }
  a.tokens.push_back(token);
  const bool at_limit = generated + 1 >= a.max_new;
  const Tokenizer& tokenizer = runner->model().tokenizer();
  if (!a.request.options.ignore_eos &&
      (tokenizer.IsEndOfGeneration(token) ||
       std::binary_search(eog.begin(), eog.end(), token) ||
       std::find(a.request.extra_eos.begin(), a.request.extra_eos.end(), token) !=
           a.request.extra_eos.end())) {
    FinishWithTail(a, FinishReason::kStop);
    return;
  }
  StopMatcher::Output piece = a.stop.Push(a.decoder.Push(token));
  GenerationToken event{std::move(*sampled), std::move(piece.text)};
  if (a.request.on_token && !a.request.on_token(event)) {
    Finish(a, FinishReason::kCancelled, OkStatus());
    return;
  }
  if (piece.stopped) {
    Finish(a, FinishReason::kStop, OkStatus());
    return;
  }
  if (at_limit) FinishWithTail(a, FinishReason::kLength);
}

void Scheduler::State::FinishWithTail(Active& a, FinishReason reason) {
  // Text held back (an incomplete character, a possible start of a stop string) belongs to the
  // output unless it completes a stop string now.
  StopMatcher::Output last = a.stop.Push(a.decoder.Flush());
  std::string tail = std::move(last.text);
  if (last.stopped) {
    reason = FinishReason::kStop;
  } else {
    tail += a.stop.Flush();
  }
  if (!tail.empty() && a.request.on_token) {
    GenerationToken flush;
    flush.sampled.token = -1;  // text only, no new token
    flush.text = std::move(tail);
    a.request.on_token(flush);
  }
  Finish(a, reason, OkStatus());
}

}  // namespace yunzhi::engine
