// The batch scheduler: continuous batching must not change what a greedy request generates
// (alone, in a batch of 8 with other prompt lengths, after a prefix-cache hit, after being
// preempted), and its admission control, fairness, cancellation and shutdown keep their word.
#include "yunzhi/engine/scheduler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/process.h"
#include "model_writer.h"
#include "yunzhi/engine/generate.h"
#include "yunzhi/engine/prefix_cache.h"

namespace yunzhi::engine {
namespace {

using yunzhi::testing::TempDir;

const std::string kStories = std::string(YUNZHI_TESTDATA_DIR) + "/models/stories260K.gguf";

// Collects one request's events; Wait blocks until on_done ran.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  std::string text;
  GenerationResult result;
  bool done = false;
  int order = -1;  // completion order, when a shared counter is given
  std::atomic<int>* counter = nullptr;
  bool cancel_after_first = false;

  void Attach(GenerationRequest& r) {
    r.on_token = [this](const GenerationToken& t) {
      std::lock_guard l(mu);
      if (t.sampled.token >= 0) tokens.push_back(t.sampled.token);
      text += t.text;
      return !(cancel_after_first && tokens.size() >= 2);
    };
    r.on_done = [this](const GenerationResult& res) {
      std::lock_guard l(mu);
      result = res;
      done = true;
      if (counter) order = (*counter)++;
      cv.notify_all();
    };
  }
  bool Wait(std::chrono::seconds timeout = std::chrono::seconds(60)) {
    std::unique_lock l(mu);
    return cv.wait_for(l, timeout, [&] { return done; });
  }
};

std::vector<int32_t> Prompt(int64_t n, int32_t salt, int32_t n_vocab) {
  std::vector<int32_t> p;
  for (int64_t i = 0; i < n; ++i) p.push_back(static_cast<int32_t>((i * 7 + salt * 13 + 3) % n_vocab));
  return p;
}

// on_done runs before the step's stats snapshot is published: poll for a stats condition.
template <typename Pred>
bool Eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

GenerationRequest Greedy(std::vector<int32_t> prompt, int64_t max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.options.max_tokens = max_tokens;
  r.options.sampling.temperature = 0.0f;
  r.options.ignore_eos = true;  // always the full length: a stronger comparison
  return r;
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tools::ModelSpec spec;
    spec.architecture = Architecture::kQwen2;
    spec.weight_type = TensorType::kQ8_0;
    ASSERT_TRUE(tools::WriteModel(spec, {.gguf_path = dir_.path() + "/m.gguf"}));
    auto model = Model::Load(dir_.path() + "/m.gguf");
    ASSERT_TRUE(model) << model.error().ToString();
    model_ = *model;
    n_vocab_ = static_cast<int32_t>(model_->config().n_vocab);
  }

  std::unique_ptr<Scheduler> Make(SchedulerOptions options = {}, int64_t n_ctx = 256,
                                   int64_t n_blocks = 128) {
    RunnerOptions ro;
    ro.n_threads = 2;
    ro.n_ctx = n_ctx;
    ro.kv_cache.n_blocks = n_blocks;
    auto runner = ModelRunner::Create(model_, ro);
    EXPECT_TRUE(runner) << runner.error().ToString();
    auto s = Scheduler::Create(std::move(*runner), options);
    EXPECT_TRUE(s) << s.error().ToString();
    return std::move(*s);
  }

  // The reference: the single-sequence driver on its own runner.
  std::vector<int32_t> Alone(const std::vector<int32_t>& prompt, int64_t max_tokens) {
    RunnerOptions ro;
    ro.n_threads = 2;
    ro.n_ctx = 256;
    auto runner = ModelRunner::Create(model_, ro);
    EXPECT_TRUE(runner);
    GenerateOptions o;
    o.max_tokens = max_tokens;
    o.sampling.temperature = 0.0f;
    o.ignore_eos = true;
    auto r = Generate(**runner, prompt, o);
    EXPECT_TRUE(r) << r.error().ToString();
    return r->tokens;
  }

  TempDir dir_;
  std::shared_ptr<const Model> model_;
  int32_t n_vocab_ = 0;
};

