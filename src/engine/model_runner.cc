// ModelRunner: turns a batch of (sequence, tokens) items into one token-major activation matrix,
// runs the family's block over it layer by layer, and computes logits for the rows asked for.
#include <algorithm>
#include <unordered_set>

#include <fmt/format.h>

#include "yunzhi/engine/model.h"

#include "engine/arch/arch.h"
#include "engine/arch/layers.h"
#include "engine/kernels/kernels.h"
#include "engine/model_state.h"

namespace yunzhi::engine {
namespace {

// One pass of Forward computes as many multiples of kMinPassTokens tokens as fit this much
// activation scratch, at least one (see Forward).
constexpr int64_t kMaxPassBytes = int64_t{12} << 20;
constexpr int64_t kMinPassTokens = 128;

}  // namespace

namespace internal {

struct RunnerState {
  std::shared_ptr<const Model> model;
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<ComputePool> pool;
  int64_t n_ctx = 0;
  int64_t max_pass_tokens = 0;  // RunnerOptions::max_pass_tokens

  // Scratch reused across calls (grown, never shrunk).
  std::vector<float> buffer;
  std::vector<std::vector<float>> attn_scores;
  std::vector<std::vector<const void*>> attn_rows;
  std::vector<std::vector<float>> thread_scratch;  // arch::DecodeLayersInOneRegion
  std::vector<float> final_rows;
};

}  // namespace internal

ModelRunner::ModelRunner(std::unique_ptr<internal::RunnerState> state) : state_(std::move(state)) {}
ModelRunner::~ModelRunner() = default;

Result<std::unique_ptr<ModelRunner>> ModelRunner::Create(std::shared_ptr<const Model> model,
                                                         const RunnerOptions& options) {
  if (model == nullptr) return InvalidArgumentError("ModelRunner: no model");
  if (model->vocab_only()) {
    return FailedPreconditionError(
        fmt::format("{}: loaded vocab-only, cannot be run", model->path()));
  }
  const ModelConfig& c = model->config();
  auto state = std::make_unique<internal::RunnerState>();
  state->n_ctx = options.n_ctx > 0 ? options.n_ctx : std::min(c.n_ctx_train, kDefaultContextTokens);
  if (options.max_pass_tokens < 0) {
    return InvalidArgumentError(
        fmt::format("ModelRunner: bad max_pass_tokens {}", options.max_pass_tokens));
  }
  state->max_pass_tokens = options.max_pass_tokens;
  if (options.n_ctx < 0 || state->n_ctx <= 0) {
    return InvalidArgumentError(fmt::format("ModelRunner: bad context size {}", options.n_ctx));
  }
  KvCacheOptions kv = options.kv_cache;
  if (kv.block_tokens < 1) {
    return InvalidArgumentError(
        fmt::format("ModelRunner: KV block_tokens must be at least 1, not {}", kv.block_tokens));
  }
  if (kv.n_blocks == 0) kv.n_blocks = (state->n_ctx + kv.block_tokens - 1) / kv.block_tokens;
  YZ_ASSIGN_OR_RETURN(state->cache, KvCache::Create(c, kv));
  state->pool = std::make_unique<ComputePool>(options.n_threads);
  const size_t n_threads = static_cast<size_t>(state->pool->n_threads());
  state->attn_scores.resize(n_threads);
  state->attn_rows.resize(n_threads);
  state->thread_scratch.resize(n_threads);
  state->model = std::move(model);
  return std::unique_ptr<ModelRunner>(new ModelRunner(std::move(state)));
}

const Model& ModelRunner::model() const { return *state_->model; }
KvCache& ModelRunner::kv_cache() { return *state_->cache; }
int64_t ModelRunner::n_ctx() const { return state_->n_ctx; }

Status ModelRunner::Forward(std::span<const BatchItem> batch, ForwardOutput* out) {
  internal::RunnerState& s = *state_;
  const internal::ModelState& m = s.model->state();
  const ModelConfig& c = m.config;
  KvCache& cache = *s.cache;

  YZ_CHECK(out != nullptr);
  // ---- Validate the whole batch before changing anything.
  if (batch.empty()) return InvalidArgumentError("Forward: empty batch");
  std::unordered_set<const Sequence*> seen;
  int64_t n_tokens = 0;
  int64_t extra_blocks = 0;
  int64_t max_len = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const BatchItem& item = batch[i];
    if (item.sequence == nullptr) {
      return InvalidArgumentError(fmt::format("Forward: batch item {} has no sequence", i));
    }
    if (!seen.insert(item.sequence).second) {
      return InvalidArgumentError(
          fmt::format("Forward: batch item {} repeats a sequence of an earlier item", i));
    }
    if (item.tokens.empty()) {
      return InvalidArgumentError(fmt::format("Forward: batch item {} has no tokens", i));
    }
    for (size_t j = 0; j < item.tokens.size(); ++j) {
      const int32_t t = item.tokens[j];
      if (t < 0 || t >= c.n_vocab) {
        return InvalidArgumentError(fmt::format(
            "Forward: token id {} (item {}, position {}) is outside the vocabulary [0, {})", t, i,
            j, c.n_vocab));
      }
    }
    const int64_t n_new = static_cast<int64_t>(item.tokens.size());
    const int64_t total = item.sequence->n_tokens() + n_new;
    if (total > s.n_ctx) {
      return InvalidArgumentError(fmt::format(
          "context overflow: sequence of batch item {} holds {} tokens and {} more would make {}, "
          "more than the context of {} tokens",
          i, item.sequence->n_tokens(), n_new, total, s.n_ctx));
    }
    extra_blocks += cache.ExtraBlocksFor(*item.sequence, total);
    n_tokens += n_new;
    max_len = std::max(max_len, total);
  }
  if (extra_blocks > cache.n_free_blocks()) {
    return Error(Code::kResourceExhausted,
                 fmt::format("KV cache full: the batch needs {} more blocks, {} of {} are free",
                             extra_blocks, cache.n_free_blocks(), cache.n_blocks()));
  }
  for (const BatchItem& item : batch) {
    YZ_CHECK(cache.Reserve(item.sequence,
                           item.sequence->n_tokens() + static_cast<int64_t>(item.tokens.size())));
  }

