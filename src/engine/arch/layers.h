// The shared layers every decoder family is built from (private to the engine).
//
// A ForwardContext holds one Forward call's batch: T tokens from several sequences, laid out
// token-major in scratch buffers owned by the runner. Linear layers run as one matrix product
// over all T tokens; attention runs per token and head over the token's own sequence in the
// paged KV cache. Families (llama.cc, qwen2.cc, ...) chain these functions into their block.
#pragma once

#include <cstdint>
#include <vector>

#include "yunzhi/engine/kv_cache.h"
#include "yunzhi/engine/model.h"
#include "yunzhi/engine/tensor_type.h"

#include "engine/kernels/kernels.h"

namespace yunzhi::engine {
namespace internal {
struct ModelState;
struct LayerWeights;
struct Matrix;
}  // namespace internal

namespace arch {

// The part of a batch that belongs to one sequence.
struct SeqSlice {
  Sequence* sequence = nullptr;
  int64_t first_token = 0;  // index of its first token in the batch
  int64_t n_new = 0;        // tokens appended by this call
  int64_t n_past = 0;       // positions already in the cache
};

struct ForwardContext {
  const internal::ModelState* model = nullptr;
  const ModelConfig* config = nullptr;
  KvCache* cache = nullptr;
  ComputePool* pool = nullptr;

  int64_t n_tokens = 0;  // T
  std::vector<SeqSlice> slices;
  std::vector<int64_t> token_slice;  // per token: index into slices
  std::vector<int64_t> token_pos;    // per token: its position in its sequence

  // Scratch, token-major, sized by the runner for T tokens.
  float* x = nullptr;        // residual stream    [T x n_embd]
  float* xn = nullptr;       // normalised input   [T x n_embd]
  float* q = nullptr;        // queries            [T x n_head * head_dim]
  float* k = nullptr;        // keys               [T x n_head_kv * head_dim]
  float* v = nullptr;        // values             [T x n_head_kv * head_dim]
  float* attn = nullptr;     // attention output   [T x n_head * head_dim]
  float* ff_gate = nullptr;  //                 [T x n_ff]
  float* ff_up = nullptr;    //                 [T x n_ff]
  float* out = nullptr;      // block output       [T x n_embd]
  float* rope = nullptr;     // RoPE cos/sin of each token's position [T x head_dim], filled
                             // once per pass by the first layer that rotates (the same for
                             // every layer)
  bool rope_ready = false;
  // Per compute thread: (n_head / n_head_kv) * n_ctx floats of attention scores (one KV head's
  // group of query heads) + 2 * n_ctx row pointers.
  std::vector<std::vector<float>>* attn_scores = nullptr;
  std::vector<std::vector<const void*>>* attn_rows = nullptr;
  // Per compute thread: scratch of DecodeLayersInOneRegion (sized by it).
  std::vector<std::vector<float>>* thread_scratch = nullptr;
};

// y[t] = RMSNorm(x[t]) * weight for every token (rows of `n`).
void NormRows(ForwardContext& ctx, const float* x, const std::vector<float>& weight, int64_t n,
              float* y);
// y[T x rows] = x[T x cols] W^T, W a [rows x cols] weight of any supported type.
void Linear(ForwardContext& ctx, const internal::Matrix& w, const float* x, float* y);
// y[t] += bias for every token (rows of bias.size()).
void AddBias(ForwardContext& ctx, float* y, const std::vector<float>& bias);
// RMSNorm of every head (head_dim elements) of every token with `weight` (Qwen3 Q/K norm).
void NormHeads(ForwardContext& ctx, float* x, int64_t n_heads, const std::vector<float>& weight);
// Rotates every head of every token by its position.
void RopeRows(ForwardContext& ctx, float* x, int64_t n_heads);
// Writes ctx.k / ctx.v of every token into the cache at its position in layer `layer`.
void StoreKv(ForwardContext& ctx, int64_t layer);
// ctx.attn = causal grouped-query attention of ctx.q over the cache of layer `layer`. A prompt's
// consecutive tokens are attended up to kAttentionTokensPerCall at a time per KV head, as many as
// ctx.attn_scores (per thread) holds: each reads and converts the K/V rows once for all of them,
// and every token gets the bits it gets alone.
void Attention(ForwardContext& ctx, int64_t layer);
constexpr int64_t kAttentionTokensPerCall = 8;
// The floats of the per-thread scores buffer ModelRunner provides at least (4 MiB): enough for
// kAttentionTokensPerCall tokens of a 7-head group up to ~18k positions.
constexpr int64_t kAttentionScratchFloats = int64_t{1} << 20;
// Tokens per call for a group of `group` query heads when the longest sequence is max_len long:
// what ModelRunner sizes ctx.attn_scores for (group * max_len * that many floats).
int64_t AttentionTokensPerCall(int64_t group, int64_t max_len);
// ctx.out = down(silu(gate(ctx.xn)) * up(ctx.xn)).
void FeedForwardSwiGlu(ForwardContext& ctx, const internal::LayerWeights& w);
// ctx.x += y (rows of n_embd).
void AddResidual(ForwardContext& ctx, const float* y);

// Per-head steps (the attention of SelfAttention, and of DecodeLayersInOneRegion's work items).
kernels::RopeStyle StyleOf(const ModelConfig& c);
// Fills ctx.rope with each token's RoPE cos/sin (angles in double) once per pass, not once per
// layer and per q/k.
void EnsureRopeAngles(ForwardContext& ctx);
// Token t's key and value of KV head h (in ctx.k / ctx.v) into the cache of layer `layer`.
void StoreKvHead(ForwardContext& ctx, int64_t layer, int64_t t, int64_t h);
// Attention of token t's query heads that share KV head h_kv (the row pointers of that KV head
// gathered once for all of them) into ctx.attn; ith: the calling thread, for its scratch.
void AttendKvHead(ForwardContext& ctx, int64_t layer, int64_t t, int64_t h_kv, int ith);

// The two halves of the pre-norm decoder block every family shares (a family's config flags
// select its variants: qkv_bias, qk_norm, the RoPE layout).
// ctx.attn = attention over the cache of layer `layer` of the projections of RMSNorm(ctx.x):
// Q/K/V (plus biases when config.qkv_bias), per-head RMSNorm of Q and K (config.qk_norm), RoPE,
// this call's keys and values written to the cache.
void SelfAttention(ForwardContext& ctx, const internal::LayerWeights& w, int64_t layer);
// The output projection of ctx.attn and its residual, then the RMSNorm + SwiGLU feed-forward and
// its residual.
void OutputAndFeedForward(ForwardContext& ctx, const internal::LayerWeights& w);
// The pre-norm decoder block of every family so far (ArchDef::block): SelfAttention, then
// OutputAndFeedForward.
void PreNormBlock(ForwardContext& ctx, const internal::LayerWeights& w, int64_t layer);

// Decoding one token through every layer of a PreNormBlock model in one parallel region
// (one_token.cc): the layers' work items run between barriers instead of a fork-join per matrix
// product, and the small steps between products run on every thread instead of on one while the
// others wait. Gives the logits the bits of the layer-by-layer path. Returns false, having done
// nothing, when it does not apply (more than one token, fewer than two threads, a family with its
// own block); the caller then runs the blocks.
bool DecodeLayersInOneRegion(ForwardContext& ctx);

}  // namespace arch
}  // namespace yunzhi::engine