TEST_F(SchedulerTest, GreedyTokensAreTheSameAloneAndInABatchOfEight) {
  auto scheduler = Make();
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(Prompt(5 + 23 * i, i, n_vocab_));
  std::vector<Collector> c(8);
  for (int i = 0; i < 8; ++i) {
    GenerationRequest r = Greedy(prompts[i], 24);
    c[i].Attach(r);
    ASSERT_TRUE(scheduler->Submit(std::move(r)));
  }
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(c[i].Wait());
    EXPECT_TRUE(c[i].result.status) << c[i].result.status.error().ToString();
    EXPECT_EQ(c[i].result.finish_reason, FinishReason::kLength);
    EXPECT_EQ(c[i].result.completion_tokens, 24);
    EXPECT_EQ(c[i].tokens, Alone(prompts[i], 24)) << "request " << i;
  }
  // Everything given back, except what the prefix cache keeps.
  EXPECT_TRUE(Eventually([&] { return scheduler->stats().completed == 8; }));
  SchedulerStats st = scheduler->stats();
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.kv_blocks_free + st.kv_blocks_cached, st.kv_blocks_total);
}

TEST_F(SchedulerTest, RealModelStreamsTheSameTextInABatch) {
  auto loaded = Model::Load(kStories);
  ASSERT_TRUE(loaded) << loaded.error().ToString();
  model_ = *loaded;
  auto scheduler = Make({}, 256, 64);
  const Tokenizer& tok = model_->tokenizer();
  std::vector<std::string> texts = {"Once upon a time", "The cat sat", "Lily and Tom went to the park"};
  std::vector<Collector> c(texts.size());
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i = 0; i < texts.size(); ++i) {
    prompts.push_back(tok.Encode(texts[i], {.add_special = true}));
    GenerationRequest r = Greedy(prompts[i], 40);
    r.options.ignore_eos = false;
    c[i].Attach(r);
    ASSERT_TRUE(scheduler->Submit(std::move(r)));
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_TRUE(c[i].Wait());
    RunnerOptions ro;
    ro.n_threads = 2;
    ro.n_ctx = 256;
    auto runner = ModelRunner::Create(model_, ro);
    ASSERT_TRUE(runner);
    GenerateOptions o;
    o.max_tokens = 40;
    o.sampling.temperature = 0.0f;
    auto alone = Generate(**runner, prompts[i], o);
    ASSERT_TRUE(alone);
    EXPECT_EQ(c[i].text, alone->text);
    EXPECT_FALSE(c[i].text.empty());
    EXPECT_EQ(c[i].result.finish_reason, FinishReason::kLength);
  }
}

TEST_F(SchedulerTest, PrefixCacheHitSkipsTheSharedPrefixAndGivesTheSameTokens) {
  auto scheduler = Make();
  const std::vector<int32_t> prefix = Prompt(100, 9, n_vocab_);
  std::vector<int32_t> p1 = prefix, p2 = prefix;
  p1.push_back(5);
  p2.push_back(6);
  p2.push_back(7);

  Collector first;
  GenerationRequest r1 = Greedy(p1, 16);
  first.Attach(r1);
  ASSERT_TRUE(scheduler->Submit(std::move(r1)));
  ASSERT_TRUE(first.Wait());
  EXPECT_EQ(first.result.cached_prompt_tokens, 0);

  Collector second;
  GenerationRequest r2 = Greedy(p2, 16);
  second.Attach(r2);
  ASSERT_TRUE(scheduler->Submit(std::move(r2)));
  ASSERT_TRUE(second.Wait());
  // All 100 shared tokens reused: 6 full blocks of 16, plus the first 4 positions of the next
  // block, copied.
  EXPECT_EQ(second.result.cached_prompt_tokens, 100);
  EXPECT_EQ(second.tokens, Alone(p2, 16));

  // The same prompt again: everything but the last token comes from the cache (the last token
  // is computed for its logits), and the output is identical.
  Collector again;
  GenerationRequest r3 = Greedy(p1, 16);
  again.Attach(r3);
  ASSERT_TRUE(scheduler->Submit(std::move(r3)));
  ASSERT_TRUE(again.Wait());
  EXPECT_EQ(again.result.cached_prompt_tokens, 100);
  EXPECT_EQ(again.tokens, first.tokens);
  EXPECT_TRUE(Eventually([&] { return scheduler->stats().cached_prompt_tokens == 200; }));
}

