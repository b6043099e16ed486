// The batch scheduler: many generation requests sharing one ModelRunner with continuous batching.
//
// One thread per scheduler runs steps. A step:
//   1. drops cancelled requests (their KV blocks go back at once);
//   2. admits waiting requests while there is room (max_running sequences, KV blocks for the
//      prompt); waiting requests are taken round-robin across their fairness keys (tenants), so
//      a flood from one key delays another key's request by at most one admission per key;
//      a prompt prefix found in the PrefixCache is adopted instead of being computed again;
//   3. builds one batch: every decoding sequence contributes its next token, then prompts are
//      prefilled in chunks from what is left of the step's token budget (oldest first) — a long
//      prompt therefore never stalls the streams that are already decoding;
//   4. runs ModelRunner::Forward once and samples a token for every sequence whose pending
//      tokens were all consumed, streaming text through its StreamingDecoder and StopMatcher.
// When a decoding sequence needs a KV block and none is free, the prefix cache is evicted
// (least recently used first); if that is not enough the most recently admitted sequence is
// preempted: its blocks are released and it waits again at the head of its queue with its
// generated tokens appended to its prompt (they are recomputed when it is re-admitted; its
// sampler, decoder and stop state carry on, so the client sees one uninterrupted stream).
// Memory is thus bounded by the KV pool allocated at start: never an out-of-memory crash.
//
// Callbacks run on the scheduler thread, between steps: keep them short (format and queue the
// output; never block).
//
// Thread safety: Submit, Cancel (on the handle), stats and Shutdown are safe from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/generate.h"
#include "yunzhi/engine/model.h"
#include "yunzhi/engine/sampler.h"

namespace yunzhi::engine {

struct SchedulerOptions {
  // Tokens per Forward call (decode tokens plus prefill chunks). A step stalls every stream for
  // its whole duration, so on a small CPU a step holds about one prompt chunk: serving bench (2
  // cores, Qwen2.5-0.5B Q4_0, 8 streams of 128-token prompts) with 512 / 256 / 136: TTFT p50 240 /
  // 132 / 129 ms, p99 389 / 461 / 153 ms, inter-token p99 253 / 224 / 127 ms, throughput the same
  // (256-258 tokens/s); one 1016-token prompt takes the same time either way (Forward computes in
  // passes of ~128 tokens anyway).
  int64_t max_step_tokens = 160;
  // Sequences in the running batch.
  int32_t max_running = 16;
  // Requests waiting for admission; Submit refuses more (kResourceExhausted).
  int32_t max_waiting = 256;
  // Reuse KV blocks of shared prompt prefixes.
  bool prefix_caching = true;
};

// One token's worth of output. At the end of a request, text that was held back (part of a
// character, or what looked like the start of a stop string) comes as one last event whose
// sampled.token is -1.
struct GenerationToken {
  SampledToken sampled;  // the token, with logprobs when asked for
  std::string text;      // text released by this token (may be empty: held back or special)
};

struct GenerationResult {
  // Ok, or why the request failed after it was accepted (e.g. the constraint found no
  // allowed token, the scheduler shut down).
  Status status;
  FinishReason finish_reason = FinishReason::kLength;
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // prompt tokens whose KV came from the prefix cache
  int64_t completion_tokens = 0;     // sampled tokens (a final EOS included)
  int32_t preemptions = 0;
  double queue_ms = 0;  // submitted -> admitted (first admission)
  double ttft_ms = 0;   // submitted -> first token sampled
  double total_ms = 0;  // submitted -> finished
};

struct GenerationRequest {
  std::vector<int32_t> prompt;  // at least one token; shorter than the runner's context
  GenerateOptions options;      // max_tokens (0: until the context is full), stop, sampling
  // Tokens that end generation besides the tokenizer's end-of-generation tokens (e.g. the
  // model's generation_config eos ids).
  std::vector<int32_t> extra_eos;
  // Installed into the request's sampler (JSON schema, tool-call syntax); may be null.
  std::unique_ptr<TokenConstraint> constraint;
  // Write control tokens into the text (tool-call markers such as <|python_tag|> or
  // [TOOL_CALLS] are control tokens); by default they are skipped.
  bool keep_special_text = false;
  // Requests with the same key share admission turns (the tenant id).
  std::string fairness_key;
  // Admission class: waiting requests of a higher priority are admitted before any of a lower
  // one (reserved throughput within its rate: 1; best effort: 0); round robin by fairness key
  // within a class. Running requests are never preempted for priority.
  int priority = 0;
  // Polled every step; true cancels the request (finish_reason kCancelled).
  std::function<bool()> cancelled;
  // Called for every sampled token. Returning false cancels the request.
  std::function<bool(const GenerationToken&)> on_token;
  // Called exactly once, last, whatever happens (also when Submit's caller has gone away).
  std::function<void(const GenerationResult&)> on_done;
};

// Snapshot for metrics and /api/ps.
struct SchedulerStats {
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_free = 0;
  int64_t kv_blocks_used = 0;    // held by running sequences (shared ones included)
  int64_t kv_blocks_cached = 0;  // entries of the prefix cache (may be shared with sequences)
  int64_t block_tokens = 0;
  // Totals since start.
  int64_t steps = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
  int64_t completed = 0;
};

// What one step did, for metrics (called on the scheduler thread after each step; a step that
// only dropped cancelled requests reports batch_sequences 0).
struct StepInfo {
  int64_t batch_sequences = 0;
  int64_t batch_tokens = 0;
  double forward_ms = 0;
  SchedulerStats stats;
};

class Scheduler;

// A submitted request. Dropping the handle does not cancel it.
class RequestHandle {
 public:
  // Asks the scheduler to stop this request at its next step (on_done follows, kCancelled).
  void Cancel() { cancelled_->store(true); }

 private:
  friend class Scheduler;
  std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>(false);
};

class Scheduler {
 public:
  // Takes the runner (and its KV cache; size the cache with RunnerOptions::kv_cache.n_blocks).
  // `on_step` may be empty. Errors: kInvalidArgument for bad options.
  static Result<std::unique_ptr<Scheduler>> Create(std::unique_ptr<ModelRunner> runner,
                                                   const SchedulerOptions& options,
                                                   std::function<void(const StepInfo&)> on_step = {});
  // Shuts down (see Shutdown) and joins the thread.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  const Model& model() const;
  int64_t n_ctx() const;

  // Validates and queues a request. Errors (nothing queued, no callback called):
  //   kInvalidArgument    empty prompt, prompt of n_ctx tokens or more ("the prompt has 5000
  //                       tokens; the model's context is 4096"), bad sampling/stop parameters
  //   kResourceExhausted  max_waiting requests already wait beyond the free batch slots
  //                       (answer 429 with Retry-After)
  //   kUnavailable        the scheduler is shutting down
  Result<RequestHandle> Submit(GenerationRequest request);

  SchedulerStats stats() const;

  // Stops accepting requests, ends every queued and running request with kUnavailable
  // ("the model is being unloaded") and stops the thread. Idempotent.
  void Shutdown();

 private:
  struct State;
  explicit Scheduler(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace yunzhi::engine
