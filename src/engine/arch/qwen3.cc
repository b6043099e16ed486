// Qwen3 (dense): no QKV biases; instead every head of Q and K goes through its own RMSNorm
// (weights of head_dim, shared by all heads) before RoPE. head_dim is a hyper-parameter of its
// own (n_head * head_dim may differ from n_embd). RoPE in the NeoX layout.
#include "engine/arch/arch.h"
#include "engine/arch/layers.h"

namespace yunzhi::engine::arch {
namespace {

void FinishConfig(ModelConfig& config, bool /*from_gguf*/) {
  config.rope.layout = RopeLayout::kNeox;
  config.qk_norm = true;  // SelfAttention norms every Q and K head
}

}  // namespace

const ArchDef& Qwen3Arch() {
  static const ArchDef def{Architecture::kQwen3, &FinishConfig, &PreNormBlock};
  return def;
}

}  // namespace yunzhi::engine::arch
