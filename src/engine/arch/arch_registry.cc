#include "engine/arch/arch.h"

namespace yunzhi::engine::arch {

const ArchDef& FindArch(Architecture architecture) {
  switch (architecture) {
    case Architecture::kLlama:
      return LlamaArch();
    case Architecture::kMistral:
      return MistralArch();
    case Architecture::kQwen2:
      return Qwen2Arch();
    case Architecture::kQwen3:
      return Qwen3Arch();
  }
  return LlamaArch();
}

}  // namespace yunzhi::engine::arch
