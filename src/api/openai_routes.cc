// Inference over HTTP: the OpenAI-compatible generation routes.
//
//   POST /v1/chat/completions   [inference]
//   POST /v1/completions        [inference]
//   POST /tokenize, /detokenize [inference]  (vLLM's helpers)
//   GET  /api/ps                [read]       loaded models
//   DELETE /api/ps/{name...}    [platform admin] unload an idle model now
//
// Data flow of one request: the handler (I/O thread) parses and validates the body and answers
// with a deferred response; a request worker acquires the model (loading it on a cold start),
// renders the chat template, tokenizes, builds the grammar constraint and submits one
// engine::GenerationRequest per choice to the model's scheduler. Errors up to that point get
// their proper status. Then a stream (SSE) or, when the last choice is done, a JSON body
// completes the response. Token callbacks run on the scheduler thread and only format and queue
// output. A client that goes away cancels its choices at the next scheduler step.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>

#include "api/knowledge_json.h"
#include "api/openai_types.h"
#include "api/route_util.h"
#include "api/routes.h"
#include "yunzhi/base/log.h"
#include "yunzhi/base/thread_pool.h"
#include "yunzhi/engine/json_constraint.h"
#include "yunzhi/engine/scheduler.h"
#include "yunzhi/engine/tool_calls.h"
#include "yunzhi/platform/billing.h"
#include "yunzhi/platform/metering.h"
#include "yunzhi/serving/model_manager.h"

namespace yunzhi::api {
namespace {

using platform::Principal;
using platform::Scope;

struct InferenceMetrics {
  metrics::Family<metrics::Histogram>* ttft = nullptr;
  metrics::Family<metrics::Histogram>* tpot = nullptr;
  metrics::Family<metrics::Histogram>* queue_wait = nullptr;
  metrics::Family<metrics::Histogram>* duration = nullptr;
  metrics::Family<metrics::Counter>* tokens = nullptr;
  metrics::Family<metrics::Counter>* requests = nullptr;
  metrics::Family<metrics::Counter>* cold_starts = nullptr;

  explicit InferenceMetrics(metrics::Registry* r) {
    if (r == nullptr) return;
    ttft = r->AddHistogram("yunzhi_time_to_first_token_seconds",
                           "From a request's arrival at the scheduler to its first token.",
                           {"model"});
    tpot = r->AddHistogram("yunzhi_time_per_output_token_seconds",
                           "Mean time between a request's output tokens after the first.",
                           {"model"}, {0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28});
    queue_wait = r->AddHistogram("yunzhi_queue_wait_seconds",
                                 "Time a request waited for a batch slot.", {"model"});
    duration = r->AddHistogram("yunzhi_generation_seconds",
                               "Time from submission to the last token.", {"model"});
    tokens = r->AddCounter("yunzhi_tokens_total",
                           "Tokens by kind: prompt, cached_prompt (served from the prefix "
                           "cache; hit rate = cached_prompt / prompt) and completion.",
                           {"model", "kind"});
    requests = r->AddCounter("yunzhi_generation_requests_total",
                             "Generation requests (choices) by finish reason.",
                             {"model", "finish"});
    cold_starts = r->AddCounter("yunzhi_model_cold_starts_total",
                                "Requests that had to wait for their model to load.", {"model"});
  }

  void Record(const std::string& model, const engine::GenerationResult& r) const {
    if (ttft == nullptr) return;
    const std::string finish =
        r.status ? std::string(engine::FinishReasonName(r.finish_reason)) : "error";
    requests->WithLabels({model, finish}).Increment();
    tokens->WithLabels({model, "completion"}).Increment(static_cast<double>(r.completion_tokens));
    tokens->WithLabels({model, "prompt"}).Increment(static_cast<double>(r.prompt_tokens));
    tokens->WithLabels({model, "cached_prompt"})
        .Increment(static_cast<double>(r.cached_prompt_tokens));
    if (!r.status) return;
    queue_wait->WithLabels({model}).Observe(r.queue_ms / 1000);
    duration->WithLabels({model}).Observe(r.total_ms / 1000);
    if (r.completion_tokens > 0) ttft->WithLabels({model}).Observe(r.ttft_ms / 1000);
    if (r.completion_tokens > 1) {
      tpot->WithLabels({model}).Observe((r.total_ms - r.ttft_ms) / 1000 /
                                        static_cast<double>(r.completion_tokens - 1));
    }
  }
};

// Errors with a Retry-After where waiting helps (busy queue, memory in use).
HttpResponse ErrorResponse(const Error& error) {
  HttpResponse r = HttpResponse::FromError(error);
  if (error.code == Code::kResourceExhausted) r.headers.emplace("Retry-After", "1");
  return r;
}

TokenLogprob ToLogprob(const engine::Tokenizer& tok, const engine::SampledToken& s) {
  TokenLogprob t;
  t.token = tok.TokenToPiece(s.token);
  t.logprob = s.logprob;
  for (const auto& alt : s.top_logprobs) {
    t.top_logprobs.push_back({tok.TokenToPiece(alt.token), alt.logprob});
  }
  return t;
}

FinishReason MapFinish(engine::FinishReason r, bool tool_calls) {
  if (tool_calls) return FinishReason::kToolCalls;
  return r == engine::FinishReason::kLength ? FinishReason::kLength : FinishReason::kStop;
}

bool IsBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; });
}

