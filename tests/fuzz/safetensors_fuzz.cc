// libFuzzer target for the safetensors reader: any input must parse to an error or to a file
// whose every tensor byte range can be touched. Build with clang (see CMakeLists.txt), run:
//   ./safetensors_fuzz -max_len=65536 -dict=safetensors.dict corpus/
#include <cstddef>
#include <cstdint>
#include <span>

#include "yunzhi/engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace yunzhi::engine;  // NOLINT
  auto file = SafetensorsFile::FromMemory(std::span<const uint8_t>(data, size), "fuzz");
  if (!file) return 0;
  volatile uint64_t sink = 0;
  for (const auto& [k, v] : file->metadata()) sink = sink + k.size() + v.size();
  for (const SafetensorsTensorInfo& t : file->tensors()) {
    if (t.size_bytes > 0) {
      const auto* p = static_cast<const uint8_t*>(t.data);
      sink = sink + p[0] + p[t.size_bytes - 1];
    }
    (void)file->GetTensor(t.name);
  }
  return 0;
}