TEST_F(SchedulerTest, WithoutPrefixCachingNothingIsReused) {
  SchedulerOptions o;
  o.prefix_caching = false;
  auto scheduler = Make(o);
  const std::vector<int32_t> p = Prompt(70, 2, n_vocab_);
  for (int i = 0; i < 2; ++i) {
    Collector c;
    GenerationRequest r = Greedy(p, 4);
    c.Attach(r);
    ASSERT_TRUE(scheduler->Submit(std::move(r)));
    ASSERT_TRUE(c.Wait());
    EXPECT_EQ(c.result.cached_prompt_tokens, 0);
  }
  EXPECT_TRUE(Eventually(
      [&] { return scheduler->stats().kv_blocks_free == scheduler->stats().kv_blocks_total; }));
}

TEST_F(SchedulerTest, ShortKvPoolPreemptsAndStillGivesTheSameTokens) {
  // 8 blocks of 16 = 128 positions for 4 requests that each grow to 30 + 40 = 70 tokens.
  SchedulerOptions o;
  o.max_running = 4;
  o.prefix_caching = false;
  auto scheduler = Make(o, 128, 8);
  std::vector<Collector> c(4);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 4; ++i) {
    prompts.push_back(Prompt(30, 20 + i, n_vocab_));
    GenerationRequest r = Greedy(prompts[i], 40);
    c[i].Attach(r);
    ASSERT_TRUE(scheduler->Submit(std::move(r)));
  }
  int preemptions = 0;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(c[i].Wait());
    EXPECT_TRUE(c[i].result.status);
    EXPECT_EQ(c[i].tokens, Alone(prompts[i], 40)) << "request " << i;
    preemptions += c[i].result.preemptions;
  }
  EXPECT_GT(preemptions, 0);
  EXPECT_TRUE(Eventually([&] { return scheduler->stats().kv_blocks_free == 8; }));
}

TEST_F(SchedulerTest, FullQueueIsRefusedAndOverlongPromptsAreInvalid) {
  SchedulerOptions o;
  o.max_running = 1;
  o.max_waiting = 2;
  std::vector<Collector> c(3);  // outlives the scheduler, whose shutdown calls on_done
  auto scheduler = Make(o);
  int accepted = 0, refused = 0;
  for (int i = 0; i < 6; ++i) {
    GenerationRequest r = Greedy(Prompt(10, i, n_vocab_), 200);
    Collector* col = i < 3 ? &c[i] : nullptr;
    if (col) col->Attach(r);
    auto h = scheduler->Submit(std::move(r));
    if (h) {
      ++accepted;
    } else {
      EXPECT_EQ(h.error().code, Code::kResourceExhausted);
      EXPECT_EQ(h.error().detail, "queue_full");
      ++refused;
    }
  }
  EXPECT_GE(refused, 1);
  EXPECT_LE(accepted, 5);  // one may already be running, then two wait

  auto too_long = scheduler->Submit(Greedy(Prompt(256, 1, n_vocab_), 1));
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().code, Code::kInvalidArgument);
  EXPECT_EQ(too_long.error().detail, "context_length_exceeded");
  auto empty = scheduler->Submit(Greedy({}, 1));
  ASSERT_FALSE(empty);
  auto bad_token = scheduler->Submit(Greedy({n_vocab_}, 1));
  ASSERT_FALSE(bad_token);
  EXPECT_EQ(bad_token.error().code, Code::kInvalidArgument);
}