// ---------------------------------------------------------------------------------------------
// One request's choices, shared by their scheduler callbacks (which all run on the model's
// scheduler thread; the mutex makes that an implementation detail).

struct Choice {
  std::string text;
  std::vector<TokenLogprob> logprobs;
  std::unique_ptr<engine::ToolCallStreamParser> tool_parser;
  int32_t n_tool_calls = 0;
  bool sent_role = false;
  engine::GenerationResult result;
  // Legacy completions: characters of text so far (text_offset of the next token).
  int64_t chars = 0;
};

int64_t CountChars(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

struct Job;
// Billing hooks (defined below SubmitAll): usage record + settlement when a request ends.
void MeterAndSettle(Job& job, const Usage& usage);

struct Job : std::enable_shared_from_this<Job> {
  enum class Kind { kChat, kCompletion };
  Kind kind = Kind::kChat;
  const InferenceMetrics* metrics = nullptr;
  std::string tenant;
  std::string request_id;
  ResponseMeta meta;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
  bool parse_tools = false;
  engine::ToolCallSyntax syntax = engine::ToolCallSyntax::kNone;
  std::shared_ptr<PendingResponse> pending;
  std::shared_ptr<ResponseStream> out;
  std::shared_ptr<serving::Lease> lease;
  const engine::Tokenizer* tok = nullptr;
  std::vector<std::string> echo_text;  // completions with echo: per choice, the prompt text
  // A derived model's sources: answers carry their citations.
  std::shared_ptr<const DerivedChat> derived;
  // Billing hooks: who pays, what the request holds (Reserve before, Settle after).
  platform::Meter* meter = nullptr;
  platform::Billing* billing = nullptr;
  ThreadPool* workers = nullptr;
  std::string key_id;
  std::string base_model;
  double cold_load_ms = -1;  // >= 0: this request loaded the model
  std::optional<platform::Hold> hold;
  std::optional<platform::Prices> prices;

  std::mutex mutex;
  std::vector<Choice> choices;
  std::vector<int64_t> prompt_tokens;  // per choice
  int remaining = 0;
  std::optional<Error> error;

  bool Cancelled() const {
    return (pending && pending->cancelled()) || (out && out->cancelled());
  }

  bool Write(const std::string& json) { return out->Write(SseEvent(json)); }

  // ---- streaming
  bool StreamToken(int32_t index, const engine::GenerationToken& t) {
    Choice& c = choices[static_cast<size_t>(index)];
    if (derived) c.text += t.text;  // to tell which sources the answer cites
    std::string content = t.text;
    std::vector<ToolCallDelta> calls;
    if (c.tool_parser) {
      engine::ParsedOutput parsed = c.tool_parser->Push(t.text);
      content = std::move(parsed.content);
      for (auto& call : parsed.tool_calls) {
        calls.push_back({c.n_tool_calls++, NewToolCallId(), call.name, call.arguments});
      }
    }
    std::optional<std::vector<TokenLogprob>> lp;
    if (logprobs && t.sampled.token >= 0) {
      TokenLogprob entry = ToLogprob(*tok, t.sampled);
      entry.text_offset = c.chars;
      lp = std::vector<TokenLogprob>{std::move(entry)};
    }
    c.chars += CountChars(content);
    if (content.empty() && calls.empty() && !lp) return true;
    if (kind == Kind::kCompletion) {
      CompletionChoice choice{index, std::move(content), std::nullopt, std::move(lp)};
      return Write(TextCompletionChunkJson(meta, {&choice, 1}, include_usage));
    }
    ChatDelta delta;
    delta.index = index;
    if (!c.sent_role) {
      delta.role = "assistant";
      c.sent_role = true;
    }
    if (!content.empty() || calls.empty()) delta.content = std::move(content);
    delta.tool_calls = std::move(calls);
    delta.logprobs = std::move(lp);
    return Write(ChatCompletionChunkJson(meta, {&delta, 1}, include_usage));
  }

  void StreamFinish(int32_t index) {
    Choice& c = choices[static_cast<size_t>(index)];
    if (!c.result.status) {
      Write(StreamErrorJson(c.result.status.error()));
      return;
    }
    if (kind == Kind::kCompletion) {
      CompletionChoice choice{index, "", MapFinish(c.result.finish_reason, false), std::nullopt};
      Write(TextCompletionChunkJson(meta, {&choice, 1}, include_usage));
      return;
    }
    ChatDelta delta;
    delta.index = index;
    if (c.tool_parser) {
      engine::ParsedOutput parsed = c.tool_parser->Finish();
      if (!parsed.content.empty()) delta.content = std::move(parsed.content);
      for (auto& call : parsed.tool_calls) {
        delta.tool_calls.push_back({c.n_tool_calls++, NewToolCallId(), call.name, call.arguments});
      }
    }
    if (!c.sent_role) {
      delta.role = "assistant";
      c.sent_role = true;
    }
    delta.finish_reason = MapFinish(c.result.finish_reason, c.n_tool_calls > 0);
    Write(ChatCompletionChunkJson(meta, {&delta, 1}, include_usage));
  }

  Usage TotalUsage() const {
    Usage u;
    for (size_t i = 0; i < choices.size(); ++i) {
      u.completion_tokens += choices[i].result.completion_tokens;
      u.cached_prompt_tokens = std::max(u.cached_prompt_tokens, choices[i].result.cached_prompt_tokens);
    }
    // A prompt counts once however many choices it has (n), as OpenAI counts it.
    const size_t n = choices.empty() ? 1 : choices.size() / std::max<size_t>(1, n_prompts);
    for (size_t p = 0; p < n_prompts; ++p) u.prompt_tokens += prompt_tokens[p * n];
    return u;
  }
  size_t n_prompts = 1;

  // ---- completion of the whole request (last choice done), with the lock held
  void FinishAll() {
    const Usage usage = TotalUsage();
    MeterAndSettle(*this, usage);
    if (stream) {
      if (derived && kind == Kind::kChat) {
        // The citations travel in one extra chunk with no choices (like the usage chunk).
        json::object chunk{{"id", meta.id},
                           {"object", "chat.completion.chunk"},
                           {"created", meta.created_s},
                           {"model", meta.model},
                           {"choices", json::array()},
                           {"citations", CitationsJson(*derived, choices.empty() ? "" : choices[0].text)}};
        Write(json::serialize(chunk));
      }
      if (include_usage) {
        Write(kind == Kind::kChat ? ChatCompletionUsageChunkJson(meta, usage)
                                  : TextCompletionUsageChunkJson(meta, usage));
      }
      out->Write(SseEvent("[DONE]"));
      out->Close();
    } else if (error) {
      pending->Complete(ErrorResponse(*error));
    } else if (kind == Kind::kChat) {
      std::vector<ChatChoice> out_choices;
      for (size_t i = 0; i < choices.size(); ++i) {
        Choice& c = choices[i];
        ChatChoice cc;
        cc.index = static_cast<int32_t>(i);
        std::string content = c.text;
        if (parse_tools) {
          engine::ParsedOutput parsed = engine::ParseToolCalls(syntax, c.text);
          content = std::move(parsed.content);
          for (auto& call : parsed.tool_calls) {
            cc.tool_calls.push_back({NewToolCallId(), call.name, call.arguments});
          }
        }
        if (cc.tool_calls.empty() || !IsBlank(content)) cc.content = std::move(content);
        cc.finish_reason = MapFinish(c.result.finish_reason, !cc.tool_calls.empty());
        if (logprobs) cc.logprobs = std::move(c.logprobs);
        out_choices.push_back(std::move(cc));
      }
      std::string body = ChatCompletionJson(meta, out_choices, usage);
      if (derived) {
        json::value v = json::parse(body);
        v.as_object()["citations"] =
            CitationsJson(*derived, out_choices.empty() || !out_choices[0].content ? ""
                                                                                   : *out_choices[0].content);
        body = json::serialize(v);
      }
      pending->Complete(HttpResponse::Json(200, std::move(body)));
    } else {
      std::vector<CompletionChoice> out_choices;
      for (size_t i = 0; i < choices.size(); ++i) {
        Choice& c = choices[i];
        CompletionChoice cc;
        cc.index = static_cast<int32_t>(i);
        cc.text = (echo_text.empty() ? std::string() : echo_text[i]) + c.text;
        cc.finish_reason = MapFinish(c.result.finish_reason, false);
        if (logprobs) cc.logprobs = std::move(c.logprobs);
        out_choices.push_back(std::move(cc));
      }
      pending->Complete(HttpResponse::Json(200, TextCompletionJson(meta, out_choices, usage)));
    }
    int64_t completion = 0;
    double ttft = 0, total = 0;
    for (const Choice& c : choices) {
      completion += c.result.completion_tokens;
      ttft = std::max(ttft, c.result.ttft_ms);
      total = std::max(total, c.result.total_ms);
    }
    log::ScopedRequestId scoped(request_id);
    log::Info("generation_done",
              {{"model", meta.model},
               {"tenant_id", tenant},
               {"choices", static_cast<int64_t>(choices.size())},
               {"prompt_tokens", usage.prompt_tokens},
               {"cached_tokens", usage.cached_prompt_tokens},
               {"completion_tokens", completion},
               {"ttft_ms", ttft},
               {"total_ms", total},
               {"finish", choices.empty() ? std::string("none")
                                          : std::string(engine::FinishReasonName(
                                                choices[0].result.finish_reason))},
               {"error", error ? error->message : std::string()}});
  }

  // Scheduler callbacks.
  bool OnToken(int32_t index, const engine::GenerationToken& t) {
    std::lock_guard lock(mutex);
    if (stream) return StreamToken(index, t);
    Choice& c = choices[static_cast<size_t>(index)];
    if (logprobs && t.sampled.token >= 0) {
      TokenLogprob entry = ToLogprob(*tok, t.sampled);
      entry.text_offset = c.chars + (echo_text.empty() ? 0 : CountChars(echo_text[index]));
      c.logprobs.push_back(std::move(entry));
    }
    c.chars += CountChars(t.text);
    c.text += t.text;
    return !Cancelled();
  }

  void OnDone(int32_t index, const engine::GenerationResult& r) {
    std::lock_guard lock(mutex);
    Choice& c = choices[static_cast<size_t>(index)];
    c.result = r;
    if (metrics) metrics->Record(meta.model, r);
    if (!r.status && !error) error = r.status.error();
    if (stream) StreamFinish(index);
    if (--remaining == 0) {
      FinishAll();
      lease.reset();  // the model may go idle now
    }
  }
};

// Everything a worker needs to run one request.
struct Submission {
  std::vector<std::vector<int32_t>> prompts;  // per prompt
  int32_t n = 1;
  GenerationParams params;
  std::function<Result<std::unique_ptr<engine::TokenConstraint>>()> make_constraint;
  bool keep_special_text = false;
};

// ---- Billing hooks (platform/metering.h, platform/billing.h) --------------------------------

// Runs `fn` on the request workers, off the scheduler thread (a database write must not stall
// generation); inline without a pool. The pool drops tasks posted after its shutdown began, so
// `yunzhi serve` shuts the models down (every request ends and posts its record) before it.
void OffThread(Job& job, std::function<void()> fn) {
  if (job.workers != nullptr) {
    try {
      job.workers->Post(fn);
      return;
    } catch (const std::exception&) {
    }
  }
  fn();
}

// Records the model load a request waited for (kind model_load, same request id) and charges
// its compute time.
void MeterColdStart(Job& job) {
  if (job.meter == nullptr || job.cold_load_ms < 0) return;
  platform::UsageRecord r;
  r.request_id = job.meta.id;
  r.kind = std::string(platform::kUsageModelLoad);
  r.tenant_id = job.tenant;
  r.key_id = job.key_id;
  r.model = job.meta.model;
  r.base_model = job.base_model;
  r.q.compute_ms = static_cast<int64_t>(job.cold_load_ms);
  std::optional<platform::UsageCharge> charge;
  if (job.billing != nullptr) {
    auto c = job.billing->ChargeRecord(r);
    if (c) {
      charge = std::move(*c);
    } else {
      log::Error("billing_charge_failed", {{"error", c.error().message}});
    }
  }
  if (auto s = job.meter->Submit(std::move(r), std::move(charge)); !s) {
    log::Error("usage_record_failed", {{"error", s.error().message}});
  }
}

// Reserves the request's maximum cost (every prompt token at the input price, every choice's
// max_tokens at the output price) and checks tokens/minute limits. On refusal completes the
// response with the 429 and returns false.
bool ReserveBudget(Job& job, const Submission& sub, int64_t n_ctx) {
  if (job.billing == nullptr) return true;
  int64_t prompt = 0, completion = 0;
  for (const auto& p : sub.prompts) {
    const int64_t len = static_cast<int64_t>(p.size());
    prompt += len;
    completion += sub.n * std::max<int64_t>(0, sub.params.max_tokens.value_or(n_ctx - len));
  }
  auto prices = job.billing->PricesFor(job.meta.model);
  if (!prices) {
    job.pending->Complete(ErrorResponse(prices.error()));
    return false;
  }
  job.prices = *prices;
  auto cost = platform::Billing::ChatCost(*prices, prompt, 0, completion);
  auto hold = cost ? job.billing->Reserve(job.tenant, job.key_id, *cost, prompt + completion)
                   : Result<platform::Hold>(cost.error());
  if (!hold) {
    job.pending->Complete(ErrorResponse(hold.error()));
    return false;
  }
  job.hold = std::move(*hold);
  return true;
}

// Gives the hold back untouched (the request failed before generating anything): nothing is
// charged, so nothing needs to reach the database.
void ReleaseBudget(Job& job) {
  if (job.billing == nullptr || !job.hold) return;
  if (auto s = job.billing->Settle(*job.hold, platform::Money()); !s) {
    log::Error("billing_release_failed", {{"error", s.error().message}});
  }
  job.hold.reset();
}

// Settles the request in the billing ledger and journals its usage record with the charge (a
// write(2), no fsync, no database: see platform/metering.h), before the response's last bytes
// leave, so a client never holds an answer whose usage could be lost.
void MeterAndSettle(Job& job, const Usage& usage) {
  platform::UsageRecord r;
  r.request_id = job.meta.id;
  r.kind = std::string(platform::kUsageChatTokens);
  r.tenant_id = job.tenant;
  r.key_id = job.key_id;
  r.model = job.meta.model;
  r.base_model = job.base_model;
  r.q.prompt_tokens = usage.prompt_tokens;
  r.q.cached_prompt_tokens = std::min(usage.cached_prompt_tokens, usage.prompt_tokens);
  r.q.completion_tokens = usage.completion_tokens;
  // Without a hold (a request answered without generating), the cost is charged all the same.
  platform::Hold hold = job.hold.value_or(platform::Hold{job.tenant, job.key_id, platform::Money(), false});
  job.hold.reset();
  std::optional<platform::UsageCharge> charge;
  if (job.billing != nullptr) {
    auto p = job.prices ? Result<platform::Prices>(*job.prices) : job.billing->PricesFor(r.model);
    auto cost = p ? platform::Billing::RecordCost(*p, r) : Result<platform::Money>(p.error());
    // A price that cannot be computed charges what was reserved (the maximum).
    auto settled = job.billing->Settle(hold, cost.value_or(hold.amount));
    if (settled) {
      charge = std::move(*settled);
    } else {
      log::Error("billing_settle_failed", {{"error", settled.error().message}});
    }
  }
  if (job.meter != nullptr) {
    if (auto s = job.meter->Submit(std::move(r), charge); !s) {
      log::Error("usage_record_failed", {{"error", s.error().message}});
    }
  } else if (charge) {
    // No meter (tests, tools): the charge goes to the database on a request worker.
    OffThread(job, [billing = job.billing, c = std::move(*charge)] {
      if (auto s = billing->Commit(c); !s) log::Error("billing_commit_failed", {{"error", s.error().message}});
    });
  }
}

// Submits every choice; on success completes the pending response with the stream (when
// streaming). On failure completes it with the error and cancels what was submitted.
void SubmitAll(const std::shared_ptr<Job>& job, Submission& sub) {
  serving::LoadedModel& lm = **job->lease;
  if (!ReserveBudget(*job, sub, lm.scheduler->n_ctx())) return;
  const int64_t n_choices = static_cast<int64_t>(sub.prompts.size()) * sub.n;
  job->choices.resize(static_cast<size_t>(n_choices));
  job->remaining = static_cast<int>(n_choices);
  job->n_prompts = sub.prompts.size();
  for (size_t p = 0; p < sub.prompts.size(); ++p) {
    for (int32_t i = 0; i < sub.n; ++i) job->prompt_tokens.push_back(static_cast<int64_t>(sub.prompts[p].size()));
  }
  if (job->stream && !job->out) job->out = std::make_shared<ResponseStream>();
  // Within the tenant's reserved throughput for this model: admitted ahead of best effort.
  int priority = 0;
  if (job->billing != nullptr) {
    int64_t tokens = 0;
    for (const auto& p : sub.prompts) {
      tokens += static_cast<int64_t>(p.size()) + sub.n * int64_t{sub.params.max_tokens.value_or(0)};
    }
    if (job->billing->TakeReservedThroughput(job->tenant, job->meta.model, tokens)) priority = 1;
  }
  std::vector<engine::GenerationRequest> requests;
  for (size_t p = 0; p < sub.prompts.size(); ++p) {
    for (int32_t i = 0; i < sub.n; ++i) {
      const int32_t index = static_cast<int32_t>(p) * sub.n + i;
      engine::GenerationRequest g;
      g.prompt = sub.prompts[p];
      g.options.max_tokens = sub.params.max_tokens.value_or(0);
      g.options.stop = sub.params.stop;
      g.options.sampling = sub.params.sampling;
      if (g.options.sampling.seed && index > 0) *g.options.sampling.seed += static_cast<uint64_t>(index);
      g.options.ignore_eos = sub.params.ignore_eos;
      g.fairness_key = job->tenant;
      g.priority = priority;
      g.keep_special_text = sub.keep_special_text;
      if (sub.make_constraint) {
        auto constraint = sub.make_constraint();
        if (!constraint) {
          ReleaseBudget(*job);
          job->pending->Complete(ErrorResponse(constraint.error()));
          return;
        }
        g.constraint = std::move(*constraint);
      }
      if (job->parse_tools && job->stream) {
        job->choices[static_cast<size_t>(index)].tool_parser =
            std::make_unique<engine::ToolCallStreamParser>(job->syntax);
      }
      std::weak_ptr<Job> weak = job;
      g.cancelled = [weak] {
        auto j = weak.lock();
        return !j || j->Cancelled();
      };
      g.on_token = [job, index](const engine::GenerationToken& t) { return job->OnToken(index, t); };
      g.on_done = [job, index](const engine::GenerationResult& r) { job->OnDone(index, r); };
      requests.push_back(std::move(g));
    }
  }
  // Submit every choice before answering: a full queue must still be a 429, not an event in a
  // 200 stream. The lock holds the callbacks back until every choice is in.
  std::lock_guard lock(job->mutex);
  std::vector<engine::RequestHandle> handles;
  for (auto& g : requests) {
    auto h = lm.scheduler->Submit(std::move(g));
    if (!h) {
      for (auto& handle : handles) handle.Cancel();
      job->remaining = 1 << 30;  // the cancelled ones' on_done must not finish the response
      ReleaseBudget(*job);  // what was submitted is cancelled before producing billable output
      if (job->out) job->out->Cancel();
      job->pending->Complete(ErrorResponse(h.error()));
      return;
    }
    handles.push_back(*h);
  }
  if (job->stream) {
    // The role goes out with each choice's first token (StreamToken), keeping choices in order.
    HttpResponse r;
    r.content_type = "text/event-stream";
    r.stream = job->out;
    job->pending->Complete(std::move(r));
  }
}

std::vector<engine::ToolSpec> ToolSpecs(const ChatCompletionRequest& req) {
  std::vector<engine::ToolSpec> specs;
  for (const auto& t : req.tools) specs.push_back({t.name, t.parameters_json});
  return specs;
}

// ---------------------------------------------------------------------------------------------

// Acquires the model (loading it on a cold start) and starts the request's Job; on failure
// completes `pending` with the error and returns null.
std::shared_ptr<Job> StartJob(const AppContext& ctx, const InferenceMetrics* metrics,
                              std::shared_ptr<PendingResponse>& pending, std::string tenant,
                              const std::string& request_id, const std::string& model,
                              const GenerationParams& params, Job::Kind kind) {
  auto lease = ctx.models->Acquire(model, params.keep_alive_ms);
  if (!lease) {
    pending->Complete(ErrorResponse(lease.error()));
    return nullptr;
  }
  if (lease->cold_start() && metrics->cold_starts) {
    metrics->cold_starts->WithLabels({model}).Increment();
  }
  auto job = std::make_shared<Job>();
  job->kind = kind;
  job->metrics = metrics;
  job->tenant = std::move(tenant);
  job->request_id = request_id;
  job->pending = std::move(pending);
  job->lease = std::make_shared<serving::Lease>(std::move(*lease));
  job->tok = &(*job->lease)->model->tokenizer();
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  job->meta = {NewResponseId(kind == Job::Kind::kChat ? "chatcmpl" : "cmpl"),
               std::chrono::duration_cast<std::chrono::seconds>(now).count(), model,
               "fp_yunzhi"};
  job->stream = params.stream;
  job->include_usage = params.include_usage;
  job->meter = ctx.meter;
  job->billing = ctx.billing;
  job->workers = ctx.workers;
  job->base_model = (*job->lease)->source.name;
  if (job->lease->cold_start()) job->cold_load_ms = (*job->lease)->load_ms;
  return job;
}

void RunChat(const AppContext& ctx, const InferenceMetrics* metrics,
             std::shared_ptr<PendingResponse> pending, const platform::Principal& principal,
             ClientSet client_set, std::string request_id,
             std::shared_ptr<ChatCompletionRequest> req) {
  log::ScopedRequestId scoped(request_id);
  if (pending->cancelled()) return;
  // A derived model: retrieval and its layers turn the request into one for its base model.
  auto derived = PrepareDerivedChat(ctx, principal, client_set, *req);
  if (!derived) {
    pending->Complete(ErrorResponse(derived.error()));
    return;
  }
  auto job = StartJob(ctx, metrics, pending, principal.tenant_id, request_id, req->model,
                      req->params, Job::Kind::kChat);
  if (!job) return;
  if (*derived) {
    job->meta.model = (*derived)->called_model;
    job->derived = std::make_shared<const DerivedChat>(std::move(**derived));
    Audit(ctx, principal, "model.answer", job->meta.model, [&] {
      json::object details{{"request_id", request_id}};
      json::array docs;
      for (const auto& h : job->derived->sources) docs.emplace_back(h.document_id);
      details["documents"] = std::move(docs);
      return details;
    }());
  }
  job->key_id = principal.key_id;
  MeterColdStart(*job);
  serving::LoadedModel& lm = **job->lease;
  const engine::Model& model = *lm.model;
  const engine::Tokenizer& tok = model.tokenizer();
  job->logprobs = req->params.sampling.logprobs || req->params.sampling.top_logprobs > 0;

  const bool use_tools = !req->tools.empty() && req->tool_choice.mode != ToolChoice::Mode::kNone;
  engine::ChatInput input;
  input.messages = req->messages;
  if (use_tools) input.tools = req->tools_value;
  input.add_generation_prompt = true;
  input.extra = req->chat_template_kwargs;
  auto prompt = lm.chat->Format(std::move(input));
  if (!prompt) {
    job->pending->Complete(ErrorResponse(prompt.error()));
    return;
  }
  if (auto s = req->params.sampling.Validate(tok.n_vocab()); !s) {
    job->pending->Complete(ErrorResponse(s.error()));
    return;
  }

  Submission sub;
  sub.prompts.push_back(std::move(*prompt));
  sub.n = req->params.n;
  sub.params = req->params;
  job->syntax = engine::DetectToolCallSyntax(model.chat_template());
  if (job->syntax == engine::ToolCallSyntax::kNone) job->syntax = engine::ToolCallSyntax::kHermes;
  job->parse_tools = use_tools;
  sub.keep_special_text = use_tools;
  const auto mode = req->tool_choice.mode;
  if (use_tools && (mode == ToolChoice::Mode::kRequired || mode == ToolChoice::Mode::kFunction)) {
    std::optional<std::string> forced;
    if (mode == ToolChoice::Mode::kFunction) forced = req->tool_choice.function_name;
    auto specs = std::make_shared<std::vector<engine::ToolSpec>>(ToolSpecs(*req));
    const engine::ToolCallSyntax syntax = job->syntax;
    sub.make_constraint = [&tok, specs, syntax, forced]() -> Result<std::unique_ptr<engine::TokenConstraint>> {
      YZ_ASSIGN_OR_RETURN(auto c, engine::MakeToolCallConstraint(tok, syntax, *specs, forced));
      return std::unique_ptr<engine::TokenConstraint>(std::move(c));
    };
  } else if (req->response_format.type != ResponseFormat::Type::kText) {
    engine::JsonConstraintOptions options;
    if (req->response_format.type == ResponseFormat::Type::kJsonSchema &&
        !req->response_format.schema_json.empty()) {
      options.schema = req->response_format.schema_json;
    }
    sub.make_constraint = [&tok, options]() -> Result<std::unique_ptr<engine::TokenConstraint>> {
      YZ_ASSIGN_OR_RETURN(auto c, engine::MakeJsonConstraint(tok, options));
      return std::unique_ptr<engine::TokenConstraint>(std::move(c));
    };
  }
  SubmitAll(job, sub);
}

void RunCompletion(const AppContext& ctx, const InferenceMetrics* metrics,
                   std::shared_ptr<PendingResponse> pending, std::string tenant,
                   std::string request_id, std::shared_ptr<CompletionRequest> req,
                   std::string key_id = {}) {
  log::ScopedRequestId scoped(request_id);
  if (pending->cancelled()) return;
  if (req->suffix && !req->suffix->empty()) {
    pending->Complete(ErrorResponse(InvalidArgumentError(
        "'suffix' (fill-in-the-middle) is not supported by this server", "suffix")));
    return;
  }
  if (req->echo && req->logprobs) {
    pending->Complete(ErrorResponse(InvalidArgumentError(
        "'echo' together with 'logprobs' (prompt logprobs) is not supported yet", "echo")));
    return;
  }
  auto job = StartJob(ctx, metrics, pending, std::move(tenant), request_id, req->model,
                      req->params, Job::Kind::kCompletion);
  if (!job) return;
  job->key_id = std::move(key_id);
  MeterColdStart(*job);
  serving::LoadedModel& lm = **job->lease;
  const engine::Tokenizer& tok = lm.model->tokenizer();
  job->logprobs = req->logprobs.has_value();

  Submission sub;
  sub.n = req->params.n;
  sub.params = req->params;
  std::vector<std::string> prompt_texts;
  for (const CompletionPrompt& p : req->prompts) {
    std::vector<int32_t> ids;
    if (const auto* text = std::get_if<std::string>(&p)) {
      ids = tok.Encode(*text, {.add_special = true});
      prompt_texts.push_back(*text);
    } else {
      ids = std::get<std::vector<int32_t>>(p);
      for (int32_t id : ids) {
        if (!tok.IsValid(id)) {
          job->pending->Complete(ErrorResponse(InvalidArgumentError(
              fmt::format("token id {} is outside the model's vocabulary [0, {})", id,
                          tok.n_vocab()),
              "prompt")));
          return;
        }
      }
      prompt_texts.push_back(tok.Decode(ids));
    }
    if (ids.empty()) {
      job->pending->Complete(
          ErrorResponse(InvalidArgumentError("the prompt is empty", "prompt")));
      return;
    }
    sub.prompts.push_back(std::move(ids));
  }
  if (req->echo) {
    for (const auto& text : prompt_texts) {
      for (int32_t i = 0; i < sub.n; ++i) job->echo_text.push_back(text);
    }
  }
  if (auto s = req->params.sampling.Validate(tok.n_vocab()); !s) {
    job->pending->Complete(ErrorResponse(s.error()));
    return;
  }
  // max_tokens 0 asks for no generation (echo only): answer without the scheduler.
  if (sub.params.max_tokens && *sub.params.max_tokens == 0) {
    std::lock_guard lock(job->mutex);
    const size_t n = sub.prompts.size() * static_cast<size_t>(sub.n);
    job->choices.resize(n);
    job->n_prompts = sub.prompts.size();
    for (size_t p = 0; p < sub.prompts.size(); ++p) {
      for (int32_t i = 0; i < sub.n; ++i) job->prompt_tokens.push_back(static_cast<int64_t>(sub.prompts[p].size()));
    }
    if (job->stream) {
      job->out = std::make_shared<ResponseStream>();
      HttpResponse r;
      r.content_type = "text/event-stream";
      r.stream = job->out;
      for (size_t i = 0; i < n; ++i) {
        CompletionChoice c{static_cast<int32_t>(i), job->echo_text.empty() ? "" : job->echo_text[i],
                           FinishReason::kLength, std::nullopt};
        job->Write(TextCompletionChunkJson(job->meta, {&c, 1}, job->include_usage));
      }
      job->pending->Complete(std::move(r));
    }
    for (auto& c : job->choices) c.result.finish_reason = engine::FinishReason::kLength;
    job->FinishAll();
    return;
  }
  if (job->stream && req->echo) {
    // The echoed prompt goes first, as its own chunk per choice.
    job->out = std::make_shared<ResponseStream>();
    for (size_t i = 0; i < job->echo_text.size(); ++i) {
      CompletionChoice c{static_cast<int32_t>(i), job->echo_text[i], std::nullopt, std::nullopt};
      job->out->Write(SseEvent(TextCompletionChunkJson(job->meta, {&c, 1}, job->include_usage)));
    }
    SubmitAll(job, sub);
    return;
  }
  SubmitAll(job, sub);
}

// The model's tokenizer for /tokenize and /detokenize.
void RunTokenize(const AppContext& ctx, std::shared_ptr<PendingResponse> pending,
                 std::shared_ptr<TokenizeRequest> req) {
  auto lease = ctx.models->Acquire(req->model);
  if (!lease) {
    pending->Complete(ErrorResponse(lease.error()));
    return;
  }
  serving::LoadedModel& lm = **lease;
  const engine::Tokenizer& tok = lm.model->tokenizer();
  std::vector<int32_t> ids;
  if (req->prompt) {
    ids = tok.Encode(*req->prompt, {.add_special = req->add_special_tokens});
  } else {
    engine::ChatInput input;
    input.messages = req->messages;
    input.tools = req->tools_value;
    input.add_generation_prompt = req->add_generation_prompt;
    auto rendered = lm.chat->Render(std::move(input));
    if (!rendered) {
      pending->Complete(ErrorResponse(rendered.error()));
      return;
    }
    ids = lm.chat->Tokenize(*rendered);
  }
  std::vector<std::string> strs;
  if (req->return_token_strs) {
    for (int32_t id : ids) strs.push_back(tok.TokenToPiece(id));
  }
  pending->Complete(HttpResponse::Json(
      200, TokenizeResponseJson(ids, lm.scheduler->n_ctx(), req->return_token_strs ? &strs : nullptr)));
}

void RunDetokenize(const AppContext& ctx, std::shared_ptr<PendingResponse> pending,
                   std::shared_ptr<DetokenizeRequest> req) {
  auto lease = ctx.models->Acquire(req->model);
  if (!lease) {
    pending->Complete(ErrorResponse(lease.error()));
    return;
  }
  const engine::Tokenizer& tok = (*lease)->model->tokenizer();
  for (int32_t id : req->tokens) {
    if (!tok.IsValid(id)) {
      pending->Complete(ErrorResponse(InvalidArgumentError(
          fmt::format("token id {} is outside the model's vocabulary [0, {})", id, tok.n_vocab()),
          "tokens")));
      return;
    }
  }
  pending->Complete(HttpResponse::Json(200, DetokenizeResponseJson(tok.Decode(req->tokens))));
}

json::object PsJson(const serving::LoadedModelInfo& m) {
  json::object o{{"name", m.name},
                 {"model", m.name},
                 {"id", m.id},
                 {"architecture", m.architecture},
                 {"kind", m.kind},
                 {"size_bytes", m.weight_bytes + m.kv_bytes},
                 {"weight_bytes", m.weight_bytes},
                 {"kv_cache_bytes", m.kv_bytes},
                 {"context_length", m.n_ctx},
                 {"active_requests", m.leases},
                 {"running", m.stats.running},
                 {"waiting", m.stats.waiting},
                 {"kv_blocks", json::object{{"total", m.stats.kv_blocks_total},
                                            {"free", m.stats.kv_blocks_free},
                                            {"used", m.stats.kv_blocks_used},
                                            {"cached", m.stats.kv_blocks_cached},
                                            {"block_tokens", m.stats.block_tokens}}},
                 {"prompt_tokens", m.stats.prompt_tokens},
                 {"cached_prompt_tokens", m.stats.cached_prompt_tokens},
                 {"generated_tokens", m.stats.generated_tokens},
                 {"loaded_at", m.loaded_at_ms / 1000},
                 {"cold_start_ms", m.load_ms}};
  if (m.expires_at_ms) {
    o["expires_at"] = *m.expires_at_ms / 1000;
  } else {
    o["expires_at"] = nullptr;
  }
  return o;
}

}  // namespace

