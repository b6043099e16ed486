// Qwen2 / Qwen2.5: the Llama block with biases on the Q, K and V projections, and RoPE in the
// NeoX (rotate-half) layout in GGUF files as well as in HF checkpoints.
#include "engine/arch/arch.h"
#include "engine/arch/layers.h"
#include "engine/model_state.h"

namespace yunzhi::engine::arch {
namespace {

void FinishConfig(ModelConfig& config, bool /*from_gguf*/) {
  config.rope.layout = RopeLayout::kNeox;
  config.qkv_bias = true;
  config.qk_norm = false;
}

void Block(ForwardContext& ctx, const internal::LayerWeights& w, int64_t layer) {
  SelfAttention(ctx, w, layer);  // with the Q/K/V biases (FinishConfig sets qkv_bias)
  OutputAndFeedForward(ctx, w);
}

}  // namespace

const ArchDef& Qwen2Arch() {
  static const ArchDef def{Architecture::kQwen2, &FinishConfig, &Block};
  return def;
}

}  // namespace yunzhi::engine::arch