TEST_F(SchedulerTest, CancelFreesTheBlocksAtTheNextStep) {
  SchedulerOptions o;
  o.prefix_caching = false;
  auto scheduler = Make(o);
  Collector a, b;
  GenerationRequest ra = Greedy(Prompt(40, 1, n_vocab_), 200);
  a.Attach(ra);
  auto handle = scheduler->Submit(std::move(ra));
  ASSERT_TRUE(handle);
  GenerationRequest rb = Greedy(Prompt(40, 2, n_vocab_), 200);
  b.cancel_after_first = true;  // on_token returns false after two tokens
  b.Attach(rb);
  ASSERT_TRUE(scheduler->Submit(std::move(rb)));
  ASSERT_TRUE(b.Wait());
  EXPECT_EQ(b.result.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(b.tokens.size(), 2u);
  handle->Cancel();
  ASSERT_TRUE(a.Wait());
  EXPECT_EQ(a.result.finish_reason, FinishReason::kCancelled);
  EXPECT_LT(a.result.completion_tokens, 200);
  EXPECT_TRUE(Eventually([&] { return scheduler->stats().kv_blocks_free == 128; }));
}

TEST_F(SchedulerTest, PolledCancellationStopsAWaitingRequestToo) {
  SchedulerOptions o;
  o.max_running = 1;
  auto scheduler = Make(o);
  Collector busy, queued;
  GenerationRequest r1 = Greedy(Prompt(20, 1, n_vocab_), 200);
  busy.Attach(r1);
  auto h1 = scheduler->Submit(std::move(r1));
  std::atomic<bool> gone{false};
  GenerationRequest r2 = Greedy(Prompt(20, 2, n_vocab_), 10);
  r2.cancelled = [&gone] { return gone.load(); };
  queued.Attach(r2);
  ASSERT_TRUE(scheduler->Submit(std::move(r2)));
  gone = true;
  ASSERT_TRUE(queued.Wait());
  EXPECT_EQ(queued.result.finish_reason, FinishReason::kCancelled);
  EXPECT_TRUE(queued.tokens.empty());
  h1->Cancel();
  ASSERT_TRUE(busy.Wait());
}

TEST_F(SchedulerTest, AdmissionIsRoundRobinAcrossFairnessKeys) {
  SchedulerOptions o;
  o.max_running = 1;
  auto scheduler = Make(o);
  std::atomic<int> counter{0};
  std::vector<Collector> flood(4);
  Collector other;
  // Hold the scheduler busy so that everything below queues before the first admission.
  Collector blocker;
  GenerationRequest rb = Greedy(Prompt(8, 0, n_vocab_), 30);
  rb.fairness_key = "tenant-a";
  blocker.Attach(rb);
  ASSERT_TRUE(scheduler->Submit(std::move(rb)));
  for (int i = 0; i < 4; ++i) {
    GenerationRequest r = Greedy(Prompt(8, i + 1, n_vocab_), 4);
    r.fairness_key = "tenant-a";
    flood[i].counter = &counter;
    flood[i].Attach(r);
    ASSERT_TRUE(scheduler->Submit(std::move(r)));
  }
  GenerationRequest ro = Greedy(Prompt(8, 9, n_vocab_), 4);
  ro.fairness_key = "tenant-b";
  other.counter = &counter;
  other.Attach(ro);
  ASSERT_TRUE(scheduler->Submit(std::move(ro)));
  ASSERT_TRUE(blocker.Wait());
  for (auto& f : flood) ASSERT_TRUE(f.Wait());
  ASSERT_TRUE(other.Wait());
  // tenant-b's one request goes right after the first of tenant-a's four queued ones (or first).
  EXPECT_LE(other.order, 1);
}

TEST_F(SchedulerTest, AHigherPriorityIsAdmittedBeforeEveryLowerOne) {
  SchedulerOptions o;
  o.max_running = 1;
  auto scheduler = Make(o);
  std::atomic<int> counter{0};
  std::vector<Collector> best_effort(4);
  Collector reserved;
  Collector blocker;
  GenerationRequest rb = Greedy(Prompt(8, 0, n_vocab_), 30);
  rb.fairness_key = "tenant-a";
  blocker.Attach(rb);
  ASSERT_TRUE(scheduler->Submit(std::move(rb)));
  // Best effort from two tenants, then one reserved-throughput request submitted last.
  for (int i = 0; i < 4; ++i) {
    GenerationRequest r = Greedy(Prompt(8, i + 1, n_vocab_), 4);
    r.fairness_key = i % 2 == 0 ? "tenant-a" : "tenant-c";
    best_effort[i].counter = &counter;
    best_effort[i].Attach(r);
    ASSERT_TRUE(scheduler->Submit(std::move(r)));
  }
  GenerationRequest rr = Greedy(Prompt(8, 9, n_vocab_), 4);
  // Round robin alone would serve tenant-c (next after tenant-a) before tenant-z.
  rr.fairness_key = "tenant-z";
  rr.priority = 1;
  reserved.counter = &counter;
  reserved.Attach(rr);
  ASSERT_TRUE(scheduler->Submit(std::move(rr)));
  ASSERT_TRUE(blocker.Wait());
  for (auto& f : best_effort) ASSERT_TRUE(f.Wait());
  ASSERT_TRUE(reserved.Wait());
  // Without the priority, round robin would have put it second at best.
  EXPECT_EQ(reserved.order, 0);
}

TEST_F(SchedulerTest, StopStringEndsWithStopAndHeldTextIsFlushedAtTheLimit) {
  auto loaded = Model::Load(kStories);
  ASSERT_TRUE(loaded);
  model_ = *loaded;
  auto scheduler = Make({}, 256, 64);
  const auto prompt = model_->tokenizer().Encode("Once upon a time", {.add_special = true});
  // Find what greedy generates, then stop on a word inside it.
  Collector free_run;
  GenerationRequest r = Greedy(prompt, 30);
  r.options.ignore_eos = false;
  free_run.Attach(r);
  ASSERT_TRUE(scheduler->Submit(std::move(r)));
  ASSERT_TRUE(free_run.Wait());
  const std::string& text = free_run.text;
  ASSERT_GT(text.size(), 20u);
  const std::string stop = text.substr(10, 4);
  Collector stopped;
  GenerationRequest rs = Greedy(prompt, 30);
  rs.options.ignore_eos = false;
  rs.options.stop = {stop};
  stopped.Attach(rs);
  ASSERT_TRUE(scheduler->Submit(std::move(rs)));
  ASSERT_TRUE(stopped.Wait());
  EXPECT_EQ(stopped.result.finish_reason, FinishReason::kStop);
  EXPECT_EQ(stopped.text, text.substr(0, text.find(stop)));
}

TEST_F(SchedulerTest, ShutdownEndsQueuedAndRunningRequests) {
  SchedulerOptions o;
  o.max_running = 1;
  auto scheduler = Make(o);
  Collector a, b;
  GenerationRequest ra = Greedy(Prompt(20, 1, n_vocab_), 250 - 20);
  a.Attach(ra);
  ASSERT_TRUE(scheduler->Submit(std::move(ra)));
  GenerationRequest rb = Greedy(Prompt(20, 2, n_vocab_), 10);
  b.Attach(rb);
  ASSERT_TRUE(scheduler->Submit(std::move(rb)));
  scheduler->Shutdown();
  ASSERT_TRUE(a.Wait());
  ASSERT_TRUE(b.Wait());
  EXPECT_FALSE(b.result.status);
  EXPECT_EQ(b.result.status.error().code, Code::kUnavailable);
  auto late = scheduler->Submit(Greedy(Prompt(5, 1, n_vocab_), 1));
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, Code::kUnavailable);
}