void RegisterOpenAiRoutes(Router& r, const AppContext& ctx) {
  // Shared by every handler; lives as long as the router (leaked deliberately with it).
  auto metrics = std::make_shared<InferenceMetrics>(ctx.metrics);

  r.Add("POST", "/v1/chat/completions",
        Authed(ctx, Scope::kInference, [ctx, metrics](HttpRequest& req, const Principal& p) {
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto parsed = ParseChatCompletionRequest(*body);
          if (!parsed) return HttpResponse::FromError(parsed.error());
          auto shared = std::make_shared<ChatCompletionRequest>(std::move(*parsed));
          return DeferToWorker(ctx, "inference", [ctx, metrics, shared, p, set = ClientSetOf(*body),
                             rid = req.request_id](std::shared_ptr<PendingResponse> pending) {
            RunChat(ctx, metrics.get(), std::move(pending), p, set, rid, shared);
          });
        }));
  r.Add("POST", "/v1/completions",
        Authed(ctx, Scope::kInference, [ctx, metrics](HttpRequest& req, const Principal& p) {
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto parsed = ParseCompletionRequest(*body);
          if (!parsed) return HttpResponse::FromError(parsed.error());
          auto shared = std::make_shared<CompletionRequest>(std::move(*parsed));
          return DeferToWorker(ctx, "inference", [ctx, metrics, shared, tenant = p.tenant_id, key = p.key_id,
                             rid = req.request_id](std::shared_ptr<PendingResponse> pending) {
            RunCompletion(ctx, metrics.get(), std::move(pending), tenant, rid, shared, key);
          });
        }));
  r.Add("POST", "/tokenize",
        Authed(ctx, Scope::kInference, [ctx](HttpRequest& req, const Principal&) {
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto parsed = ParseTokenizeRequest(*body);
          if (!parsed) return HttpResponse::FromError(parsed.error());
          auto shared = std::make_shared<TokenizeRequest>(std::move(*parsed));
          return DeferToWorker(ctx, "inference", [ctx, shared](std::shared_ptr<PendingResponse> pending) {
            RunTokenize(ctx, std::move(pending), shared);
          });
        }));
  r.Add("POST", "/detokenize",
        Authed(ctx, Scope::kInference, [ctx](HttpRequest& req, const Principal&) {
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto parsed = ParseDetokenizeRequest(*body);
          if (!parsed) return HttpResponse::FromError(parsed.error());
          auto shared = std::make_shared<DetokenizeRequest>(std::move(*parsed));
          return DeferToWorker(ctx, "inference", [ctx, shared](std::shared_ptr<PendingResponse> pending) {
            RunDetokenize(ctx, std::move(pending), shared);
          });
        }));
  r.Add("GET", "/api/ps", Authed(ctx, Scope::kRead, [ctx](HttpRequest&, const Principal&) {
          json::array data;
          if (ctx.models != nullptr) {
            for (const auto& m : ctx.models->List()) data.push_back(PsJson(m));
          }
          return JsonResponse(200, json::object{{"object", "list"}, {"data", std::move(data)}});
        }));
  r.Add("DELETE", "/api/ps/{name...}",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (!p.IsPlatformAdmin()) {
            return HttpResponse::FromError(Error(Code::kPermissionDenied,
                                                 "unloading models needs a platform admin key",
                                                 "", "insufficient_scope"));
          }
          if (ctx.models == nullptr) {
            return HttpResponse::FromError(UnavailableError("this server does not serve models"));
          }
          const std::string& name = req.path_params["name"];
          if (auto s = ctx.models->Unload(name); !s) return HttpResponse::FromError(s.error());
          return JsonResponse(200, json::object{{"name", name}, {"unloaded", true}});
        }));
}

}  // namespace yunzhi::api
