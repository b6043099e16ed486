// libFuzzer target for the GGUF reader: any input must parse to an error or to a file whose every
// metadata value and tensor byte range can be touched. Build with clang (see CMakeLists.txt), run:
//   ./gguf_fuzz -max_len=65536 corpus/ ../shared/testdata/models ../shared/testdata/tokenizer
#include <cstddef>
#include <cstdint>
#include <span>

#include "yunzhi/engine/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace yunzhi::engine;  // NOLINT
  auto file = GgufFile::FromMemory(std::span<const uint8_t>(data, size), "fuzz.gguf");
  if (!file) return 0;
  volatile uint64_t sink = 0;
  for (const GgufMetadataEntry& e : file->metadata()) {
    if (auto s = e.value.AsString()) sink = sink + s->size();
    if (e.value.is_array()) {
      if (auto elements = e.value.AsArray()) {
        for (const GgufValue& v : *elements) {
          if (auto s = v.AsString()) sink = sink + s->size();
          if (v.is_array()) sink = sink + (v.AsArray() ? 1 : 0);
        }
      }
    }
  }
  for (const GgufTensorInfo& t : file->tensors()) {
    if (t.size_bytes > 0) {
      const auto* p = static_cast<const uint8_t*>(t.data);
      sink = sink + p[0] + p[t.size_bytes - 1];
    }
    (void)file->GetTensor(t.name);
  }
  return 0;
}