TEST(PrefixCacheTest, EvictsLeastRecentlyUsedLeavesAndNeverBlocksInUse) {
  ModelConfig config;
  config.n_layer = 1;
  config.n_head_kv = 1;
  config.head_dim = 4;
  auto cache = KvCache::Create(config, {KvCacheType::kF32, 4, 8});
  ASSERT_TRUE(cache);
  KvCache& kv = **cache;
  PrefixCache pc(&kv);
  // A sequence of 3 blocks: [1..4] [5..8] [9..12].
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  Sequence seq;
  ASSERT_TRUE(kv.Reserve(&seq, 12));
  uint64_t h = PrefixCache::kRootHash;
  for (int b = 0; b < 3; ++b) {
    h = pc.Insert(h, std::span<const int32_t>(tokens.data() + 4 * b, 4), seq.blocks()[b]);
  }
  EXPECT_EQ(pc.n_entries(), 3);
  EXPECT_EQ(kv.ref_count(seq.blocks()[0]), 2);
  EXPECT_EQ(pc.Evict(3), 0);  // the sequence still uses every block
  // Lookup stops at a differing token and respects max_tokens.
  std::vector<int32_t> other = {1, 2, 3, 4, 5, 6, 0, 8, 9};
  EXPECT_EQ(pc.Lookup(other, 100).blocks.size(), 1u);
  EXPECT_EQ(pc.Lookup(tokens, 11).blocks.size(), 2u);
  EXPECT_EQ(pc.Lookup(tokens, 12).blocks, seq.blocks());
  kv.Release(&seq);
  EXPECT_EQ(kv.n_free_blocks(), 5);
  EXPECT_EQ(pc.n_evictable(), 3);
  // The deepest block goes first; the chain stays usable from its start.
  EXPECT_EQ(pc.Evict(1), 1);
  EXPECT_EQ(pc.Lookup(tokens, 12).blocks.size(), 2u);
  EXPECT_EQ(pc.Evict(10), 2);
  EXPECT_EQ(kv.n_free_blocks(), 8);
  EXPECT_EQ(pc.n_entries(), 0);
}