  // ---- Lay out the batch: every token's sequence (slice), position and id, in batch order.
  std::vector<arch::SeqSlice> slices;
  std::vector<int64_t> token_slice(static_cast<size_t>(n_tokens));
  std::vector<int64_t> token_pos(static_cast<size_t>(n_tokens));
  std::vector<int32_t> token_id(static_cast<size_t>(n_tokens));
  int64_t t = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    arch::SeqSlice slice;
    slice.sequence = batch[i].sequence;
    slice.first_token = t;
    slice.n_new = static_cast<int64_t>(batch[i].tokens.size());
    slice.n_past = batch[i].sequence->n_tokens();
    for (int64_t j = 0; j < slice.n_new; ++j, ++t) {
      token_slice[static_cast<size_t>(t)] = static_cast<int64_t>(i);
      token_pos[static_cast<size_t>(t)] = slice.n_past + j;
      token_id[static_cast<size_t>(t)] = batch[i].tokens[static_cast<size_t>(j)];
    }
    slices.push_back(slice);
  }

  // The rows of logits asked for: each item's last token, or all its tokens; out_row[t] is the
  // row of token t, or -1.
  out->n_vocab = c.n_vocab;
  out->first_row.assign(batch.size(), 0);
  out->n_rows.assign(batch.size(), 0);
  std::vector<int64_t> out_row(static_cast<size_t>(n_tokens), -1);
  int64_t n_out = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    out->first_row[i] = n_out;
    out->n_rows[i] = batch[i].all_logits ? static_cast<int64_t>(batch[i].tokens.size()) : 1;
    const int64_t first = slices[i].first_token + slices[i].n_new - out->n_rows[i];
    for (int64_t j = 0; j < out->n_rows[i]; ++j) out_row[static_cast<size_t>(first + j)] = n_out + j;
    n_out += out->n_rows[i];
  }
  s.final_rows.resize(static_cast<size_t>(n_out * c.n_embd));

  // ---- Passes, each within kMaxPassBytes of activations (or kMinPassTokens tokens): the
  // activations of a long prompt need not all be resident at once (a 512-token prompt of a 1B
  // model: 57 MiB, against 14 MiB in passes of 128). A later pass sees the KV of the earlier
  // ones, and a token's results do not depend on which tokens share its pass (kernels.h), so
  // passes only bound the memory.
  const int64_t q_dim = c.n_head * c.head_dim;
  const int64_t kv_dim = c.n_head_kv * c.head_dim;
  const int64_t per_token = 3 * c.n_embd + 2 * q_dim + 2 * kv_dim + 2 * c.n_ff + c.head_dim;
  // Automatic passes are whole multiples of kMinPassTokens (MatMul's token block for prompts), so
  // that splitting adds no partial block: 508 tokens are 4 passes of 128 (3 x 128 + 124), not 3
  // of 169 (each 128 + 41: pp512 ~13% slower).
  const int64_t pass_limit =
      s.max_pass_tokens > 0
          ? s.max_pass_tokens
          : std::max<int64_t>(1, kMaxPassBytes / (per_token * static_cast<int64_t>(sizeof(float))) /
                                     kMinPassTokens) *
                kMinPassTokens;
  // Pass boundaries: full passes, then the rest; a rest of 1-2 tokens takes 3 from the pass
  // before it, since 1-2 token products run the decoding kernels (other bits for row-layout
  // float and K-quant weights than the same token in a longer product).
  std::vector<int64_t> bounds = {0};
  while (bounds.back() < n_tokens) bounds.push_back(std::min(n_tokens, bounds.back() + pass_limit));
  const size_t n_bounds = bounds.size();
  if (n_bounds > 2 && bounds[n_bounds - 1] - bounds[n_bounds - 2] <= 2 && pass_limit > 5) {
    bounds[n_bounds - 2] -= 3;
  }
  int64_t pass_max = 0;
  for (size_t k = 1; k < n_bounds; ++k) pass_max = std::max(pass_max, bounds[k] - bounds[k - 1]);
  if (s.buffer.size() < static_cast<size_t>(per_token * pass_max)) {
    s.buffer.resize(static_cast<size_t>(per_token * pass_max));
  }
  // Scores of one KV head's group of query heads, for a run of a prompt's tokens at a time
  // (arch::Attention); row pointers of its K and V.
  const int64_t group = c.n_head / c.n_head_kv;
  const int64_t per_call = n_tokens > 1 ? arch::AttentionTokensPerCall(group, max_len) : 1;
  const auto scores = static_cast<size_t>(group * max_len * per_call);
  for (size_t i = 0; i < s.attn_scores.size(); ++i) {
    if (s.attn_scores[i].size() < scores) s.attn_scores[i].resize(scores);
    if (s.attn_rows[i].size() < 2 * static_cast<size_t>(max_len)) {
      s.attn_rows[i].resize(2 * static_cast<size_t>(max_len));
    }
  }
  for (size_t pass = 0; pass + 1 < n_bounds; ++pass) {
    const int64_t p0 = bounds[pass], p1 = bounds[pass + 1];
    arch::ForwardContext ctx;
    ctx.model = &m;
    ctx.config = &c;
    ctx.cache = &cache;
    ctx.pool = s.pool.get();
    ctx.n_tokens = p1 - p0;
    ctx.slices = slices;
    ctx.token_slice.assign(token_slice.begin() + p0, token_slice.begin() + p1);
    ctx.token_pos.assign(token_pos.begin() + p0, token_pos.begin() + p1);
    float* p = s.buffer.data();
    auto take = [&](int64_t width) {
      float* r = p;
      p += width * ctx.n_tokens;
      return r;
    };
    ctx.x = take(c.n_embd);
    ctx.xn = take(c.n_embd);
    ctx.out = take(c.n_embd);
    ctx.q = take(q_dim);
    ctx.attn = take(q_dim);
    ctx.k = take(kv_dim);
    ctx.v = take(kv_dim);
    ctx.ff_gate = take(c.n_ff);
    ctx.ff_up = take(c.n_ff);
    ctx.rope = take(c.head_dim);
    ctx.attn_scores = &s.attn_scores;
    ctx.attn_rows = &s.attn_rows;
    ctx.thread_scratch = &s.thread_scratch;

    // Embeddings, blocks.
    for (int64_t k = 0; k < ctx.n_tokens; ++k) {
      kernels::DequantizeRow(m.tok_embd.type, m.tok_embd.layout, m.tok_embd.data,
                             token_id[static_cast<size_t>(p0 + k)], c.n_embd,
                             ctx.x + k * c.n_embd);
    }
    if (!arch::DecodeLayersInOneRegion(ctx)) {
      for (int64_t il = 0; il < c.n_layer; ++il) {
        m.arch->block(ctx, m.layers[static_cast<size_t>(il)], il);
      }
    }
    // The final norm of the rows whose logits are asked for.
    for (int64_t k = 0; k < ctx.n_tokens; ++k) {
      const int64_t row = out_row[static_cast<size_t>(p0 + k)];
      if (row < 0) continue;
      kernels::RmsNorm(ctx.x + k * c.n_embd, m.output_norm.data(), c.norm_eps, c.n_embd,
                       s.final_rows.data() + row * c.n_embd);
    }
  }
  for (const arch::SeqSlice& slice : slices) {
    cache.SetLength(slice.sequence, slice.n_past + slice.n_new);
  }

  // ---- Logits for the rows asked for.
  out->logits.resize(static_cast<size_t>(n_out * c.n_vocab));
  kernels::MatMul(s.pool.get(), m.output.type, m.output.data, m.output.ne[1], m.output.ne[0],
                  s.final_rows.data(), n_out, out->logits.data(), m.output.layout);
  return OkStatus();
}

}  // namespace yunzhi::engine
