// Qwen2 / Qwen2.5: the Llama block with biases on the Q, K and V projections, and RoPE in the
// NeoX (rotate-half) layout in GGUF files as well as in HF checkpoints.
#include "engine/arch/arch.h"
#include "engine/arch/layers.h"

namespace yunzhi::engine::arch {
namespace {

void FinishConfig(ModelConfig& config, bool /*from_gguf*/) {
  config.rope.layout = RopeLayout::kNeox;
  config.qkv_bias = true;  // SelfAttention adds the Q/K/V biases
  config.qk_norm = false;
}

}  // namespace

const ArchDef& Qwen2Arch() {
  static const ArchDef def{Architecture::kQwen2, &FinishConfig, &PreNormBlock};
  return def;
}

}  // namespace yunzhi::engine::arch