TEST(PrefixCacheTest, APartlyMatchingBlockIsFoundAndCopied) {
  ModelConfig config;
  config.n_layer = 1;
  config.n_head_kv = 1;
  config.head_dim = 4;
  auto cache = KvCache::Create(config, {KvCacheType::kF32, 4, 8});
  ASSERT_TRUE(cache);
  KvCache& kv = **cache;
  PrefixCache pc(&kv);
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  Sequence seq;
  ASSERT_TRUE(kv.Reserve(&seq, 8));
  *static_cast<float*>(kv.KeyRow(seq, 0, 5, 0)) = 42.0f;  // position 5 = block 1, offset 1
  uint64_t h = pc.Insert(PrefixCache::kRootHash, std::span<const int32_t>(tokens.data(), 4),
                         seq.blocks()[0]);
  pc.Insert(h, std::span<const int32_t>(tokens.data() + 4, 4), seq.blocks()[1]);
  // [1 2 3 4] [5 6 9 ...]: one whole block, then 2 positions of the next.
  std::vector<int32_t> other = {1, 2, 3, 4, 5, 6, 9, 9, 9};
  auto m = pc.Lookup(other, 100);
  ASSERT_EQ(m.blocks.size(), 1u);
  EXPECT_EQ(m.partial_block, seq.blocks()[1]);
  EXPECT_EQ(m.partial_tokens, 2);
  EXPECT_EQ(pc.Lookup(other, 5).partial_tokens, 1);  // max_tokens caps the partial match too
  Sequence copy;
  ASSERT_TRUE(kv.Adopt(&copy, m.blocks));
  ASSERT_TRUE(kv.AppendCopy(&copy, m.partial_block, m.partial_tokens));
  EXPECT_EQ(copy.n_tokens(), 6);
  EXPECT_NE(copy.blocks()[1], seq.blocks()[1]);  // a private copy: the original is never written
  EXPECT_EQ(*static_cast<float*>(kv.KeyRow(copy, 0, 5, 0)), 42.0f);
  EXPECT_FALSE(kv.AppendCopy(&copy, m.partial_block, 1));  // copy ends in a partial block
  kv.Release(&copy);
  kv.Release(&seq);
}

TEST(PrefixCacheTest, AdoptedBlocksAreSharedNotCopied) {
  ModelConfig config;
  config.n_layer = 1;
  config.n_head_kv = 1;
  config.head_dim = 4;
  auto cache = KvCache::Create(config, {KvCacheType::kF32, 4, 8});
  ASSERT_TRUE(cache);
  KvCache& kv = **cache;
  Sequence a, b;
  ASSERT_TRUE(kv.Reserve(&a, 8));
  EXPECT_FALSE(kv.Adopt(&b, std::vector<int32_t>{7}));  // a free block cannot be adopted
  ASSERT_TRUE(kv.Adopt(&b, a.blocks()));
  EXPECT_EQ(b.n_tokens(), 8);
  EXPECT_EQ(kv.ref_count(a.blocks()[1]), 2);
  EXPECT_FALSE(kv.Adopt(&b, a.blocks()));  // b is not empty any more
  kv.Release(&a);
  EXPECT_EQ(kv.n_free_blocks(), 6);
  kv.Release(&b);
  EXPECT_EQ(kv.n_free_blocks(), 8);
}

}  // namespace
}  // namespace yunzhi::engine
